"""Service layer: what a job used, recorded in the jobs database's ``usage`` column.

Two sources, each an entry of the column's JSON object:

* ``"runner"``: the runner's own record (``_expyre_usage.json`` in the stage directory, written
  just before the outcome file, copied back with the results): ``start_time``, ``end_time``
  (epoch seconds), ``wall_time`` (seconds), ``peak_rss_kib`` (the runner's peak resident memory,
  so the call's), ``children_peak_rss_kib`` (the largest of the subprocesses it waited for),
  ``user_cpu``, ``system_cpu``, ``host``. Recorded when the job's outcome is read
  (:func:`record_runner`: ``get_results``, ``refresh``, ``xpr sync``, the Executor).
* ``"scheduler"``: the scheduler's accounting records (:meth:`expyre.hookspecs.Scheduler.usage`:
  Slurm's ``sacct``, Grid Engine's ``qacct``): ``elapsed``, ``max_rss_kib``, ``max_vmem_kib``,
  ``source``. Asked for finished jobs, one command per system (:func:`collect_scheduler`: ``xpr
  sync``, ``xpr show``, ``ExPyRe.usage()``); a job the records do not have yet is asked again next
  time.

Example::

    from expyre import usage
    u = usage.of_row(config.db.get(job_id))   # {"runner": {...}, "scheduler": {...}} or None
    print(usage.summary(u))                   # "wall 3.2 s, peak RSS 210.1 MiB; sacct: elapsed 5 s, ..."
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

from .jobsdb import STATUS_GROUPS, JobsDB
from .layout import USAGE

__all__ = ["read_runner_usage", "record_runner", "record_job_usage", "collect_scheduler", "of_row", "summary",
           "from_stage_file", "USAGE"]

logger = logging.getLogger(__name__)

_NUMBERS = ("start_time", "end_time", "wall_time", "peak_rss_kib", "children_peak_rss_kib", "user_cpu", "system_cpu")
#: statuses after which a job no longer runs: its scheduler records can be complete
FINAL = STATUS_GROUPS["finished"] + ("processed", "cleaned")


def read_runner_usage(stage_dir: Path) -> dict[str, Any] | None:
    """The runner's usage record of ``stage_dir`` (read without following a symlink; only its
    known numeric fields and ``host``), or None when there is none or it cannot be read."""
    try:
        fd = os.open(Path(stage_dir) / USAGE, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(1 << 16))
    except (OSError, ValueError):
        return None
    return _runner_fields(data)


def _runner_fields(data: Any) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {k: data[k] for k in _NUMBERS
                           if isinstance(data.get(k), (int, float)) and not isinstance(data.get(k), bool)}
    if isinstance(data.get("host"), str):
        out["host"] = data["host"][:256]
    return out or None


def record_runner(db: JobsDB, job_id: str, stage_dir: Path) -> dict | None:
    """Store the runner's usage record of the job (if its stage directory has one) in the jobs
    database; returns the merged ``usage`` object (None when there was nothing to record)."""
    runner = read_runner_usage(stage_dir)
    if runner is None:
        return None
    return db.merge_usage(job_id, {"runner": runner})


def record_job_usage(job: Any, outcome: str) -> None:
    """When a job handle's outcome is read (``succeeded``/``failed``; not ``died``): record the
    runner's usage record of its stage directory in the jobs database, once per handle. Never
    raises (usage is extra information: it must not cost a result)."""
    if outcome not in ("succeeded", "failed") or getattr(job, "_usage_recorded", False):
        return
    from . import config

    try:
        if record_runner(config.db, job.id, job.stage_dir) is not None:
            job._usage_recorded = True
    except Exception as exc:  # noqa: BLE001
        logger.info("job %s: usage not recorded: %s", job.id, exc)


def of_row(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``usage`` object of a jobs-database row (None when not recorded)."""
    raw = row.get("usage")
    if not raw:
        return None
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def from_stage_file(value: Any) -> dict[str, Any] | None:
    """A ``usage`` object as :func:`expyre.show.describe` gives it: the jobs database's (already
    ``{"runner": ..., "scheduler": ...}``) as it is; the runner's own file's content (flat)
    as ``{"runner": <its known fields>}``; None for nothing."""
    if not isinstance(value, dict) or not value:
        return None
    if "runner" in value or "scheduler" in value:
        return value
    runner = _runner_fields(value)
    return {"runner": runner} if runner else None


def collect_scheduler(rows: Iterable[Mapping[str, Any]], db: JobsDB) -> dict[str, dict]:
    """Ask the schedulers' accounting records what the finished jobs of ``rows`` used, ONE
    command per system, for the jobs that have no ``"scheduler"`` entry yet; store what they
    say. Returns job id -> the merged ``usage`` object of each job that got one now.

    A system that cannot be used (no longer configured, unreachable) is skipped with a log line."""
    from . import config

    by_system: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("status") in FINAL and r.get("remote_id") and r.get("system"):
            if "scheduler" not in (of_row(r) or {}):
                by_system[r["system"]].append(r)
    out: dict[str, dict] = {}
    for name, group in by_system.items():
        try:
            system = config.get_system(name)
            found = system.usage([r["remote_id"] for r in group])
        except Exception as exc:  # noqa: BLE001 - usage is extra information: never fails the caller
            logger.info("system %s: no scheduler usage for %d job(s): %s", name, len(group), exc)
            continue
        for r in group:
            u = found.get(r["remote_id"])
            if u is not None:
                merged = db.merge_usage(r["id"], {"scheduler": u.to_dict()})
                if merged is not None:
                    out[r["id"]] = merged
    return out


def _mib(kib: Any) -> str:
    return f"{kib / 1024:.1f} MiB"


def _secs(s: Any) -> str:
    return f"{s:.3g} s" if s < 100 else f"{s:.0f} s"


def summary(u: Mapping[str, Any] | None) -> str:
    """One line: ``wall 3.2 s, peak RSS 210.1 MiB; sacct: elapsed 5 s, MaxRSS 216.0 MiB`` (``-``
    when nothing is recorded)."""
    if not u:
        return "-"
    parts = []
    r = u.get("runner")
    if isinstance(r, dict):
        bits = []
        if isinstance(r.get("wall_time"), (int, float)):
            bits.append(f"wall {_secs(r['wall_time'])}")
        rss = [r.get(k) for k in ("peak_rss_kib", "children_peak_rss_kib") if isinstance(r.get(k), (int, float))]
        if rss:
            bits.append(f"peak RSS {_mib(max(rss))}")
        if bits:
            parts.append(", ".join(bits))
    s = u.get("scheduler")
    if isinstance(s, dict):
        bits = []
        if isinstance(s.get("elapsed"), (int, float)):
            bits.append(f"elapsed {_secs(s['elapsed'])}")
        if isinstance(s.get("max_rss_kib"), (int, float)):
            bits.append(f"MaxRSS {_mib(s['max_rss_kib'])}")
        if isinstance(s.get("max_vmem_kib"), (int, float)):
            bits.append(f"max vmem {_mib(s['max_vmem_kib'])}")
        parts.append(f"{s.get('source') or 'scheduler'}: " + (", ".join(bits) or "nothing recorded"))
    return "; ".join(parts) or "-"
