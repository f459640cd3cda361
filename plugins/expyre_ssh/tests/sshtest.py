"""Helpers for the ssh transport's tests against the real test sshd (scripts/services/start-sshd.sh).

Systems come from the test config (``$EXPYRE_PYTEST_CONFIG``, filtered by
``$EXPYRE_PYTEST_SYSTEMS``), using those with a host; when it lists none (a developer machine
without the generated config), the defaults below are used: the entries that
scripts/ci/make_test_config.py is expected to generate.

A missing real component (sshd down, no remote Python) skips locally and fails under CI=true
(:func:`expyre.testing.skip_or_fail`).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Any

from expyre import plugins
from expyre.testing import selected_systems, skip_or_fail

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
SSH_PORT = 2222
SSH_HOST = "127.0.0.1"
TEST_USER = "xprtest"
PBS_USER = "xprpbs"
REMSH = f"ssh -p {SSH_PORT}"
REMOTE_PYTHON = os.environ.get("EXPYRE_SSH_TEST_PYTHON", "/opt/expyre-remote-venv/bin/python")
SSHD_DIR = Path("/var/lib/expyre-test-sshd")
SSHD_PIDFILE = SSHD_DIR / "sshd.pid"
NETNS_HOST = "xpr-remote"


def _ncores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_ssh_systems() -> dict[str, dict[str, Any]]:
    """The ssh systems of the CI config (what make_test_config.py should generate)."""
    base = {"remsh_cmd": REMSH, "rundir": "expyre_rundir", "python_cmd": REMOTE_PYTHON}
    n = _ncores()
    return {
        "ssh_local": {"host": f"{TEST_USER}@{SSH_HOST}", "scheduler": "local", **base},
        "ssh_slurm": {"host": f"{TEST_USER}@{SSH_HOST}", "scheduler": "slurm", **base,
                      "partitions": {"debug": {"ncores": n, "max_time": "10m"}}},
        "ssh_sge": {"host": f"{TEST_USER}@{SSH_HOST}", "scheduler": "sge", **base,
                    "partitions": {"all.q": {"ncores": n, "max_time": None}}},
        "ssh_pbs": {"host": f"{PBS_USER}@{SSH_HOST}", "scheduler": "pbs", **base,
                    "partitions": {"debug": {"ncores": n, "max_time": "10m"}}},
    }


def ssh_systems(scheduler: str | None = None) -> dict[str, dict[str, Any]]:
    """Selected ssh systems (test config first, else the defaults), optionally of one scheduler."""
    systems = selected_systems(transport="ssh")
    if not systems:
        import re

        rx = re.compile(os.environ.get("EXPYRE_PYTEST_SYSTEMS") or ".*")
        installed = set(plugins.schedulers())  # (ssh_slurm needs expyre-slurm: not with expyre-ssh alone)
        systems = {k: v for k, v in default_ssh_systems().items() if rx.search(k) and v["scheduler"] in installed}
    return {k: v for k, v in systems.items() if scheduler is None or v.get("scheduler") == scheduler}


def port_open(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_sshd(system: dict[str, Any] | None = None) -> None:
    """skip_or_fail unless the system's host answers ssh and has the remote Python."""
    system = system or default_ssh_systems()["ssh_local"]
    remsh = shlex.split(system.get("remsh_cmd") or os.environ.get("EXPYRE_RSH") or "ssh")
    host = system["host"]
    probe = subprocess.run(
        [*remsh, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", host,
         f"test -x {shlex.quote(str(system.get('python_cmd') or 'python3').split()[0])} && echo ok"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )
    if probe.returncode == 255:
        skip_or_fail(f"ssh {host} ({shlex.join(remsh)}) does not answer: {probe.stderr.strip()[-300:]} "
                     f"(bring it up with `bash scripts/services/up.sh sshd`)")
    if probe.stdout.strip() != "ok":
        skip_or_fail(f"{host} has no remote Python {system.get('python_cmd')!r} "
                     f"(build it with `bash scripts/ci/make-remote-python.sh`)")


def require_scheduler(name: str) -> None:
    if name not in plugins.schedulers():
        skip_or_fail(f"scheduler plugin {name!r} is not installed (installed: {', '.join(plugins.schedulers())})")


# A remote shell wrapper that logs every invocation (one line of argv per call) and can drop the
# output of the next command session after it ran (a connection lost after the command started).
WRAPPER = r"""#!/bin/bash
log="${EXPYRE_SSH_TEST_LOG:?}"
{ printf '%q ' "$@"; printf '\n'; } >>"$log"
drop="${EXPYRE_SSH_TEST_DROP:-}"
if [[ -n "$drop" && -e "$drop" ]]; then
    case " $* " in
        *" ControlMaster=no "*)
            case " $* " in *" rsync --server"*) ;; *)
                rm -f -- "$drop"
                ssh "$@" >/dev/null 2>&1
                echo "client_loop: send disconnect: Broken pipe (injected by the test)" >&2
                exit 255 ;;
            esac ;;
    esac
fi
exec ssh "$@"
"""


class SshLog:
    """The invocations logged by the wrapper, classified."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def mark(self) -> int:
        return len(self.lines())

    def since(self, mark: int) -> list[str]:
        return self.lines()[mark:]

    @staticmethod
    def kind(line: str) -> str:
        padded = f" {line} "
        if " -O check " in padded:
            return "check"
        if " -O exit " in padded:
            return "exit"
        if "ControlMaster=yes" in line:
            return "login"
        if " rsync --server " in padded:
            return "rsync"
        if "__expyre_shell" in line:
            return "shell"
        if "ControlMaster=no" in line:
            return "run"
        return "other"

    def count(self, mark: int = 0) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.since(mark):
            k = self.kind(line)
            out[k] = out.get(k, 0) + 1
        return out


