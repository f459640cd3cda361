"""A job's stage directory is read only through a verified directory descriptor
(:mod:`expyre.stagedir`): results, the Executor's partial results, stdout/stderr, ``xpr logs``
and ``xpr show`` never follow a symlink (to the directory or to a file in it), never read a
directory another user owns or can write, never block on a FIFO, and a directory swapped for a
symlink while the results are read never yields the forged value. Real jobs on the zero-config
``local`` system, real files and a real second user (``xprother``, see test_trust_ownership.py)."""

from __future__ import annotations

import json
import operator
import os
import pickle
import shutil
import threading
from pathlib import Path

import pytest

import test_executor_funcs as funcs
import xpr_trust_jobfuncs as jf
from expyre import Executor, config
from expyre.builtin import localq
from expyre.func import ExPyRe, ExPyReResultError
from expyre.logs import JobLogs
from expyre.show import describe
from expyre.stagedir import UnsafePathError, open_stage_dir
from expyre.testing import wait_for
from test_trust_ownership import OTHER, other_user  # noqa: F401 - the fixture

RES = {"max_time": "5m", "n": (1, "tasks")}
SUCCEEDED = "_expyre_job_succeeded"
STDOUT = "_expyre_stdout"


class _Loud:
    """Unpickling it creates the directory ``path``: shows whether a file was ever loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def finished_job(name: str = "sd", *args) -> ExPyRe:
    x = ExPyRe(name, operator.add, args=list(args or (1, 2)))
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.get_results(timeout=60, check_interval=0.5, quiet=True) == sum(args or (1, 2))
    return x


def again(x: ExPyRe) -> ExPyRe:
    """A fresh handle of the same job (as a re-run script would have)."""
    return ExPyRe.from_jobsdb(config.db.get(x.id))[0]


def forged_dir(tmp_path: Path, loaded: Path) -> Path:
    """A directory that looks like a finished job's, with a result whose loading is observable."""
    forged = tmp_path / "forged"
    forged.mkdir(mode=0o700)
    (forged / SUCCEEDED).write_bytes(pickle.dumps(_Loud(loaded)))
    (forged / STDOUT).write_text("FORGED output\n")
    return forged


# -- the Executor's partial results ----------------------------------------------------------------

def test_planted_element_symlink_is_refused_by_map(root, tmp_path):
    """A ``_expyre_elem_<i>`` planted as a symlink to a pickle outside the stage dir, while the
    packed job runs, fails that element's future with an error naming it; it is never unpickled."""
    loaded = tmp_path / "outside-pickle-was-loaded"
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(pickle.dumps(_Loud(loaded)))
    flag = tmp_path / "go"
    with Executor(system_name="local", resources=RES, partial_node=True, check_interval=1) as ex:
        fs = ex.map_futures(funcs.sleep_in_file, [0, 1], [str(flag)] * 2, chunksize=2)
        wait_for(lambda: fs[0].running(), 60, "the packed job to start")
        planted = fs[0].xpr.stage_dir / "_expyre_elem_1"
        planted.symlink_to(outside)
        exc = fs[1].exception(timeout=60)
        assert isinstance(exc, ExPyReResultError), repr(exc)
        assert str(planted) in str(exc) and "symlink" in str(exc) and "element 1" in str(exc)
        assert not fs[0].done()  # the other element is unaffected
        flag.write_text("")
        assert fs[0].result(timeout=60) == 0
        assert fs[1].exception(timeout=0) is exc  # the job's own value does not overwrite the refusal
    assert not loaded.exists()


# -- the stage directory itself ---------------------------------------------------------------------

def test_stage_dir_replaced_by_symlink_after_the_job_finished(root, tmp_path):
    x = finished_job()
    loaded = tmp_path / "forged-result-was-loaded"
    forged = forged_dir(tmp_path, loaded)
    shutil.move(str(x.stage_dir), str(tmp_path / "real"))
    x.stage_dir.symlink_to(forged)
    y = again(x)
    with pytest.raises(ExPyReResultError) as info:
        y.get_results(timeout=10, check_interval=0.5, quiet=True)
    msg = str(info.value)
    assert str(x.stage_dir) in msg and "symlink" in msg and str(forged) in msg and "force_rerun" in msg
    assert not loaded.exists() and "FORGED" not in (y.stdout or "")
    # nor are its output shown (xpr logs, xpr show)
    with pytest.raises(UnsafePathError, match="symlink"):
        JobLogs(x.id).read()
    info2 = describe(x.id, query_scheduler=False)
    assert any("symlink" in p for p in info2["problems"]) and info2["started"] is None


