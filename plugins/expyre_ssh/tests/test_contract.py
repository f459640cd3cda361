"""The shared contracts over ssh: expyre.testing.SchedulerContract with the ``local`` scheduler on
the remote host, reached through this transport (Slurm, SGE and PBS over ssh are covered by
test_e2e.py; their own contract suites run in their plugins), and expyre.testing.TransportContract
on this transport against the test sshd."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest
from sshtest import REMSH, SSH_HOST, TEST_USER, require_sshd, ssh_systems

from expyre.testing import SchedulerContract, TransportContract, isolated_root, skip_or_fail
from expyre_ssh import SshTransport


class TestLocalSchedulerOverSsh(SchedulerContract):
    scheduler = "local"
    transport = "ssh"
    timeout = 120.0

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "system_name" in metafunc.fixturenames:
            names = sorted(ssh_systems(self.scheduler))
            metafunc.parametrize("system_name", names or [None], ids=names or ["no-system"])

    @pytest.fixture
    def expyre_root(self, tmp_path: Path, system_name: str | None) -> Iterator[Path]:
        if system_name is None:
            skip_or_fail("no ssh system with the local scheduler selected")
        sysd = ssh_systems(self.scheduler)[system_name]
        require_sshd(sysd)
        # (expyre.testing pickles its job functions by value itself: remote hosts need no expyre)
        with isolated_root(tmp_path / "_expyre", {system_name: sysd}) as root:
            yield root


class TestSshTransportContract(TransportContract):
    """The transport contract (expyre.testing.TransportContract) on the real test sshd."""

    pytestmark = [pytest.mark.real_scheduler, pytest.mark.usefixtures("sshd")]

    @pytest.fixture
    def transport(self):
        t = SshTransport(f"{TEST_USER}@{SSH_HOST}", REMSH)
        yield t
        t.close()

    @pytest.fixture
    def remote_dir(self, transport):
        name = f"expyre-contract-{uuid.uuid4().hex[:8]} with space"  # relative to the remote home
        yield name
        transport.run(["rm", "-rf", "--", name], timeout=60)
