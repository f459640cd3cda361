"""Fixtures for the ssh transport's tests (helpers and the systems used are in sshtest.py)."""

from __future__ import annotations

import contextlib
import shlex
import stat
import sys
from pathlib import Path
from typing import Any, Iterator

import cloudpickle
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sshjobs  # noqa: E402
from sshtest import SSH_PORT, SshLog, WRAPPER, require_sshd  # noqa: E402

from expyre.testing import isolated_root  # noqa: E402

# job functions of the test helper modules travel by value: the remote Python has only
# cloudpickle and numpy, not these modules (nor expyre)
cloudpickle.register_pickle_by_value(sshjobs)


@pytest.fixture
def sshd() -> None:
    """The loopback test sshd, with the remote Python."""
    require_sshd()


@pytest.fixture
def xpr_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``xpr_root(systems)`` -> a fresh expyre root with these systems (cwd = tmp_path)."""
    monkeypatch.chdir(tmp_path)
    with contextlib.ExitStack() as stack:

        def make(systems: dict[str, dict[str, Any] | None]) -> Path:
            return stack.enter_context(isolated_root(tmp_path / "_expyre", systems))

        yield make


@pytest.fixture
def counting_remsh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, SshLog, Path]:
    """``(remsh_cmd, log, drop_file)``: a remote shell command that logs each ssh invocation."""
    wrapper = tmp_path / "bin" / "logging-ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(WRAPPER)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "ssh-invocations.log"
    drop = tmp_path / "drop-next-session"
    monkeypatch.setenv("EXPYRE_SSH_TEST_LOG", str(log))
    monkeypatch.setenv("EXPYRE_SSH_TEST_DROP", str(drop))
    # the wrapper drops "the next command session": one ssh session per command, no persistent
    # shell (tests of the shells use the log without the drop file, or set this themselves)
    monkeypatch.setenv("EXPYRE_SSH_SHELLS", "0")
    return f"{shlex.quote(str(wrapper))} -p {SSH_PORT}", SshLog(log), drop


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPYRE_RETRY", "3 0.2")
