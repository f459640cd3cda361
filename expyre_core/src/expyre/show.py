"""Everything known of one job, in one JSON-ready dict: what ``xpr show`` prints.

:func:`describe` gathers the jobs database row (status, reason, times, system, scheduler id,
resources), the scheduler's current view of the job (ONE status query through its system), the
partition chosen (recorded in the job script's comment line), the stage and remote directories,
the failed call's remote traceback (and, for a packed chunk, each failed element's), and the
resource usage when it was recorded.

Result files are pickles written by the job. They are read here only from the job's own stage
directory, through its verified directory descriptor (:mod:`expyre.stagedir`: owned by this user
and private to it for writing, never through a symlink, regular files only), and loaded by
:class:`SafeUnpickler`, which builds nothing but plain containers, numbers, strings and builtin
exceptions: a pickle cannot run code here, and an exception of the user's own class is not needed
(its type name, message and traceback are strings).

Example::

    from expyre.show import describe
    info = describe("fit_ab12cd34ef_3")
    print(info["status"], info["failure"]["traceback"] if info["failure"] else "")
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any

from .layout import FAILED, PARTIAL_PREFIX, SCRIPT, STARTED, SUCCEEDED, USAGE
from .stagedir import StageDir, open_stage_dir

__all__ = ["describe", "SafeUnpickler", "safe_loads", "read_failure", "stage_dir_of", "JobNotFoundError",
           "FAILED", "STARTED", "SUCCEEDED", "USAGE"]

logger = logging.getLogger(__name__)

#: the most bytes of a result file read
_LIMIT = 64 << 20
_ELEMENT_RE = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}(\d+)$")
_SCRIPT_PARTITION = re.compile(r"^# expyre job \S+ on system .*?, partition (?P<p>.+)$", re.M)


class JobNotFoundError(LookupError):
    """No job of that id in the jobs database."""


# -- safe reading of the job's pickles ---------------------------------------------------------

_SAFE_BUILTINS = frozenset({
    "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "complex",
    "bool", "slice", "range", "NoneType",
})


class Opaque:
    """Stands for an object of a class :class:`SafeUnpickler` does not build; absorbs whatever the
    pickle does with it (construct, call, set state, append, set items)."""

    _name = "?"

    def __init__(self, *args: Any, **kw: Any) -> None:
        pass

    def __call__(self, *args: Any, **kw: Any) -> "Opaque":
        return type(self)()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setattr__(self, key: str, value: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{self._name}: not loaded>"


class SafeUnpickler(pickle.Unpickler):
    """Loads plain data and builtin exception classes only; any other global becomes an
    :class:`Opaque` placeholder (so a dict around it still loads), and nothing is ever imported."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins":
            obj = getattr(builtins, name, None)
            if name in _SAFE_BUILTINS or (isinstance(obj, type) and issubclass(obj, BaseException)):
                return obj
        return type(name, (Opaque,), {"_name": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def safe_loads(data: bytes) -> Any:
    """:class:`SafeUnpickler` of ``data``."""
    return SafeUnpickler(io.BytesIO(data)).load()


def _checked_stage_dir(row: dict, root: Path) -> StageDir:
    """The job's own stage dir (``<root>/run_<id>``), opened and verified by
    :func:`expyre.stagedir.open_stage_dir` (owned by this user, private to it for writing, not a
    symlink); :class:`ValueError` (:class:`~expyre.config_files.UnsafePathError`) if it is not."""
    own = Path(root) / f"run_{row['id']}"
    if Path(row["from_dir"]) != own:
        raise ValueError(f"job {row['id']}: recorded stage directory {row['from_dir']} is not its own {own}; not reading it")
    return open_stage_dir(own)


def _failure_of(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        return {"type": None, "message": None, "traceback": None, "error": f"unexpected content ({type(info).__name__})"}
    out = {k: info.get(k) if isinstance(info.get(k), (str, int, type(None))) else str(info.get(k))
           for k in ("type", "message", "traceback", "stage", "host", "index")}
    return {k: v for k, v in out.items() if v is not None or k in ("type", "message", "traceback")}


def read_failure(stage_dir: StageDir) -> dict[str, Any] | None:
    """The failed call's ``{"type", "message", "traceback", "stage", "host"}`` from
    ``_expyre_job_failed`` of ``stage_dir`` (opened and checked: see :func:`stage_dir_of`), and for a
    packed chunk ``"elements"``: the failed elements' ``{"element", "index", "type", "message",
    "traceback"}``. None when neither exists."""
    out: dict[str, Any] | None = None
    try:
        out = _failure_of(safe_loads(stage_dir.read_bytes(FAILED, _LIMIT)))
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - a corrupt or hostile file is reported, not raised
        out = {"type": None, "message": None, "traceback": None, "error": f"{FAILED} cannot be read: {exc}"}
    elements = []
    try:
        names = stage_dir.names()
    except OSError:
        names = []
    for n in sorted((n for n in names if _ELEMENT_RE.match(n)), key=lambda n: int(_ELEMENT_RE.match(n).group(1))):  # type: ignore[union-attr]
        i = int(_ELEMENT_RE.match(n).group(1))  # type: ignore[union-attr]
        try:
            outcome = safe_loads(stage_dir.read_bytes(n, _LIMIT))
            if not (isinstance(outcome, tuple) and len(outcome) == 2) or outcome[0] != "error":
                continue
            entry = _failure_of(safe_loads(outcome[1]))
        except Exception as exc:  # noqa: BLE001
            entry = {"type": None, "message": None, "traceback": None, "error": f"{n} cannot be read: {exc}"}
        elements.append({"element": i, **entry})
    if elements:
        out = out or {}
        out["elements"] = elements
    return out


def stage_dir_of(row: dict) -> StageDir:
    """The checked, open stage dir of the job of ``row`` (see :func:`_checked_stage_dir`); close it."""
    from . import config

    return _checked_stage_dir(row, Path(config.root))


# -- the rest of what is known -----------------------------------------------------------------

def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _started(stage: StageDir) -> dict[str, Any] | None:
    try:
        text = stage.read_bytes(STARTED, 4096).decode(errors="replace")
    except (OSError, ValueError):  # missing, or refused (a symlink, a FIFO, another's file)
        return None
    fields = dict(p.partition("=")[::2] for p in text.split())
    out: dict[str, Any] = {"host": fields.get("host"), "pid": fields.get("pid")}
    try:
        out["time"] = float(fields["time"])
    except (KeyError, ValueError):
        out["time"] = None
    return out


def _partition(stage: StageDir) -> str | None:
    try:
        text = stage.read_bytes(SCRIPT, 1 << 20).decode(errors="replace")
    except (OSError, ValueError):  # missing, or refused (a symlink, a FIFO, another's file)
        return None
    m = _SCRIPT_PARTITION.search(text)
    return m.group("p").strip() if m else None


def _script_header(stage: StageDir) -> list[str]:
    """The scheduler directives of the job script (its ``#`` lines before the first blank one)."""
    try:
        lines = stage.read_bytes(SCRIPT, 1 << 20).decode(errors="replace").splitlines()
    except (OSError, ValueError):
        return []
    out = []
    for line in lines[1:]:
        if not line.strip():
            break
        out.append(line)
    return out


def _usage(row: dict, stage: StageDir | None) -> Any:
    if row.get("usage"):
        return _json_field(row["usage"])
    if stage is not None:
        try:
            return json.loads(stage.read_bytes(USAGE, 1 << 20))
        except (OSError, ValueError):
            pass
    return None


def _scheduler_view(row: dict) -> dict[str, Any] | None:
    """ONE status query for this job through its system: ``{"state", "raw", "reason",
    "exit_code", "describe"}``, ``{"state": None, ...}`` when the scheduler no longer lists it,
    ``{"error": ...}`` when it cannot be asked; None for a job the scheduler never had."""
    if not (row.get("remote_id") and row.get("system")):
        return None
    from . import config

    try:
        st = config.get_system(row["system"]).status([row["remote_id"]]).get(row["remote_id"])
    except Exception as exc:  # noqa: BLE001 - reported in the description
        return {"error": f"{type(exc).__name__}: {exc}"}
    if st is None:
        return {"state": None, "describe": "not in the queue"}
    return {"state": st.state.value, "raw": st.raw, "reason": st.reason, "exit_code": st.exit_code, "describe": st.describe()}


def describe(job_id: str, *, query_scheduler: bool = True) -> dict[str, Any]:
    """Everything known of job ``job_id``, JSON-ready.

    Keys: ``id, name, status, reason, hash, times`` (``created, submitted, status_changed,
    started``: epoch seconds or None), ``system, remote_id, remote_status`` (the scheduler's last
    recorded word), ``scheduler`` (its current view, :func:`_scheduler_view`; None when not asked
    or never submitted), ``resources, partition, script_header, stage_dir, remote_dir, started``
    (host, pid), ``failure`` (:func:`read_failure`, None when it did not fail), ``usage``
    (``{"runner": ..., "scheduler": ...}`` as ``expyre.usage`` describes; None when not
    recorded), ``problems`` (what could not be read, in words).

    :param query_scheduler: ask the scheduler for its current view (one status query) and, for a
        finished job whose scheduler usage is not recorded yet, its accounting records (one more
        command, where the scheduler has them; what they say is kept in the jobs database).
    :raises JobNotFoundError: no such job in the jobs database.
    """
    from . import config

    row = config.db.get(job_id)
    if row is None:
        raise JobNotFoundError(f"no job {job_id!r} in the jobs database {config.db.path}")
    problems: list[str] = []
    stage: StageDir | None
    try:
        stage = _checked_stage_dir(row, Path(config.root))
    except (OSError, ValueError) as exc:
        stage = None
        problems.append(str(exc) if isinstance(exc, ValueError) else f"stage directory {row['from_dir']}: {exc.strerror}")
    remote_dir = None
    if row.get("system"):
        try:
            system = config.get_system(row["system"])
            if not system.shares_stage_dirs:
                remote_dir = (f"{system.host}:" if system.host else "") + system.remote_dir(Path(row["from_dir"]))
        except Exception as exc:  # noqa: BLE001 - e.g. the system is no longer configured
            problems.append(f"system {row['system']!r}: {exc}")
    failure = None
    if stage is not None and row["status"] not in ("succeeded", "processed", "cleaned"):
        failure = read_failure(stage)
    started = _started(stage) if stage is not None else None
    from .usage import collect_scheduler, from_stage_file

    if query_scheduler:  # a finished job's accounting records: asked once, then kept in the jobs database
        got = collect_scheduler([row], config.db)
        if row["id"] in got:
            row = {**row, "usage": got[row["id"]]}
    info: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "reason": row.get("reason"),
        "hash": row.get("hash"),
        "times": {
            "created": row.get("creation_time"),
            "submitted": row.get("submit_time"),
            "status_changed": row.get("status_time"),
            "started": started.get("time") if started else None,
        },
        "system": row.get("system"),
        "remote_id": row.get("remote_id"),
        "remote_status": row.get("remote_status"),
        "scheduler": _scheduler_view(row) if query_scheduler else None,
        "resources": _json_field(row.get("resources")),
        "partition": _partition(stage) if stage is not None else None,
        "script_header": _script_header(stage) if stage is not None else [],
        "stage_dir": row["from_dir"],
        "remote_dir": remote_dir,
        "cwd": row.get("cwd"),
        "started": {k: v for k, v in started.items() if k != "time"} if started else None,
        "failure": failure,
        "usage": from_stage_file(_usage(row, stage)),
        "problems": problems,
    }
    if stage is not None:
        stage.close()
    return info
