"""ExPyReFuture against what concurrent.futures documents, on the zero-config local system.

The ideas of CPython's own future tests (Lib/test/test_concurrent_futures: test_future,
test_as_completed, test_wait, test_shutdown), run on futures backed by real jobs instead of
futures put into a state by hand: a pending call is one queued behind a job that holds the whole
machine (``blocker``), a running call is that blocker itself.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading

import pytest

import test_executor_funcs as funcs
from expyre import Executor, ExPyReFuture, config
from expyre.testing import wait_for

RES = {"max_time": "5m", "n": (1, "tasks")}
WHOLE_NODE = {"max_time": "5m", "n": (1, "nodes")}
T = 120  # seconds: a generous deadline on a busy machine


def ex_(**kw):
    kw.setdefault("partial_node", True)
    return Executor(system_name="local", resources=kw.pop("resources", WHOLE_NODE), check_interval=1, **kw)


def blocked(ex, flag):
    """A running call that holds the whole machine until ``flag`` exists."""
    blocker = ex.submit(funcs.sleep_in_file, "blocker", str(flag))
    wait_for(blocker.running, T, "the blocking job to run")
    return blocker


def submitted(f):
    wait_for(lambda: config.db.get(f.job_id)["status"] == "submitted", T, f"job {f.job_id} to be submitted")
    return f


def test_cancel_states(root, tmp_path):
    """cancel(): True for a pending call, True again (and again) once cancelled, False for a
    running or finished call; cancelled()/running()/done() agree; the job is cancelled once."""
    flag = tmp_path / "go"
    with ex_() as ex:
        blocker = blocked(ex, flag)
        pending = submitted(ex.submit(funcs.square, 3))
        assert not pending.running() and not pending.done() and not pending.cancelled()
        assert "state=pending" in repr(pending)
        assert pending.cancel() is True
        assert pending.cancel() is True and pending.cancel() is True  # idempotent
        assert pending.cancelled() and pending.done() and not pending.running()
        assert "state=cancelled" in repr(pending)
        assert config.db.get(pending.job_id)["reason"] == "cancel requested by user"
        assert blocker.running() and blocker.cancel() is False and not blocker.cancelled()
        assert "state=running" in repr(blocker)
        flag.write_text("")
        assert blocker.result(timeout=T) == "blocker"
        assert blocker.cancel() is False and blocker.done() and not blocker.cancelled()
        assert "state=finished returned str" in repr(blocker)
        with pytest.raises(cf.CancelledError):
            pending.result(timeout=0)
        with pytest.raises(cf.CancelledError):
            pending.exception(timeout=0)
    assert config.db.get(pending.job_id)["status"] in ("died", "processed")


def test_cancel_a_call_still_queued_here(root, tmp_path):
    """A call cancelled before its job was submitted is never submitted; cancelling it again, and
    shutdown(cancel_futures=True) after that, raise nothing."""
    flag = tmp_path / "go"
    ex = ex_()
    blocker = blocked(ex, flag)
    with ex._lock:  # hold the background thread off: the next job stays queued here
        f = ex.submit(funcs.square, 4)
        assert f.cancel() and f.cancel()
    assert config.db.get(f.job_id)["status"] == "died"
    assert config.db.get(f.job_id)["reason"] == "cancelled before submission"
    flag.write_text("")
    ex.shutdown(wait=True, cancel_futures=True)
    assert blocker.result() == "blocker" and f.cancelled()
    assert config.db.get(f.job_id)["remote_id"] is None  # never submitted


def test_done_callbacks(root, tmp_path, caplog):
    """add_done_callback: called once with the future, for a result, an exception and a cancel;
    at once when added to a done future; a raising callback is logged, not raised, and the
    other callbacks still run."""
    caplog.set_level(logging.ERROR, logger="concurrent.futures")
    flag = tmp_path / "go"
    calls: list[tuple[str, object]] = []
    lock = threading.Lock()

    def record(tag):
        def callback(f):
            with lock:
                calls.append((tag, "cancelled" if f.cancelled() else (f.exception() or f.result())))
        return callback

    def raising(f):
        raise RuntimeError("a callback that raises")

    with ex_() as ex:
        blocker = blocked(ex, flag)
        ok = submitted(ex.submit(funcs.add, 2, 3))
        bad = ex.submit(funcs.maybe_raise, 13)
        gone = submitted(ex.submit(funcs.square, 5))
        ok.add_done_callback(raising)
        ok.add_done_callback(record("ok"))
        bad.add_done_callback(record("bad"))
        gone.add_done_callback(record("gone"))
        gone.add_done_callback(lambda f: pytest.raises(cf.CancelledError, f.result))  # may wait: no lock held
        assert gone.cancel() and gone.cancel()
        assert calls == [("gone", "cancelled")]  # called at once by cancel(), and only once
        flag.write_text("")
        cf.wait([blocker, ok, bad], timeout=T)
        wait_for(lambda: len(calls) == 3, T, "the done callbacks")
        ok.add_done_callback(record("ok-late"))  # already done: called at once, here
        bad.add_done_callback(raising)  # logged, not raised
        gone.add_done_callback(record("gone-late"))
    tags = dict(calls)
    assert len(calls) == 5 and tags["ok"] == 5 and tags["ok-late"] == 5
    assert isinstance(tags["bad"], ValueError) and tags["gone-late"] == "cancelled"
    logged = [r for r in caplog.records if r.name == "concurrent.futures"]
    assert len(logged) == 2 and all("exception calling callback" in r.getMessage() for r in logged)
    assert all(isinstance(r.exc_info[1], RuntimeError) for r in logged)


def test_result_and_exception_timeouts(root, tmp_path):
    """result()/exception() with a timeout on a pending call raise TimeoutError and leave it
    pending; after the end: the value, or the call's exception (exception() returns it)."""
    flag = tmp_path / "go"
    with ex_() as ex:
        blocked(ex, flag)
        f = submitted(ex.submit(funcs.square, 6))
        g = ex.submit(funcs.maybe_raise, 13)
        with pytest.raises(TimeoutError):
            f.result(timeout=0)
        with pytest.raises(cf.TimeoutError):
            f.exception(timeout=0.1)
        assert not f.done()
        got = []
        t = threading.Thread(target=lambda: got.append(f.result(timeout=T)))  # a waiter in another thread
        t.start()
        flag.write_text("")
        t.join(T)
        assert got == [36] and f.result(timeout=0) == 36 and f.exception(timeout=0) is None
        assert isinstance(g.exception(timeout=T), ValueError)
        with pytest.raises(ValueError, match="unlucky 13"):
            g.result(timeout=0)


