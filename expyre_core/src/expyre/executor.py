"""A :class:`concurrent.futures.Executor` whose calls run as ExPyRe jobs.

::

    from expyre import Executor

    with Executor(system_name="local", resources={"max_time": "1h", "n": (1, "tasks")}) as ex:
        fut = ex.submit(pow, 2, 10)                           # one ExPyRe job
        squares = list(ex.map(square, range(200), chunksize=50))   # 4 jobs of 50 calls each
    print(fut.result())

Every future is backed by ordinary ExPyRe jobs (the jobs database, ``xpr ls``, restart and
``mark_processed`` all see them):

* ``submit(fn, *args, **kwargs)`` makes one job ``ExPyRe(name, fn, args, kwargs)``.
* ``map(fn, *iterables, chunksize=k)`` packs ``k`` calls into each job, named
  ``f"{name}_{chunk_index}"``, whose function (:func:`expyre.packing.run_chunk`) returns one
  outcome per call, so a raising element fails only its own future.
* ``array=True`` (per executor, or per ``map``) submits each batch of new jobs as scheduler job
  arrays (:meth:`ExPyRe.start_array`): one submission per array, each job still an ordinary
  ExPyRe job (an array element). Systems without arrays fall back to one submission per job.

Restart: the jobs are ordinary hashed ExPyRe jobs, so running the same script again after a crash
finds them (submitted, running or finished) instead of submitting new ones. A finished packed job
one of whose calls raised is run again (the whole chunk, with ``force_rerun``): only a chunk whose
calls all returned is reused as it is (a single call that raised was never reused). At a clean
``shutdown()`` (the end of a ``with`` block) the finished jobs are marked processed, like
``mark_processed()`` after ``get_results()``: the next identical call then runs afresh.

One background thread per executor does all the waiting: once per tick it refreshes each system's
shared poll (:class:`expyre.poller.Poller`: one status query for all of that system's jobs) and
then checks every job's result files; it never runs one status query per future. It also submits
queued jobs in batches (:meth:`ExPyRe.start_many`: one copy of all their stage directories) and
draws one progress bar while a caller waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import hashlib
import logging
import os
import pickle
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from . import config
from .digest import function_digest
from .func import ExPyRe
from .layout import PARTIAL_PREFIX, SUCCEEDED
from .packing import decode_outcome, run_chunk
from .poller import Poller, evaluate
from .results import finish, open_marker, outcome_files
from .progress import SHOW_AFTER, progress_enabled
from .resources import Resources

__all__ = ["Executor", "ExPyReFuture"]

logger = logging.getLogger(__name__)

_DEFAULT_RESOURCES = {"max_time": "1h", "n": (1, "tasks")}


class ExPyReFuture(cf.Future):
    """A :class:`concurrent.futures.Future` for one call run in an ExPyRe job.

    Works with :func:`concurrent.futures.wait` / :func:`~concurrent.futures.as_completed`, takes
    done callbacks, and can be awaited (``await fut``) in asyncio. :attr:`job_id` names the job
    (``xpr ls -i <job_id>``); :attr:`index` is the position of the call within a packed job.
    """

    def __init__(self, executor: "Executor", job: "_Job", index: int | None) -> None:
        super().__init__()
        self._executor_ref = weakref.ref(executor)
        self._job = job
        self.index = index

    @property
    def job_id(self) -> str:
        return self._job.xpr.id

    @property
    def xpr(self) -> ExPyRe:
        """The ExPyRe job behind this future (shared by all calls packed into it)."""
        return self._job.xpr

    def cancel(self) -> bool:
        """Cancel the call if it has not started. When every call of its job is cancelled, the job
        is cancelled too: not submitted if it was still waiting here, else cancelled in the
        scheduler (``ExPyRe.cancel()``). Returns False once the job runs or the call is done."""
        ex = self._executor_ref()
        if ex is None:
            return super().cancel()
        return ex._cancel(self)

    def _base_cancel(self) -> bool:
        return super().cancel()

    def result(self, timeout: float | None = None) -> Any:
        with _Waiting(self._executor_ref()):
            return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        with _Waiting(self._executor_ref()):
            return super().exception(timeout)

    def __await__(self):
        return asyncio.wrap_future(self).__await__()


class _Waiting:
    """Counts callers blocked on the executor's futures (the progress bar shows while > 0)."""

    def __init__(self, ex: "Executor | None") -> None:
        self.ex = ex

    def __enter__(self) -> None:
        if self.ex is not None:
            with self.ex._lock:
                self.ex._waiters += 1
            self.ex._wake.set()

    def __exit__(self, *exc: Any) -> None:
        if self.ex is not None:
            with self.ex._lock:
                self.ex._waiters -= 1


