"""expyre.Executor on the zero-config local system: futures backed by ExPyRe jobs, packed map,
per-element failures, cancel, restart mid-map, partial results, one poll per tick, progress."""

from __future__ import annotations

import asyncio
import re
import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import test_executor_funcs as funcs
from expyre import Executor, ExPyReFuture, config
from expyre.executor import CANCELLED_BY_EXPYRE
from expyre.func import ExPyReRemoteTraceback
from expyre.testing import wait_for

RES = {"max_time": "5m", "n": (1, "tasks")}
WHOLE_NODE = {"max_time": "5m", "n": (1, "nodes")}


def ex_(**kw):
    kw.setdefault("partial_node", True)
    return Executor(system_name="local", resources=kw.pop("resources", RES), check_interval=1, **kw)


def test_map_200_packed_in_order(root):
    with ex_(name="sq") as ex:
        results = list(ex.map(funcs.square, range(200), chunksize=50))
    assert results == [i * i for i in range(200)]
    rows = config.db.jobs(name="sq_.*")
    assert sorted(r["name"] for r in rows) == ["sq_0", "sq_1", "sq_2", "sq_3"]
    # ordinary ExPyRe jobs, marked processed at the clean end of the with block
    assert {r["status"] for r in rows} == {"processed"}
    assert ex.stats["submit_batches"] == 1 and ex.stats["submitted_jobs"] == 4


def test_map_multiple_iterables_and_uneven_chunks(root):
    with ex_() as ex:
        assert list(ex.map(funcs.add, range(7), range(10, 17), chunksize=3)) == [i + i + 10 for i in range(7)]
    assert sorted(r["name"] for r in config.db.jobs(name="add_.*")) == ["add_0", "add_1", "add_2"]


def test_one_raising_element_fails_only_its_future(root):
    with ex_() as ex:
        fs = ex.map_futures(funcs.maybe_raise, range(20), chunksize=8)
        cf.wait(fs, timeout=60)
        for i, f in enumerate(fs):
            if i == 13:
                exc = f.exception()
                assert isinstance(exc, ValueError) and "unlucky 13" in str(exc)
                assert isinstance(exc.__cause__, ExPyReRemoteTraceback) and "maybe_raise" in exc.__cause__.tb
            else:
                assert f.result() == i
        # map() yields up to the failed element, then raises its exception there
        it = ex.map(funcs.maybe_raise, range(20), chunksize=8)
        assert [next(it) for _ in range(13)] == list(range(13))
        with pytest.raises(ValueError, match="unlucky 13"):
            next(it)
    # the chunk holding the raising element is recorded failed, saying how many calls failed, and
    # stays so after the clean end of the block (`xpr ls -s failed` shows it); the others are processed
    rows = config.db.jobs(name="maybe_raise_1")
    assert rows and all(r["status"] == "failed" and r["reason"] == "1 of 8 calls failed" for r in rows), rows
    assert {r["status"] for r in config.db.jobs(name="maybe_raise_[02]")} == {"processed"}
    listed = subprocess.run([sys.executable, "-m", "expyre", "ls", "-s", "failed", "-l"], capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, COLUMNS="300"))
    assert listed.returncode == 0, listed.stderr
    assert "maybe_raise_1" in listed.stdout and "1 of 8 calls failed" in listed.stdout, listed.stdout
    assert "maybe_raise_0" not in listed.stdout


def test_submit_future_protocol(root):
    called = []
    with ex_() as ex:
        f = ex.submit(funcs.add, 2, b=5)
        assert isinstance(f, ExPyReFuture) and isinstance(f, cf.Future)
        f.add_done_callback(lambda fut: called.append(fut.result()))
        g = ex.submit(funcs.maybe_raise, 13)
        done = [x for x in cf.as_completed([f, g], timeout=60)]
        assert set(done) == {f, g}
        assert f.result() == 7 and f.done() and not f.cancelled()
        assert isinstance(g.exception(), ValueError)
        assert config.db.get(f.job_id)["name"] == "add"
    assert called == [7]
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(funcs.add, 1, 1)


