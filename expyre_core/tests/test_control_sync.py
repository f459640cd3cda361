"""The library functions behind xpr's commands, through the Python API: expyre.control (the one
cancel/hold/release path), expyre.sync, JobsDB.unlock_file, expyre.progress, and the built-in
local scheduler's optional contract members."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

import xpr_core_jobfuncs as jobfuncs
from expyre import config, progress
from expyre.builtin.local_scheduler import LocalOptions, LocalScheduler
from expyre.builtin.local_transport import LocalTransport
from expyre.control import ControlError, control
from expyre.func import ExPyRe
from expyre.jobsdb import JobsDB
from expyre.sync import sync
from expyre.testing import wait_for
from expyre.types import CommandResult, SchedulerCommandError, SchedulerContext

RES = {"max_time": "5m", "n": (1, "tasks")}


def _ended_in_queue(x: ExPyRe) -> bool:
    st = x.system.status([x.remote_id]).get(x.remote_id)
    return st is not None and st.state.terminal


def test_control_batches_per_system_and_records_reasons(root, monkeypatch):
    from expyre.system import System

    blocker = ExPyRe("blocker", jobfuncs.sleep, args=[3])
    blocker.start(resources={"max_time": "5m", "n": (1, "nodes")}, system_name="local")
    a, b = ExPyRe("h", jobfuncs.add, args=[1, 1]), ExPyRe("h", jobfuncs.add, args=[2, 2])
    for x in (a, b):
        x.start(resources=RES, system_name="local", partial_node=True)
    created = ExPyRe("h", jobfuncs.add, args=[3, 3])  # never started
    calls = []
    orig = System.control
    monkeypatch.setattr(System, "control", lambda self, op, ids: (calls.append((op, sorted(ids))), orig(self, op, ids))[1])

    report = control("hold", [a.id, b.id, created.id, "no_such_job"], by="test")
    assert calls == [("hold", sorted([a.remote_id, b.remote_id]))]  # one command for both
    assert report.done == [a.id, b.id]
    assert report.failed == {created.id: "not submitted yet: cannot hold it", "no_such_job": "not in the jobs database"}
    assert config.db.get(a.id)["reason"] == "hold requested by user (test)"
    with pytest.raises(ControlError, match="not submitted yet"):
        control("release", [created.id], strict=True)
    assert control("release", [a.id, b.id]).done == [a.id, b.id]
    assert blocker.get_results(timeout=60) == 3 and a.get_results(timeout=60) == 2 and b.get_results(timeout=60) == 4

    # a job that already ended: left alone (a cancel is no error even when strict; a hold is)
    report = control("cancel", [a.id, created.id], strict=True)
    assert report.skipped == {a.id: "already succeeded"} and report.done == [created.id]
    assert config.db.get(created.id)["status"] == "died"
    assert config.db.get(created.id)["reason"] == "cancelled before submission"
    with pytest.raises(ControlError, match="already succeeded"):
        control("hold", [a.id], strict=True)
    with pytest.raises(ValueError, match="unknown control operation 'pause'"):
        control("pause", [a.id])  # type: ignore[arg-type]


def test_control_reports_a_failed_scheduler_command_per_job(root, monkeypatch):
    from expyre.system import System

    x = ExPyRe("victim", jobfuncs.sleep, args=[60])
    x.start(resources=RES, system_name="local", partial_node=True)

    def broken(self, op, ids):
        raise SchedulerCommandError("qdel: permission denied")

    monkeypatch.setattr(System, "control", broken)
    report = control("cancel", [x.id])
    assert report.failed == {x.id: "cancel on local failed"}
    assert "permission denied" in str(report.outcomes[0].error)
    with pytest.raises(SchedulerCommandError, match="permission denied"):  # strict: the scheduler's own error
        control("cancel", [x.id], strict=True)
    monkeypatch.undo()
    assert control("cancel", [x.id], strict=True).done == [x.id]
    assert config.db.get(x.id)["reason"] == "cancel requested by user"


def test_sync_records_results_and_deaths(root):
    ok = ExPyRe("ok", jobfuncs.add, args=[5, 6])
    dead = ExPyRe("dead", jobfuncs.die_hard)
    never = ExPyRe("never", jobfuncs.add, args=[0, 0])
    for x in (ok, dead):
        x.start(resources=RES, system_name="local", partial_node=True)
    for x in (ok, dead):
        wait_for(lambda: _ended_in_queue(x), 60, f"{x.name} to end in the local queue")
    out = {j.id: j for j in sync([ok.id, dead.id, never.id], show_progress=False)}
    assert out[never.id].note == "not submitted" and out[never.id].status == "created"
    assert out[ok.id].status == "succeeded" and out[ok.id].note == "results here"
    assert out[dead.id].status == "died" and out[dead.id].error is None
    assert config.db.get(ok.id)["status"] == "succeeded"


def test_unlock_file(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="no jobs database at"):
        JobsDB.unlock_file(tmp_path / "missing.db")
    ExPyRe("kept", jobfuncs.add, args=[1, 1])
    path = root / "jobs.db"
    assert "not locked" in JobsDB.unlock_file(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, time\n"
         f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\n"
         "print('locked', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert ": locked (" in JobsDB.unlock_file(path)
    finally:
        holder.kill()
        holder.wait()
    con = sqlite3.connect(path)
    assert [n for (n,) in con.execute("SELECT name FROM jobs")] == ["kept"]
    con.close()


def test_progress_is_silent_off_a_terminal(monkeypatch, capfd):
    monkeypatch.setenv("EXPYRE_PROGRESS", "1")
    with progress.Progress("syncing", total=3) as p:  # stderr is not a terminal under pytest
        p.update("polling x")
        p.advance(2)
    # off a terminal: a log line per interval, none for a short batch, and rich is never drawn
    assert p.mode == "log" and p._progress is None and p.completed == 2
    assert capfd.readouterr().err == ""
    assert not progress.progress_enabled()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.progress_enabled() and not progress.progress_enabled(False)
    assert progress.display_mode() == "terminal"
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    assert not progress.progress_enabled() and progress.display_mode() is None
    w = progress.Waiting("job x")
    assert w.total is None and w.show_after == progress.SHOW_AFTER


def test_local_scheduler_optional_members(tmp_path):
    parts = LocalScheduler.default_partitions()
    assert parts and all(p.ncores >= 1 for p in parts.values())
    here = LocalScheduler(SchedulerContext("local", str(tmp_path)))
    assert here.probe(LocalTransport(None)) == "built-in local queue"  # nothing to run on this machine
    remote = LocalScheduler(SchedulerContext("far", "expyre_rundir", host="u@far", options=LocalOptions(python="/opt/py/bin/python3 -X utf8")))
    assert remote.probe_command() == "command -v /opt/py/bin/python3"
    assert remote.partitions_command() is None and remote.explain_command(["1"]) is None

    class Remote(LocalTransport):
        is_local = False

        def run(self, command, **kw):
            self.seen = command
            return CommandResult(command, 0, "/opt/py/bin/python3\n")

    t = Remote(None)
    assert remote.probe(t) == "/opt/py/bin/python3" and t.seen == "command -v /opt/py/bin/python3"
    assert remote.list_partitions(t) is None


def test_the_click_application_imports_no_plugin_machinery():
    """Every xpr command starts without pluggy, attrs or rich: they load only when a command uses them."""
    probe = "import sys, expyre.cli; print(sorted({'pluggy', 'attrs', 'cattrs', 'rich'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_remove_cleans_only_expyre_stage_dirs_and_cancels_first(root):
    from expyre.remove import remove

    done = ExPyRe("done", jobfuncs.add, args=[1, 2])
    done.start(resources=RES, system_name="local", partial_node=True)
    assert done.get_results(timeout=60) == 3
    running = ExPyRe("running", jobfuncs.sleep, args=[60])
    running.start(resources=RES, system_name="local", partial_node=True)
    report = remove([done.id, running.id], clean=True)
    assert report.deleted == [done.id] and not done.stage_dir.exists()
    assert [(jid, exc) for jid, _, exc in report.errors] == [(running.id, None)]
    assert "use --cancel" in report.errors[0][1] and running.stage_dir.exists()
    report = remove([running.id], clean=True, cancel=True, by="test")
    assert report.cancelled == [running.id] and report.deleted == [running.id] and not report.errors
    assert config.db.get(running.id) is None and not running.stage_dir.exists()


def test_the_optional_members_default_to_not_available():
    from expyre.hookspecs import Scheduler

    class Bare(Scheduler):
        name = "bare"
        header = submit_command = parse_submit = status_command = parse_status = control_command = None  # type: ignore[assignment]

    s = Bare(SchedulerContext("b", "/tmp"))

    class NoCommands(LocalTransport):
        def run(self, command, **kw):
            raise AssertionError(f"nothing may run: {command}")

    t = NoCommands(None)
    assert Bare.default_partitions() is None
    assert s.probe_command() is None and s.probe(t) is None
    assert s.partitions_command() is None and s.list_partitions(t) is None
    assert s.parse_partitions(CommandResult(["x"], 0, "a\n")) == set()
    assert s.explain_command(["1"]) is None and s.explain_queued(t, ["1"]) == {}
    assert s.parse_explain(CommandResult(["x"], 0, "a\n"), ["1"]) == {}
