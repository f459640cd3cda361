"""Service layer: the shared poll of a system, and the job state machine that reads it.

:class:`Poller` refreshes the state of *all* ongoing jobs of one system in one query (one round
trip on a remote host), however many waiters ask; :func:`evaluate` is one step of a job's state
machine (``submitted -> started -> succeeded | failed | died``) on what the last poll saw. A job
is declared dead only after it was seen gone (or terminal) without a result on two polls at
least the scheduler's ``vanish_grace`` apart.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import config
from .config_files import poll_outage_limit
from .jobsdb import JobsDB
from .layout import JOB_STDERR, PARTIAL_PREFIX, RESULT_MARKERS, STARTED
from .results import outcome_files, tail
from .stage_records import record_status
from .system import System, _basename
from .types import JobState, JobStatus, SchedulerCommandError, TransportError

__all__ = ["Poller", "evaluate", "poll_outage_limit"]

_RESULT = frozenset(RESULT_MARKERS)
#: the states JobState.terminal is true of
_ENDED = frozenset(s for s in JobState if s.terminal)
#: the columns of the jobs database that one poll reads
_POLL_COLUMNS = ("id", "remote_id", "from_dir", "status", "remote_status")


#: the logger of the API this serves (``expyre.func``): what users configure keeps working
logger = logging.getLogger("expyre.func")
timing = logging.getLogger("expyre.timing")


class Poller:
    """Refreshes the state of *all* ongoing jobs of one system in one query, at most once per
    ``max_age``, however many waiters ask (threads included)."""

    _registry: dict[tuple[str, str], "Poller"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, system: System, db: JobsDB) -> None:
        self.system = system
        self.db = db
        self.lock = threading.Lock()
        self.last = 0.0
        self.count = 0
        self.statuses: dict[str, JobStatus] = {}
        self.polled: set[str] = set()
        self.warned: set[str] = set()
        #: remote id -> (poll count, time) when it was first seen absent/terminal without results
        self.suspects: dict[str, tuple[int, float]] = {}
        #: remote id -> final state from the accounting records (asked once, for all new suspects)
        self.accounting: dict[str, JobStatus] = {}
        #: monotonic time of the first of the current run of failed polls (None: the last worked)
        self.failing_since: float | None = None

    @classmethod
    def get(cls, system: System, db: JobsDB) -> "Poller":
        key = (str(db.path), system.name)
        with cls._registry_lock:
            p = cls._registry.get(key)
            if p is None or p.system is not system:
                p = cls._registry[key] = Poller(system, db)
            return p

    def resume_suspects(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Jobs an earlier process already saw gone (``suspect_since`` in their jobs-database
        ``rows``) count as observed once, so that this poll can confirm them after the grace period."""
        for r in rows:
            rid = r["remote_id"]
            if rid and r.get("suspect_since") and rid not in self.suspects:
                self.suspects[rid] = (0, float(r["suspect_since"]))

    def refresh(self, max_age: float, force: bool = False, tolerate_failure: bool = True) -> None:
        """Poll unless the last poll is younger than ``max_age`` (never more often than the
        scheduler's ``min_poll_interval`` unless ``force``). A failed poll is logged and
        tolerated (see :meth:`_failed`) unless ``not tolerate_failure``: then it raises."""
        with self.lock:
            if not force:
                max_age = max(max_age, self.system.scheduler.min_poll_interval)
            if time.monotonic() - self.last < max_age:
                return
            # (id, remote id, stage dir, status, remote status) of each live job
            rows = self.db.jobs(system=self.system.name, status=["submitted", "started"], columns=_POLL_COLUMNS,
                                tuples=True)
            ids = [r[1] for r in rows if r[1]]
            dirs = [r[2] for r in rows]
            names = [_basename(d) for d in dirs]
            t0 = time.monotonic()
            try:
                statuses, markers = self.system.poll(ids, dirs)
                timing.debug("poll %s: %d jobs in %.3f s", self.system.name, len(ids), time.monotonic() - t0)
                done, partial = [], []
                for d, n in zip(dirs, names):
                    ms = markers.get(n)
                    if not ms:
                        continue
                    if ms & _RESULT:
                        done.append(Path(d))
                    # a running packed job's finished calls (their outcome files) come back with them
                    elif any(m.startswith(PARTIAL_PREFIX) and not os.path.exists(os.path.join(d, m)) for m in ms):
                        partial.append(Path(d))
                done += partial
                if done:
                    self.system.stage_out(done)
            except (TransportError, SchedulerCommandError) as exc:
                if not tolerate_failure:
                    raise
                self._failed(exc, len(ids))
                return
            if self.failing_since is not None:
                logger.warning("%s: polling works again after %.0f s of failures", self.system.name,
                               time.monotonic() - self.failing_since)
                self.failing_since = None
            # one pass over the jobs: the rows whose state changed, written in one transaction; every
            # job that is gone or terminal without a result starts its grace period now, whoever
            # waits on it; the accounting records are asked once for all new ones
            now = time.time()
            shares = self.system.shares_stage_dirs
            described: dict[int, str] = {}  # the parsers share one JobStatus among jobs in the same state
            updates: list[tuple[str, dict[str, Any]]] = []
            new_absent = []
            for (job_id, rid, from_dir, status, remote_status), n in zip(rows, names):
                st = statuses.get(rid)
                ms = markers.get(n)
                fields: dict[str, Any] = {}
                if st is None:
                    new_remote = "absent"
                else:
                    new_remote = described.get(id(st))
                    if new_remote is None:
                        new_remote = described[id(st)] = st.describe()
                    if st.state is JobState.UNKNOWN and job_id not in self.warned:
                        self.warned.add(job_id)
                        logger.warning("job %s: %s reported an unrecognised state %r; still waiting",
                                       job_id, self.system.cfg.scheduler, st.raw)
                if new_remote != remote_status:
                    fields["remote_status"] = new_remote
                if status == "submitted" and (
                        (st is not None and st.state is JobState.RUNNING) or (ms is not None and STARTED in ms)):
                    fields["status"] = "started"
                if fields:
                    updates.append((job_id, fields))
                if not rid:
                    continue
                # (its own update: a status that cannot move forward must not keep it from the row)
                if (st is not None and st.state not in _ENDED) or (ms and ms & _RESULT) or (
                        shares and any(os.path.exists(os.path.join(from_dir, m)) for m in RESULT_MARKERS)):
                    if self.suspects.pop(rid, None) is not None:
                        updates.append((job_id, {"suspect_since": None}))
                elif rid not in self.suspects:
                    self.suspects[rid] = (self.count + 1, now)
                    updates.append((job_id, {"suspect_since": now}))
                    if st is None:
                        new_absent.append(rid)
            if updates:
                self.db.update_many(updates)
            if new_absent:
                self.accounting.update(self.system.accounting(new_absent))
            self.statuses = statuses
            self.polled = set(ids)
            self.count += 1
            self.last = time.monotonic()

    def _failed(self, exc: Exception, n_jobs: int) -> None:
        """A poll failed even after its retries (scheduler or connection down): the jobs keep
        their last known state and the next poll tries again, until the failures have lasted
        :func:`poll_outage_limit` seconds; then the error is raised to the waiter."""
        now = time.monotonic()
        self.last = now  # the next try waits for the usual interval, no hot loop
        if self.failing_since is None:
            self.failing_since = now
        outage = now - self.failing_since
        limit = poll_outage_limit()
        if outage >= limit:
            raise type(exc)(f"{self.system.name}: polling has failed for {outage:.0f} s "
                            f"(EXPYRE_POLL_OUTAGE={limit:g}); last error: {exc}") from exc
        logger.warning("%s: poll of %d job(s) failed (%s); they keep their last known state, the next poll "
                       "tries again (failing for %.0f s, giving up after %g s)", self.system.name, n_jobs, exc,
                       outage, limit)


