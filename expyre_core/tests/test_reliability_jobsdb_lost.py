"""The jobs database lost or damaged: deleted, truncated to 0 bytes, overwritten with garbage.

Real processes on one expyre root (zero-config local system): a first run leaves a succeeded
job, a failed one and one still running; the database is then damaged. A deleted or empty
database is rebuilt from the stage directories as soon as it is opened (`xpr ls` lists the jobs);
a garbage one makes every command and the library say which file is damaged and how to recover
(`xpr db rebuild`), and that command rebuilds it. In every case the rows come back with their
statuses and scheduler ids, a rerun of the same script reuses the finished result (same id, no
execution) and the job still running is not submitted again.
"""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import xpr_core_jobfuncs as jobfuncs
from expyre import config, stage_records
from expyre.func import ExPyRe
from expyre.jobsdb import JobsDBDamagedError, rebuild
from expyre.remove import remove

HERE = str(Path(jobfuncs.__file__).parent)

DRIVER = textwrap.dedent(f"""
    import json, os, sys, time
    sys.path.insert(0, {HERE!r})
    import xpr_core_jobfuncs as jobfuncs
    from expyre.func import ExPyRe

    phase, tmp, system = sys.argv[1], sys.argv[2], sys.argv[3]
    RES = {{"max_time": "5m", "n": (1, "tasks")}}
    ok = ExPyRe("lost_ok", jobfuncs.record_interval, args=[os.path.join(tmp, "ran.log"), 0])
    bad = ExPyRe("lost_bad", jobfuncs.raise_custom, args=["boom"])
    slow = ExPyRe("lost_slow", jobfuncs.print_then_wait, args=["hello", os.path.join(tmp, "flag")])
    for x in (ok, bad, slow):
        x.start(resources=RES, system_name=system, partial_node=True)
    out = {{"ids": [ok.id, bad.id, slow.id], "reused": [ok.recreated, bad.recreated, slow.recreated]}}
    out["ok"] = ok.get_results(timeout=120, check_interval=0.5, quiet=True)
    if phase == "first":
        try:
            bad.get_results(timeout=120, check_interval=0.5, quiet=True)
        except jobfuncs.CustomError:
            out["bad"] = "raised"
        deadline = time.monotonic() + 120  # the slow job is running when this process ends
        started = os.path.join(slow.system.remote_dir(slow.stage_dir), "_expyre_job_started")  # where it runs
        while not os.path.exists(started) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        open(os.path.join(tmp, "flag"), "w").close()
        out["slow"] = slow.get_results(timeout=120, check_interval=0.5, quiet=True)
    print(json.dumps(out))
""")


