"""Delete jobs from the jobs database, optionally cancelling them first and deleting their stage
directories (what ``xpr rm`` does).

Only ``<root>/run_*`` directories (not reached through a symlink) and the same directory under the
system's rundir are ever deleted. A job still queued or running is only cleaned once cancelled.

Example::

    from expyre.remove import remove
    report = remove([x.id for x in failed], clean=True)
    print(report.deleted, report.errors)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .control import ONGOING_REMOTE, control
from .jobsdb import STATUS_GROUPS, JobsDB
from .stage_records import record_status

__all__ = ["RemoveReport", "remove", "inside_root"]

logger = logging.getLogger(__name__)


@dataclass
class RemoveReport:
    """The outcome of :func:`remove`.

    :param deleted: ids removed from the jobs database.
    :param cancelled: ids a cancel was requested for (or that were marked died before submission).
    :param left_running: ids removed from the database although still queued or running (no cancel).
    :param errors: ``(job id, what went wrong, the exception or None)`` for jobs not deleted, or
        deleted with a problem (a system no longer configured, a failed cancel).
    """

    deleted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    left_running: list[str] = field(default_factory=list)
    errors: list[tuple[str, str, BaseException | None]] = field(default_factory=list)


def inside_root(path: Path, root: Path) -> bool:
    """Whether ``path`` is a ``run_*`` directory right inside ``root``, not through a symlink."""
    try:
        if path.is_symlink():
            return False
        p = path.resolve()
    except OSError:
        return False
    return p.parent == Path(root).resolve() and p.name.startswith("run_") and p.name == path.name


def remove(ids: Iterable[str], *, clean: bool = False, cancel: bool = False, by: str | None = None,
           db: JobsDB | None = None) -> RemoveReport:
    """Delete the jobs ``ids`` from the jobs database.

    :param clean: also delete their stage directories, here and on the remote host (``ExPyRe.clean``
        with ``wipe``); a job whose stage directory is not a ``run_*`` directory of the expyre root,
        or that is still queued or running, is then not deleted at all.
    :param cancel: first cancel the jobs still queued or running (:func:`expyre.control.control`).
    :param by: who asks, recorded in the reasons of cancelled jobs.
    :param db: the jobs database (default: the configured one).
    :return: a :class:`RemoveReport`.
    """
    from . import config
    from . import staging
    from .job import JobHandle

    if db is None:
        db = config.db
    ids = list(dict.fromkeys(ids))
    found = db.get_many(ids)
    rows = [found[i] for i in ids if i in found]
    report = RemoveReport()
    forget: dict[str, list[tuple[str, str]]] = {}
    cancelled: set[str] = set()
    if cancel:
        outcome = control("cancel", [r["id"] for r in rows if r["status"] in STATUS_GROUPS["ongoing"]], by=by, db=db)
        cancelled = set(outcome.done)
        report.cancelled = outcome.done
        report.errors += [(o.id, o.note, o.error) for o in outcome.outcomes if o.error is not None]
    for r in rows:
        still_running = r["status"] in ONGOING_REMOTE and r["id"] not in cancelled
        if clean:
            if still_running:
                report.errors.append((r["id"], f"still {r['status']}: not deleted (use --cancel to cancel it first)", None))
                continue
            stage = Path(r["from_dir"])
            if not inside_root(stage, Path(config.root)):
                report.errors.append((r["id"], f"not deleted: its stage dir {stage} is not a run_* directory of the "
                                               f"expyre root {config.root}", None))
                continue
            try:
                job = JobHandle(r)
                if r["system"] and r["system"] not in config.systems:
                    report.errors.append((r["id"], f"system {r['system']!r} is no longer configured: only the local "
                                                   f"stage dir is deleted", None))
                staging.clean(job, wipe=True)
            except Exception as exc:  # noqa: BLE001 - reported; the others go on
                logger.info("job %s: cleaning failed: %s", r["id"], exc)
                report.errors.append((r["id"], "cleaning failed, not deleted", exc))
                continue
        elif still_running:
            report.left_running.append(r["id"])
        stage = Path(r["from_dir"])
        if not clean and inside_root(stage, Path(config.root)):
            record_status(stage, "removed")  # a rebuild of the jobs database leaves it out
        db.remove(r["id"])
        report.deleted.append(r["id"])
        if r["remote_id"] and r["system"] and not still_running:
            forget.setdefault(r["system"], []).append((r["id"], r["remote_id"]))
    for sysname, jobs in forget.items():
        _forget(sysname, jobs, report)
    return report


def _forget(sysname: str, jobs: list[tuple[str, str]], report: RemoveReport) -> None:
    """A scheduler that keeps records of ended jobs (the local queue's ``forget``) drops those of
    the jobs deleted here."""
    from . import config

    try:
        system = config.systems.get(sysname)
        forget = getattr(system.scheduler, "forget", None) if system is not None else None
        if forget is not None:
            forget(system.transport, [rid for _, rid in jobs])
    except Exception as exc:  # noqa: BLE001 - the jobs are deleted; only the scheduler's records remain
        logger.info("%s: forgetting %d ended job(s) failed: %s", sysname, len(jobs), exc)
        report.errors += [(jid, f"deleted, but {sysname}'s records of it remain", exc) for jid, _ in jobs]