def evaluate(job: Any, poller: Poller) -> str | None:
    """One step of the state machine of a job handle (a :class:`~expyre.job.JobHandle`) on what
    ``poller`` last saw; returns a final status (``succeeded``, ``failed``, ``died``, recorded in
    the jobs database when it is ``died``) or None to keep waiting."""
    outcome = outcome_files(job.stage_dir)
    if outcome:
        return outcome
    job.reload()
    if job.status in ("succeeded", "failed", "died"):
        return job.status
    if job.remote_id is None or job.remote_id not in poller.polled:
        return None
    st = poller.statuses.get(job.remote_id)
    suspect = poller.suspects.get(job.remote_id)
    if suspect is None:
        return None
    # gone or terminal without a result file: never declare death from one observation
    first_poll, since = suspect
    system = job.system
    if poller.count <= first_poll or time.time() - since < system.scheduler.vanish_grace:
        return None
    if not system.shares_stage_dirs:
        system.stage_out([job.stage_dir])  # the results may have landed after all; and the logs
        outcome = outcome_files(job.stage_dir)
        if outcome:
            return outcome
    if st is None:
        acct = poller.accounting.get(job.remote_id)
        if acct is None:  # accounting records can lag the queue (qacct ~2 s): ask again, once
            acct = system.accounting([job.remote_id]).get(job.remote_id)
            if acct is not None:
                poller.accounting[job.remote_id] = acct
        why = f"scheduler accounting says {acct.describe()}" if acct else "it vanished from the queue"
    else:
        why = f"the scheduler reports it {st.describe()}"
    err = tail(job.stage_dir, JOB_STDERR)
    reason = f"job {job.id} ({job.remote_id} on {job.system_name}) ended without a result: {why}"
    if err:
        reason += f"; end of its stderr:\n{err}"
    record_status(job.stage_dir, "died", reason)
    config.db.update(job.id, status="died", reason=reason)
    job.reason = reason
    return "died"
