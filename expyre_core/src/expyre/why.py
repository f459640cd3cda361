"""Why was (or wasn't) a job reused, and why does a queued job wait? What ``xpr why`` reports.

A call is reused only if its name and hash (function identity and code, arguments except
``hash_ignore``, input file names and contents) match a job that can still give results (created,
submitted, started, succeeded). Jobs record per-component digests beside their stage directory
(:data:`HASHES`), from which :func:`diff_hashes` says what changed between two calls.

Example::

    from expyre import config
    from expyre.why import why_report
    print(why_report(config.db.jobs(name="relax_structure"))["verdict"])
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from .jobsdb import STATUS_GROUPS
from .layout import HASHES
from .stagedir import UnsafePathError, open_stage_dir

__all__ = ["HASHES", "read_hashes", "diff_hashes", "why_report", "explain_queued"]

logger = logging.getLogger(__name__)



def read_hashes(row: dict) -> dict | None:
    """The per-component digests the job of ``row`` recorded (read through its verified stage
    directory, :mod:`expyre.stagedir`), or None."""
    try:
        with open_stage_dir(Path(row["from_dir"])) as sd:
            return json.loads(sd.read_bytes(HASHES))
    except UnsafePathError as exc:
        logger.warning("job %s: not reading its digests: %s", row.get("id"), exc)
        return None
    except (OSError, ValueError):
        return None


def diff_hashes(new: dict, old: dict) -> list[str]:
    """What differs between two jobs' per-component digests, in words."""
    out = []
    if new.get("function") != old.get("function"):
        fn_new, fn_old = new.get("function_name"), old.get("function_name")
        out.append(f"function {fn_old} -> {fn_new}" if fn_new != fn_old else f"function code of {fn_new}")
    for kind, label in (("args", "argument"), ("kwargs", "keyword argument")):
        a, b = new.get(kind, {}), old.get(kind, {})
        for k in sorted(set(a) | set(b), key=lambda x: (len(x), x)):
            if k not in b:
                out.append(f"{label} {k} added")
            elif k not in a:
                out.append(f"{label} {k} removed")
            elif a[k] != b[k]:
                out.append(f"{label} {k}")
    fa, fb = new.get("files", {}), old.get("files", {})
    for k in sorted(set(fa) | set(fb)):
        if k not in fb:
            out.append(f"input file {k} added")
        elif k not in fa:
            out.append(f"input file {k} removed")
        elif fa[k] != fb[k]:
            out.append(f"input file {k} contents")
    ma, mb = new.get("modules", {}), old.get("modules", {})
    for k in sorted(set(ma) | set(mb)):
        if k not in mb:
            out.append(f"shipped module {k} added")
        elif k not in ma:
            out.append(f"shipped module {k} removed")
        elif ma[k] != mb[k]:
            out.append(f"shipped module {k} code")
    if not out and new.get("hash") != old.get("hash"):
        out.append("something outside the recorded components (e.g. hash_ignore or expyre version)")
    return out


def why_report(rows: Sequence[dict]) -> dict[str, Any]:
    """For jobs of one name (any order): which one an identical new call would reuse, why each
    other is not reused, and what changed between calls with different hashes."""
    reusable_status = STATUS_GROUPS["can_produce_results"]
    rows = sorted(rows, key=lambda r: r["creation_time"], reverse=True)  # newest first
    reused_by_hash: dict[str, str] = {}
    for r in rows:
        if r["hash"] and r["status"] in reusable_status and r["hash"] not in reused_by_hash:
            reused_by_hash[r["hash"]] = r["id"]
    newest = rows[0] if rows else None
    newest_digests = read_hashes(newest) if newest else None
    jobs = []
    for r in rows:
        if r["status"] in reusable_status:
            if reused_by_hash.get(r["hash"]) == r["id"]:
                why = f"an identical call reuses it (status {r['status']})"
                reusable = True
            else:
                why = f"an identical call reuses the newer job {reused_by_hash.get(r['hash'])} instead"
                reusable = False
        else:
            reusable = False
            why = {
                "processed": "its results were used (mark_processed): an identical call makes a new job",
                "cleaned": "its files were cleaned: an identical call makes a new job",
                "failed": "it failed: an identical call makes a new job",
                "died": "it died: an identical call makes a new job",
            }.get(r["status"], f"status {r['status']} cannot give results: an identical call makes a new job")
        entry: dict[str, Any] = {"id": r["id"], "status": r["status"], "hash": r["hash"], "created": r["creation_time"],
                                 "reusable": reusable, "why": why}
        if newest is not None and r is not newest and r["hash"] != newest["hash"]:
            digests = read_hashes(r)
            if newest_digests and digests:
                entry["changed_since"] = diff_hashes(newest_digests, digests)
            else:
                entry["changed_since"] = None  # no per-component digests recorded
        jobs.append(entry)
    verdict = None
    if newest is not None:
        target = reused_by_hash.get(newest["hash"])
        verdict = (f"a new call identical to the newest job ({newest['id']}) would reuse {target}"
                   if target else f"a new call identical to the newest job ({newest['id']}) would make a new job")
    return {"jobs": jobs, "verdict": verdict}



def explain_queued(rows: Sequence[dict]) -> dict[str, str]:
    """Job id -> why it still waits in its scheduler's queue, for the jobs of ``rows`` that are
    queued, asked of each system once (:meth:`expyre.hookspecs.Scheduler.explain_queued`). Jobs
    whose scheduler cannot say, or cannot be asked now, are left out (logged)."""
    from . import config

    by_system: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] == "submitted" and r["remote_id"] and r["system"] and (r["remote_status"] or "").startswith("queued"):
            by_system[r["system"]].append(r)
    out: dict[str, str] = {}
    for sysname, group in by_system.items():
        try:
            reasons = config.get_system(sysname).explain_queued([r["remote_id"] for r in group])
        except Exception as exc:  # noqa: BLE001 - an explanation is a nicety
            logger.info("asking %s why %d job(s) wait failed: %s", sysname, len(group), exc)
            continue
        for r in group:
            if reasons.get(r["remote_id"]):
                out[r["id"]] = reasons[r["remote_id"]]
    return out
