"""The shared scheduler contract (expyre.testing) on every PBS system: from the test config
(``$EXPYRE_PYTEST_CONFIG``, ``$EXPYRE_PYTEST_SYSTEMS``) or, when it lists none, the defaults of
conftest.py (Slurm's Torque wrappers here, locally and over ssh as xprpbs). Skips locally and
fails under CI=true when the PBS commands do not answer."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from expyre.testing import SchedulerContract

pytestmark = pytest.mark.real_scheduler


class TestPbsContract(SchedulerContract):
    scheduler = "pbs"
    many = 10
    timeout = 300.0

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """``system_name`` is parametrized by conftest.py (config systems, else the defaults)."""

    @pytest.fixture
    def expyre_root(self, tmp_path: Path, system_name: str | None, monkeypatch: pytest.MonkeyPatch,
                    pbs_root_factory) -> Iterator[Path]:
        # (expyre.testing pickles its job functions by value itself: remote hosts need no expyre)
        yield from pbs_root_factory(tmp_path, system_name, monkeypatch)
