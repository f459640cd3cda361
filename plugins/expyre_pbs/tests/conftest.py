"""Shared helpers for the expyre-pbs tests.

Recorded command outputs live in ``fixtures/<family>/<name>.txt``: a header of ``# key: value``
lines (``source`` says where the format comes from, then ``argv``, ``returncode`` and one
``stderr`` line per line of stderr), a ``---`` line, then the command's stdout verbatim.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

import pytest

from expyre.types import CommandResult

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"


def load_recorded(relpath: str) -> tuple[CommandResult, dict[str, str]]:
    """A recorded output as the :class:`CommandResult` the transport would have returned."""
    text = (FIXTURES / relpath).read_text()
    head, sep, stdout = text.partition("\n---\n")
    if not sep:
        raise ValueError(f"{relpath}: no '---' line after the header")
    meta: dict[str, str] = {}
    stderr: list[str] = []
    for line in head.splitlines():
        if not line.startswith("# "):
            raise ValueError(f"{relpath}: header line without '# ': {line!r}")
        key, _, value = line[2:].partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "stderr":
            stderr.append(value)
        else:
            meta[key] = value
    for required in ("source", "argv", "returncode"):
        if required not in meta:
            raise ValueError(f"{relpath}: header lacks '# {required}:'")
    result = CommandResult(
        argv=shlex.split(meta["argv"]),
        returncode=int(meta["returncode"]),
        stdout=stdout,
        stderr="\n".join(stderr) + ("\n" if stderr else ""),
    )
    return result, meta


@pytest.fixture
def recorded() -> Callable[[str], CommandResult]:
    return lambda relpath: load_recorded(relpath)[0]


# ---------------------------------------------------------------------------------------------
# real PBS systems (Slurm's Torque wrappers here; a user's own PBS cluster elsewhere)
# ---------------------------------------------------------------------------------------------

import logging  # noqa: E402
import os  # noqa: E402
from typing import Any, Iterator  # noqa: E402

from expyre import config as _config  # noqa: E402
from expyre.testing import make_root, selected_systems, skip_or_fail  # noqa: E402
from expyre.testing import pytest_config_path as _test_config_path  # noqa: E402 (a pytest_* name would be taken for a hook)

logger = logging.getLogger(__name__)

WRAPPERS_BIN = "/opt/slurm-torque/bin"
REMOTE_PYTHON = os.environ.get("EXPYRE_SSH_TEST_PYTHON", "/opt/expyre-remote-venv/bin/python")
_HEADER = ["#PBS -l nodes={nnodes}:ppn={ncores_per_node}"]
_PARTITIONS = {"debug": {"ncores": 4, "max_time": "10m"}, "long": {"ncores": 4, "max_time": None}}

#: The systems these tests use when the test config lists none with "scheduler": "pbs": what
#: scripts/ci/make_test_config.py should generate for the services of scripts/services/up.sh.
#: pbs_local: Slurm's Torque wrappers on this machine, found through bin_dir (/usr/bin/qsub is
#: SGE's), flavor auto-detected. ssh_pbs: the same through sshd as xprpbs, whose PATH has the
#: wrappers first, flavor auto-detected over the ssh transport. vanish_grace 10 s (default 30 s
#: for Torque) keeps the tests of died jobs short; result files here are never late.
DEFAULT_SYSTEMS: dict[str, dict[str, Any]] = {
    "pbs_local": {
        "host": None,
        "scheduler": "pbs",
        "scheduler_options": {"bin_dir": WRAPPERS_BIN, "vanish_grace": 10},
        "header": _HEADER,
        "partitions": _PARTITIONS,
    },
    "ssh_pbs": {
        "host": "xprpbs@127.0.0.1",
        "remsh_cmd": "ssh -p 2222",
        "rundir": "expyre_rundir",
        "python_cmd": REMOTE_PYTHON,
        "scheduler": "pbs",
        "scheduler_options": {"flavor": "auto", "vanish_grace": 10},
        "header": _HEADER,
        "partitions": _PARTITIONS,
    },
}


def pbs_systems() -> dict[str, dict[str, Any]]:
    """Selected systems with ``"scheduler": "pbs"`` from the test config, else the defaults
    (both filtered by ``$EXPYRE_PYTEST_SYSTEMS``, and to those whose transport is installed)."""
    systems = selected_systems("pbs")
    if systems:
        return systems
    import re

    from expyre import plugins
    from expyre.testing import system_transport

    rx = re.compile(os.environ.get("EXPYRE_PYTEST_SYSTEMS") or ".*")
    installed = set(plugins.transports())  # (ssh_pbs needs expyre-ssh: not with expyre-pbs alone)
    return {k: v for k, v in DEFAULT_SYSTEMS.items() if rx.search(k) and system_transport(v) in installed}


def check_reachable(name: str) -> None:
    """skip_or_fail unless the system's PBS commands answer (and its remote Python exists)."""
    system = _config.get_system(name)
    try:
        found = system.find(["expyre-pbs-probe"])
    except Exception as exc:  # noqa: BLE001 - reported with the reason
        skip_or_fail(f"PBS system {name!r} does not answer: {exc} (bring it up with `bash scripts/services/up.sh slurm pbs sshd`)")
        return
    assert found is not None
    if system.host is not None:
        python = (system.cfg.python_cmd or "python3").split()[0]
        probe = system.transport.run(["test", "-x", python], timeout=60)
        if not probe.ok:
            skip_or_fail(f"{system.host} has no Python {python!r} for jobs (bash scripts/ci/make-remote-python.sh)")


