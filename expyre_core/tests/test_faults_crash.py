"""Crash anywhere, re-run the same script: every result comes back, nothing is submitted twice,
the jobs database stays consistent.

The driver (a separate process, like a user's script) is killed with SIGKILL at injection points
between persistent steps (:mod:`expyre._faults`) and at random moments (fixed random state), then run again.
Submissions are counted in the local queue's own request files (``_expyre_localq/{jobs,done}``),
which the driver cannot forget when it dies.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import xpr_core_jobfuncs as jobfuncs
from expyre import _faults

HERE = str(Path(jobfuncs.__file__).parent)
N_JOBS = 3

DRIVER = textwrap.dedent(f"""
    import json, sys
    sys.path.insert(0, {HERE!r})
    import xpr_core_jobfuncs as jobfuncs
    from expyre.func import ExPyRe

    RES = {{"max_time": "5m", "n": (1, "tasks")}}
    # a short sleeping job (so some kills land while it runs), and plain ones
    calls = [ExPyRe("crash_sleep", jobfuncs.sleep, args=[0.3])]
    calls += [ExPyRe(f"crash_add_{{i}}", jobfuncs.add, args=[i, 100]) for i in range({N_JOBS - 1})]
    for x in calls:
        x.start(resources=RES, system_name="local", partial_node=True)
    print(json.dumps([x.get_results(timeout=120, check_interval=0.5, quiet=True) for x in calls]))
""")
EXPECTED = [0.3] + [i + 100 for i in range(N_JOBS - 1)]


def run_driver(root: Path, script: Path, fault: str | None = None, kill_after: float | None = None,
               log: Path | None = None) -> subprocess.CompletedProcess | int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRE_FAULT")}
    env.update(EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0")
    if fault:
        env["EXPYRE_FAULT_POINT"] = fault
    if log:
        env["EXPYRE_FAULT_LOG"] = str(log)
    if kill_after is None:
        return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def submissions(root: Path) -> collections.Counter:
    """How many times each job id was handed to the local queue (its request files, never lost)."""
    names: collections.Counter = collections.Counter()
    for sub in ("jobs", "done"):
        d = root / "_expyre_localq" / sub
        for f in d.glob("*.json") if d.exists() else []:
            names[json.loads(f.read_text())["name"]] += 1
    return names


def check_consistent(root: Path, final: bool) -> list[dict]:
    """The jobs database agrees with the stage directories; identical calls share one live job."""
    if not (root / "jobs.db").exists():  # killed before the library made its root and database
        assert not list(root.glob("run_*")) if root.exists() else True, "stage directories without a jobs database"
        return []
    con = sqlite3.connect(root / "jobs.db")
    con.row_factory = sqlite3.Row
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = [dict(r) for r in con.execute("SELECT * FROM jobs")]
    con.close()
    live = collections.Counter(r["hash"] for r in rows if r["status"] in ("created", "submitted", "started", "succeeded"))
    assert max(live.values(), default=0) <= 1, f"identical calls map to several live jobs: {live}"
    for r in rows:
        stage = Path(r["from_dir"])
        assert stage == root / f"run_{r['id']}", r
        assert (stage / "_expyre_task.pkl").exists() and (stage / "_expyre_meta.json").exists(), r
        if r["status"] != "created":
            assert r["remote_id"] and r["system"] == "local", r
        if final:
            assert r["status"] == "succeeded", r
    return rows


def check_final(root: Path, result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == EXPECTED
    rows = check_consistent(root, final=True)
    assert len(rows) == N_JOBS
    subs = submissions(root)
    assert subs == collections.Counter({r["id"]: 1 for r in rows}), f"submitted twice or lost: {subs}"


@pytest.fixture
def driver(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    return script


def test_every_point_is_passed(tmp_path, driver):
    """The hook list is complete: a clean run passes every injection point, in order."""
    log = tmp_path / "points.log"
    check_final(tmp_path / "_expyre", run_driver(tmp_path / "_expyre", driver, log=log))
    seen = [line.split()[1] for line in log.read_text().splitlines()]
    assert set(seen) == set(_faults.POINTS)
    assert [p for p in _faults.POINTS if p in seen] == list(dict.fromkeys(p for p in seen))


@pytest.mark.parametrize("point", _faults.POINTS)
def test_kill_at_point_then_rerun(tmp_path, driver, point):
    """kill -9 at the 2nd passage of each point (a job in the middle of the batch), then re-run."""
    root = tmp_path / "_expyre"
    crashed = run_driver(root, driver, fault=f"{point}:2")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    check_consistent(root, final=False)
    check_final(root, run_driver(root, driver))


def _chaos(tmp_path: Path, driver: Path, n_crashes: int, random_state: int) -> None:
    rng = random.Random(random_state)
    root = tmp_path / "_expyre"
    log = tmp_path / "points.log"
    run_driver(tmp_path / "probe_root", driver, log=log)  # how many points a clean run passes
    n_points = len(log.read_text().splitlines())
    t0 = time.monotonic()
    clean = run_driver(tmp_path / "timing_root", driver)
    duration = time.monotonic() - t0
    assert clean.returncode == 0, clean.stderr
    for i in range(n_crashes):
        if rng.random() < 0.6:  # a persistent step of this run (counting from where it restarts)
            run_driver(root, driver, fault=f"*:{rng.randint(1, n_points)}")
        else:  # any moment at all (mid-transaction, mid-write, while waiting)
            run_driver(root, driver, kill_after=rng.uniform(0.05, duration))
        check_consistent(root, final=False)
    check_final(root, run_driver(root, driver))


def test_chaos_random_crashes(tmp_path, driver):
    """A dozen kills chosen by a generator with a fixed state (injection points and random moments) on one root."""
    _chaos(tmp_path, driver, n_crashes=12, random_state=int(os.environ.get("EXPYRE_FAULT_RANDOM_STATE", "20240611")))


@pytest.mark.slow
def test_chaos_fifty_crashes(tmp_path, driver):
    """50 kill points from a fixed random state, spread over create / start / wait / result."""
    _chaos(tmp_path, driver, n_crashes=50, random_state=50)