def test_asyncio_await(root):
    async def main(ex):
        fs = [ex.submit(funcs.square, i) for i in range(3)]
        one = await fs[0]
        rest = await asyncio.gather(*(asyncio.wrap_future(f) for f in fs[1:]))
        return [one, *rest]

    with ex_() as ex:
        assert asyncio.run(main(ex)) == [0, 1, 4]


def test_cancel_queued_and_running(root, tmp_path):
    flag = tmp_path / "go"
    with ex_(resources=WHOLE_NODE) as ex:
        running = ex.submit(funcs.sleep_in_file, 1, str(flag))
        wait_for(lambda: running.running(), 60, "the first job to run")
        queued = ex.submit(funcs.sleep_in_file, 2, str(flag))  # the machine is full: stays queued
        wait_for(lambda: config.db.get(queued.job_id)["status"] == "submitted", 60, "the second job to be submitted")
        assert not queued.running()
        assert queued.cancel() and queued.cancelled()
        assert not running.cancel()  # already running: like concurrent.futures, not cancellable
        row = config.db.get(queued.job_id)
        assert row["reason"] == "cancel requested by user"
        flag.write_text("")
        assert running.result(timeout=60) == 1
        with pytest.raises(cf.CancelledError):
            queued.result()
    # the cancelled job ends as died in the jobs database (the scheduler killed it)
    wait_for(lambda: config.db.get(queued.job_id)["status"] in ("died", "processed"), 60, "cancelled job to die")


def test_cancel_packed_needs_every_element(root, tmp_path):
    flag = tmp_path / "go"
    with ex_(resources=WHOLE_NODE) as ex:
        blocker = ex.submit(funcs.sleep_in_file, 0, str(flag))
        wait_for(lambda: blocker.running(), 60, "the blocking job to run")
        fs = ex.map_futures(funcs.square, range(4), chunksize=2)
        assert fs[0].cancel()
        assert config.db.get(fs[0].job_id)["reason"] is None  # fs[1] still wants the job
        assert fs[1].cancel()
        flag.write_text("")
        assert [f.result(timeout=60) for f in fs[2:]] == [4, 9]
        assert fs[0].cancelled() and fs[1].cancelled()
    assert "cancel" in (config.db.get(fs[0].job_id)["reason"] or "")


def test_map_iterator_closed_early_cancels_rest(root, tmp_path):
    flag = tmp_path / "go"
    with ex_(resources=WHOLE_NODE) as ex:
        it = ex.map(funcs.sleep_in_file, range(3), [str(flag)] * 3, chunksize=1)
        wait_for(lambda: any(f.running() for f in ex.futures()), 60, "a job to run")
        it.close()
        flag.write_text("")
        fs = ex.futures()
        cf.wait(fs, timeout=60)
        assert sum(f.cancelled() for f in fs) == 2  # one ran (uncancellable), two were queued
    # the user did not cancel these calls: the jobs' reason says that expyre did, and why
    reasons = [config.db.get(f.job_id)["reason"] for f in fs if f.cancelled()]
    assert reasons == [CANCELLED_BY_EXPYRE] * 2, reasons


def test_partial_results_before_chunk_ends(root, tmp_path):
    flag = tmp_path / "go"
    with ex_() as ex:
        fs = ex.map_futures(funcs.sleep_in_file, [0, 1], [str(tmp_path), str(flag)], chunksize=2)
        assert fs[0].result(timeout=60) == 0  # element 0 done while element 1 still waits
        assert not fs[1].done()
        assert config.db.get(fs[0].job_id)["status"] in ("submitted", "started")
        flag.write_text("")
        assert fs[1].result(timeout=60) == 1


def test_one_status_query_per_tick(root, monkeypatch):
    from expyre.system import System

    calls = []
    orig = System.status

    def counting(self, ids):
        calls.append(len(ids))
        return orig(self, ids)

    monkeypatch.setattr(System, "status", counting)
    with ex_() as ex:
        fs = [ex.submit(funcs.square, i) for i in range(20)]
        assert [f.result(timeout=120) for f in fs] == [i * i for i in range(20)]
    assert len(calls) <= ex.stats["ticks"], (len(calls), ex.stats)
    assert max(calls) > 1  # each query covered many jobs


