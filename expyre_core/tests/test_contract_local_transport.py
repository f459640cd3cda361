"""The transport contract (expyre.testing.TransportContract) on the built-in local transport."""

from __future__ import annotations

import pytest

from expyre.builtin.local_transport import LocalTransport
from expyre.testing import TransportContract


class TestLocalTransportContract(TransportContract):
    @pytest.fixture
    def transport(self):
        t = LocalTransport(None)
        yield t
        t.close()

    @pytest.fixture
    def remote_dir(self, tmp_path):
        return str(tmp_path / "remote dir")
