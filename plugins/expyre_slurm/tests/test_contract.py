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
    # a test system's config.json may have no header asking for cores: then a whole-node job
    # would get one CPU and hold nothing
    whole_node_header = ("#SBATCH --nodes={nnodes}", "#SBATCH --ntasks={tot_ntasks}",
                         "#SBATCH --cpus-per-task={ncores_per_task}")