def test_as_completed(root, tmp_path):
    """as_completed(): finished (and cancelled) futures first, each once even if passed twice; a
    timeout with calls still pending raises TimeoutError after the finished ones."""
    flag = tmp_path / "go"
    with ex_() as ex:
        blocker = blocked(ex, flag)
        pending = submitted(ex.submit(funcs.square, 7))
        cancelled = submitted(ex.submit(funcs.square, 8))
        assert cancelled.cancel()
        seen = []
        with pytest.raises(TimeoutError):
            for f in cf.as_completed([cancelled, pending, cancelled, blocker], timeout=0.5):
                seen.append(f)
        assert seen == [cancelled]
        flag.write_text("")
        done = list(cf.as_completed([pending, blocker, pending, cancelled], timeout=T))
        assert sorted(map(id, done)) == sorted(map(id, {pending, blocker, cancelled}))
        assert pending.result() == 49


def test_wait_return_when(root, tmp_path):
    """wait(): FIRST_COMPLETED, FIRST_EXCEPTION and ALL_COMPLETED return the documented
    (done, not_done) sets; a timeout returns what is still pending in not_done."""
    flag = tmp_path / "go"
    with ex_(resources=RES) as ex:
        quick = ex.submit(funcs.square, 2)
        failing = ex.submit(funcs.maybe_raise, 13)
        slow = ex.submit(funcs.sleep_in_file, 1, str(flag))
        done, not_done = cf.wait([quick, slow], timeout=T, return_when=cf.FIRST_COMPLETED)
        assert quick in done and slow in not_done
        done, not_done = cf.wait([failing, slow], timeout=T, return_when=cf.FIRST_EXCEPTION)
        assert done == {failing} and not_done == {slow}
        done, not_done = cf.wait([quick, slow], timeout=0.2)
        assert done == {quick} and not_done == {slow}
        flag.write_text("")
        done, not_done = cf.wait([quick, failing, slow], timeout=T, return_when=cf.ALL_COMPLETED)
        assert done == {quick, failing, slow} and not not_done


def test_shutdown_cancel_futures_after_a_cancel(root, tmp_path):
    """shutdown(cancel_futures=True) after an earlier cancel: the calls not started are cancelled,
    the running one finishes; shutdown(wait=False) returns at once; no new calls after it."""
    flag = tmp_path / "go"
    ex = ex_()
    blocker = blocked(ex, flag)
    first = submitted(ex.submit(funcs.square, 1))
    second = submitted(ex.submit(funcs.square, 2))
    packed = ex.map_futures(funcs.square, range(4), chunksize=2)
    assert first.cancel()
    ex.shutdown(wait=False, cancel_futures=True)  # returns although a call still runs
    assert not blocker.done() and blocker.running()
    assert first.cancelled() and second.cancelled() and all(f.cancelled() for f in packed)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(funcs.square, 3)
    flag.write_text("")
    ex.shutdown(wait=True)  # again, harmless
    assert blocker.result(timeout=0) == "blocker"
    assert [f.index for f in packed] == [0, 1, 2, 3]


def test_index_is_the_position_in_the_map(root):
    with ex_(resources=RES) as ex:
        fs = ex.map_futures(funcs.square, range(10), chunksize=4)
        assert [f.index for f in fs] == list(range(10))
        assert [f.result(timeout=T) for f in cf.as_completed(fs, timeout=T)]
        assert sorted((f.index, f.result()) for f in fs) == [(i, i * i) for i in range(10)]
        assert ex.submit(funcs.square, 1).index is None
    assert isinstance(fs[0], ExPyReFuture)
