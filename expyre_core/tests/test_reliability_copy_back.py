"""Copy back from a run directory: atomic, result markers last, repaired when found bad.

A system with a ``rundir`` runs its jobs in ``<rundir>/run_<id>`` and copies them back to the
stage directory ``<root>/run_<id>``. These tests use real driver processes on a real file system
(the built-in ``local`` scheduler with a ``rundir``): a driver killed with SIGKILL in the middle of
copying a large result back, a truncated result in the stage directory, and several drivers
getting the same calls from one root at once.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import signal
import sqlite3
import stat
import time
from pathlib import Path

import pytest

import xpr_core_jobfuncs as jobfuncs
from expyre import _faults, config, files
from expyre.errors import ExPyReResultError
from expyre.func import ExPyRe
from expyre.layout import FAILED, SUCCEEDED
from expyre.testing import copy_back_value, isolated_root, run_copy_back_driver, run_copy_back_drivers

SYSTEM = "lr"
SMALL = {"max_time": "5m", "n": (1, "tasks")}


def rundir_system(tmp_path: Path) -> dict:
    return {SYSTEM: {"host": None, "scheduler": "local", "rundir": str(tmp_path / "rundir")}}


def make_root(tmp_path: Path) -> Path:
    root = tmp_path / "_expyre"
    root.mkdir(mode=0o700)
    (root / "config.json").write_text(json.dumps({"systems": rundir_system(tmp_path)}))
    return root


def submissions(rundir: Path) -> collections.Counter:
    """How many times each job id was handed to the local queue (its request files)."""
    names: collections.Counter = collections.Counter()
    for sub in ("jobs", "done"):
        d = rundir / "_expyre_localq" / sub
        for f in d.glob("*.json") if d.exists() else []:
            names[json.loads(f.read_text())["name"]] += 1
    return names


def statuses(root: Path) -> dict[str, str]:
    con = sqlite3.connect(root / "jobs.db")
    try:
        return {r[0]: r[1] for r in con.execute("SELECT id, status FROM jobs")}
    finally:
        con.close()


# -- expyre.files ---------------------------------------------------------------------------------
def test_copy_tree_puts_result_markers_last_and_skips_temporary_files(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    for name in (SUCCEEDED, "_expyre_stdout", "zzz_out.txt", "sub/inner.txt", "._expyre_job_failed.tmp.77"):
        (src / name).write_text(name)
    os.symlink("zzz_out.txt", src / "link")
    order: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (order.append(Path(b).name), real_replace(a, b))[1])
    assert files.copy_tree(src, dst) == 5
    assert order[-1] == SUCCEEDED and sorted(order[:-1]) == sorted(["_expyre_stdout", "zzz_out.txt", "inner.txt", "link"])
    assert (dst / SUCCEEDED).read_text() == SUCCEEDED and (dst / "sub" / "inner.txt").read_text() == "sub/inner.txt"
    assert os.readlink(dst / "link") == "zzz_out.txt"
    assert not (dst / "._expyre_job_failed.tmp.77").exists(), "a writer's temporary file is no output"
    assert os.stat(dst / SUCCEEDED).st_mtime_ns == os.stat(src / SUCCEEDED).st_mtime_ns
    order.clear()
    assert files.copy_tree(src, dst) == 0 and order == [], "unchanged files are not copied again"
    assert not [n for n in os.listdir(dst) if n.startswith(".")], "no temporary file left"


def test_copy_tree_copies_only_markers_that_existed_before_the_other_files(tmp_path, monkeypatch):
    """A job that ends while its directory is being copied: its marker appears after the copy
    listed the markers, so it is not copied (its stdout, being written, may be copied half)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "_expyre_stdout").write_text("first half")
    real_copy_file = files.copy_file

    def copy_file(a, b, **kw):
        if Path(a).name == "_expyre_stdout":
            (src / SUCCEEDED).write_bytes(pickle.dumps(1))  # the job ends meanwhile
        return real_copy_file(a, b, **kw)

    monkeypatch.setattr(files, "copy_file", copy_file)
    files.copy_tree(src, dst)
    assert (dst / "_expyre_stdout").exists() and not (dst / SUCCEEDED).exists()
    files.copy_tree(src, dst)
    assert (dst / SUCCEEDED).exists()


