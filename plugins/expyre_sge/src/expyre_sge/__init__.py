"""expyre plugin ``sge``: Sun / Son of Grid Engine (``qsub``, ``qstat -xml``, ``qacct``, ``qdel``,
``qhold``, ``qrls``).

Select it with ``"scheduler": "sge"`` for a system in config.json, e.g.::

    "mycluster": {"host": null, "scheduler": "sge",
                  "header": ["#$ -pe smp {tot_ncores}"],
                  "partitions": {"all.q": {"ncores": 4, "max_time": null}}}
"""

from __future__ import annotations

__version__ = "0.1.0"

import expyre
from expyre.hookspecs import SchedulerSpec

from .scheduler import SgeOptions, SgeScheduler, SgeSetupError

__all__ = ["SgeScheduler", "SgeOptions", "SgeSetupError", "expyre_register_schedulers"]


@expyre.hookimpl
def expyre_register_schedulers():
    yield SchedulerSpec(name="sge", backend=SgeScheduler, description="Sun/Son of Grid Engine (qsub, qstat -xml, qacct)")
