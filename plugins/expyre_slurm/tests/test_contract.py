"""The shared scheduler contract (expyre.testing), on every selected system with ``"scheduler": "slurm"``.

Systems come from ``$EXPYRE_PYTEST_CONFIG`` (CI generates it; default ``~/.expyre/config.json``)
filtered by ``$EXPYRE_PYTEST_SYSTEMS``. Without one the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import pytest
from expyre.testing import SchedulerContract

pytestmark = pytest.mark.real_scheduler


class TestSlurmContract(SchedulerContract):
    scheduler = "slurm"
    many = 20