def test_restart_mid_map_reuses_jobs(root, tmp_path):
    """A driver killed mid-map: running the same map again adopts every chunk job (finished ones
    give their results at once, running ones are not submitted again)."""
    flag = tmp_path / "go"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(funcs.__file__).parent)!r})
        from expyre import Executor
        import test_executor_funcs as funcs
        ex = Executor(system_name="local", resources={RES!r}, partial_node=True, check_interval=1)
        args = [0, 1, 2, 3, 4, 5]
        flags = [{str(tmp_path)!r}] * 3 + [{str(flag)!r}] * 3
        for r in ex.map(funcs.sleep_in_file, args, flags, chunksize=3):
            print(r, flush=True)
        print("finished", flush=True)
    """))
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert [proc.stdout.readline().strip() for _ in range(3)] == ["0", "1", "2"]
        # partial results hand out the first chunk's values before its row says succeeded: wait
        # for both rows (the driver's next poll records the first chunk's end)
        states = lambda: {r["name"]: r["status"] for r in config.db.jobs(name="sleep_in_file_.*")}  # noqa: E731
        wait_for(lambda: states() == {"sleep_in_file_0": "succeeded", "sleep_in_file_1": "started"}, 60,
                 "the first chunk recorded as succeeded and the second started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = {r["name"]: r for r in config.db.jobs(name="sleep_in_file_.*")}
    assert before["sleep_in_file_0"]["status"] == "succeeded"
    flag.write_text("")
    with ex_() as ex:
        out = list(ex.map(funcs.sleep_in_file, range(6), [str(tmp_path)] * 3 + [str(flag)] * 3, chunksize=3))
        ids = {f.job_id for f in ex.futures()}
    assert out == list(range(6))
    after = {r["name"]: r for r in config.db.jobs(name="sleep_in_file_.*")}
    assert ids == {before[n]["id"] for n in before} and len(after) == 2
    for n in before:
        assert after[n]["remote_id"] == before[n]["remote_id"]  # not submitted again


def test_progress_display_counts(root, monkeypatch):
    import expyre.executor as exmod

    shown = []

    class Recorder:
        def __init__(self, name, total, mode, every=None):
            assert mode == "terminal"
            self.mode = mode

        def update(self, text, completed, total):
            shown.append((text, completed, total))

        def close(self):
            shown.append("hidden")

    monkeypatch.setattr(exmod, "Display", Recorder)
    monkeypatch.setattr(exmod, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(exmod, "display_mode", lambda requested=True: "terminal" if requested else None)
    with ex_() as ex:
        fs = ex.map_futures(funcs.sleep_then, range(6), [0.3] * 6, chunksize=2)
        for f in fs:  # no caller waits on the futures: no display
            wait_for(f.done, 60, "a call to finish")
        assert shown == []
        ex.map_futures(funcs.sleep_then, range(4), [0.5] * 4, chunksize=1)
        ex.wait()
    counts = [c for c in shown if c != "hidden"]
    assert counts, shown
    for text, done, total in counts:
        running, queued, failed = (int(w) for w in re.findall(r"(\d+) (?:running|queued|failed)", text))
        assert total == 10 and done + running + queued == total and failed == 0, text
    assert shown[-1] == "hidden"


def test_progress_quiet(root, monkeypatch, capfd):
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    import expyre.executor as exmod

    monkeypatch.setattr(exmod, "SHOW_AFTER", 0.0)
    with ex_() as ex:
        assert list(ex.map(funcs.sleep_then, range(2), [0.3] * 2)) == [0, 1]
    assert capfd.readouterr().err == ""


def test_errors_surface_in_futures(root):
    with ex_(resources={"max_time": "5m", "n": (1, "tasks"), "partitions": "nope"}) as ex:
        f = ex.submit(funcs.square, 3)
        with pytest.raises(Exception, match="nope|partition"):
            f.result(timeout=30)
    with pytest.raises(TypeError, match="unknown argument"):
        Executor(system_name="local", resourcez={})


def test_restart_reruns_a_chunk_with_a_failed_element(root, tmp_path):
    """Rule: on restart a finished packed chunk is reused only if every call in it returned. A chunk
    recorded failed (some calls raised) is not adopted: the same map makes a new job for it, and
    the old one stays failed in the jobs database."""
    flag = str(tmp_path / "fixed")
    with pytest.raises(KeyboardInterrupt):
        with ex_() as ex:
            fs = ex.map_futures(funcs.fail_until_file, range(20), [flag] * 20, chunksize=8)
            cf.wait(fs, timeout=60)
            assert isinstance(fs[13].exception(), ValueError)
            # partial results can complete the futures before the chunks' rows say so
            wait_for(lambda: sorted(r["status"] for r in config.db.jobs(name="fail_until_file_.*"))
                     == ["failed", "succeeded", "succeeded"], 60, "the chunks' rows to reach their final state")
            raise KeyboardInterrupt  # the driver dies: nothing is marked processed
    before = {r["name"]: r for r in config.db.jobs(name="fail_until_file_.*")}
    assert before["fail_until_file_1"]["status"] == "failed"
    assert before["fail_until_file_1"]["reason"] == "1 of 8 calls failed"
    Path(flag).write_text("")  # the cause of the failure is fixed
    with ex_() as ex:
        assert list(ex.map(funcs.fail_until_file, range(20), [flag] * 20, chunksize=8)) == list(range(20))
        ids = {f.job_id for f in ex.futures()}
    after = {r["id"]: r for r in config.db.jobs(name="fail_until_file_.*")}
    assert len(after) == 4 and len(ids) == 3
    assert before["fail_until_file_0"]["id"] in ids and before["fail_until_file_2"]["id"] in ids  # reused
    assert before["fail_until_file_1"]["id"] not in ids  # run again, as a new job
    assert after[before["fail_until_file_1"]["id"]]["status"] == "failed"  # still listed as failed
    assert {r["status"] for i, r in after.items() if i in ids} == {"processed"}


def test_restart_reruns_an_unrecorded_chunk_with_a_failed_element(root, tmp_path):
    """A chunk whose result (with a raising call) is here but whose end the dead driver did not
    record is adopted and run again as a whole (``force_rerun``: its earlier outputs archived)."""
    flag = str(tmp_path / "fixed")
    with pytest.raises(KeyboardInterrupt):
        with ex_() as ex:
            fs = ex.map_futures(funcs.fail_until_file, range(20), [flag] * 20, chunksize=8)
            cf.wait(fs, timeout=60)
            wait_for(lambda: sorted(r["status"] for r in config.db.jobs(name="fail_until_file_.*"))
                     == ["failed", "succeeded", "succeeded"], 60, "the chunks' rows to reach their final state")
            raise KeyboardInterrupt
    before = {r["name"]: r for r in config.db.jobs(name="fail_until_file_.*")}
    # as a driver killed after the job wrote its result, before it read it, leaves the row
    config.db.update(before["fail_until_file_1"]["id"], status="started", reason=None, force=True)
    Path(flag).write_text("")
    with ex_() as ex:
        assert list(ex.map(funcs.fail_until_file, range(20), [flag] * 20, chunksize=8)) == list(range(20))
        ids = {f.job_id for f in ex.futures()}
    after = {r["name"]: r for r in config.db.jobs(name="fail_until_file_.*")}
    assert ids == {r["id"] for r in before.values()} and len(after) == 3  # the same three jobs
    assert after["fail_until_file_0"]["remote_id"] == before["fail_until_file_0"]["remote_id"]  # reused
    assert after["fail_until_file_1"]["remote_id"] != before["fail_until_file_1"]["remote_id"]  # run again
    assert after["fail_until_file_1"]["status"] == "processed"
    prev = Path(after["fail_until_file_1"]["from_dir"]) / "_expyre_prev_1"
    assert (prev / "_expyre_job_succeeded").exists() and (prev / "_expyre_elem_5").exists()


def test_array_on_a_scheduler_without_arrays_falls_back(root, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="expyre.func")
    with ex_(array=True) as ex:
        assert list(ex.map(funcs.square, range(10), chunksize=3)) == [i * i for i in range(10)]
        assert [f.result() for f in [ex.submit(funcs.add, 1, 2)]] == [3]
    assert "has no job arrays here" in caplog.text
    assert config.get_system("local").array_limit() is None
