"""Leaf layer: the check that a system's job Python can run expyre's jobs.

A job runs ``<python_cmd> _expyre_runner.py`` after the system's ``commands``; that Python must
exist and import cloudpickle. :func:`check_script` is the bash script that finds out (the
``commands`` first, their output sent to stderr), :func:`parse_check` reads its answer.
``xpr config check`` runs it on every system, and the local transport runs it once per process
before the first job of a system whose ``python_cmd`` is not the driver's own Python.
"""

from __future__ import annotations

import re
import shlex
from typing import Sequence

__all__ = ["JobPythonError", "JobPythonVersionError", "MIN_JOB_PYTHON", "check_script", "found_version", "parse_check", "python_script"]

_PY_CHECK = (
    "import sys; sys.stdout.write('expyre-version %d.%d.%d\\n' % sys.version_info[:3]); sys.stdout.flush(); "
    "import cloudpickle; "
    "sys.stdout.write('expyre-python %d.%d.%d cloudpickle=%s\\n' % (sys.version_info[:3] + (cloudpickle.__version__,)))"
)
_ANSWER = re.compile(r"^expyre-python (\d+\.\d+\.\d+) cloudpickle=(\S+)$", re.M)
_VERSION = re.compile(r"^expyre-version (\d+)\.(\d+)\.\d+$", re.M)
#: the oldest job Python: the call's pickles use protocol 5 and the runner's unpickler out-of-band buffers
MIN_JOB_PYTHON = (3, 8)


class JobPythonError(RuntimeError):
    """The job Python of a system cannot run jobs (missing, or without cloudpickle)."""


class JobPythonVersionError(JobPythonError):
    """The jobs' Python cannot load this call (another minor version than the Python that pickled
    functions by value, or older than 3.8); raised before anything is submitted."""


def python_script(python_cmd: str, code: str, commands: Sequence[str] = ()) -> str:
    """A bash script that runs ``python_cmd -c code`` as a job runs its Python: after the system's
    ``commands`` (their output sent to stderr)."""
    lines = []
    if commands:
        lines += ["{", *commands, "} >&2 </dev/null"]
    lines.append(f"{python_cmd} -c {shlex.quote(code)}")
    return "\n".join(lines) + "\n"


def check_script(python_cmd: str, commands: Sequence[str] = ()) -> str:
    """The bash script that checks ``python_cmd`` (shell text, as the job script uses it)."""
    return python_script(python_cmd, _PY_CHECK, commands)


def found_version(stdout: str) -> tuple[int, int] | None:
    """``(major, minor)`` that :func:`check_script` printed, or None."""
    v = _VERSION.search(stdout or "")
    return (int(v.group(1)), int(v.group(2))) if v else None


def parse_check(stdout: str, ok: bool, python_cmd: str, where: str, detail: str) -> str:
    """``"Python 3.11.7, cloudpickle 3.1.1"`` from the script's output, or :class:`JobPythonError`
    naming the command, where it ran, what it said (``detail``) and the fix."""
    v = found_version(stdout)
    if v is not None and v < MIN_JOB_PYTHON:
        raise JobPythonVersionError(
            f"the job Python `{python_cmd}` on {where} is Python {v[0]}.{v[1]}; jobs need Python "
            f"{MIN_JOB_PYTHON[0]}.{MIN_JOB_PYTHON[1]} or newer (their pickles use protocol 5): set \"python_cmd\" of "
            f"this system in config.json to such a Python")
    m = _ANSWER.search(stdout or "")
    if ok and m:
        return f"Python {m.group(1)}, cloudpickle {m.group(2)}"
    raise JobPythonError(
        f"the job Python `{python_cmd}` on {where} cannot run expyre's jobs ({detail}): it must exist "
        f"and import cloudpickle; set \"python_cmd\" of this system in config.json to such a Python "
        f"(or install cloudpickle for it: `{python_cmd} -m pip install cloudpickle`)")