def test_group_writable_stage_dir_is_refused(root):
    x = finished_job()
    os.chmod(x.stage_dir, 0o770)
    with pytest.raises(ExPyReResultError) as info:
        again(x).get_results(timeout=10, check_interval=0.5, quiet=True)
    msg = str(info.value)
    assert str(x.stage_dir) in msg and "writable by group or others" in msg and "0770" in msg
    assert f"chmod go-w {x.stage_dir}" in msg
    with pytest.raises(UnsafePathError, match="writable by group"):
        JobLogs(x.id).read()
    os.chmod(x.stage_dir, 0o700)
    assert again(x).get_results(timeout=10, quiet=True) == 3  # the fix works


def test_stage_dir_owned_by_another_user_is_refused(root, other_user):  # noqa: F811
    name, uid = other_user
    x = finished_job()
    os.chown(x.stage_dir, uid, -1)
    with pytest.raises(ExPyReResultError) as info:
        again(x).get_results(timeout=10, check_interval=0.5, quiet=True)
    msg = str(info.value)
    assert str(x.stage_dir) in msg and f"owned by {name} (uid {uid})" in msg and "0700" in msg and "chown" in msg
    os.chown(x.stage_dir, 0, -1)
    # a result file of another user's is refused too (the directory is fine again)
    os.chown(x.stage_dir / SUCCEEDED, uid, -1)
    with pytest.raises(ExPyReResultError, match=f"{SUCCEEDED} is owned by {name}"):
        again(x).get_results(timeout=10, quiet=True)


def test_expyre_root_checked_before_the_stage_dir(root, tmp_path):
    x = finished_job()
    os.chmod(config.root, 0o777)
    try:
        with pytest.raises(UnsafePathError, match="writable by group or others") as info:
            open_stage_dir(x.stage_dir)
        assert str(config.root) in str(info.value) and "0777" in str(info.value)
    finally:
        os.chmod(config.root, 0o700)


# -- the files in it --------------------------------------------------------------------------------

def _get_results_in_thread(x: ExPyRe) -> dict:
    """``get_results`` of ``x`` in a daemon thread (a read blocked on a FIFO must not hang the
    test); returns ``{"value"|"error": ...}`` once it has ended, fails if it has not in 60 s."""
    out: dict = {}

    def run():
        try:
            out["value"] = x.get_results(timeout=10, check_interval=0.5, quiet=True)
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "get_results blocked on the result marker"
    return out


def test_result_marker_that_is_a_fifo_is_refused_without_blocking(root):
    x = finished_job()
    marker = x.stage_dir / SUCCEEDED
    marker.unlink()
    os.mkfifo(marker, 0o600)
    out = _get_results_in_thread(again(x))
    err = out.get("error")
    assert isinstance(err, ExPyReResultError), out
    assert str(marker) in str(err) and "a FIFO, not a regular file" in str(err)


def test_result_marker_that_is_a_directory_is_refused(root):
    x = finished_job()
    marker = x.stage_dir / SUCCEEDED
    marker.unlink()
    marker.mkdir()
    out = _get_results_in_thread(again(x))
    err = out.get("error")
    assert isinstance(err, ExPyReResultError), out
    assert str(marker) in str(err) and "a directory, not a regular file" in str(err)


def test_stdout_symlink_is_not_shown(root, tmp_path):
    x = finished_job()
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the job's output\n")
    out = x.stage_dir / STDOUT
    out.unlink()
    out.symlink_to(secret)
    y = again(x)
    assert y.get_results(timeout=10, quiet=True) == 3
    assert "not for" not in (y.stdout or "")
    assert all("not for" not in text for _, text in JobLogs(x.id).read().chunks)


