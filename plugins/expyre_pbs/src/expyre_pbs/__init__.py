"""expyre-pbs: the ``pbs`` scheduler for expyre (PBS Pro/OpenPBS and Torque).

Install with ``pip install expyre-core expyre-pbs`` and use ``"scheduler": "pbs"`` in config.json::

    "mycluster": {
        "host": "me@login.cluster.org",
        "scheduler": "pbs",
        "scheduler_options": {"flavor": "auto"},
        "header": ["#PBS -l select={nnodes}:ncpus={ncores_per_node}:mpiprocs={ncores_per_node}"],
        "partitions": {"workq": {"ncores": 128, "max_time": "48h"}}
    }
"""

from __future__ import annotations

__version__ = "0.1.0"

import expyre
from expyre.hookspecs import SchedulerSpec

from .flavors import Detected, Flavor, detect_flavor
from .options import PbsOptions
from .scheduler import PbsScheduler

__all__ = ["PbsScheduler", "PbsOptions", "Flavor", "Detected", "detect_flavor", "expyre_register_schedulers"]


@expyre.hookimpl
def expyre_register_schedulers():
    yield SchedulerSpec(
        name="pbs",
        backend=PbsScheduler,
        description="PBS Pro/OpenPBS and Torque (qsub/qstat/qdel/qhold/qrls)",
    )