def cancel_leftovers(name: str) -> None:
    """qdel the jobs of this root that are still queued or running (a failed test's sleepers)."""
    try:
        rows = _config.db.jobs(system=name, status=["submitted", "started"])
        ids = [r["remote_id"] for r in rows if r["remote_id"]]
        if ids:
            _config.get_system(name).control("cancel", ids)
    except Exception as exc:  # noqa: BLE001 - best effort at teardown
        logger.warning("could not cancel leftover jobs on %s: %s", name, exc)


def pbs_root_for(tmp_path: Path, name: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    if name is None:
        skip_or_fail(
            f"no system with scheduler 'pbs' selected from {_test_config_path()} or the defaults "
            f"(EXPYRE_PYTEST_SYSTEMS={os.environ.get('EXPYRE_PYTEST_SYSTEMS', '')!r})"
        )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path / "_expyre"))
    root = make_root(tmp_path / "_expyre", {name: pbs_systems()[name]})
    check_reachable(name)
    try:
        yield root
    finally:
        cancel_leftovers(name)
        from expyre.system import close_all

        close_all()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # "system_name" is the contract suite's parameter (TestPbsContract leaves it to this hook)
    names = sorted(pbs_systems())
    for param in ("pbs_name", "system_name"):
        if param in metafunc.fixturenames:
            metafunc.parametrize(param, names or [None], ids=names or ["no-pbs-system"])
    if "pbs_one_name" in metafunc.fixturenames:  # slow tests: one system (pbs_local if selected)
        one = ["pbs_local"] if "pbs_local" in names else names[:1]
        metafunc.parametrize("pbs_one_name", one or [None], ids=one or ["no-pbs-system"])


@pytest.fixture
def pbs_root_one(tmp_path: Path, pbs_one_name: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Like ``pbs_root``, for tests that run on one system only."""
    yield from pbs_root_for(tmp_path, pbs_one_name, monkeypatch)


@pytest.fixture
def pbs_root_factory():
    """:func:`pbs_root_for`, for fixtures of test classes (test modules cannot import conftest)."""
    return pbs_root_for


@pytest.fixture
def pbs_root(tmp_path: Path, pbs_name: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh expyre root holding only the PBS system ``pbs_name``; leftover jobs are qdel'ed."""
    yield from pbs_root_for(tmp_path, pbs_name, monkeypatch)
