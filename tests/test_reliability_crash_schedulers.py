"""Crash anywhere on a real scheduler: the driver (a separate process, like a user's script) is
killed with SIGKILL at injection points between persistent steps (:mod:`expyre._faults`, including
the two inside ``System.submit``) and at random moments (fixed random state) (mid-``sbatch``/``qsub``, while
waiting), on each selected Slurm and Grid Engine system that runs on this machine; then the same
script runs again. Every result must come back, every job must have been submitted to the
scheduler exactly once (counted by job name in the scheduler's own records, which the driver
cannot forget: ``squeue -t all`` + ``sacct`` for Slurm, ``qstat -s prsz`` + ``qacct -j`` for Grid
Engine), and the jobs database must stay consistent after every crash.

The local-backend version (every point, 50 kills from a fixed random state) is expyre_core/tests/test_faults_crash.py.
Default run: a handful of kills (fixed random state) per scheduler; ``slow``: every injection point (2nd passage,
i.e. the second job of the batch) plus more random moments.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_schedulers import require_answering  # noqa: E402

from expyre import _faults
from expyre.testing import selected_systems

pytestmark = pytest.mark.real_scheduler

SCHEDULERS = ("slurm", "sge")
RES = {"max_time": "5m", "n": (1, "tasks")}

DRIVER = textwrap.dedent("""
    import json, sys, time
    from expyre.func import ExPyRe

    # defined here, so pickled by value: the job needs nothing but cloudpickle
    def nap(t):
        time.sleep(t)
        return t

    def add(a, b):
        return a + b

    tag, system, res = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    res["n"] = tuple(res["n"])
    calls = [ExPyRe(f"crash_{tag}_nap", nap, args=[1.0]), ExPyRe(f"crash_{tag}_add", add, args=[20, 22])]
    for x in calls:
        x.start(resources=res, system_name=system, partial_node=True)
    print(json.dumps([x.get_results(timeout=400, check_interval=0.5, quiet=True) for x in calls]))
""")
EXPECTED = [1.0, 42]


def _systems() -> list[str]:
    return sorted(n for n, s in selected_systems().items() if s.get("scheduler") in SCHEDULERS and s.get("host") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "crash_system" in metafunc.fixturenames:
        names = _systems()
        metafunc.parametrize("crash_system", names or [None], ids=names or ["no-slurm-or-sge-system"])


# -- counting submissions in the scheduler's own records ---------------------------------------
def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "not found" not in proc.stderr:
        pytest.fail(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def scheduler_submissions(scheduler: str, names: list[str]) -> collections.Counter:
    """How many distinct scheduler jobs carry each name (all users, queued, running or finished)."""
    jobs: set[tuple[str, str]] = set()
    if scheduler == "slurm":
        for line in _run(["squeue", "-a", "-t", "all", "-h", "-o", "%i|%j"]).splitlines():
            jid, _, name = line.strip().partition("|")
            jobs.add((jid, name))
        out = _run(["sacct", "-X", "-n", "-P", "-a", "-S", "now-1days", "-o", "JobID,JobName%100",
                    f"--name={','.join(names)}"])
        for line in out.splitlines():
            jid, _, name = line.strip().partition("|")
            jobs.add((jid, name))
    else:
        xml = _run(["qstat", "-xml", "-u", "*", "-s", "prsz"])
        for number, name in re.findall(r"<JB_job_number>(\d+)</JB_job_number>.*?<JB_name>([^<]*)</JB_name>", xml, re.S):
            jobs.add((number, name))
        for name in names:
            out = _run(["qacct", "-j", name])
            for number in re.findall(r"^jobnumber\s+(\d+)", out, re.M):
                jobs.add((number, name))
    wanted = set(names)
    return collections.Counter(name for _, name in jobs if name in wanted)


# -- the driver ---------------------------------------------------------------------------------
def run_driver(root: Path, script: Path, tag: str, system: str, fault: str | None = None,
               kill_after: float | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRE_FAULT")}
    env.update(EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0")
    if fault:
        env["EXPYRE_FAULT_POINT"] = fault
    argv = [sys.executable, str(script), tag, system, json.dumps(RES)]
    if kill_after is None:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)  # shared node: jobs may queue
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def check_consistent(root: Path, system: str, scheduler: str, final: bool) -> list[dict]:
    """The jobs DB agrees with the stage dirs and the scheduler: no job submitted twice, every
    submitted row has its scheduler id, identical calls share one live row."""
    con = sqlite3.connect(root / "jobs.db")
    con.row_factory = sqlite3.Row
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = [dict(r) for r in con.execute("SELECT * FROM jobs")]
    con.close()
    # an identical call (same name, same hash) reuses its live job
    live = collections.Counter((r["name"], r["hash"]) for r in rows if r["status"] in ("created", "submitted", "started", "succeeded"))
    assert max(live.values(), default=0) <= 1, f"identical calls map to several live jobs: {live}"
    counts = scheduler_submissions(scheduler, [r["id"] for r in rows])
    assert max(counts.values(), default=0) <= 1, f"submitted to {scheduler} more than once: {counts}"
    for r in rows:
        assert Path(r["from_dir"]) == root / f"run_{r['id']}", r
        assert (Path(r["from_dir"]) / "_expyre_task.pkl").exists(), r
        if r["status"] != "created":
            assert r["remote_id"] and r["system"] == system, r
            if counts[r["id"]]:  # the scheduler's job of that name is the one the DB knows
                assert counts[r["id"]] == 1
        if final:
            assert r["status"] == "succeeded", r
            assert counts[r["id"]] == 1, f"job {r['id']} was submitted {counts[r['id']]} times"
    return rows


@pytest.fixture
def crash_env(crash_system, tmp_path, monkeypatch):
    sysd = require_answering(crash_system)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "_expyre"
    root.mkdir(mode=0o700)
    (root / "config.json").write_text(json.dumps({"systems": {crash_system: sysd}}))
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    tag = uuid.uuid4().hex[:8]
    yield root, script, tag, crash_system, sysd["scheduler"]
    _cancel_leftovers(root, sysd["scheduler"])


def _cancel_leftovers(root: Path, scheduler: str) -> None:
    """Cancel only this test's own jobs that are still queued or running."""
    try:
        con = sqlite3.connect(root / "jobs.db")
        ids = [r[0] for r in con.execute("SELECT remote_id FROM jobs WHERE status IN ('submitted', 'started') "
                                         "AND remote_id IS NOT NULL")]
        con.close()
    except sqlite3.Error:
        return
    if ids:
        subprocess.run(["scancel", *ids] if scheduler == "slurm" else ["qdel", *ids], capture_output=True, timeout=60)


