"""From Python: a job's live output (``tail``, ``read_output``, ``stdout``/``stderr``), its status
brought up to date by ONE shared poll per system (``refresh``, ``refresh_many``), the job script
before submitting it (``job_script``), and the usage recorded for every finished job (the
runner's record; ``xpr show`` and ``xpr ls -l`` print it). On the embedded ``local`` system."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

import xpr_core_jobfuncs as jobfuncs
from expyre import cli as xcli
from expyre import config
from expyre.func import ExPyRe
from expyre.jobsdb import JobsDB
from expyre.system import System
from expyre.testing import wait_for

RES = {"max_time": "5m", "n": (1, "tasks")}
MIB = 1024  # KiB


def xpr(*args: str):
    return CliRunner().invoke(xcli.cli, list(args), catch_exceptions=False)


def test_live_tail_stdout_and_refresh(root, tmp_path):
    flag = tmp_path / "go"
    x = ExPyRe("talker", jobfuncs.print_then_wait, args=["line one", str(flag)], kwargs={"last": "line two"})
    assert x.stdout is None and x.tail() == "" and x.refresh() == "created"
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.status == "submitted"
    # the status moves to started through the shared poll; the output so far is readable
    wait_for(lambda: x.refresh() == "started", 60, "the job to be seen started")
    wait_for(lambda: "line one" in x.tail(5), 60, "the job's first line")
    assert x.tail(1) == "line one\n" and x.stdout == "line one\n" and x.read_output() == "line one\n"
    assert x.tail(5, stderr=True) == "err line one\n" and x.stderr == "err line one\n"
    assert x.status == "started"  # reading the output does not change the status
    flag.touch()
    wait_for(lambda: x.refresh() == "succeeded", 60, "the job's outcome")
    assert x.get_results(timeout=60) is True
    assert x.stdout == "line one\nline two\n" and x.tail(1) == "line two\n"
    assert x.usage(scheduler=False)["runner"]["wall_time"] > 0


def test_refresh_of_20_jobs_is_one_status_query(root, tmp_path, monkeypatch):
    flag = tmp_path / "go"
    xs = [ExPyRe(f"live{i}", jobfuncs.print_then_wait, args=[f"job {i}", str(flag)]) for i in range(20)]
    errors = ExPyRe.start_many(xs, RES, "local", partial_node=True)
    assert errors == {}
    calls: list[list[str]] = []
    orig = System.status
    monkeypatch.setattr(System, "status", lambda self, ids: calls.append(list(ids)) or orig(self, ids))
    try:
        # some jobs run (as many as the machine has cores), the others queue: wait until one runs
        wait_for(lambda: "started" in ExPyRe.refresh_many(xs), 120, "a job to start")
        calls.clear()
        statuses = ExPyRe.refresh_many(xs)
        assert len(calls) == 1 and sorted(calls[0]) == sorted(x.remote_id for x in xs)
        assert set(statuses) <= {"submitted", "started"} and "started" in statuses
        # a loop of refresh() shares the poll (no new status query within max_age)
        calls.clear()
        assert [x.refresh(max_age=600) for x in xs] == statuses
        assert calls == []
        assert [x.status for x in xs] == statuses
    finally:
        flag.touch()
    assert [x.get_results(timeout=300, check_interval=0.5) for x in xs] == [True] * 20


def test_job_script_is_what_start_submits(root):
    x = ExPyRe("scripted", jobfuncs.add, args=[1, 2], env_vars=["XPR_TEST_VALUE=a b"],
               pre_run_commands=["echo before"], post_run_commands=["echo after"])
    kw = dict(system_name="local", header_extra=["# cores {tot_ncores}"], partial_node=True)
    text = x.job_script(RES, **kw)
    assert x.reload()["status"] == "created" and not (x.stage_dir / "_expyre_script.sh").exists()
    assert "# cores 1" in text and "XPR_TEST_VALUE='a b'" in text and "echo before" in text
    x.start(resources=RES, **kw)
    assert (x.stage_dir / "_expyre_script.sh").read_bytes() == text.encode()
    assert x.get_results(timeout=60, check_interval=0.5) == 3
    # what the resources cannot fit is refused as start() refuses it
    with pytest.raises(ValueError):
        x.job_script({"max_time": "5m", "n": (10_000, "nodes")}, system_name="local")


def test_usage_of_a_200_mib_job(root):
    x = ExPyRe("memory", jobfuncs.hold_memory, args=[200])
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.get_results(timeout=120, check_interval=0.5) == 200 * 1024 * 1024
    u = x.usage()
    r = u["runner"]
    assert 200 * MIB <= r["peak_rss_kib"] < 2 * 1024 * MIB
    assert r["wall_time"] > 0 and r["end_time"] >= r["start_time"] > 0 and r["host"]
    assert "scheduler" not in u  # the local scheduler keeps no accounting
    assert json.loads(config.db.get(x.id)["usage"]) == u
    info = json.loads(xpr("show", x.id, "--json").stdout)
    assert info["usage"] == u
    text = xpr("show", x.id).stdout
    assert "usage:         wall " in text and "peak RSS" in text and "ran:" in text
    listed = json.loads(xpr("ls", "-i", x.id, "--json").stdout)
    assert listed[0]["usage"] == u
    long_ = xpr("ls", "-i", x.id, "-l").stdout
    assert "peak RSS" in long_


def test_failed_job_records_usage_too(root):
    x = ExPyRe("boom", jobfuncs.raise_custom, args=["no"])
    x.start(resources=RES, system_name="local", partial_node=True)
    with pytest.raises(jobfuncs.CustomError):
        x.get_results(timeout=60, check_interval=0.5)
    assert x.usage()["runner"]["peak_rss_kib"] > 0


def test_force_rerun_forgets_the_old_usage(root):
    x = ExPyRe("again", jobfuncs.add, args=[2, 2])
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.get_results(timeout=60, check_interval=0.5) == 4
    first = x.usage()["runner"]
    x.start(resources=RES, system_name="local", partial_node=True, force_rerun=True)
    assert config.db.get(x.id)["usage"] is None
    assert x.get_results(timeout=60, check_interval=0.5) == 4
    assert x.usage()["runner"]["start_time"] >= first["end_time"]


def test_an_older_jobs_database_gets_the_usage_column(tmp_path):
    path = tmp_path / "jobs.db"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, hash TEXT, status TEXT NOT NULL, system TEXT,
            remote_id TEXT, remote_status TEXT, reason TEXT, from_dir TEXT NOT NULL, cwd TEXT, creation_time REAL NOT NULL,
            status_time REAL NOT NULL, submit_owner TEXT, submit_time REAL, suspect_since REAL, resources TEXT);
        INSERT INTO jobs (id, name, status, from_dir, creation_time, status_time) VALUES ('a_1', 'a', 'succeeded', '/x', 1, 1);
    """)
    con.commit()
    con.close()
    db = JobsDB(path)
    assert db.get("a_1")["usage"] is None and db.get("a_1")["status"] == "succeeded"
    assert db.merge_usage("a_1", {"runner": {"wall_time": 1.5}}) == {"runner": {"wall_time": 1.5}}
    assert db.merge_usage("a_1", {"scheduler": {"elapsed": 2}}) == {"runner": {"wall_time": 1.5}, "scheduler": {"elapsed": 2}}
    assert db.merge_usage("nope", {"runner": {}}) is None
    JobsDB(path)  # opening it again adds nothing
    cols = [r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(jobs)")]
    assert cols.count("usage") == 1
