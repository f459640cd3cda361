"""``xpr show`` and ``xpr logs`` (and their library modules), on the embedded ``local`` system;
the small CLI items: offline config check, completion scripts, help texts, ``ls -l``."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
from click.testing import CliRunner

import xpr_core_jobfuncs as jobfuncs
from expyre import cli as xcli
from expyre import config, plugins
from expyre.func import ExPyRe
from expyre.show import Opaque, describe, safe_loads
from expyre.testing import wait_for

RES = {"max_time": "5m", "n": (1, "tasks")}


def xpr(*args: str):
    return CliRunner().invoke(xcli.cli, list(args), catch_exceptions=False)


def failed_job(name: str = "boom", message: str = "kaput") -> ExPyRe:
    x = ExPyRe(name, jobfuncs.raise_custom, args=[message])
    x.start(resources=RES, system_name="local", partial_node=True)
    with pytest.raises(jobfuncs.CustomError):
        x.get_results(timeout=60, check_interval=0.5)
    return x


# -- show --------------------------------------------------------------------------------------

def test_show_a_failed_job(root):
    x = failed_job()
    r = xpr("show", x.id, "--json")
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["id"] == x.id and info["status"] == "failed" and info["system"] == "local"
    assert info["failure"]["type"].endswith("CustomError") and info["failure"]["message"] == "kaput"
    assert "raise_custom" in info["failure"]["traceback"] and info["failure"]["stage"] == "running the function"
    assert info["resources"]["n"] == [1, "tasks"]
    assert info["partition"] in config.get_system("local").partitions
    assert info["remote_id"] and info["times"]["started"] and info["started"]["host"]
    assert info["usage"]["runner"]["wall_time"] >= 0 and info["stage_dir"] == str(x.stage_dir)
    assert "scheduler" not in info["usage"]  # the local scheduler keeps no accounting
    assert info["scheduler"] is not None  # asked once: the local scheduler no longer lists it
    text = xpr("show", x.id).stdout
    assert f"job {x.id}" in text and "status:        failed" in text
    assert "remote traceback:" in text and "CustomError: kaput" in text and "raise_custom" in text
    assert f"partition:     {info['partition']}" in text and "usage:         wall " in text and "peak RSS" in text


def test_show_asks_the_scheduler_once(root, monkeypatch):
    x = failed_job()
    from expyre.system import System

    calls = []
    orig = System.status
    monkeypatch.setattr(System, "status", lambda self, ids: calls.append(list(ids)) or orig(self, ids))
    assert xpr("show", x.id).exit_code == 0
    assert calls == [[x.remote_id]]


def test_show_usage_when_recorded(root):
    x = ExPyRe("quick", jobfuncs.add, args=[1, 2])
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.get_results(timeout=60, check_interval=0.5) == 3
    recorded = config.db.get(x.id)["usage"]
    assert json.loads(recorded)["runner"]["peak_rss_kib"] > 0
    # the jobs database's record is shown; without one, the runner's file of the stage dir
    config.db.update(x.id, usage=None)
    (x.stage_dir / "_expyre_usage.json").write_text(json.dumps({"peak_rss_kib": 1234 * 1024, "wall_time": 0.5,
                                                                "junk": "dropped"}))
    info = describe(x.id)
    assert info["usage"] == {"runner": {"peak_rss_kib": 1234 * 1024, "wall_time": 0.5}} and info["failure"] is None
    assert "usage:         wall 0.5 s, peak RSS 1234.0 MiB" in xpr("show", x.id).stdout
    config.db.update(x.id, usage=json.loads(recorded))
    assert describe(x.id)["usage"] == json.loads(recorded)


def test_show_unknown_job_is_one_line_error(root):
    r = xpr("show", "no_such_job_1")
    assert r.exit_code == 1 and r.stderr.startswith("xpr: no job 'no_such_job_1'")


def test_show_never_follows_a_symlink(root, tmp_path):
    x = failed_job()
    failed = x.stage_dir / "_expyre_job_failed"
    elsewhere = tmp_path / "elsewhere"
    failed.rename(elsewhere)
    failed.symlink_to(elsewhere)
    f = describe(x.id)["failure"]
    assert f["traceback"] is None and "cannot be read" in f["error"]
    # a stage dir replaced by a symlink is not read at all
    moved = tmp_path / "moved"
    x.stage_dir.rename(moved)
    x.stage_dir.symlink_to(moved)
    info = describe(x.id)
    assert info["failure"] is None and any("symlink" in p for p in info["problems"])


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_safe_unpickler_builds_no_foreign_object(tmp_path):
    target = tmp_path / "pwned"
    data = pickle.dumps({"type": "x.Y", "message": "m", "traceback": "tb", "exception": _Evil(target)})
    info = safe_loads(data)
    assert not target.exists()
    assert info["traceback"] == "tb" and isinstance(info["exception"], Opaque)
    # builtin exceptions and plain data do load
    assert isinstance(safe_loads(pickle.dumps(ValueError("v"))), ValueError)
    assert issubclass(safe_loads(pickle.dumps(getattr)), Opaque)  # not every builtin: a placeholder class


def test_show_lists_failed_elements_of_a_packed_job(root, monkeypatch):
    from expyre.packing import run_chunk

    x = ExPyRe("chunk", jobfuncs.add, args=[0, 0])
    monkeypatch.chdir(x.stage_dir)
    run_chunk(int, [(("1",), {}), (("nope",), {})], first_index=10, partial=True)  # elements 0 and 1
    # a third element's file: an exception of a class only the job's module defines
    outcome = run_chunk(jobfuncs.raise_custom, [(("custom",), {})])[0]
    (x.stage_dir / "_expyre_elem_2").write_bytes(pickle.dumps(outcome))
    failure = describe(x.id)["failure"]
    elems = {e["element"]: e for e in failure["elements"]}
    assert sorted(elems) == [1, 2]  # element 0 succeeded
    assert elems[1]["type"] == "builtins.ValueError" and elems[1]["index"] == 11 and "nope" in elems[1]["message"]
    assert elems[2]["type"].endswith("CustomError") and "raise_custom" in elems[2]["traceback"]
    text = xpr("show", x.id).stdout
    assert "element 1 (map index 11) failed: builtins.ValueError" in text


# -- logs --------------------------------------------------------------------------------------

def test_logs_of_a_running_local_job(root, tmp_path):
    flag = tmp_path / "go"
    x = ExPyRe("talker", jobfuncs.print_then_wait, args=["hello there", str(flag)])
    x.start(resources=RES, system_name="local", partial_node=True)
    out = wait_for(lambda: (r := xpr("logs", x.id)).exit_code == 0 and "hello there" in r.stdout and r.stdout,
                   60, "the running job's first line")
    assert "==> _expyre_stdout <==" in out and "the end" not in out
    assert config.db.get(x.id)["status"] in ("submitted", "started")  # read while it runs
    err = xpr("logs", x.id, "--stderr").stdout
    assert "err hello there" in err and "==> _expyre_stderr <==" in err
    data = json.loads(xpr("logs", x.id, "--json").stdout)
    assert data["finished"] is False and "hello there" in data["files"]["_expyre_stdout"]

    flag.touch()
    r = xpr("logs", x.id, "-f", "--interval", "0.1")  # follows to the end, then exits 0
    assert r.exit_code == 0, r.stderr
    assert r.stdout.count("hello there") == 1 and r.stdout.rstrip().endswith("the end")
    assert x.get_results(timeout=60, check_interval=0.5) is True
    last = xpr("logs", x.id, "-n", "1").stdout
    assert "the end" in last and "hello there" not in last


def test_logs_follow_json_lines(root, tmp_path):
    flag = tmp_path / "go"
    flag.touch()
    x = ExPyRe("talker", jobfuncs.print_then_wait, args=["one", str(flag)])
    x.start(resources=RES, system_name="local", partial_node=True)
    r = xpr("logs", x.id, "-f", "--json", "--interval", "0.1")
    assert r.exit_code == 0, r.stderr
    chunks = [json.loads(line) for line in r.stdout.splitlines()]
    text = "".join(c["text"] for c in chunks if c["file"] == "_expyre_stdout")
    assert text == "one\nthe end\n"


def test_logs_reads_a_local_rundir(tmp_path, monkeypatch):
    """A local system with its own rundir: the job's files are read where it runs."""
    from expyre.testing import isolated_root

    monkeypatch.chdir(tmp_path)
    rundir = tmp_path / "rundir"
    with isolated_root(tmp_path / "_expyre", {"lr": {"host": None, "scheduler": "local", "rundir": str(rundir)}}):
        flag = tmp_path / "go"
        x = ExPyRe("talker", jobfuncs.print_then_wait, args=["from rundir", str(flag)])
        x.start(resources=RES, system_name="lr", partial_node=True)
        wait_for(lambda: "from rundir" in xpr("logs", x.id).stdout, 60, "the first line in the rundir")
        assert not (x.stage_dir / "_expyre_stdout").exists()  # not copied back yet: read in the rundir
        flag.touch()
        r = xpr("logs", x.id, "-f", "--interval", "0.1")
        assert r.exit_code == 0 and "the end" in r.stdout


