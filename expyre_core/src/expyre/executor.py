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
keeps one progress display while a caller waits (a bar on a terminal, an HTML output in a Jupyter
notebook, else a line per interval on the logger ``expyre.progress``: see :mod:`expyre.progress`).

The futures behave as :mod:`concurrent.futures` documents (cancel, done callbacks, ``wait``,
``as_completed``, ``shutdown(wait, cancel_futures)``) and are generic: ``submit(fn, ...)`` of an
``fn`` returning ``T`` is an ``ExPyReFuture[T]``, ``map`` an ``Iterator[T]``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures as cf
import hashlib
import logging
import pickle
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Generator, Generic, Iterable, Iterator, Mapping, TypeVar

from typing_extensions import ParamSpec

from . import config, control
from .digest import function_digest
from .errors import ExPyReResultError
from .func import ExPyRe
from .layout import PARTIAL_PREFIX, SUCCEEDED
from .packing import decode_outcome, run_chunk
from .poller import Poller, evaluate
from .progress import SHOW_AFTER, Display, display_mode, format_duration, interval
from .resources import Resources
from .results import finish, load_marker, outcome_files
from .stagedir import UnsafePathError, open_stage_dir, why_refused
from .stage_records import record_status
from .submit import owner as submit_owner
from .submit import owner_dead

