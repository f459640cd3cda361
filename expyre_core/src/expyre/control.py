"""Cancel, hold and release jobs: the one path for the Python API and ``xpr``.

:func:`control` acts on any set of jobs of the jobs database: one scheduler command per system for
all of that system's jobs, and a reason recorded in the database for each job acted on. A job not
submitted yet is marked died by a cancel (it will never be submitted); a job that already ended is
left alone.

Example::

    from expyre import control
    report = control.control("hold", [x.id for x in xprs])
    for job_id, why in report.failed.items():
        print(job_id, why)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence

from .jobsdb import STATUS_GROUPS, JobsDB
from .stage_records import record_status

if TYPE_CHECKING:  # the contract (attrs, pluggy) is not needed to import this: xpr starts faster
    from .hookspecs import ControlOp

__all__ = ["ControlError", "JobOutcome", "ControlReport", "control", "OPERATIONS", "ONGOING_REMOTE"]

logger = logging.getLogger(__name__)

#: the operations and what is recorded as a job's reason when one is requested
OPERATIONS: dict[str, str] = {
    "cancel": "cancel requested by user",
    "hold": "hold requested by user",
    "release": "release requested by user",
}
#: statuses of jobs the scheduler knows (they have a remote id)
ONGOING_REMOTE = ("submitted", "started")


class ControlError(RuntimeError):
    """A cancel, hold or release could not be done for a job (raised by ``control(strict=True)``)."""


@dataclass
class JobOutcome:
    """What became of one job.

    :param id: the job id.
    :param status: its status before the operation (None: not in the jobs database).
    :param done: the operation was done (or, for a job not submitted yet, the cancel recorded).
    :param note: why not (``"already succeeded"``, ``"not submitted yet: cannot hold it"``...).
    :param error: the exception of the scheduler command that failed, if one did.
    """

    id: str
    status: str | None
    done: bool = False
    note: str = ""
    error: BaseException | None = None

    @property
    def failed(self) -> bool:
        """Not done, and not because the job had already ended."""
        return not self.done and not (self.status is not None and self.status not in STATUS_GROUPS["ongoing"])


@dataclass
class ControlReport:
    """The outcome of :func:`control`, one :class:`JobOutcome` per job, in the order asked."""

    op: str
    outcomes: list[JobOutcome] = field(default_factory=list)

    @property
    def done(self) -> list[str]:
        return [o.id for o in self.outcomes if o.done]

    @property
    def failed(self) -> dict[str, str]:
        """job id -> why the operation failed for it."""
        return {o.id: o.note for o in self.outcomes if o.failed}

    @property
    def skipped(self) -> dict[str, str]:
        """job id -> note, for jobs that had already ended."""
        return {o.id: o.note for o in self.outcomes if not o.done and not o.failed}


def control(op: "ControlOp", ids: Iterable[str], *, by: str | None = None, strict: bool = False,
            db: JobsDB | None = None, reason: str | None = None) -> ControlReport:
    """Cancel, hold or release the jobs ``ids`` in their schedulers.

    Jobs are read from the jobs database, grouped by system, and each system gets ONE control
    command for all of its jobs (a failure there fails that system's jobs only). Each job acted on
    gets a reason in the database (:data:`OPERATIONS`, e.g. ``"cancel requested by user"``). A job
    not submitted yet is marked died by a cancel (``"cancelled before submission"``) and cannot be
    held or released; a job that already ended is left alone (``note = "already <status>"``).

    :param op: ``"cancel"``, ``"hold"`` or ``"release"``.
    :param ids: job ids (``ExPyRe.id``, the ``id`` of ``xpr ls``).
    :param by: who asks, appended to the recorded reason (``"xpr"`` gives ``"... (xpr)"``).
    :param strict: raise instead of reporting (as ``ExPyRe.cancel``/``hold``/``release`` do): the
        scheduler's own exception when its command failed, else :class:`ControlError` for a job not
        in the database or, for hold and release, a job not submitted yet or already ended. A
        cancel of a job that already ended, or that has no scheduler id yet, is no error.
    :param db: the jobs database (default: the configured one).
    :param reason: recorded instead of the default reason, for an operation the user did not ask
        for (e.g. the Executor cancelling the calls of a ``map`` whose iterator was dropped).
    :return: a :class:`ControlReport`.
    :raises ValueError: ``op`` is not one of :data:`OPERATIONS`.

    Example::

        control("cancel", ["fit_ab12cd_3", "fit_ab12cd_4"], by="xpr").done
    """
    if op not in OPERATIONS:
        raise ValueError(f"unknown control operation {op!r}; valid: {', '.join(OPERATIONS)}")
    from . import config

    if db is None:
        db = config.db
    ids = list(dict.fromkeys(ids))
    rows = db.get_many(ids)
    suffix = f" ({by})" if by else ""
    report = ControlReport(op)
    by_system: dict[str, list[tuple[JobOutcome, dict]]] = defaultdict(list)
    for jid in ids:
        r = rows.get(jid)
        out = JobOutcome(jid, r["status"] if r else None)
        report.outcomes.append(out)
        if r is None:
            out.note = "not in the jobs database"
        elif r["status"] == "created":
            if op == "cancel":
                record_status(Path(r["from_dir"]), "died", (reason or "cancelled before submission") + suffix)
                db.update(jid, status="died", reason=(reason or "cancelled before submission") + suffix)
                out.done = True
            else:
                out.note = f"not submitted yet: cannot {op} it"
        elif r["status"] in ONGOING_REMOTE and r["remote_id"] and r["system"]:
            by_system[r["system"]].append((out, r))
        elif r["status"] in ONGOING_REMOTE:
            out.note = f"no scheduler id yet (being submitted?): cannot {op} it now"
        else:
            out.note = f"already {r['status']}"
    for sysname, group in by_system.items():
        try:
            system = config.get_system(sysname)
            system.control(op, [r["remote_id"] for _, r in group])
        except Exception as exc:  # noqa: BLE001 - this system's jobs fail; the others go on
            logger.info("%s of %d job(s) on %s failed: %s", op, len(group), sysname, exc)
            for out, _ in group:
                out.note, out.error = f"{op} on {sysname} failed", exc
            continue
        for out, r in group:
            db.update(r["id"], reason=(reason or OPERATIONS[op]) + suffix)
            out.done = True
    if strict:
        _raise_first(report)
    return report


def _raise_first(report: ControlReport) -> None:
    for out in report.outcomes:
        if out.done:
            continue
        if out.error is not None:
            raise out.error
        if report.op != "cancel" or out.status is None:
            past = {"cancel": "cancelled", "hold": "held", "release": "released"}[report.op]
            raise ControlError(f"job {out.id}: {out.note}; only a submitted job can be {past}"
                               if out.status is not None else f"job {out.id}: {out.note}")


def ongoing(rows: Sequence[dict]) -> list[dict]:
    """The rows of jobs that a cancel, hold or release can act on (status ``ongoing``)."""
    return [r for r in rows if r["status"] in STATUS_GROUPS["ongoing"]]