def test_logs_unknown_job(root):
    r = xpr("logs", "nope_1")
    assert r.exit_code == 1 and r.stderr.startswith("xpr: no job 'nope_1'")


# -- the small items ---------------------------------------------------------------------------

def test_unknown_scheduler_suggests_the_close_name(fresh_plugins):
    plugins.reset()
    with pytest.raises(plugins.UnknownBackendError) as info:
        plugins.get_scheduler_spec("locl")
    msg = str(info.value)
    assert "unknown scheduler 'locl'; did you mean 'local'? available: " in msg and "pip install" not in msg
    with pytest.raises(plugins.UnknownBackendError) as info:
        plugins.get_transport_spec("carrier-pigeon")
    msg = str(info.value)
    assert "did you mean" not in msg and "pip install expyre-carrier-pigeon" in msg


@pytest.mark.parametrize("shell,marker", [("bash", "complete -o"), ("zsh", "#compdef xpr"), ("fish", "complete --no-files --command xpr")])
def test_completion_scripts(shell, marker):
    env = dict(os.environ, _XPR_COMPLETE=f"{shell}_source")
    r = subprocess.run([sys.executable, "-m", "expyre"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and marker in r.stdout and "_XPR_COMPLETE" in r.stdout, r.stderr


def test_completion_of_job_ids(root):
    x = ExPyRe("quick", jobfuncs.add, args=[1, 2])
    from expyre.cli.main_show import complete_job_id

    assert [c.value for c in complete_job_id(None, None, "qui")] == [x.id]
    assert complete_job_id(None, None, "zzz") == []


def test_control_help_has_no_backslash_b_and_yes_only_on_cancel():
    for op in ("cancel", "hold", "release"):
        text = xpr(op, "--help").stdout
        assert "\\b" not in text and "\b" not in text and "Example:" in text
        assert ("--yes" in text) == (op == "cancel")
        assert "cancel only" not in text
    r = xpr("hold", "-y", "-n", "x")
    assert r.exit_code == 2 and "No such option" in r.stderr


def test_ls_long_does_not_say_running_for_a_finished_job(root):
    x = ExPyRe("quick", jobfuncs.add, args=[1, 2])
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.get_results(timeout=60, check_interval=0.5) == 3
    config.db.update(x.id, remote_status="running")  # the last state a poll recorded
    line = [ln for ln in xpr("ls", "-l").stdout.splitlines() if ln.startswith(x.id)][0]
    assert "(finished)" in line and "running" not in line
    waiting = ExPyRe("waiting", jobfuncs.add, args=[3, 4])
    config.db.update(waiting.id, status="submitted", remote_id="123", remote_status="queued (Priority)")
    line = [ln for ln in xpr("ls", "-l").stdout.splitlines() if ln.startswith(waiting.id)][0]
    assert "queued (Priority)" in line


def test_logs_remote_command_reads_new_bytes_in_pieces(root, tmp_path, monkeypatch):
    """The one command of a remote read, run by bash here: new bytes only, at most MAX_READ a
    read, offsets kept across reads, the result markers listed."""
    import expyre.logs as logs_mod
    from expyre.builtin.local_transport import LocalTransport
    from expyre.logs import JobLogs

    x = ExPyRe("quick", jobfuncs.add, args=[1, 2])
    d = tmp_path / "remote dir"
    d.mkdir()
    (d / "_expyre_stdout").write_text("héllo world\n")
    (d / "_expyre_job.out").write_text("")

    class FakeSystem:
        host = "somewhere"
        transport = LocalTransport(None)

    monkeypatch.setattr(logs_mod, "MAX_READ", 5)
    logs = JobLogs(x.id)
    got, sizes = [], []
    for _ in range(4):
        data, markers = logs._read_remote(FakeSystem, str(d), None)
        for f, (size, raw) in data.items():
            logs.offsets[f] = size
            got.append(raw)
        sizes.append(logs.offsets["_expyre_stdout"])
    assert b"".join(got) == "héllo world\n".encode() and sizes == [5, 10, 13, 13] and markers == set()
    with (d / "_expyre_stdout").open("a") as f:
        f.write("more\n")
    (d / "_expyre_job_failed").write_bytes(b"x")
    data, markers = logs._read_remote(FakeSystem, str(d), None)
    assert data["_expyre_stdout"] == (18, b"more\n") and markers == {"_expyre_job_failed"}
    data, _ = JobLogs(x.id)._read_remote(FakeSystem, str(d), 1)
    assert data["_expyre_stdout"] == (18, b"more\n")
