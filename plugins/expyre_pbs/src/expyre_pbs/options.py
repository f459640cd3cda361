"""``scheduler_options`` of a ``"scheduler": "pbs"`` system in config.json."""

from __future__ import annotations

from typing import Literal

from attrs import field, frozen, validators

__all__ = ["PbsOptions"]


@frozen
class PbsOptions:
    """Options of the ``pbs`` scheduler.

    Example (config.json)::

        "scheduler": "pbs",
        "scheduler_options": {"flavor": "auto", "bin_dir": "/opt/slurm-torque/bin"}

    :param flavor: ``"torque"`` (Torque/PBS classic, and Slurm's Torque wrappers), ``"pbspro"``
        (PBS Professional/OpenPBS), or ``"auto"``: ask ``qstat --version`` once per process.
    :param bin_dir: directory of ``qsub``/``qstat``/``qdel``/``qhold``/``qrls`` on the host that
        runs them (absolute), for sites with several installations or PBS commands not first in
        PATH. Default: whatever PATH finds.
    :param vanish_grace: seconds a finished job must stay without result files before it is
        declared died (default: 30 for Torque, which has no job history to ask, 10 for PBS Pro).
    :param arrays: submit job arrays (``qsub -J`` on PBS Pro, ``qsub -t`` on Torque) when asked
        to (``Executor(array=True)``, ``ExPyRe.start_array``). Default (None): yes for PBS Pro and
        Torque, no for Slurm's Torque wrappers, whose ``qstat`` cannot show array elements.
    :param max_array_size: the most elements of one array: the server's ``max_array_size``
        (PBS Pro) or ``max_job_array_size`` (Torque). Default 10000 (PBS Pro's default).
    """

    flavor: Literal["auto", "torque", "pbspro"] = "auto"
    bin_dir: str | None = None
    vanish_grace: float | None = None
    arrays: bool | None = None
    max_array_size: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
