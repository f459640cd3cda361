"""The jobs database: parameterised filters, forward-only status, concurrent writers, unlock."""

from __future__ import annotations

import sqlite3
import textwrap
import subprocess
import sys
import os
from pathlib import Path

import pytest

from expyre.jobsdb import JobsDB


def test_filters_groups_and_regexps(tmp_path):
    db = JobsDB(tmp_path / "jobs.db")
    for i, status in enumerate(["created", "submitted", "started", "succeeded", "failed", "died", "processed"]):
        db.add(f"job_{i}", name=f"relax_{i}" if i % 2 else f"md_{i}", from_dir=f"/x/run_{i}", status=status, system="s1" if i < 4 else "s2")
    assert {r["id"] for r in db.jobs(status="ongoing")} == {"job_0", "job_1", "job_2"}
    assert {r["id"] for r in db.jobs(status="unprocessed")} == {"job_3", "job_4", "job_5"}
    assert {r["id"] for r in db.jobs(status="can_produce_results")} == {"job_0", "job_1", "job_2", "job_3"}
    assert {r["id"] for r in db.jobs(name="relax_.*")} == {"job_1", "job_3", "job_5"}
    assert db.jobs(name="relax") == []  # whole-string match
    assert {r["id"] for r in db.jobs(status="failed|died", system="s2")} == {"job_4", "job_5"}
    with pytest.raises(ValueError, match="invalid name regexp"):
        db.jobs(name="(")


def test_sql_quotes_are_data(tmp_path):
    db = JobsDB(tmp_path / "jobs.db")
    name = "x'); DROP TABLE jobs; --"
    db.add("q1", name=name, from_dir="/x")
    assert db.jobs(name=[name.replace("(", r"\(").replace(")", r"\)")])[0]["name"] == name
    assert len(db.jobs()) == 1


def test_status_only_moves_forward(tmp_path):
    db = JobsDB(tmp_path / "jobs.db")
    db.add("a", name="a", from_dir="/x")
    assert db.update("a", status="succeeded")
    assert not db.update("a", status="submitted")  # a slow process cannot undo it
    assert db.get("a")["status"] == "succeeded"
    assert db.update("a", status="created", force=True)


def test_claim_submit_is_exclusive(tmp_path):
    db = JobsDB(tmp_path / "jobs.db")
    db.add("a", name="a", from_dir="/x")
    assert db.claim_submit("a", "p1")
    assert not db.claim_submit("a", "p2")
    assert db.claim_submit("a", "p2", stale=["p1"])


def _worker(args):
    root, n, k = args
    env = {**os.environ, "EXPYRE_ROOT": root}
    code = textwrap.dedent(f"""
        import sys
        from expyre.func import ExPyRe
        ids = []
        for i in range({n}):
            # half of the calls are shared by every process, half are this process's own
            arg = i if i % 2 == 0 else ({k} * 1000 + i)
            ids.append(ExPyRe("conc", max, args=[arg, 0]).id)
        print(" ".join(ids))
    """)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.split()


def test_concurrent_processes_identical_calls_map_to_one_job(root):
    nproc, n = 6, 30
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(nproc) as pool:  # each worker is a separate Python process
        results = list(pool.map(_worker, [(str(root), n, k) for k in range(nproc)]))
    for i in range(0, n, 2):  # shared calls: one job for all processes
        assert len({r[i] for r in results}) == 1
    all_ids = {i for r in results for i in r}
    assert len(all_ids) == n // 2 + nproc * (n // 2)
    db = JobsDB(root / "jobs.db")
    assert len(db.jobs()) == len(all_ids)
    assert sorted(p.name[4:] for p in root.glob("run_*")) == sorted(all_ids)
    assert not list(root.glob(".tmp_run_*"))


def test_unlock(tmp_path):
    path = tmp_path / "jobs.db"
    db = JobsDB(path)
    db.add("a", name="a", from_dir="/x")
    assert "not locked" in db.unlock()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert "locked" in db.unlock() and "--force" in db.unlock()
        report = db.unlock(force=True)
        assert "replaced by an unlocked copy" in report
    finally:
        holder.close()
    fresh = JobsDB(path)
    assert fresh.get("a")["name"] == "a"
    fresh.add("b", name="b", from_dir="/y")
    assert list(tmp_path.glob("jobs.db.locked-*"))


def test_update_many_is_update_in_one_transaction(tmp_path):
    db = JobsDB(tmp_path / "jobs.db")
    for i in range(6):
        db.add(f"j{i}", "n", str(tmp_path / f"j{i}"), status="submitted")
    db.update("j5", status="succeeded")
    changed = db.update_many([
        ("j0", {"remote_status": "running"}),
        ("j1", {"remote_status": "queued", "status": "started"}),
        ("j2", {"status": "started"}),
        ("j3", {"suspect_since": 12.5}),
        ("j5", {"status": "started", "remote_status": "x"}),  # backward: the whole update is refused
        ("missing", {"remote_status": "y"}),
        ("j4", {}),
    ])
    rows = {r["id"]: r for r in db.jobs()}
    assert changed == 4
    assert [rows[f"j{i}"]["status"] for i in range(6)] == ["submitted", "started", "started", "submitted", "submitted",
                                                          "succeeded"]
    assert rows["j0"]["remote_status"] == "running" and rows["j1"]["remote_status"] == "queued"
    assert rows["j3"]["suspect_since"] == 12.5 and rows["j5"]["remote_status"] is None
    assert rows["j1"]["status_time"] >= rows["j0"]["status_time"]
    assert db.update_many([("j5", {"status": "started"})], force=True) == 1 and db.get("j5")["status"] == "started"
    assert db.update_many([]) == 0
    with pytest.raises(ValueError, match="unknown jobs database field"):
        db.update_many([("j0", {"bogus": 1})])


def test_jobs_columns_and_tuples(tmp_path):
    db = JobsDB(tmp_path / "jobs.db")
    db.add("a", "n", "/x/run_a", status="submitted", system="s", remote_id="7")
    db.add("b", "n", "/x/run_b", status="processed", system="s")
    assert db.jobs(system="s", status="ongoing", columns=("id", "remote_id")) == [{"id": "a", "remote_id": "7"}]
    assert db.jobs(system="s", columns=("id", "from_dir"), tuples=True) == [("a", "/x/run_a"), ("b", "/x/run_b")]
    with pytest.raises(ValueError, match="unknown jobs database column"):
        db.jobs(columns=("id", "id; DROP TABLE jobs"))
    with pytest.raises(ValueError, match="needs columns"):
        db.jobs(tuples=True)


def test_shell_join_is_shlex_join():
    import shlex

    from expyre.shell import join

    for words in (["squeue", "-j", "1,2"], ["a b"], ["x", ""], [], ["$x"], ["it's"], ["a\tb"], ["é"], ["-o", "%i|%T"],
                  [str(i) for i in range(10_000)]):
        assert join(words) == shlex.join(words)
