"""The first-use check of a remote host: is there rsync, and can the jobs' Python unpickle?

One round trip, run once per host and Python command (:meth:`SshTransport.probe`). A missing piece
is reported as :class:`RemoteEnvironmentError` naming the host and the command that failed, before
any job is staged, instead of as a job that dies later with an obscure traceback.
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import Sequence

from expyre.types import CommandResult

__all__ = ["RemoteEnvironmentError", "PROBE_ENV", "probe_script", "ProbeReport", "parse_probe"]

#: Set to 0 to skip the check (e.g. when the Python only exists after the job's ``commands``
#: loaded it in a way a login-less shell cannot reproduce).
PROBE_ENV = "EXPYRE_SSH_PROBE"

_PY_CHECK = (
    "import sys, cloudpickle; "
    "sys.stdout.write('expyre-probe python=%d.%d cloudpickle=%s\\n' % (sys.version_info[0], sys.version_info[1], cloudpickle.__version__))"
)


class RemoteEnvironmentError(RuntimeError):
    """The remote host lacks something every job needs (rsync, or a Python with cloudpickle).

    Not a :class:`~expyre.types.TransportError`: trying again cannot help.
    """


def python_check_command(python_cmd: str) -> str:
    """The command (as shell text) that checks ``python_cmd``; shown in error messages."""
    return f"{python_cmd} -c 'import cloudpickle'"


def probe_script(python_cmd: str, commands: Sequence[str] = ()) -> str:
    """A bash script printing ``expyre-probe rsync=<path>`` and then the Python line.

    ``python_cmd`` is shell text, used exactly as the job script uses it (e.g.
    ``/opt/venv/bin/python`` or ``python3 -X utf8``). The system's ``commands`` run first (their
    output goes to stderr), since they may be what puts that Python on the PATH.
    """
    lines = ['printf "expyre-probe rsync=%s\\n" "$(command -v rsync)"']
    if commands:
        lines.append("{")
        lines += list(commands)
        lines.append("} >&2 </dev/null")
    lines.append(f"{python_cmd} -c {shlex.quote(_PY_CHECK)}")
    return "\n".join(lines) + "\n"


class ProbeReport:
    """What the probe found."""

    def __init__(self, rsync: str, python: tuple[int, int] | None, cloudpickle: str | None) -> None:
        self.rsync = rsync
        self.python = python
        self.cloudpickle = cloudpickle

    def __repr__(self) -> str:
        return f"ProbeReport(rsync={self.rsync!r}, python={self.python!r}, cloudpickle={self.cloudpickle!r})"


_RSYNC_RE = re.compile(r"^expyre-probe rsync=(.*)$", re.M)
_PY_RE = re.compile(r"^expyre-probe python=(\d+)\.(\d+) cloudpickle=(\S+)$", re.M)


def parse_probe(result: CommandResult, host: str, python_cmd: str) -> ProbeReport:
    """Interpret the probe's result.

    :raises RemoteEnvironmentError: rsync is missing, or ``python_cmd`` cannot import cloudpickle.
    """
    m = _RSYNC_RE.search(result.stdout)
    rsync = m.group(1).strip() if m else ""
    if not rsync:
        raise RemoteEnvironmentError(
            f"ssh host {host}: rsync is not installed or not on the PATH there (`command -v rsync` found "
            f"nothing); expyre copies job directories with rsync: install it on {host}"
        )
    py = _PY_RE.search(result.stdout)
    if result.returncode != 0 or not py:
        detail = (result.stderr.strip() or result.stdout.strip())[-1500:]
        raise RemoteEnvironmentError(
            f"ssh host {host}: the jobs' Python cannot be used: `{python_check_command(python_cmd)}` "
            f"exited {result.returncode}" + (f": {detail}" if detail else "")
            + f". Every job runs `{python_cmd}` there, which needs cloudpickle (the same version as here, "
            f"{_local_cloudpickle()}): install it there (e.g. `{python_cmd} -m pip install "
            f"cloudpickle=={_local_cloudpickle()}`) or set \"python_cmd\" of the system in config.json"
        )
    return ProbeReport(rsync, (int(py.group(1)), int(py.group(2))), py.group(3))


def _local_cloudpickle() -> str:
    import cloudpickle

    return str(cloudpickle.__version__)


def mismatches(report: ProbeReport) -> list[str]:
    """Differences from this driver that can break unpickling (warnings, not errors)."""
    out = []
    here = sys.version_info[:2]
    if report.python is not None and report.python != here:
        out.append(
            f"remote Python is {report.python[0]}.{report.python[1]}, this one {here[0]}.{here[1]}: "
            f"jobs holding functions pickled by value (lambdas, functions of __main__) are refused before "
            f"submission; your own modules are shipped as files and load in any Python"
        )
    if report.cloudpickle is not None and report.cloudpickle != _local_cloudpickle():
        out.append(f"remote cloudpickle is {report.cloudpickle}, this one {_local_cloudpickle()}")
    return out
