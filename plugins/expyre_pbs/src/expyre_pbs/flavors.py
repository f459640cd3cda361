"""The two PBS families and how to tell them apart.

* ``torque``: Torque/PBS classic (and Slurm's Torque-compatible Perl wrappers, package
  ``slurm-wlm-torque``). ``qstat -x`` means XML there, finished jobs stay as ``C`` for
  ``keep_completed`` seconds, there is no ``-F json`` and no job history.
* ``pbspro``: PBS Professional / OpenPBS. ``qstat -x`` adds finished (history) jobs as ``F``,
  ``qstat -f -F json`` gives machine-readable output, ``Exit_status`` is capitalised.

``qstat --version`` tells them apart (Torque: ``Version: 6.1.2``; PBS Pro: ``pbs_version = 19.1.3``;
the Slurm wrappers reject the option with ``Unknown option: version`` and a usage text).
"""

from __future__ import annotations

import enum
import re

from attrs import frozen

from expyre.types import CommandResult

__all__ = ["Flavor", "Detected", "detect_flavor", "FlavorDetectionError"]


class Flavor(str, enum.Enum):
    TORQUE = "torque"
    PBSPRO = "pbspro"


@frozen
class Detected:
    """The outcome of :func:`detect_flavor`.

    :param flavor: the family.
    :param detail: a human description for messages, e.g. ``"Torque 6.1.2"`` or
        ``"Slurm's Torque-compatible wrappers"``.
    """

    flavor: Flavor
    detail: str
    #: Slurm's Torque-compatible wrappers: ``qsub -t`` becomes ``sbatch --array``, but their
    #: ``qstat`` lists the elements by Slurm's internal job ids with no array index and jobs get no
    #: ``PBS_ARRAYID`` (verified on slurm-wlm-torque 22.05.8), so elements cannot be followed
    slurm_wrappers: bool = False


class FlavorDetectionError(RuntimeError):
    """``qstat --version`` did not come from a PBS family (or could not run)."""


_PBSPRO = re.compile(r"pbs_version\s*=\s*(\S+)")
_TORQUE = re.compile(r"^\s*Version:\s*(\S+)", re.MULTILINE)
# the usage text of slurm-wlm-torque's qstat (real-schedulers.md, Appendix A "qstat -x")
_SLURM_WRAPPER = re.compile(r"Unknown option: version.*qstat \[-f\] \[-a\|-i\|-r\]", re.DOTALL)
_GRID_ENGINE = re.compile(r"^(SGE|OGS/GE|GE|UGE|Univa Grid Engine|Altair Grid Engine)\s+\d", re.MULTILINE)


def detect_flavor(result: CommandResult, qstat: str = "qstat") -> Detected:
    """Tell the family from the result of ``qstat --version``.

    :raises FlavorDetectionError: qstat is missing, or is Grid Engine's, or says nothing recognisable.
    """
    text = f"{result.stdout}\n{result.stderr}"
    m = _PBSPRO.search(text)
    if m:
        return Detected(Flavor.PBSPRO, f"PBS Pro/OpenPBS {m.group(1)}")
    if _GRID_ENGINE.search(text):
        raise FlavorDetectionError(
            f"`{qstat}` is Grid Engine's qstat, not PBS's ({text.strip().splitlines()[0]}). "
            "Put the PBS commands first in PATH on that host, or set "
            '"scheduler_options": {"bin_dir": "/path/to/pbs/bin"} for this system'
        )
    if _SLURM_WRAPPER.search(text):
        return Detected(Flavor.TORQUE, "Slurm's Torque-compatible wrappers (slurm-wlm-torque)", slurm_wrappers=True)
    m = _TORQUE.search(text)
    if m and result.ok:
        return Detected(Flavor.TORQUE, f"Torque {m.group(1)}")
    if result.returncode == 127 or "command not found" in text or "No such file" in text:
        raise FlavorDetectionError(
            f"`{qstat}` was not found on that host ({result.describe()}). Set "
            '"scheduler_options": {"bin_dir": "/path/to/pbs/bin"} or put the PBS commands in PATH'
        )
    raise FlavorDetectionError(
        f"cannot tell the PBS family from `{qstat} --version` ({result.describe()}); set "
        '"scheduler_options": {"flavor": "torque"} or {"flavor": "pbspro"} for this system'
    )