class _Job:
    """One ExPyRe job and the futures it completes (one for a plain call, one per packed call)."""

    __slots__ = ("xpr", "packed", "futures", "state", "cancel_requested", "partial_seen", "system_name", "done",
                 "array", "rerun")

    def __init__(self, xpr: ExPyRe, packed: bool, system_name: str, array: bool = False, rerun: bool = False) -> None:
        self.xpr = xpr
        self.packed = packed
        #: submit as an element of a scheduler job array (with the other new jobs of its batch)
        self.array = array
        #: adopted from an earlier run with a failed element: submit again (``force_rerun``)
        self.rerun = rerun
        self.futures: list[ExPyReFuture] = []
        #: "queued" (waiting here to be submitted), "submitting", "submitted", "finished"
        self.state = "queued"
        self.cancel_requested = False
        self.partial_seen: set[int] = set()
        self.system_name = system_name
        self.done = False


class _Bar:
    """One progress bar for many futures: done / running / queued / failed (rich, on stderr)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.progress = None
        self.task = None

    def show(self, total: int, done: int, running: int, queued: int, failed: int) -> None:
        if self.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.name, total=total)
        self.progress.update(
            self.task, total=total, completed=done,
            description=f"{self.name}: {running} running, {queued} queued, {failed} failed",
        )

    def hide(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class Executor(cf.Executor):
    """Run calls as ExPyRe jobs on one system.

    :param system_name: a system of config.json (default ``$EXPYRE_SYS``, else ``local``).
    :param resources: the resources of every job (as for :meth:`ExPyRe.start`); a packed job gets
        the same resources as a single call, so size ``max_time`` for ``chunksize`` calls.
    :param name: job name prefix (default: the function's ``__name__``); packed jobs are named
        ``f"{name}_{chunk_index}"``.
    :param chunksize: default calls per job for :meth:`map`.
    :param check_interval: the longest wait between two checks (they start fast and back off).
    :param progress: show one progress bar while waiting (only on a terminal, and never with
        ``EXPYRE_PROGRESS=0``).
    :param mark_processed: at a clean :meth:`shutdown`, mark the finished jobs processed (so the
        next identical call runs afresh, as after ``get_results()`` + ``mark_processed()``).
    :param array: submit each batch of new jobs as scheduler job arrays (one ``sbatch --array``,
        ``qsub -t`` or ``qsub -J`` per array of at most the system's array size limit), each call
        or packed chunk an array element; ``map(..., array=...)`` overrides it. Systems whose
        scheduler has no arrays submit one job at a time.
    :param partial_results: packed jobs write each call's outcome as soon as it is known, so its
        future completes before the whole job ends (read directly when the jobs run in the local
        stage directories; on a remote host the finished calls' outcomes are listed by the shared
        poll and fetched with the next copy back).
    :param start_kwargs: ``header_extra``, ``exact_fit``, ``partial_node``, ``python_cmd`` are
        passed to :meth:`ExPyRe.start`; ``input_files``, ``output_files``, ``env_vars``,
        ``pre_run_commands``, ``post_run_commands``, ``try_restart_from_prev``, ``ship_modules`` to
        :class:`ExPyRe`.
    """

    _START_KEYS = ("header_extra", "exact_fit", "partial_node", "python_cmd")
    _XPR_KEYS = ("input_files", "output_files", "env_vars", "pre_run_commands", "post_run_commands", "try_restart_from_prev",
                 "ship_modules")

    def __init__(
        self,
        system_name: str | None = None,
        resources: Resources | Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        chunksize: int = 1,
        check_interval: float = 30.0,
        progress: bool = True,
        mark_processed: bool = True,
        partial_results: bool = True,
        array: bool = False,
        **kwargs: Any,
    ) -> None:
        bad = set(kwargs) - set(self._START_KEYS) - set(self._XPR_KEYS)
        if bad:
            raise TypeError(f"Executor: unknown argument(s) {sorted(bad)}; "
                            f"valid: {', '.join(self._START_KEYS + self._XPR_KEYS)}")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        self.system_name = config.get_system(system_name).name
        self.resources = resources if resources is not None else dict(_DEFAULT_RESOURCES)
        Resources.from_any(self.resources)  # fail now on a bad resources dict
        self.name = name
        self.chunksize = chunksize
        self.check_interval = float(check_interval)
        self.progress = progress
        self.mark_processed = mark_processed
        self.partial_results = partial_results
        self.array = bool(array)
        self._start_kw = {k: v for k, v in kwargs.items() if k in self._START_KEYS}
        self._xpr_kw = {k: v for k, v in kwargs.items() if k in self._XPR_KEYS}

        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._jobs: list[_Job] = []           # every job of this executor (finished ones too)
        self._active: list[_Job] = []         # submitted, not finished
        self._queue: list[_Job] = []          # waiting here to be submitted
        self._shutdown = False
        self._waiters = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        #: counters for tests and reports: polls and checks done by the background thread
        self.stats = {"ticks": 0, "polls": 0, "submitted_jobs": 0, "submit_batches": 0}

    # -- submission ------------------------------------------------------------------------------
    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> ExPyReFuture:
        """Run ``fn(*args, **kwargs)`` as one ExPyRe job; return its future. The call is pickled
        (and hashed) here, so an unpicklable argument raises at once."""
        name = self.name or _fn_name(fn)
        xpr = ExPyRe(name, fn, args=list(args), kwargs=kwargs, **self._xpr_kw)
        job = _Job(xpr, packed=False, system_name=self.system_name, array=self.array)
        fut = ExPyReFuture(self, job, None)
        job.futures.append(fut)
        self._enqueue([job])
        return fut

    def map_futures(self, fn: Callable, *iterables: Iterable[Any], chunksize: int | None = None,
                    array: bool | None = None) -> list[ExPyReFuture]:
        """Like :meth:`map`, but return the futures (one per call, in order) at once: use them
        with :func:`concurrent.futures.as_completed` to get results as elements finish."""
        chunksize = chunksize or self.chunksize
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        use_array = self.array if array is None else bool(array)
        name = self.name or _fn_name(fn)
        partial = self.partial_results
        h = hashlib.sha256()
        function_digest(fn, h)
        digest = h.hexdigest()
        calls = [(list(a), {}) for a in zip(*iterables)]
        jobs = []
        futures: list[ExPyReFuture] = []
        for ci, start in enumerate(range(0, len(calls), chunksize)):
            chunk = calls[start : start + chunksize]
            xpr = ExPyRe(
                f"{name}_{ci}", run_chunk, args=[fn, chunk],
                kwargs={"code_digest": digest, "first_index": start, "partial": partial},
                hash_ignore=[0], **self._xpr_kw,
            )
            job = _Job(xpr, packed=True, system_name=self.system_name, array=use_array,
                       rerun=xpr.recreated and _has_failed_element(xpr))
            if job.rerun:
                logger.info("packed job %s (%s) from an earlier run has a failed call: running it again", xpr.id, xpr.name)
            for i in range(len(chunk)):
                f = ExPyReFuture(self, job, i)
                job.futures.append(f)
                futures.append(f)
            jobs.append(job)
        self._enqueue(jobs)
        return futures

    def map(self, fn: Callable, *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None, array: bool | None = None) -> Iterator[Any]:
        """``fn`` over the iterables, ``chunksize`` calls per job (default: the executor's), as
        scheduler job arrays if ``array`` (default: the executor's ``array``).

        Results come in order; iterating raises the first failed element's exception there (the
        others are still available from :meth:`map_futures`). ``timeout`` (seconds from this call)
        raises :class:`TimeoutError`; closing the iterator early cancels the calls not yet started.
        """
        end = None if timeout is None else time.monotonic() + timeout
        return _MapIterator(self.map_futures(fn, *iterables, chunksize=chunksize, array=array), end)

    def _enqueue(self, jobs: list[_Job]) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            if self._error is not None:
                raise RuntimeError(f"the executor's background thread failed: {self._error!r}") from self._error
            self._jobs.extend(jobs)
            self._queue.extend(jobs)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"expyre-executor-{id(self):x}", daemon=True)
                self._thread.start()
        self._wake.set()

    # -- cancel ------------------------------------------------------------------------------------
    def _cancel(self, fut: ExPyReFuture) -> bool:
        job = fut._job
        with self._lock:
            if not fut._base_cancel():
                return False
            # CANCELLED -> CANCELLED_AND_NOTIFIED: wakes wait()/as_completed() (as an executor must)
            fut.set_running_or_notify_cancel()
            if not all(f.cancelled() for f in job.futures):
                return True
            job.cancel_requested = True
            if job.state == "queued":
                self._queue.remove(job)
                job.state = "finished"
                job.done = True
                to_cancel = True
            else:
                to_cancel = job.state == "submitted"
        if to_cancel:
            self._cancel_job(job)
        return True

    def _cancel_job(self, job: _Job) -> None:
        """Cancel the job of calls that were all cancelled before it started. Once the scheduler
        accepted the cancel, the job is recorded as died (it never started) and no longer waited
        for, so that a ``with`` block ends without waiting out the scheduler's grace period."""
        try:
            job.xpr.cancel()
        except Exception as exc:  # noqa: BLE001 - the futures are cancelled regardless
            logger.warning("cancelling job %s: %s", job.xpr.id, exc)
            return
        row = config.db.get(job.xpr.id)
        if row is not None and row["status"] == "submitted":
            config.db.update(job.xpr.id, status="died")
            with self._lock:
                job.state = "finished"
                job.done = True

    # -- shutdown ----------------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls. ``wait``: block until every future is done (showing progress),
        then mark the finished jobs processed (see ``mark_processed``). ``cancel_futures``:
        cancel the calls whose jobs have not started."""
        with self._lock:
            self._shutdown = True
            jobs = list(self._jobs)
        if cancel_futures:
            for job in jobs:
                for f in job.futures:
                    f.cancel()
        if wait:
            with _Waiting(self):
                cf.wait([f for j in jobs for f in j.futures])
            if self._thread is not None:
                self._wake.set()
                self._thread.join()
            if self.mark_processed:
                for job in jobs:
                    if job.done and job.xpr.status in ("succeeded", "failed", "died"):
                        try:
                            job.xpr.mark_processed()
                        except Exception as exc:  # noqa: BLE001
                            logger.warning("marking job %s processed: %s", job.xpr.id, exc)
        self._wake.set()

    def __exit__(self, exc_type, exc_val, exc_tb) -> bool:
        if exc_type is not None:
            # an exception in the block: stop waiting (the jobs go on in the scheduler) and do not
            # mark them processed, so running the script again picks them up
            self.mark_processed = False
            self.shutdown(wait=False)
            return False
        return super().__exit__(exc_type, exc_val, exc_tb)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every call submitted so far is done (with the progress bar)."""
        with self._lock:
            fs = [f for j in self._jobs for f in j.futures]
        with _Waiting(self):
            cf.wait(fs, timeout=timeout)

    # -- the background thread --------------------------------------------------------------------
    def _run(self) -> None:
        bar: _Bar | None = None
        wait = 0.02
        t_wait_start: float | None = None
        try:
            while True:
                with self._lock:
                    queue, self._queue = self._queue, []
                    for j in queue:
                        j.state = "submitting"
                if queue:
                    self._submit_batch(queue)
                    wait = 0.02
                with self._lock:
                    active = [j for j in self._jobs if j.state == "submitted" and not j.done]
                    idle = not active and not self._queue
                    if idle and self._shutdown:
                        break
                if active:
                    progressed = self._tick(active)
                    if progressed:
                        wait = max(0.02, wait / 2)
                # one progress bar while a caller waits and the wait is long
                with self._lock:
                    waiting = self._waiters > 0 and not idle
                if waiting and progress_enabled(self.progress):
                    t_wait_start = t_wait_start or time.monotonic()
                    if time.monotonic() - t_wait_start >= SHOW_AFTER:
                        bar = bar or _Bar(self.name or "expyre")
                        bar.show(*self.counts())
                else:
                    t_wait_start = None
                    if bar is not None:
                        bar.hide()
                        bar = None
                self._wake.wait(wait if not idle else None)
                self._wake.clear()
                wait = min(self.check_interval, wait * 1.5)
        except BaseException as exc:  # noqa: BLE001 - fail every open future rather than hang
            logger.exception("expyre executor thread failed")
            with self._lock:
                self._error = exc
                jobs = [j for j in self._jobs if not j.done]
            for j in jobs:
                for f in j.futures:
                    _set(f, None, RuntimeError(f"the expyre executor's background thread failed: {exc!r}"))
        finally:
            if bar is not None:
                bar.hide()

    def _submit_batch(self, jobs: list[_Job]) -> None:
        errors: dict[str, BaseException] = {}
        groups: dict[tuple[bool, bool], list[_Job]] = {}
        for j in jobs:
            groups.setdefault((j.array, j.rerun), []).append(j)
        for (array, rerun), group in groups.items():
            start = ExPyRe.start_array if array else ExPyRe.start_many
            errors.update(start([j.xpr for j in group], self.resources, self.system_name,
                                **self._start_kw, **({"force_rerun": True} if rerun else {})))
            self.stats["submit_batches"] += 1
        cancel_now = []
        with self._lock:
            for j in jobs:
                exc = errors.get(j.xpr.id)
                if exc is not None:
                    j.state = "finished"
                    j.done = True
                    for f in j.futures:
                        _set(f, None, exc)
                    continue
                self.stats["submitted_jobs"] += 1
                j.state = "submitted"
                if j.cancel_requested:
                    cancel_now.append(j)
        for j in cancel_now:
            self._cancel_job(j)

    def _tick(self, active: list[_Job]) -> bool:
        """One round: one shared poll per system, then every job's files. True if anything ended."""
        self.stats["ticks"] += 1
        progressed = False
        by_system: dict[str, list[_Job]] = {}
        for j in active:
            by_system.setdefault(j.system_name, []).append(j)
        for system_name, jobs in by_system.items():
            system = config.get_system(system_name)
            poller = Poller.get(system, config.db)
            shared = system.shares_stage_dirs
            # result files on shared stage dirs need no status query; ask the scheduler only when
            # some job is still without them (the poller enforces the scheduler's floor)
            outcomes = {j.xpr.id: outcome_files(j.xpr.stage_dir) for j in jobs}
            if any(o is None for o in outcomes.values()):
                before = poller.count
                poller.refresh(max_age=0.02 if shared else min(1.0, self.check_interval))
                self.stats["polls"] += poller.count - before
            rows = config.db.get_many([j.xpr.id for j in jobs])
            for j in jobs:
                row = rows.get(j.xpr.id)
                if row is not None and row["status"] == "started":
                    for f in j.futures:
                        if f._state == cf._base.PENDING:
                            f.set_running_or_notify_cancel()
                outcome = outcomes[j.xpr.id]
                if outcome is None and self._may_have_ended(row, poller):
                    outcome = evaluate(j.xpr, poller)
                if outcome is None:
                    if j.packed and self.partial_results:
                        progressed |= self._partial(j)
                    continue
                self._complete(j, outcome)
                progressed = True
        return progressed

    @staticmethod
    def _may_have_ended(row: dict | None, poller: Poller) -> bool:
        """False when :func:`expyre.poller.evaluate` would certainly answer "keep waiting" for a job
        without result files: its row (just read for all jobs at once) is not final and the poll
        does not suspect it. Saves a second listing and a database read per job and tick, which
        made a tick O(N) queries and a whole map O(N^2) (found by bench/)."""
        if row is None or row["status"] in ("succeeded", "failed", "died"):
            return True
        return bool(row["remote_id"]) and row["remote_id"] in poller.suspects

    def _partial(self, job: _Job) -> bool:
        """Complete the futures of a running packed job's finished elements."""
        try:
            names = [n for n in _listdir(job.xpr.stage_dir) if n.startswith(PARTIAL_PREFIX)]
        except OSError:
            return False
        got = False
        for n in names:
            try:
                i = int(n[len(PARTIAL_PREFIX):])
            except ValueError:
                continue
            if i in job.partial_seen or i >= len(job.futures):
                continue
            try:
                with open(job.xpr.stage_dir / n, "rb") as fh:
                    outcome = pickle.load(fh)
            except Exception:  # noqa: BLE001 - read again next time, or take it from the result
                continue
            job.partial_seen.add(i)
            ok, value = decode_outcome(outcome, self._where(job, i))
            _set(job.futures[i], value if ok else None, None if ok else value)
            got = True
        return got

    def _where(self, job: _Job, i: int) -> str:
        return f"element {i} of expyre job {job.xpr.id}"

    def _complete(self, job: _Job, outcome: str) -> None:
        try:
            value = finish(job.xpr, outcome)
        except BaseException as exc:  # noqa: BLE001 - the job's error goes to its futures
            for f in job.futures:
                _set(f, None, exc)
        else:
            if not job.packed:
                for f in job.futures:
                    _set(f, value, None)
            elif not isinstance(value, list) or len(value) != len(job.futures):
                err = RuntimeError(f"packed job {job.xpr.id} returned {type(value).__name__} "
                                   f"of unexpected length for {len(job.futures)} calls")
                for f in job.futures:
                    _set(f, None, err)
            else:
                for i, (f, oc) in enumerate(zip(job.futures, value)):
                    if i in job.partial_seen:
                        continue
                    ok, v = decode_outcome(oc, self._where(job, i))
                    _set(f, v if ok else None, None if ok else v)
        with self._lock:
            job.state = "finished"
            job.done = True

    # -- introspection -----------------------------------------------------------------------------
    def futures(self) -> list[ExPyReFuture]:
        with self._lock:
            return [f for j in self._jobs for f in j.futures]

    def counts(self) -> tuple[int, int, int, int, int]:
        """``(total, done, running, queued, failed)`` over this executor's calls (failed counts
        raising and cancelled calls; done includes them)."""
        with self._lock:
            fs = [f for j in self._jobs for f in j.futures]
        total = len(fs)
        done = running = failed = 0
        for f in fs:
            if f.done():
                done += 1
                if f.cancelled() or cf.Future.exception(f, 0) is not None:
                    failed += 1
            elif f.running():
                running += 1
        return total, done, running, total - done - running, failed


class _MapIterator:
    """The results of :meth:`Executor.map` in order; :meth:`close` (also when garbage collected)
    cancels the calls not yet started, even before the first result was taken."""

    def __init__(self, futures: list[ExPyReFuture], end: float | None) -> None:
        self._fs = futures[::-1]
        self._end = end

    def __iter__(self) -> "_MapIterator":
        return self

    def __next__(self) -> Any:
        if not self._fs:
            raise StopIteration
        f = self._fs[-1]
        try:
            value = f.result(None if self._end is None else max(0.0, self._end - time.monotonic()))
        except BaseException:
            self._fs.pop()
            self.close()
            raise
        self._fs.pop()
        return value

    def close(self) -> None:
        fs, self._fs = self._fs, []
        for f in fs:
            f.cancel()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


def _set(f: ExPyReFuture, value: Any, exc: BaseException | None) -> None:
    """Complete ``f`` unless it already is (cancelled, or completed from a partial result)."""
    if f.done():
        return
    if f._state == cf._base.PENDING and not f.set_running_or_notify_cancel():
        return
    try:
        if exc is not None:
            f.set_exception(exc)
        else:
            f.set_result(value)
    except cf.InvalidStateError:
        pass


def _has_failed_element(xpr: ExPyRe) -> bool:
    """True when the packed job ``xpr`` already has a result here and one of its calls raised."""
    if xpr.status not in ("created", "submitted", "started", "succeeded") or outcome_files(xpr.stage_dir) != "succeeded":
        return False
    try:
        with open_marker(xpr.stage_dir, SUCCEEDED) as f:
            outcomes = pickle.load(f)
    except Exception as exc:  # noqa: BLE001 - an unreadable result is not reused either
        logger.warning("packed job %s: its earlier result cannot be read (%s); running it again", xpr.id, exc)
        return True
    return not isinstance(outcomes, list) or any(not (isinstance(o, tuple) and o and o[0] == "ok") for o in outcomes)


def _listdir(path: Path) -> list[str]:
    return os.listdir(path)


def _fn_name(fn: Callable) -> str:
    n = getattr(fn, "__name__", None) or type(fn).__name__
    return n if n != "<lambda>" else "lambda"