def run(args: list[str], root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRE_FAULT")}
    env.update(EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0", HOME=str(tmp_path / "home"))
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def driver(phase: str, root: Path, tmp_path: Path, system: str) -> dict:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    res = run([sys.executable, str(script), phase, str(tmp_path), system], root, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def xpr(root: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "expyre", *args], root, tmp_path)


def rows(root: Path) -> dict[str, dict]:
    con = sqlite3.connect(root / "jobs.db")
    con.row_factory = sqlite3.Row
    try:
        return {r["id"]: dict(r) for r in con.execute("SELECT * FROM jobs")}
    finally:
        con.close()


def submissions(queue: Path) -> collections.Counter:
    names: collections.Counter = collections.Counter()
    for sub in ("jobs", "done"):
        for f in (queue / sub).glob("*.json"):
            names[json.loads(f.read_text())["name"]] += 1
    return names


def damage(db: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if how == "deleted":
        db.unlink()
    elif how == "truncated":
        db.write_bytes(b"")
    else:
        db.write_bytes(b"these bytes are not an sqlite database\n" * 200)


@pytest.mark.parametrize("how, system", [("deleted", "local"), ("truncated", "local"), ("garbage", "local"),
                                         ("deleted", "rundir")])
def test_lost_jobs_database(tmp_path, how, system):
    """(``rundir``: a local system whose jobs run in a copy of their stage dirs, copied back when
    they end: what is copied back must not undo what the stage dir records.)"""
    root = tmp_path / "_expyre"
    root.mkdir(mode=0o700)
    rundir = tmp_path / "rundir"
    (root / "config.json").write_text(json.dumps({"systems": {"rundir": {
        "host": None, "scheduler": "local", "rundir": str(rundir),
        "partitions": {"p": {"ncores": 2, "max_mem": "1GB", "max_time": "1h"}}}}}))
    queue = (root if system == "local" else rundir) / "_expyre_localq"
    flag = tmp_path / "flag"
    try:
        first = driver("first", root, tmp_path, system)
        assert first["ok"] is True and first["bad"] == "raised"
        ok_id, bad_id, slow_id = first["ids"]
        before = rows(root)
        assert before[ok_id]["status"] == "succeeded" and before[bad_id]["status"] == "failed"
        assert before[slow_id]["status"] in ("submitted", "started") and before[slow_id]["remote_id"]
        db = root / "jobs.db"
        damage(db, how)

        if how == "garbage":
            for args in (("ls",), ("ls", "-l"), ("sync",), ("db_unlock", "--force")):
                res = xpr(root, tmp_path, *args)
                assert res.returncode == 1, (args, res.stdout, res.stderr)
                assert str(db) in res.stderr and "xpr db rebuild" in res.stderr, (args, res.stderr)
                assert "Traceback" not in res.stderr and "sqlite3" not in res.stderr, (args, res.stderr)
            lib = run([sys.executable, "-c", textwrap.dedent(f"""
                import sys, operator
                from expyre.errors import JobsDBDamagedError
                from expyre.func import ExPyRe
                try:
                    ExPyRe("x", operator.add, args=[1, 2])
                except JobsDBDamagedError as exc:
                    print("raised", exc)
            """)], root, tmp_path)
            assert lib.stdout.startswith("raised") and str(db) in lib.stdout and "xpr db rebuild" in lib.stdout, lib
            res = xpr(root, tmp_path, "db", "rebuild")
            assert res.returncode == 0, res.stderr
            assert "damaged" in res.stdout and "restored 3 job(s)" in res.stdout, res.stdout
            kept = list(root.glob("jobs.db.damaged-*"))
            assert len(kept) == 1 and kept[0].read_bytes().startswith(b"these bytes"), kept
        else:  # rebuilt as soon as it is opened: `xpr ls` (the fast path) lists the jobs
            res = xpr(root, tmp_path, "ls")
            assert res.returncode == 0, res.stderr
            for jid in (ok_id, bad_id, slow_id):
                assert jid in res.stdout, res.stdout

        after = rows(root)
        assert set(after) == {ok_id, bad_id, slow_id}
        assert after[ok_id]["status"] == "succeeded" and after[bad_id]["status"] == "failed"
        assert after[slow_id]["status"] in ("submitted", "started")
        for jid in (ok_id, bad_id, slow_id):
            for key in ("name", "hash", "system", "remote_id", "from_dir", "cwd"):
                assert after[jid][key] == before[jid][key], (jid, key, after[jid][key], before[jid][key])

        second = driver("second", root, tmp_path, system)
        assert second["ids"][0] == ok_id and second["reused"][0] and second["ok"] is True
        assert second["ids"][2] == slow_id and second["reused"][2] and second["slow"] is True
        assert len((tmp_path / "ran.log").read_text().splitlines()) == 1, "the finished call ran again"
        subs = submissions(queue)
        assert subs[ok_id] == 1 and subs[slow_id] == 1, subs  # the running job was not submitted again
    finally:
        flag.touch()  # the running job ends in any case


def test_deleted_database_reopened_by_several_processes(tmp_path):
    """4 processes rerun the script at once on a deleted database: one rebuilds it, all reuse the
    finished result and the running job (same ids, nothing executed or submitted again)."""
    root = tmp_path / "_expyre"
    try:
        first = driver("first", root, tmp_path, "local")
        damage(root / "jobs.db", "deleted")
        script = tmp_path / "driver.py"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRE_FAULT")}
        env.update(EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0", HOME=str(tmp_path / "home"))
        procs = [subprocess.Popen([sys.executable, str(script), "second", str(tmp_path), "local"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outs = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=300)
            assert p.returncode == 0, stderr[-3000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
        for out in outs:
            assert out["ids"][0] == first["ids"][0] and out["ids"][2] == first["ids"][2] and out["ok"] and out["slow"]
        assert len((tmp_path / "ran.log").read_text().splitlines()) == 1
        subs = submissions(root / "_expyre_localq")
        assert subs[first["ids"][0]] == 1 and subs[first["ids"][2]] == 1, subs
        got = rows(root)
        assert got[first["ids"][0]]["status"] == "succeeded" and got[first["ids"][2]]["status"] == "succeeded"
    finally:
        (tmp_path / "flag").touch()


@pytest.fixture
def local_root(tmp_path, monkeypatch):
    from expyre.testing import isolated_root

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {}) as r:
        yield r


RES = {"max_time": "5m", "n": (1, "tasks")}


def test_rebuild_restores_only_missing_rows(local_root):
    """On a sound database `rebuild` adds the rows missing from it and changes no other; a job
    deleted with `xpr rm` (its stage dir kept) and a processed one stay as they were."""
    xs = [ExPyRe(f"keep_{i}", jobfuncs.add, args=[i, 1]) for i in range(4)]
    for x in xs:
        x.start(resources=RES, system_name="local", partial_node=True)
    assert [x.get_results(timeout=120, check_interval=0.5, quiet=True) for x in xs] == [1, 2, 3, 4]
    xs[1].mark_processed()
    assert remove([xs[2].id]).deleted == [xs[2].id]
    config.db.update(xs[0].id, reason="kept as it is")
    with config.db._tx() as con:  # a row lost some other way
        con.execute("DELETE FROM jobs WHERE id = ?", (xs[3].id,))
    report = rebuild(config.db.path, local_root)
    assert report.state == "ok" and report.kept is None
    assert report.restored == {"succeeded": 1} and report.present == 2, str(report)
    got = {r["id"]: r for r in config.db.jobs()}
    assert set(got) == {xs[0].id, xs[1].id, xs[3].id}
    assert got[xs[0].id]["reason"] == "kept as it is" and got[xs[1].id]["status"] == "processed"
    assert got[xs[3].id]["status"] == "succeeded" and got[xs[3].id]["remote_id"] == xs[3].remote_id


def test_recorded_statuses_survive_a_rebuild(local_root, tmp_path):
    """What the markers cannot show is recorded in the stage dir: processed, died (cancelled before
    submission, with the reason), a claim never submitted; a rebuilt database has them."""
    done = ExPyRe("rec_done", jobfuncs.add, args=[1, 1])
    done.start(resources=RES, system_name="local", partial_node=True)
    assert done.get_results(timeout=120, check_interval=0.5, quiet=True) == 2
    done.mark_processed()
    never = ExPyRe("rec_cancelled", jobfuncs.add, args=[2, 2])
    never.cancel()
    fresh = ExPyRe("rec_created", jobfuncs.add, args=[3, 3])
    stage_records.record_claim(fresh.stage_dir, "local", "otherhost:1:1", {"n": 1})
    rows_before = {r["id"]: r for r in config.db.jobs()}
    scanned, skipped = stage_records.scan(local_root)
    got = {r["id"]: r for r in scanned}
    assert skipped == []
    assert got[done.id]["status"] == "processed" and got[done.id]["remote_id"] == rows_before[done.id]["remote_id"]
    assert got[never.id]["status"] == "died" and "cancelled before submission" in got[never.id]["reason"]
    assert got[fresh.id]["status"] == "created" and got[fresh.id]["submit_owner"] == "otherhost:1:1"
    assert got[fresh.id]["hash"] == rows_before[fresh.id]["hash"]


def test_damaged_database_raises_naming_the_file(local_root):
    """A damaged file: every use raises JobsDBDamagedError (not sqlite3's), naming the file and
    the recovery command."""
    db = config.db
    db.close()
    db.path.write_bytes(b"garbage" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(f"{db.path}{suffix}").unlink(missing_ok=True)
    config.init()
    with pytest.raises(JobsDBDamagedError, match="xpr db rebuild") as info:
        config.db.jobs()
    assert str(db.path) in str(info.value) and not isinstance(info.value, sqlite3.Error)
    with pytest.raises(JobsDBDamagedError):
        ExPyRe("after_damage", jobfuncs.add, args=[1, 2])
    report = rebuild(db.path, local_root)
    assert report.state.startswith("damaged") and report.kept is not None and report.kept.exists()
    config.init()
    x = ExPyRe("after_damage", jobfuncs.add, args=[1, 2])
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.get_results(timeout=120, check_interval=0.5, quiet=True) == 3


def test_records_are_read_only_as_regular_files(local_root, tmp_path):
    """A record that is a symlink (to a forged file) or a FIFO is not believed (and not waited on):
    the job is rebuilt from what else its stage dir holds."""
    x = ExPyRe("rec_forged", jobfuncs.add, args=[5, 5])
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({"system": "local", "remote_id": "999999", "submit_time": 1.0}))
    (x.stage_dir / "_expyre_submitted.json").symlink_to(forged)
    os.mkfifo(x.stage_dir / "_expyre_status.json")
    row = stage_records.row_from_stage_dir(x.stage_dir)
    assert row["status"] == "created" and row["remote_id"] is None and row["name"] == "rec_forged"
