"""Refresh queued and running jobs from their schedulers and bring finished results back, without
waiting for anything (what ``xpr sync`` does); record what finished jobs used.

Each system is polled once for all its jobs. A job gone from the queue without a result is
declared died only when seen so by two polls the scheduler's grace period apart: a job an earlier
process already saw gone (``suspect_since`` in the jobs database) counts as seen once.

Example::

    from expyre.sync import sync
    for job in sync([x.id for x in xprs]):
        print(job.id, job.before, "->", job.status, job.note)
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from .jobsdb import JobsDB

__all__ = ["SyncedJob", "sync"]

logger = logging.getLogger(__name__)

_ONGOING_REMOTE = ("submitted", "started")


@dataclass
class SyncedJob:
    """One job after :func:`sync`.

    :param id: the job id; :param name: its name.
    :param before: its status before; :param status: after.
    :param remote_status: the scheduler's view after.
    :param note: what happened (``"results here"``, ``"already final"``, a death's reason...).
    :param error: the exception if polling or evaluating it failed.
    :param error_context: what failed (``"polling archer2 failed"``), or ``""``.
    """

    id: str
    name: str
    before: str
    status: str
    remote_status: str | None
    note: str = ""
    error: BaseException | None = None
    error_context: str = ""


def sync(ids: Iterable[str], *, db: JobsDB | None = None, show_progress: bool = True,
         usage: bool = True) -> list[SyncedJob]:
    """Poll the schedulers of the jobs ``ids`` once per system, record what changed and fetch the
    results of jobs that finished. Never waits for a job; jobs that are not queued or running are
    reported as they are.

    :param ids: job ids (those not in the jobs database are left out).
    :param db: the jobs database (default: the configured one).
    :param show_progress: a progress bar on a terminal (:mod:`expyre.progress`).
    :param usage: also ask the schedulers' accounting what the finished jobs among ``ids`` used,
        for those without it yet (one command per system; ``expyre.usage.collect_scheduler``).
    :return: one :class:`SyncedJob` per job, the jobs not polled first.

    Example: ``[j.status for j in sync(["fit_ab12cd_3"])] == ["succeeded"]``
    """
    from . import config
    from .poller import Poller
    from .progress import Progress

    if db is None:
        db = config.db
    ids = list(dict.fromkeys(ids))
    found = db.get_many(ids)
    rows = [found[i] for i in ids if i in found]
    results: list[SyncedJob] = []
    for r in rows:
        if r["status"] not in _ONGOING_REMOTE:
            results.append(SyncedJob(r["id"], r["name"], r["status"], r["status"], r["remote_status"],
                                     "not submitted" if r["status"] == "created" else "already final"))
    todo = [r for r in rows if r["status"] in _ONGOING_REMOTE]
    by_system: dict[str, list[dict]] = defaultdict(list)
    for r in todo:
        by_system[r["system"]].append(r)
    with Progress("syncing", total=len(todo) + len(by_system), enabled=show_progress) as progress:
        for sysname, group in by_system.items():
            progress.update(f"polling {sysname}")
            try:
                sysobj = config.get_system(sysname)
                poller = Poller.get(sysobj, db)
                poller.resume_suspects(group)
                poller.refresh(0, tolerate_failure=False)
                if _new_suspects(poller, group) and sysobj.scheduler.vanish_grace <= 1 and sysobj.scheduler.min_poll_interval <= 1:
                    # a scheduler whose view is definitive (e.g. local): confirm with a second poll now
                    time.sleep(max(sysobj.scheduler.vanish_grace, sysobj.scheduler.min_poll_interval, 0.05))
                    poller.refresh(0, tolerate_failure=False)
            except Exception as exc:  # noqa: BLE001 - reported per job; the other systems go on
                logger.info("polling %s failed: %s", sysname, exc)
                for r in group:
                    results.append(SyncedJob(r["id"], r["name"], r["status"], r["status"], r["remote_status"],
                                             "poll failed", exc, f"polling {sysname} failed"))
                progress.advance(len(group) + 1)
                continue
            progress.advance()
            progress.update(f"evaluating {sysname}")
            for r in group:
                results.append(_evaluate(r, poller, sysobj, db))
                progress.advance()
    if usage:
        from .usage import collect_scheduler

        collect_scheduler(db.get_many(ids).values(), db)
    return results


def _evaluate(r: dict, poller, sysobj, db: JobsDB) -> SyncedJob:
    from .job import JobHandle
    from .poller import evaluate
    from .usage import record_runner

    note, error = "", None
    try:
        xpr = JobHandle(r)
        outcome = evaluate(xpr, poller)
        if outcome in ("succeeded", "failed"):
            db.update(r["id"], status=outcome)
            record_runner(db, r["id"], xpr.stage_dir)
            note = "results here"
        elif outcome == "died":
            note = _first_line(xpr.reason, 100)
        elif r["remote_id"] in poller.suspects:
            grace = sysobj.scheduler.vanish_grace
            note = f"gone from the queue without a result; confirming (grace {grace:g} s): sync again"
    except Exception as exc:  # noqa: BLE001 - reported for this job
        error, note = exc, "error"
    new = db.get(r["id"]) or r
    return SyncedJob(r["id"], r["name"], r["status"], new["status"], new["remote_status"], note, error)


def _first_line(text: str | None, width: int) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


def _new_suspects(poller, rows: Sequence[dict]) -> bool:
    return any(r["remote_id"] in poller.suspects and poller.suspects[r["remote_id"]][0] >= poller.count for r in rows)
