"""Concurrency: several driver processes create, start and collect jobs against ONE expyre root at
once, some of the calls identical across processes. No "database is locked", no lost update,
identical calls map to one job that is submitted once, every process gets every result.

Runs on the zero-config local system (submissions counted from the local queue's request files);
the smaller form on a real Slurm system is in the repository's cross-distribution tests
(tests/test_reliability_concurrency_slurm.py).
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from concurrency_driver import check_outcome, run_drivers
from expyre.testing import isolated_root


def local_submissions(root: Path) -> collections.Counter:
    names: collections.Counter = collections.Counter()
    for sub in ("jobs", "done"):
        for f in (root / "_expyre_localq" / sub).glob("*.json"):
            names[json.loads(f.read_text())["name"]] += 1
    return names


@pytest.fixture
def local_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {}) as r:
        yield r


LOCAL_RES = {"max_time": "10m", "n": (1, "tasks")}


def test_eight_processes_local(local_root, tmp_path):
    """8 processes x 20 calls (8 of them identical across processes) on one root."""
    outs = run_drivers(local_root, tmp_path, n_procs=8, n_jobs=20, n_shared=8, system="local", res=LOCAL_RES)
    check_outcome(local_root, outs, 20, 8, local_submissions(local_root))


@pytest.mark.slow
def test_eight_processes_hundred_jobs_each_local(local_root, tmp_path):
    """The full size: 8 processes x 100 calls (20 identical across processes)."""
    outs = run_drivers(local_root, tmp_path, n_procs=8, n_jobs=100, n_shared=20, system="local", res=LOCAL_RES)
    check_outcome(local_root, outs, 100, 20, local_submissions(local_root))