def _crash_and_recover(crash_env, kills: list[tuple[str, object]], tag: str | None = None) -> None:
    """Run the driver under each kill in turn on the same root (each run resumes where the last
    died), checking consistency after each, then a clean re-run that must complete."""
    root, script, base_tag, system, scheduler = crash_env
    tag = tag or base_tag
    for kind, arg in kills:
        if kind == "point":
            crashed = run_driver(root, script, tag, system, fault=str(arg))
            assert crashed.returncode == -signal.SIGKILL, f"point {arg} was not reached: {crashed.stderr[-3000:]}"
        else:
            crashed = run_driver(root, script, tag, system, kill_after=float(arg))  # type: ignore[arg-type]
            assert crashed.returncode in (-signal.SIGKILL, 0), f"kill after {arg} s: {crashed.stderr[-3000:]}"
        check_consistent(root, system, scheduler, final=False)
    t0 = time.monotonic()
    final = run_driver(root, script, tag, system)
    assert final.returncode == 0, final.stderr[-3000:]
    assert json.loads(final.stdout.strip().splitlines()[-1]) == EXPECTED
    rows = check_consistent(root, system, scheduler, final=True)
    assert len([r for r in rows if tag in r["name"]]) == len(EXPECTED)
    print(f"{system} {tag}: {len(kills)} kills, final run {time.monotonic() - t0:.1f} s")


#: the default run: the points where a kill is most dangerous on a real scheduler (claimed but
#: not submitted; submitted but the id not recorded; recorded), then one kill while waiting
#: and one while reading results. Each re-run resumes from where the previous one died.
DEFAULT_KILLS = [
    ("point", "start_claimed:1"),
    ("point", "start_submitted:1"),
    ("point", "start_submitted:1"),  # now the second job: the first was adopted by the re-run
    ("point", "start_recorded:1"),
    ("moment", 1.2),
    ("point", "results_read:1"),
]


def test_crash_at_random_points_real_scheduler(crash_env):
    """A kill before/after the scheduler accepted a job, while waiting and while reading results;
    re-run: both results, each job submitted once, the DB consistent after every kill."""
    _crash_and_recover(crash_env, DEFAULT_KILLS)


@pytest.mark.slow
def test_crash_at_every_point_real_scheduler(crash_env):
    """Every injection point at its 2nd passage (the second job of a fresh batch, whatever the
    first one's state), each followed by a re-run; then random moments (fixed random state) on one more batch."""
    tag = crash_env[2]
    for i, p in enumerate(_faults.POINTS):
        _crash_and_recover(crash_env, [("point", f"{p}:2")], tag=f"{tag}p{i}")
    rng = random.Random(int(os.environ.get("EXPYRE_FAULT_RANDOM_STATE", "8")))
    _crash_and_recover(crash_env, [("moment", round(rng.uniform(0.4, 3.0), 2)) for _ in range(5)], tag=f"{tag}m")
