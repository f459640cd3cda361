"""Smaller holes, each with a clear error or a fix: max_time=0, NUL in env_vars, bad
EXPYRE_LOCAL_NCORES / EXPYRE_POLL_OUTAGE found when the library starts, job names printed raw by
``xpr ls``, name filters that burn CPU, queue records that outlive their jobs (and hold the
driver's environment), an unreadable queue state file, a job Python that does not exist, a dangling symlink in an input
directory, a stage directory deleted before start()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import xpr_trust_jobfuncs as jf
from expyre import config
from expyre.builtin import localq
from expyre.cli_select import check_regexp
from expyre.func import ExPyRe
from expyre.resources import Resources, parse_env_vars
from expyre.testing import wait_for
from expyre.types import SchedulerCommandError

RES = {"max_time": "5m", "n": (1, "tasks")}


def xpr_sub(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0", **(env or {}))
    return subprocess.run([sys.executable, "-m", "expyre", *args], capture_output=True, text=True, env=e, timeout=120)


# -- max_time -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, "0", "0s", "0:00", "0.4s"])
def test_max_time_zero_is_refused(value):
    with pytest.raises(ValueError, match="max_time.*more than 0 seconds"):
        Resources.from_any({"max_time": value, "n": (1, "tasks")})


def test_max_time_zero_is_refused_at_start(root):
    xpr = ExPyRe("zero-time", jf.square, args=[2])
    with pytest.raises(ValueError, match="max_time"):
        xpr.start(resources={"max_time": 0, "n": (1, "tasks")}, system_name="local", partial_node=True)


def test_partition_max_time_zero_is_refused(tmp_path, monkeypatch):
    from expyre.config_files import ConfigError

    root = tmp_path / "r"
    root.mkdir(mode=0o700)
    (root / "config.json").write_text(json.dumps({"systems": {"z": {"host": None, "scheduler": "local",
                                                                    "partitions": {"p": {"ncores": 1, "max_time": 0}}}}}))
    monkeypatch.setenv("EXPYRE_ROOT", str(root))
    try:
        with pytest.raises(ConfigError, match="max_time"):
            config.load_config()
    finally:
        config._loaded.clear()


def test_local_queue_refuses_max_time_zero(tmp_path):
    with pytest.raises(ValueError, match="max_time must be > 0"):
        localq.submit(str(tmp_path / "q"), directory=str(tmp_path), script="s.sh", stdout="o", stderr="e",
                      ncores=1, max_time=0, name="x")


# -- env_vars with NUL ----------------------------------------------------------------------------


def test_nul_in_env_vars_value_is_refused():
    with pytest.raises(ValueError, match="env_vars entry SECRET: its value contains a NUL"):
        parse_env_vars(["OK=1", "SECRET=ab\0cd"])
    with pytest.raises(ValueError, match="NUL"):
        parse_env_vars(["FROM_ENV"], {"FROM_ENV": "x\0"})
    assert parse_env_vars(["A=1=2", "B"], {"B": "b"}) == [("A", "1=2"), ("B", "b")]
    with pytest.raises(ValueError, match="not a valid variable name"):
        parse_env_vars(["1X=2"])


def test_nul_in_env_vars_is_refused_by_expyre(root):
    with pytest.raises(ValueError, match="NUL"):
        ExPyRe("nul", jf.square, args=[1], env_vars=["X=a\0b"])


# -- environment variables checked when the library starts ------------------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "-1", "2.5"])
def test_bad_local_ncores_names_the_variable(tmp_path, monkeypatch, value):
    monkeypatch.setenv("EXPYRE_LOCAL_NCORES", value)
    with pytest.raises(ValueError) as info:
        localq.capacity()
    assert f"EXPYRE_LOCAL_NCORES={value!r}" in str(info.value) and ">= 1" in str(info.value)
    root = tmp_path / "r"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("EXPYRE_ROOT", str(root))
    try:
        with pytest.raises(ValueError, match="EXPYRE_LOCAL_NCORES"):
            config.init()
    finally:
        config._loaded.clear()


def test_good_local_ncores(monkeypatch):
    monkeypatch.setenv("EXPYRE_LOCAL_NCORES", " 3 ")
    assert localq.capacity() == 3
    monkeypatch.setenv("EXPYRE_LOCAL_NCORES", "")
    assert localq.capacity() == localq.machine_ncores()


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "inf"])
def test_bad_poll_outage_is_found_when_the_library_starts(tmp_path, monkeypatch, value):
    root = tmp_path / "r"
    root.mkdir(mode=0o700)
    monkeypatch.setenv("EXPYRE_ROOT", str(root))
    monkeypatch.setenv("EXPYRE_POLL_OUTAGE", value)
    try:
        with pytest.raises(ValueError, match=f"EXPYRE_POLL_OUTAGE={value!r} is invalid: give seconds >= 0"):
            config.init()
    finally:
        config._loaded.clear()


# -- xpr ls: names printed escaped, filters that cannot burn CPU ----------------------------------


def test_ls_prints_control_characters_escaped(root):
    hostile = "evil\n\x1b[2J\x1b]0;title\x07fake row\u202eoops"
    ExPyRe(hostile, jf.square, args=[1])  # created, not started
    r = xpr_sub(root, "ls")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\u202e" not in r.stdout
    lines = r.stdout.splitlines()
    assert len(lines) == 2  # the header and one row: the newline in the name made no row
    assert "evil\\n\\x1b[2J\\x1b]0;title\\x07fake row\\u202eoops" in lines[1]


@pytest.mark.parametrize("pattern", ["(a+)+", "(a|aa)+b", "(\\w+\\s?)+$", "(.*a){12}"])
def test_ls_refuses_name_filters_that_backtrack_exponentially(root, pattern):
    ExPyRe("a" * 40 + "!", jf.square, args=[1])
    r = xpr_sub(root, "ls", "-n", pattern)
    assert r.returncode != 0
    assert "exponential time" in r.stderr and repr(pattern) in r.stderr


@pytest.mark.parametrize("pattern", ["fit_.*", "run[0-9]+", "(relax|md)_.*", "(ab|cd)*e", "a{3}.*"])
def test_usual_filters_pass(pattern):
    check_regexp(pattern)


# -- queue records: only what the job needs, removed with the job --------------------------------


def test_queue_records_hold_no_environment_and_are_removed(root, monkeypatch):
    monkeypatch.setenv("XPR_TEST_SECRET", "hunter2-secret")
    xpr = ExPyRe("rec", jf.square, args=[5])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    assert xpr.get_results(timeout=120, check_interval=0.5) == 25
    q = root / "_expyre_localq"
    leftovers = [p for p in q.rglob("*.json") if "hunter2-secret" in p.read_text()]
    assert leftovers == []  # the environment went with the job's start
    jid = xpr.remote_id
    # the result can be read a moment before the queue records the job's end
    wait_for(lambda: localq.status(str(q), [jid])[jid]["state"] == "completed", 60, "the queue to record the end")
    assert (q / "done" / f"{jid}.json").exists()
    system = config.get_system("local")
    system.scheduler.forget(system.transport, [jid])
    assert [p for p in q.rglob("*") if jid in p.name] == []


def test_remove_forgets_the_queue_records_of_ended_jobs(root):
    from expyre.remove import remove

    xpr = ExPyRe("gone", jf.square, args=[6])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    assert xpr.get_results(timeout=120, check_interval=0.5) == 36
    q = root / "_expyre_localq"
    jid = xpr.remote_id
    wait_for(lambda: localq.status(str(q), [jid])[jid]["state"] == "completed", 60, "the queue to record the end")
    report = remove([xpr.id])
    assert report.deleted == [xpr.id] and report.errors == []
    assert [p for p in q.rglob("*") if jid in p.name] == []


def test_forget_leaves_jobs_that_have_not_ended(tmp_path):
    q = str(tmp_path / "q")
    d = tmp_path / "job"
    d.mkdir()
    (d / "s.sh").write_text("exit 0\n")
    jid = localq.submit(q, directory=str(d), script="s.sh", stdout="o", stderr="e", ncores=1, max_time=None,
                        name="held", hold=True)
    assert localq.forget(q, [jid]) == [jid]
    assert (tmp_path / "q" / "jobs" / f"{jid}.json").exists()
    localq.control(q, "cancel", [jid])
    wait_for(lambda: localq.status(q, [jid])[jid]["state"] == "cancelled", 60, "the held job to be cancelled")
    assert localq.forget(q, [jid]) == []
    assert [p for p in (tmp_path / "q").rglob("*") if jid in p.name] == []


# -- an unreadable state file is a failed poll --------------------------------------------------------


def test_unreadable_state_file_is_a_failed_poll(root, monkeypatch):
    xpr = ExPyRe("unreadable", jf.square, args=[6])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    state = root / "_expyre_localq" / "state" / f"{xpr.remote_id}.json"
    wait_for(state.exists, 60, "the job's state file")
    real_open = open
    broken = threading.Event()
    broken.set()

    def fake_open(path, *a, **kw):  # root reads any file: make this one unreadable by hand
        if broken.is_set() and os.fspath(path) == str(state):
            raise PermissionError(13, "Permission denied", str(state))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(localq, "open", fake_open, raising=False)
    system = config.get_system("local")
    with pytest.raises(SchedulerCommandError, match="Permission denied"):
        system.scheduler.status(system.transport, [xpr.remote_id])
    broken.clear()
    assert xpr.get_results(timeout=120, check_interval=0.5) == 36


# -- a job Python that does not exist -------------------------------------------------------------


def _bad_python_root(root: Path, commands=()) -> None:
    (root / "config.json").write_text(json.dumps({"systems": {"badpy": {
        "host": None, "scheduler": "local", "python_cmd": "/nonexistent/bin/python3", "commands": list(commands),
        "partitions": {"any": {"ncores": 1, "max_time": "1h"}}}}}))
    config.init()


def test_config_check_fails_a_job_python_that_does_not_exist(root):
    _bad_python_root(root)
    r = xpr_sub(root, "config", "check", "-S", "badpy")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "badpy: FAIL" in r.stdout and "/nonexistent/bin/python3" in r.stdout and "python_cmd" in r.stdout
    ok = xpr_sub(root, "config", "check", "-S", "local")
    assert ok.returncode == 0 and "cloudpickle" in ok.stdout, ok.stdout + ok.stderr


def test_start_refuses_a_job_python_that_does_not_exist(root):
    from expyre.jobpython import JobPythonError

    _bad_python_root(root)
    xpr = ExPyRe("badpy", jf.square, args=[3])
    with pytest.raises(JobPythonError, match="/nonexistent/bin/python3.*python_cmd"):
        xpr.start(resources=RES, system_name="badpy")
    assert config.db.get(xpr.id)["status"] == "created"  # nothing was submitted


# -- input directories and stage directories that are not what they were ---------------------------


def test_input_directory_with_a_dangling_symlink_is_named(root, tmp_path):
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("a")
    (tmp_path / "inputs" / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"inputs/gone is a symlink to .*nowhere.*which does not exist"):
        ExPyRe("links", jf.square, args=[2], input_files=["inputs"])
    assert [p.name for p in root.iterdir() if p.name.startswith((".tmp_run_", "run_"))] == []  # nothing staged


def test_stage_directory_deleted_before_start_is_named_and_recreated(root):
    import shutil

    xpr = ExPyRe("gone", jf.square, args=[7])
    shutil.rmtree(xpr.stage_dir)
    with pytest.raises(FileNotFoundError, match="is gone .*create the ExPyRe again"):
        xpr.start(resources=RES, system_name="local", partial_node=True)
    again = ExPyRe("gone", jf.square, args=[7])  # as the message says
    assert again.id == xpr.id
    again.start(resources=RES, system_name="local", partial_node=True)
    assert again.get_results(timeout=120, check_interval=0.5) == 49


def test_local_probe_answers_the_job_pythons_version_without_a_second_process(monkeypatch):
    import shlex

    from expyre.builtin.local_transport import LocalTransport

    python = f"{shlex.quote(sys.executable)} -E"  # not the driver's own command: it is probed
    t = LocalTransport(None)
    t.probe(python, [])
    monkeypatch.setattr(LocalTransport, "run", lambda self, *a, **kw: pytest.fail("a second process"))
    assert t.python_version(python, []) == tuple(sys.version_info[:2])