def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".{SUCCEEDED}.tmp.{pid}.1"
    stale.write_text("half")
    mine = files.temp_name(tmp_path / SUCCEEDED)
    mine.write_text("being written")
    runner = tmp_path / f".{FAILED}.tmp.{pid}"  # a runner's: may be a live job's on another node
    runner.write_text("x")
    hold = tmp_path / f"{files.HOLDING_PREFIX}{pid}_1_0"
    hold.mkdir()
    assert sorted(files.remove_stale_temps(tmp_path)) == sorted([stale, hold])
    assert mine.exists() and runner.exists()


# -- (a) kill -9 in the middle of the copy back ----------------------------------------------------
BIG = 8 << 20


def test_kill_in_the_middle_of_copying_a_large_result_back(tmp_path, monkeypatch):
    """The driver is killed (SIGKILL) when 1 MiB of an 8 MiB result is copied back. Nothing is
    left under the result's name; a new driver gets the value, with no rerun and no force_rerun."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = make_root(tmp_path)
    crashed = run_copy_back_driver(root, tmp_path, SYSTEM, 1, BIG, env={"EXPYRE_FAULT_POINT": files.COPY_BACK_POINT})
    assert crashed.returncode == -signal.SIGKILL, f"the fault point was not reached: {crashed.stderr[-2000:]}"
    [(job_id, status)] = statuses(root).items()
    assert status in ("submitted", "started")
    stage, run = root / f"run_{job_id}", tmp_path / "rundir" / f"run_{job_id}"
    assert (run / SUCCEEDED).stat().st_size > BIG
    assert not (stage / SUCCEEDED).exists(), "a partial result under the result's name"
    partial = [n for n in os.listdir(stage) if n.startswith(f".{SUCCEEDED}.tmp.")]
    assert partial and (stage / partial[0]).stat().st_size < BIG, "killed in the middle of the copy"

    again = run_copy_back_driver(root, tmp_path, SYSTEM, 1, BIG)
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads(again.stdout.strip().splitlines()[-1])
    assert report == {"ids": [job_id], "failures": []}
    assert statuses(root) == {job_id: "succeeded"}
    assert submissions(tmp_path / "rundir") == {job_id: 1}, "run again"
    assert not any(n.startswith("_expyre_prev_") for n in os.listdir(stage)), "forced to run again"
    assert (stage / SUCCEEDED).read_bytes() == (run / SUCCEEDED).read_bytes()
    assert not [n for n in os.listdir(stage) if n.startswith(".")], "the dead driver's temporary file is removed"


def test_copy_point_is_listed():
    assert files.COPY_BACK_POINT in _faults.COPY_POINTS


# -- (b) a truncated result in the stage directory ---------------------------------------------------
def _finished(tmp_path: Path, name: str, fn, args) -> ExPyRe:
    x = ExPyRe(name, fn, args=args)
    x.start(resources=SMALL, system_name=SYSTEM, partial_node=True)
    try:
        x.get_results(timeout=300, check_interval=0.2, quiet=True)
    except Exception:  # noqa: BLE001 - a failing job is finished too
        pass
    return x


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_result_is_fetched_again_from_the_run_directory(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", rundir_system(tmp_path)):
        x = _finished(tmp_path, "trunc", jobfuncs.add, [b"a" * 300_000, b"b"])
        good = (x.stage_dir / SUCCEEDED).read_bytes()
        _truncate(x.stage_dir / SUCCEEDED)
        again = ExPyRe("trunc", jobfuncs.add, args=[b"a" * 300_000, b"b"])  # the next run of the script
        assert again.id == x.id and again.status == "succeeded"
        with caplog.at_level("WARNING", logger="expyre.func"):
            assert again.get_results(timeout=60, quiet=True) == b"a" * 300_000 + b"b"
        assert (x.stage_dir / SUCCEEDED).read_bytes() == good, "repaired in the stage directory"
        assert "fetching it again from" in caplog.text
        assert not [n for n in os.listdir(x.stage_dir) if n.startswith(".")]
        assert submissions(tmp_path / "rundir") == {x.id: 1}


def test_truncated_error_file_is_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", rundir_system(tmp_path)):
        x = _finished(tmp_path, "trunc_fail", jobfuncs.raise_custom, ["the message"])
        _truncate(x.stage_dir / FAILED)
        with pytest.raises(Exception, match="the message") as info:
            x.get_results(timeout=60, quiet=True)
        assert not isinstance(info.value, ExPyReResultError)


def test_result_bad_in_both_places_names_both_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", rundir_system(tmp_path)):
        x = _finished(tmp_path, "both_bad", jobfuncs.add, [b"a" * 300_000, b"b"])
        run = tmp_path / "rundir" / x.stage_dir.name
        _truncate(run / SUCCEEDED)
        _truncate(x.stage_dir / SUCCEEDED)
        with pytest.raises(ExPyReResultError) as info:
            x.get_results(timeout=60, quiet=True)
        msg = str(info.value)
        assert str(x.stage_dir / SUCCEEDED) in msg and str(run / SUCCEEDED) in msg, msg
        assert "force_rerun" in msg
        assert (x.stage_dir / SUCCEEDED).exists(), "the stage directory's file is kept"
        assert config.db.get(x.id)["status"] != "processed"


# -- (c) concurrent drivers -------------------------------------------------------------------------
def _stress(tmp_path: Path, monkeypatch, n_procs: int, n_calls: int, size: int) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = make_root(tmp_path)
    t0 = time.monotonic()
    reports = run_copy_back_drivers(root, tmp_path, SYSTEM, n_procs, n_calls, size)
    failures = [f for r in reports for f in r["failures"]]
    assert not failures, f"{len(failures)} of {n_procs * n_calls} calls failed:\n" + "\n".join(failures[:10])
    ids = {tuple(r["ids"]) for r in reports}
    assert len(ids) == 1, "identical calls made different jobs"
    [job_ids] = ids
    assert statuses(root) == {i: "succeeded" for i in job_ids}
    assert submissions(tmp_path / "rundir") == {i: 1 for i in job_ids}
    for i, job_id in enumerate(job_ids):
        stage = root / f"run_{job_id}"
        assert pickle.loads((stage / SUCCEEDED).read_bytes()) == copy_back_value(i, size)
        assert not [n for n in os.listdir(stage) if n.startswith(".")], "temporary files left"
        assert stat.S_IMODE(stage.stat().st_mode) == 0o700
    print(f"{n_procs} drivers x {n_calls} calls of {size} bytes: {time.monotonic() - t0:.1f} s")


def test_concurrent_drivers_never_see_half_written_files(tmp_path, monkeypatch):
    """4 driver processes construct, start and get the same 25 calls (400 kB results each) on
    one root with a run directory: every call succeeds in every driver, each job runs once."""
    _stress(tmp_path, monkeypatch, 4, 25, 400_000)


@pytest.mark.slow
def test_concurrent_drivers_eight_by_fifty(tmp_path, monkeypatch):
    """The full size: 8 drivers x the same 50 calls."""
    _stress(tmp_path, monkeypatch, 8, 50, 400_000)


def test_replace_incomplete_stage_dir_by_renames(tmp_path):
    from expyre.layout import TASK
    from expyre.staging import StagedCall, replace_incomplete

    def staged(tag: str) -> StagedCall:
        d = tmp_path / f".tmp_run_{tag}"
        d.mkdir()
        (d / TASK).write_text(tag)
        return StagedCall(d, "digest", {})

    stage = tmp_path / "run_x"
    replace_incomplete(staged("a"), stage)  # none there
    assert (stage / TASK).read_text() == "a"
    replace_incomplete(staged("b"), stage)  # complete already: ours is discarded
    assert (stage / TASK).read_text() == "a"
    (stage / TASK).unlink()
    replace_incomplete(staged("c"), stage)  # without its call: replaced
    assert (stage / TASK).read_text() == "c"
    assert sorted(os.listdir(tmp_path)) == ["run_x"], "nothing left beside it"