__all__ = ["Executor", "ExPyReFuture", "CANCELLED_BY_EXPYRE"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

_DEFAULT_RESOURCES = {"max_time": "1h", "n": (1, "tasks")}

#: the reason recorded for jobs cancelled because their results were no longer wanted (not by
#: ``cancel()``): the iterator of a ``map`` closed or dropped before they ran
CANCELLED_BY_EXPYRE = ("cancelled by expyre, not by the user: the map's iterator was closed or dropped "
                       "before these calls started (an exception or a break ended the loop over it)")

_PENDING = cf._base.PENDING
_CANCELLED = cf._base.CANCELLED
_RUNNING = cf._base.RUNNING
_FINISHED = cf._base.FINISHED


class ExPyReFuture(cf.Future[T], Generic[T]):
    """A :class:`concurrent.futures.Future` for one call run in an ExPyRe job.

    Behaves as the standard library documents: :meth:`cancel` is idempotent (True again for a
    cancelled future, False once the call runs or is done), done callbacks are called once (at
    once when added to a done future; an exception in one is logged by ``concurrent.futures``, not
    raised), and it works with :func:`concurrent.futures.wait` / :func:`~concurrent.futures.as_completed`
    (which also drive the executor's progress display) and ``await fut`` in asyncio.
    :attr:`job_id` names the job (``xpr ls -i <job_id>``); :attr:`index` is the position of the
    call in its ``map`` (None for :meth:`Executor.submit`).
    """

    def __init__(self, executor: "Executor", job: "_Job", index: int | None, position: int = 0) -> None:
        super().__init__()
        self._executor_ref = weakref.ref(executor)
        self._job = job
        #: the position of this call in its ``map`` / ``map_futures`` (None for ``submit``)
        self.index = index
        self._position = position  # within its job (packed chunk)

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
        scheduler (``ExPyRe.cancel()``). True if the call is cancelled (also when it already
        was); False once the job runs or the call is done."""
        return self._cancel(None)

    def _cancel(self, reason: str | None) -> bool:
        ex = self._executor_ref()
        if ex is None:
            return super().cancel()
        return ex._cancel(self, reason)

    def _base_cancel(self) -> bool:
        return super().cancel()

    def result(self, timeout: float | None = None) -> T:
        """The call's value, waiting up to ``timeout`` seconds (None: for ever) for its job.

        :raises concurrent.futures.TimeoutError: not done within ``timeout``.
        :raises concurrent.futures.CancelledError: the call was cancelled.
        :raises Exception: the call's own exception, its remote traceback as ``__cause__``.
        """
        if self.done():  # no wait (e.g. in an as_completed() loop): the display stays as it is
            try:
                return super().result(0)
            except BaseException:
                ex = self._executor_ref()
                if ex is not None:
                    ex._hide_display()  # nothing of it behind the traceback
                raise
        with _Waiting(self._executor_ref()):
            return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The call's exception (None if it returned), waiting as :meth:`result` does."""
        if self.done() and not self.cancelled():
            return super().exception(0)
        with _Waiting(self._executor_ref()):
            return super().exception(timeout)

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()


def _notify_cancel(f: cf.Future[Any]) -> None:
    """CANCELLED -> CANCELLED_AND_NOTIFIED (wakes ``wait()``/``as_completed()``), only once."""
    with f._condition:
        if f._state == _CANCELLED:
            f.set_running_or_notify_cancel()


def _mark_running(f: cf.Future[Any]) -> None:
    """PENDING -> RUNNING (never raises on a future cancelled meanwhile)."""
    with f._condition:
        if f._state == _PENDING:
            f.set_running_or_notify_cancel()


class _Waiting:
    """Counts callers blocked on the executor's futures (the progress display shows while > 0).

    A terminal's bar is ended by the caller's own thread when the last wait ends, before the call
    returns or raises (rich redirects stdout/stderr while a bar shows, so what the caller prints
    next lands above it; ending it from another thread could race such a print and leave a frame
    glued to it). Any display is ended there when the wait ends by an exception. A notebook's
    display and the log lines are ended by the background thread once nobody waits, so the
    ``next()`` calls of a ``map`` loop keep one display."""

    def __init__(self, ex: "Executor | None") -> None:
        self.ex = ex

    def __enter__(self) -> None:
        if self.ex is not None:
            with self.ex._lock:
                self.ex._waiters += 1
            self.ex._wake.set()

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if self.ex is not None:
            with self.ex._lock:
                self.ex._waiters -= 1
                last = self.ex._waiters == 0
            if last and (exc_type is not None or self.ex._mode == "terminal"):
                self.ex._hide_display()


class _Job:
    """One ExPyRe job and the futures it completes (one for a plain call, one per packed call)."""

    __slots__ = ("xpr", "packed", "futures", "state", "cancel_requested", "partial_seen", "system_name", "done",
                 "array", "rerun", "t_submitted", "t_started", "cancel_reason")

    def __init__(self, xpr: ExPyRe, packed: bool, system_name: str, array: bool = False, rerun: bool = False) -> None:
        self.xpr = xpr
        self.packed = packed
        #: submit as an element of a scheduler job array (with the other new jobs of its batch)
        self.array = array
        #: adopted from an earlier run with a failed element: submit again (``force_rerun``)
        self.rerun = rerun
        self.futures: list[ExPyReFuture[Any]] = []
        #: "queued" (waiting here to be submitted), "submitting", "submitted", "finished"
        self.state = "queued"
        self.cancel_requested = False
        #: recorded as the job's reason when it is cancelled (None: "cancel requested by user")
        self.cancel_reason: str | None = None
        self.partial_seen: set[int] = set()
        self.system_name = system_name
        self.done = False
        #: monotonic times: submitted here, first seen started (for "what is slowest")
        self.t_submitted: float | None = None
        self.t_started: float | None = None


class Executor(cf.Executor):
    """Run calls as ExPyRe jobs on one system.

    :param system_name: a system of config.json (default ``$EXPYRE_SYS``, else ``local``).
    :param resources: the resources of every job (as for :meth:`ExPyRe.start`); a packed job gets
        the same resources as a single call, so size ``max_time`` for ``chunksize`` calls.
    :param name: job name prefix (default: the function's ``__name__``); packed jobs are named
        ``f"{name}_{chunk_index}"``.
    :param chunksize: default calls per job for :meth:`map`.
    :param check_interval: the longest wait between two checks (they start fast and back off).
    :param progress: show progress while a caller waits (a bar on a terminal, an HTML display in
        a Jupyter notebook, else a log line on ``expyre.progress`` per ``EXPYRE_PROGRESS_INTERVAL``
        seconds; never with ``EXPYRE_PROGRESS=0``): see :mod:`expyre.progress`.
    :param mark_processed: at a clean :meth:`shutdown`, mark the finished jobs processed (so the
        next identical call runs afresh, as after ``get_results()`` + ``mark_processed()``); jobs
        with a call that raised stay ``failed``, visible in ``xpr ls -s failed``.
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
        self.resources: Resources | Mapping[str, Any] = resources if resources is not None else dict(_DEFAULT_RESOURCES)
        Resources.from_any(self.resources)  # fail now on a bad resources dict
        self.name = name
        self.chunksize = chunksize
        self.check_interval = float(check_interval)
        self.progress = progress
        self.progress_interval = interval()  # fail now on a bad EXPYRE_PROGRESS_INTERVAL
        self._mode = display_mode(progress)
        self.mark_processed = mark_processed
        self.partial_results = partial_results
        self.array = bool(array)
        self._start_kw = {k: v for k, v in kwargs.items() if k in self._START_KEYS}
        self._xpr_kw = {k: v for k, v in kwargs.items() if k in self._XPR_KEYS}

        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._jobs: list[_Job] = []           # every job of this executor (finished ones too)
        self._queue: list[_Job] = []          # waiting here to be submitted
        self._shutdown = False
        self._waiters = 0
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._display_lock = threading.Lock()
        self._display: Display | None = None
        #: counters for tests and reports: polls and checks done by the background thread
        self.stats = {"ticks": 0, "polls": 0, "submitted_jobs": 0, "submit_batches": 0}

    # -- submission ------------------------------------------------------------------------------
    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> ExPyReFuture[T]:
        """Run ``fn(*args, **kwargs)`` as one ExPyRe job; return its future. The call is pickled
        (and hashed) here, so an unpicklable argument raises at once."""
        name = self.name or _fn_name(fn)
        xpr = ExPyRe(name, fn, args=list(args), kwargs=kwargs, **self._xpr_kw)
        job = _Job(xpr, packed=False, system_name=self.system_name, array=self.array)
        fut: ExPyReFuture[T] = ExPyReFuture(self, job, None)
        job.futures.append(fut)
        self._enqueue([job])
        return fut

    def map_futures(self, fn: Callable[..., T], *iterables: Iterable[Any], chunksize: int | None = None,
                    array: bool | None = None) -> list[ExPyReFuture[T]]:
        """Like :meth:`map`, but return the futures (one per call, in order: ``f.index`` is the
        position) at once: use them with :func:`concurrent.futures.as_completed` to get results as
        elements finish."""
        chunksize = chunksize or self.chunksize
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        use_array = self.array if array is None else bool(array)
        name = self.name or _fn_name(fn)
        partial = self.partial_results
        h = hashlib.sha256()
        function_digest(fn, h)
        digest = h.hexdigest()
        calls: list[tuple[list[Any], dict[str, Any]]] = [(list(a), {}) for a in zip(*iterables)]
        jobs = []
        futures: list[ExPyReFuture[T]] = []
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
                f: ExPyReFuture[T] = ExPyReFuture(self, job, start + i, i)
                job.futures.append(f)
                futures.append(f)
            jobs.append(job)
        self._enqueue(jobs)
        return futures

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int | None = None, array: bool | None = None) -> Iterator[T]:
        """``fn`` over the iterables, ``chunksize`` calls per job (default: the executor's), as
        scheduler job arrays if ``array`` (default: the executor's ``array``).

        Results come in order; iterating raises the first failed element's exception there (the
        others are still available from :meth:`map_futures`). ``timeout`` (seconds from this call)
        raises :class:`TimeoutError`. When the iterator is closed or dropped before its end (a
        ``break``, an exception), the calls not yet started are cancelled; their jobs' reason says
        so (:data:`CANCELLED_BY_EXPYRE`).
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
    def _cancel(self, fut: ExPyReFuture[Any], reason: str | None = None) -> bool:
        job = fut._job
        if fut.cancelled():
            return True  # idempotent, as concurrent.futures documents
        # the done callbacks run here: never under the executor's lock
        if not fut._base_cancel():
            return False  # running or done
        _notify_cancel(fut)
        with self._lock:
            if job.cancel_requested or not all(f.cancelled() for f in job.futures):
                return True
            job.cancel_requested = True
            job.cancel_reason = reason
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
            control.control("cancel", [job.xpr.id], strict=True, reason=job.cancel_reason)
            job.xpr.reload()
        except Exception as exc:  # noqa: BLE001 - the futures are cancelled regardless
            logger.warning("cancelling job %s: %s", job.xpr.id, exc)
            return
        row = config.db.get(job.xpr.id)
        if row is not None and row["status"] == "submitted":
            record_status(job.xpr.stage_dir, "died", row.get("reason") or "cancelled before it started")
            config.db.update(job.xpr.id, status="died")
            with self._lock:
                job.state = "finished"
                job.done = True

    # -- shutdown ----------------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls (as :meth:`concurrent.futures.Executor.shutdown`). ``wait``:
        block until every future is done (showing progress), then mark the finished jobs processed
        (see ``mark_processed``); False returns at once (the jobs go on, and are still collected
        in the background). ``cancel_futures``: cancel the calls whose jobs have not started
        (also after some were cancelled already). Calling it again is harmless."""
        with self._lock:
            self._shutdown = True
            jobs = list(self._jobs)
        self._hide_display()
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
                    # a job with a call that raised stays "failed": visible in `xpr ls -s failed`
                    if job.done and job.xpr.status in ("succeeded", "died"):
                        try:
                            job.xpr.mark_processed()
                        except Exception as exc:  # noqa: BLE001
                            logger.warning("marking job %s processed: %s", job.xpr.id, exc)
        self._wake.set()

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        if exc_type is not None:
            # an exception in the block: stop waiting (the jobs go on in the scheduler) and do not
            # mark them processed, so running the script again picks them up
            self.mark_processed = False
            self._hide_display()
            self.shutdown(wait=False)
            return
        self.shutdown(wait=True)

    def wait(self, timeout: float | None = None) -> None:
        """Block until every call submitted so far is done (with the progress display)."""
        with self._lock:
            fs = [f for j in self._jobs for f in j.futures]
        with _Waiting(self):
            cf.wait(fs, timeout=timeout)

    # -- progress ----------------------------------------------------------------------------------
    def _someone_waits(self) -> bool:
        """A caller blocks in ``result()``/``map``/``wait()``, or in :func:`concurrent.futures.wait`
        / :func:`~concurrent.futures.as_completed` (they install waiters on the futures)."""
        with self._lock:
            if self._waiters > 0:
                return True
            jobs = [j for j in self._jobs if not j.done]
        return any(f._waiters for j in jobs for f in j.futures if not f.done())

    def _show_display(self, mode: str, create: bool = True) -> None:
        with self._display_lock:
            if self._display is None and not create:
                return
            # checked under the display lock: a caller that stopped waiting meanwhile has hidden
            # the display (or will, after this), so no frame outlives its wait
            if create and not self._someone_waits():
                return
            label = self.name or "expyre"
            if self._display is None:
                self._display = Display(label, 0, mode, every=self.progress_interval)
                _live_displays.add(self)
            total, done, running, queued, failed = self.counts()
            if mode == "log":  # the counts are in the text
                self._display.update(f"{label}: {done}/{total} calls done, {running} running, {queued} queued, "
                                     f"{failed} failed{self._slowest()}", None, None)
                self._display.total = None
            else:
                self._display.update(f"{label}: {running} running, {queued} queued, {failed} failed", done, total)

    def _hide_display(self) -> None:
        """End the display now (before the wait that showed it returns or raises): a terminal's
        bar is erased; a notebook's display and the log get the counts as they are now."""
        with self._display_lock:
            d, self._display = self._display, None
            if d is None:
                return
            if d.mode in ("notebook", "log"):  # the last state, drawn or logged by close()
                total, done, running, queued, failed = self.counts()
                label = self.name or "expyre"
                if d.mode == "notebook":
                    d.text, d.completed, d.total = f"{label}: {running} running, {queued} queued, {failed} failed", done, total
                else:
                    d.text = f"{label}: {done}/{total} calls done, {running} running, {queued} queued, {failed} failed"
            d.close()

    def _slowest(self) -> str:
        """``"; slowest: sq_3 (job sq_3_ab12cd) running 2m05s"`` (or the longest queued)."""
        now = time.monotonic()
        with self._lock:
            open_jobs = [j for j in self._jobs if not j.done and j.state == "submitted"]
        running = [(j.t_started, j) for j in open_jobs if j.t_started is not None]
        if running:
            t, j = min(running, key=lambda tj: tj[0])
            return f"; slowest: {j.xpr.name} (job {j.xpr.id}) running {format_duration(now - t)}"
        queued = [(j.t_submitted, j) for j in open_jobs if j.t_submitted is not None]
        if queued:
            t, j = min(queued, key=lambda tj: tj[0])
            return f"; longest queued: {j.xpr.name} (job {j.xpr.id}) {format_duration(now - t)}"
        return ""

    # -- the background thread --------------------------------------------------------------------
    def _run(self) -> None:
        mode = self._mode
        wait = 0.02
        next_tick = 0.0
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
                    next_tick = 0.0
                with self._lock:
                    active = [j for j in self._jobs if j.state == "submitted" and not j.done]
                    idle = not active and not self._queue
                    if idle and self._shutdown:
                        break
                if active and time.monotonic() >= next_tick:
                    progressed = self._tick(active)
                    wait = max(0.02, wait / 2) if progressed else min(self.check_interval, wait * 1.5)
                    next_tick = time.monotonic() + wait
                # one progress display while a caller waits and the wait is long
                waiting = mode is not None and not idle and self._someone_waits()
                if waiting and mode is not None:
                    t_wait_start = t_wait_start or time.monotonic()
                    if mode == "log" or time.monotonic() - t_wait_start >= SHOW_AFTER:
                        self._show_display(mode)
                else:
                    t_wait_start = None
                    if mode != "terminal":
                        self._hide_display()
                    elif mode is not None:
                        # a terminal's bar is ended by a waiting thread (see _Waiting); until then
                        # (e.g. after an as_completed() loop) it keeps counting
                        self._show_display(mode, create=False)
                timeout: float | None = None
                if not idle:
                    timeout = max(0.0, next_tick - time.monotonic())
                    if waiting:  # refresh the display; notice the end of an as_completed() loop
                        timeout = min(timeout, 0.25 if mode != "log" else min(1.0, self.progress_interval / 4))
                if self._wake.wait(timeout):
                    next_tick = 0.0  # a new call, waiter or cancel: look now
                self._wake.clear()
        except BaseException as exc:  # noqa: BLE001 - fail every open future rather than hang
            logger.exception("expyre executor thread failed")
            with self._lock:
                self._error = exc
                jobs = [j for j in self._jobs if not j.done]
            for j in jobs:
                for f in j.futures:
                    _set(f, None, RuntimeError(f"the expyre executor's background thread failed: {exc!r}"))
        finally:
            self._hide_display()

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
        failed: list[tuple[_Job, BaseException]] = []
        now = time.monotonic()
        with self._lock:
            for j in jobs:
                exc = errors.get(j.xpr.id)
                if exc is not None:
                    j.state = "finished"
                    j.done = True
                    failed.append((j, exc))
                    continue
                self.stats["submitted_jobs"] += 1
                j.state = "submitted"
                j.t_submitted = now
                if j.cancel_requested:
                    cancel_now.append(j)
        for j, exc in failed:  # outside the lock: completing a future runs its done callbacks
            for f in j.futures:
                _set(f, None, exc)
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
            outcomes: dict[str, str | None] = {}
            for j in list(jobs):
                try:
                    outcomes[j.xpr.id] = outcome_files(j.xpr.stage_dir)
                except ExPyReResultError as exc:  # a stage dir that must not be read fails its own futures
                    self._fail(j, exc)
                    jobs.remove(j)
                    progressed = True
            if any(o is None for o in outcomes.values()):
                before = poller.count
                poller.refresh(max_age=0.02 if shared else min(1.0, self.check_interval))
                self.stats["polls"] += poller.count - before
            rows = config.db.get_many([j.xpr.id for j in jobs])
            for j in jobs:
                row = rows.get(j.xpr.id)
                if row is not None and row["status"] == "started":
                    if j.t_started is None:
                        j.t_started = time.monotonic()
                    for f in j.futures:
                        _mark_running(f)
                outcome = outcomes[j.xpr.id]
                if outcome is None and self._claim_abandoned(row):
                    # another process claimed its submission (an identical call) and is gone
                    # before the scheduler had it: submit it from here (looked up by name first)
                    logger.info("job %s: the process submitting it (%s) is gone; submitting it from here",
                                j.xpr.id, row["submit_owner"])
                    with self._lock:
                        j.state = "queued"
                        self._queue.append(j)
                    progressed = True
                    continue
                if outcome is None and self._may_have_ended(row, poller):
                    try:
                        outcome = evaluate(j.xpr, poller)
                    except ExPyReResultError as exc:
                        self._fail(j, exc)
                        progressed = True
                        continue
                if outcome is None:
                    if j.packed and self.partial_results:
                        progressed |= self._partial(j)
                    continue
                self._complete(j, outcome)
                progressed = True
        return progressed

    @staticmethod
    def _claim_abandoned(row: dict[str, Any] | None) -> bool:
        """A job still ``created`` whose submission claim another process made is released or
        belongs to a process that is gone."""
        if row is None or row["status"] != "created":
            return False
        claim = row["submit_owner"]
        return not claim or (claim != submit_owner() and owner_dead(claim, row["submit_time"]))

    @staticmethod
    def _may_have_ended(row: dict[str, Any] | None, poller: Poller) -> bool:
        """False when :func:`expyre.poller.evaluate` would certainly answer "keep waiting" for a job
        without result files: its row (just read for all jobs at once) is not final and the poll
        does not suspect it. Saves a second listing and a database read per job and tick, which
        made a tick O(N) queries and a whole map O(N^2) (found by bench/)."""
        if row is None or row["status"] in ("succeeded", "failed", "died"):
            return True
        return bool(row["remote_id"]) and row["remote_id"] in poller.suspects

    def _partial(self, job: _Job) -> bool:
        """Complete the futures of a running packed job's finished elements, reading their
        outcome files through the verified stage directory; an outcome file that must not be read
        (a symlink, not a regular file, another user's) fails its element's future."""
        try:
            stage = open_stage_dir(job.xpr.stage_dir)
        except (OSError, UnsafePathError):
            return False  # gone for now, or refused: the job's result says so
        got = False
        with stage:
            try:
                names = [n for n in stage.names() if n.startswith(PARTIAL_PREFIX)]
            except OSError:
                return False
            for n in names:
                try:
                    i = int(n[len(PARTIAL_PREFIX):])
                except ValueError:
                    continue
                if i in job.partial_seen or i >= len(job.futures):
                    continue
                try:
                    with stage.open(n) as fh:
                        outcome = pickle.load(fh)
                except UnsafePathError as exc:
                    job.partial_seen.add(i)
                    err = ExPyReResultError(f"{self._where(job, i)}: not reading its result: {why_refused(exc)}")
                    err.__cause__ = exc
                    _set(job.futures[i], None, err)
                    got = True
                    continue
                except Exception:  # noqa: BLE001 - read again next time, or take it from the result
                    continue
                job.partial_seen.add(i)
                ok, value = decode_outcome(outcome, self._where(job, i))
                _set(job.futures[i], value if ok else None, None if ok else value)
                got = True
        return got

    def _where(self, job: _Job, i: int) -> str:
        return f"element {i} of expyre job {job.xpr.id}"

    def _fail(self, job: _Job, exc: BaseException) -> None:
        """End ``job`` with ``exc`` for all its futures."""
        for f in job.futures:
            _set(f, None, exc)
        with self._lock:
            job.state = "finished"
            job.done = True

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
                failed = sum(1 for oc in value if not (isinstance(oc, tuple) and oc and oc[0] == "ok"))
                if failed:
                    # the job itself succeeded, but not all of its calls: say so in the jobs database
                    # (`xpr ls -s failed`, `xpr show` lists the failed elements)
                    reason = f"{failed} of {len(value)} calls failed"
                    record_status(job.xpr.stage_dir, "failed", reason)  # kept by a rebuilt jobs database
                    config.db.update(job.xpr.id, status="failed", reason=reason)
                    job.xpr.status = "failed"
        with self._lock:
            job.state = "finished"
            job.done = True

    # -- introspection -----------------------------------------------------------------------------
    def futures(self) -> list[ExPyReFuture[Any]]:
        with self._lock:
            return [f for j in self._jobs for f in j.futures]

    def counts(self) -> tuple[int, int, int, int, int]:
        """``(total, done, running, queued, failed)`` over this executor's calls (failed counts
        raising and cancelled calls; done includes them)."""
        with self._lock:
            fs = [f for j in self._jobs for f in j.futures]
        total = len(fs)
        done = running = failed = 0
        for f in fs:  # the states read without each future's lock: a display needs no more
            state = f._state
            if state == _FINISHED:
                done += 1
                if f._exception is not None:
                    failed += 1
            elif state == _RUNNING:
                running += 1
            elif state != _PENDING:  # cancelled
                done += 1
                failed += 1
        return total, done, running, total - done - running, failed


class _MapIterator(Iterator[T]):
    """The results of :meth:`Executor.map` in order; :meth:`close` (also when garbage collected)
    cancels the calls not yet started, even before the first result was taken, with a reason
    saying that expyre cancelled them (:data:`CANCELLED_BY_EXPYRE`)."""

    def __init__(self, futures: list[ExPyReFuture[T]], end: float | None) -> None:
        self._fs = futures[::-1]
        self._end = end

    def __iter__(self) -> "_MapIterator[T]":
        return self

    def __next__(self) -> T:
        if not self._fs:
            raise StopIteration
        f = self._fs[-1]
        try:
            value = f.result(None if self._end is None else max(0.0, self._end - time.monotonic()))
        except BaseException as exc:
            self._fs.pop()
            if isinstance(exc, TimeoutError):
                why = "the map's timeout ran out"
            elif f.cancelled():
                why = f"element {f.index} of the map was cancelled"
            else:
                why = f"element {f.index} of the map raised {type(exc).__name__}"
            self._close(f"cancelled by expyre, not by the user: {why} before these calls started")
            raise
        self._fs.pop()
        return value

    def close(self) -> None:
        """Cancel the calls not started (the rest of the results are no longer wanted)."""
        self._close(CANCELLED_BY_EXPYRE)

    def _close(self, reason: str) -> None:
        fs, self._fs = self._fs, []
        for f in fs:
            f._cancel(reason)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass


#: executors that have shown a display: the ones still shown are ended at exit (a terminal's
#: bar must not outlive the program, whose background threads just stop)
_live_displays: "weakref.WeakSet[Executor]" = weakref.WeakSet()


@atexit.register
def _end_displays() -> None:
    for ex in list(_live_displays):
        try:
            ex._hide_display()
        except Exception:  # noqa: BLE001 - nothing to do about it at exit
            pass


def _set(f: ExPyReFuture[Any], value: Any, exc: BaseException | None) -> None:
    """Complete ``f`` unless it already is (cancelled, or completed from a partial result)."""
    with f._condition:
        if f._state == _PENDING:
            f.set_running_or_notify_cancel()
        if f._state != _RUNNING:
            return  # cancelled or done
    try:
        if exc is not None:
            f.set_exception(exc)
        else:
            f.set_result(value)
    except cf.InvalidStateError:
        pass


def _has_failed_element(xpr: ExPyRe) -> bool:
    """True when the packed job ``xpr`` already has a result here and one of its calls raised."""
    if xpr.status not in ("created", "submitted", "started", "succeeded"):
        return False
    try:
        if outcome_files(xpr.stage_dir) != "succeeded":
            return False
    except ExPyReResultError as exc:  # a stage dir that must not be read: its result is not reused
        logger.warning("packed job %s: %s; running it again", xpr.id, exc)
        return True
    try:
        outcomes = load_marker(xpr, SUCCEEDED)  # fetched again from the run directory if unreadable here
    except Exception as exc:  # noqa: BLE001 - an unreadable result is not reused either
        logger.warning("packed job %s: its earlier result cannot be read (%s); running it again", xpr.id, exc)
        return True
    return not isinstance(outcomes, list) or any(not (isinstance(o, tuple) and o and o[0] == "ok") for o in outcomes)


def _fn_name(fn: Callable[..., Any]) -> str:
    n = getattr(fn, "__name__", None) or type(fn).__name__
    return n if n != "<lambda>" else "lambda"

