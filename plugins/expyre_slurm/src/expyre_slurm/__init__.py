"""expyre-slurm: the ``slurm`` scheduler for expyre (``"scheduler": "slurm"`` in config.json).

Installed with ``pip install expyre-core expyre-slurm``; found through the ``expyre`` entry point.
The backend is :class:`expyre_slurm.scheduler.SlurmScheduler`; its ``scheduler_options`` are
:class:`expyre_slurm.scheduler.SlurmOptions`.
"""

from __future__ import annotations

from typing import Iterator

import expyre
from expyre.hookspecs import SchedulerSpec

from .scheduler import SlurmOptions, SlurmScheduler

__all__ = ["SlurmScheduler", "SlurmOptions", "expyre_register_schedulers"]
__version__ = "0.1.0"


@expyre.hookimpl
def expyre_register_schedulers() -> Iterator[SchedulerSpec]:
    yield SchedulerSpec(name="slurm", backend=SlurmScheduler, description="Slurm (sbatch, squeue, sacct, scancel, scontrol)")
