"""Concurrency on a real Slurm system: several driver processes against ONE expyre root, submissions
counted with ``sacct`` by job name (the local-system form, and the drivers, are in
expyre_core/tests/test_reliability_concurrency.py and concurrency_driver.py)."""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "expyre_core" / "tests"))
from concurrency_driver import check_outcome, run_drivers  # noqa: E402

from expyre.testing import isolated_root, selected_systems, skip_or_fail, wait_for  # noqa: E402


def sacct_submissions(ids: set[str], since: str) -> collections.Counter:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", since, "-o", "JobName%80"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        skip_or_fail(f"sacct failed: {out.stderr.strip()}")
    return collections.Counter(n.strip() for n in out.stdout.splitlines() if n.strip() in ids)


@pytest.mark.slow
@pytest.mark.parametrize("system", sorted(selected_systems("slurm", "local")) or ["<no slurm system>"])
def test_four_processes_real_slurm(system, tmp_path, monkeypatch):
    """The same on a real Slurm (accounting by job name counts submissions): 4 processes x 6 calls."""
    systems = selected_systems("slurm", "local")
    if system not in systems:
        skip_or_fail("no real Slurm system selected (EXPYRE_PYTEST_CONFIG / EXPYRE_PYTEST_SYSTEMS)")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    with isolated_root(tmp_path / "_expyre", {system: systems[system]}) as root:
        outs = run_drivers(root, tmp_path, n_procs=4, n_jobs=6, n_shared=3, system=system,
                           res={"max_time": "5m", "n": (1, "tasks")})
        ids = {i for o in outs for i in o["ids"]}
        # slurmdbd records lag (seconds on a busy node): wait until every job is in accounting,
        # then count; a second submission of a name would be recorded alongside the first
        wait_for(lambda: set(sacct_submissions(ids, since)) == ids, 120, "slurmdbd to record every job")
        check_outcome(root, outs, 6, 3, sacct_submissions(ids, since))
