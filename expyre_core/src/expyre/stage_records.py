"""Leaf layer: what a stage directory records of its job besides the call and the runner's
markers, so that the jobs database can be rebuilt from the stage directories alone.

A job's row is recovered from its stage directory ``<root>/run_<id>``:

* ``id`` from the directory's name; ``name`` and ``cwd`` from :data:`~expyre.layout.META`; the call's
  digest from :data:`~expyre.layout.HASHES`; the creation time is META's modification time;
* the submission: :data:`~expyre.layout.CLAIM` when it is claimed (system, claim owner and time,
  resources), :data:`~expyre.layout.SUBMITTED` once the scheduler accepted the job (its scheduler
  id), so a job still queued or running keeps its scheduler id and is never submitted again (a
  claim without it is looked up by name before anything is submitted); the job script's comment
  line (``# expyre job ID on system S, ...``) names the system of a stage directory without them;
* the status from the runner's markers (``succeeded``, ``failed``; ``started``), else
  ``submitted`` when a scheduler id is recorded, else ``created``; a status the markers cannot show
  (``died`` and its reason, ``processed``, ``cleaned``, and ``removed`` from the database, which
  a rebuild leaves out) from :data:`~expyre.layout.STATUS_RECORD`.

Every record is JSON written under a private temporary name and renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

from .layout import CLAIM, FAILED, HASHES, META, SCRIPT, STAGE_DIR_PREFIX, STARTED, STATUS_RECORD, SUBMITTED, SUCCEEDED
from .names import JOB_ID_RE

__all__ = ["write_json", "record_claim", "record_submitted", "record_status", "row_from_stage_dir", "scan"]

#: statuses kept in :data:`~expyre.layout.STATUS_RECORD` (``removed``: deleted from the jobs database)
RECORDED_STATUSES = ("died", "failed", "processed", "cleaned", "removed")

logger = logging.getLogger(__name__)

_SCRIPT_SYSTEM = re.compile(r"^# expyre job \S+ on system (?P<s>.+?)(?:, partition .+)?$", re.M)


def _record(path: Path, data: dict[str, Any]) -> None:
    """:func:`write_json` of a record: a stage directory that is gone (a wiped job) is no error, and
    one that cannot be written is logged (the jobs database still has it; a rebuild would not)."""
    try:
        write_json(path, data)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot record %s in %s (%s): a rebuild of the jobs database would not know it",
                       path.name, path.parent, exc)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` through a private temporary name (a reader sees all or nothing)."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


#: the largest record read (a record is a few hundred bytes; a bigger file is not one of ours)
_MAX_RECORD = 1 << 20


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in the file ``path``; None when it is missing, unreadable, not JSON, or not a
    regular file of yours (or root's): never through a symlink, never blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.geteuid(), 0) or st.st_size > _MAX_RECORD:
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = json.loads(f.read(_MAX_RECORD))
    except (OSError, ValueError):
        return None
    finally:
        if fd >= 0:
            os.close(fd)
    return data if isinstance(data, dict) else None


def record_claim(stage_dir: Path, system: str, owner: str, resources: dict[str, Any] | None) -> None:
    """The submission of the job in ``stage_dir`` to ``system`` is claimed by ``owner`` (nothing
    queued yet)."""
    _record(stage_dir / CLAIM, {"system": system, "owner": owner, "claim_time": time.time(), "resources": resources})


def record_submitted(stage_dir: Path, system: str | None, remote_id: str) -> None:
    """The scheduler accepted the job in ``stage_dir`` as ``remote_id`` (the claim's resources kept)."""
    claim = read_json(stage_dir / CLAIM) or {}
    _record(stage_dir / SUBMITTED, {"system": system or claim.get("system"), "remote_id": remote_id,
                                    "submit_time": time.time(), "resources": claim.get("resources")})


def record_status(stage_dir: Path, status: str, reason: str | None = None) -> None:
    """A status of the job in ``stage_dir`` that its markers cannot show (one of
    :data:`RECORDED_STATUSES`). A missing stage directory is no error (a wiped job)."""
    if status not in RECORDED_STATUSES:
        raise ValueError(f"status {status!r} is not recorded in a stage directory; valid: {', '.join(RECORDED_STATUSES)}")
    _record(stage_dir / STATUS_RECORD, {"status": status, "reason": reason, "time": time.time()})


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _script_system(stage_dir: Path) -> str | None:
    try:
        with open(stage_dir / SCRIPT) as f:
            head = f.read(65536)
    except OSError:
        return None
    m = _SCRIPT_SYSTEM.search(head)
    return m.group("s") if m else None


def row_from_stage_dir(stage_dir: Path) -> dict[str, Any] | None:
    """The jobs-database row of the job in ``stage_dir`` as its files record it; None if it holds
    no job (no readable META, or a name that is not a stage directory's) or the job was removed
    from the jobs database."""
    stage_dir = Path(stage_dir)
    job_id = stage_dir.name[len(STAGE_DIR_PREFIX):]
    if not stage_dir.name.startswith(STAGE_DIR_PREFIX) or not JOB_ID_RE.match(job_id):
        return None
    meta = read_json(stage_dir / META)
    if meta is None or not isinstance(meta.get("name"), str):
        return None
    recorded = read_json(stage_dir / STATUS_RECORD) or {}
    if recorded.get("status") == "removed":
        return None
    hashes = read_json(stage_dir / HASHES) or {}
    sub = read_json(stage_dir / SUBMITTED) or {}
    claim = read_json(stage_dir / CLAIM) or {}
    created = _mtime(stage_dir / META) or time.time()
    remote_id = sub.get("remote_id") if isinstance(sub.get("remote_id"), str) else None
    row: dict[str, Any] = {
        "id": job_id, "name": meta["name"], "hash": hashes.get("hash"), "from_dir": str(stage_dir),
        "cwd": meta.get("cwd"), "creation_time": created, "system": sub.get("system") or claim.get("system") or _script_system(stage_dir),
        "remote_id": remote_id, "remote_status": None, "reason": None, "submit_owner": None,
        "submit_time": sub.get("submit_time") or claim.get("claim_time"), "suspect_since": None,
        "resources": None,
    }
    resources = sub.get("resources") or claim.get("resources")
    if isinstance(resources, dict):
        row["resources"] = json.dumps(resources)
    status_time = None
    if recorded.get("status") in ("processed", "cleaned"):
        status, status_time = recorded["status"], recorded.get("time")
    elif recorded.get("status") == "failed" and (stage_dir / SUCCEEDED).exists():
        # a packed Executor job whose function returned but some of whose calls raised
        status, status_time = "failed", recorded.get("time")
        row["reason"] = recorded.get("reason")
    elif (stage_dir / SUCCEEDED).exists():
        status, status_time = "succeeded", _mtime(stage_dir / SUCCEEDED)
    elif (stage_dir / FAILED).exists():
        status, status_time = "failed", _mtime(stage_dir / FAILED)
    elif recorded.get("status") == "died":
        status, status_time = "died", recorded.get("time")
        row["reason"] = recorded.get("reason")
    elif remote_id is not None:
        status = "started" if (stage_dir / STARTED).exists() else "submitted"
        status_time = sub.get("submit_time")
        row["remote_status"] = "submitted"
    else:
        status = "created"
        if isinstance(claim.get("owner"), str):  # claimed, outcome unknown: the next start() looks it up by name
            row["submit_owner"] = claim["owner"]
    row["status"] = status
    row["status_time"] = status_time if isinstance(status_time, (int, float)) else created
    return row


def scan(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every stage directory ``<root>/run_*`` (oldest first), and the names of the
    ``run_*`` entries that hold no job (skipped), each with why."""
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    try:
        names = sorted(n for n in os.listdir(root) if n.startswith(STAGE_DIR_PREFIX))
    except FileNotFoundError:
        return rows, skipped
    for n in names:
        d = Path(root) / n
        if d.is_symlink() or not d.is_dir():
            skipped.append(f"{n}: not a directory")
            continue
        row = row_from_stage_dir(d)
        if row is None:
            if (read_json(d / STATUS_RECORD) or {}).get("status") != "removed":
                skipped.append(f"{n}: no readable {META}")
            continue
        rows.append(row)
    rows.sort(key=lambda r: r["creation_time"])
    return rows, skipped