def test_local_queue_request_that_is_a_symlink_or_a_fifo_is_not_run(root, tmp_path):
    """The local queue's daemon opens a job request without following a symlink or blocking on a
    FIFO: neither is run, and the daemon goes on running real jobs."""
    q = root / "_expyre_localq"
    ran = tmp_path / "linked-job-ran"
    job_dir = tmp_path / "linked"
    job_dir.mkdir()
    (job_dir / "job.sh").write_text(f"touch {ran}\n")
    localq._mkdirs(str(q))
    req = {"jid": "linked1", "name": "linked", "dir": str(job_dir), "script": "job.sh", "stdout": "o",
           "stderr": "e", "ncores": 1, "max_time": None, "seq": 1}
    elsewhere = tmp_path / "request.json"
    elsewhere.write_text(json.dumps(req))
    (q / "env" / "linked1.json").write_text("{}")
    (q / "jobs" / "linked1.json").symlink_to(elsewhere)
    os.mkfifo(q / "jobs" / "fifo1.json", 0o600)
    xpr = ExPyRe("ours", jf.square, args=[4])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    assert xpr.get_results(timeout=120, check_interval=0.5, quiet=True) == 16
    log = q / "daemon.log"
    wait_for(lambda: "linked1.json is a symlink" in log.read_text() and "fifo1.json is not a regular file" in log.read_text(),
             60, "the daemon to log both planted requests")
    assert not ran.exists()
    assert localq.find(str(q), ["linked"]) == {}


def test_output_files_are_copied_without_following_a_symlink(root, tmp_path, monkeypatch, caplog):
    x = ExPyRe("outs", operator.add, args=[1, 2], output_files=["out*"])
    x.start(resources=RES, system_name="local", partial_node=True)
    assert x.get_results(timeout=60, check_interval=0.5, quiet=True) == 3
    secret = tmp_path / "secret.txt"
    secret.write_text("not an output\n")
    (x.stage_dir / "out.txt").write_text("result\n")
    (x.stage_dir / "out_link").symlink_to(secret)
    (x.stage_dir / "outdir").mkdir()
    (x.stage_dir / "outdir" / "a.txt").write_text("a\n")
    (x.stage_dir / "outdir" / "b").symlink_to(secret)
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    with caplog.at_level("WARNING"):
        assert again(x).get_results(timeout=10, quiet=True) == 3
    assert (here / "out.txt").read_text() == "result\n" and (here / "outdir" / "a.txt").read_text() == "a\n"
    assert not (here / "out_link").exists() and not (here / "outdir" / "b").exists()
    assert f"{x.stage_dir / 'out_link'} is a symlink" in caplog.text and "outdir/b is a symlink" in caplog.text


# -- the race ---------------------------------------------------------------------------------------

def test_swapping_the_stage_dir_while_reading_never_yields_the_forged_value(root, tmp_path):
    """A thread keeps swapping the stage directory with a symlink to a forged one (atomic
    renames) while ``get_results()`` runs many times: each call returns the real value or is
    refused; none returns the forged value or loads the forged pickle."""
    x = finished_job("race", 20, 22)
    loaded = tmp_path / "forged-result-was-loaded"
    forged = forged_dir(tmp_path, loaded)
    real = x.stage_dir
    aside = real.with_name(".aside")
    link = real.with_name(".link")
    link.symlink_to(forged)
    stop = threading.Event()
    swaps = [0]

    def swapper():
        while not stop.is_set():
            os.rename(real, aside)
            os.rename(link, real)      # the stage dir is now a symlink to the forged one
            os.rename(real, link)
            os.rename(aside, real)     # and the real one again
            swaps[0] += 1

    t = threading.Thread(target=swapper, daemon=True)
    t.start()
    values, refused = [], 0
    try:
        for _ in range(300):
            y = again(x)
            try:
                values.append(y.get_results(timeout=30, check_interval=0.1, quiet=True))
            except ExPyReResultError:
                refused += 1
            assert "FORGED" not in (y.stdout or "")
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive() and swaps[0] > 0
    assert not loaded.exists()
    assert set(values) <= {42}, set(values)
    assert len(values) + refused == 300
    assert again(x).get_results(timeout=10, quiet=True) == 42  # restored: read as before
