"""Service layer: reading a job's outcome from its stage directory.

The runner's marker files (:data:`~expyre.layout.SUCCEEDED`, :data:`~expyre.layout.FAILED`) are
the truth about a job that ended; the functions here read them, never through a symlink, and
:func:`finish` turns an outcome into the function's value (or its exception) for a job handle
(a :class:`~expyre.job.JobHandle`, e.g. an :class:`~expyre.func.ExPyRe`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from . import _faults, config
from .errors import ExPyReJobDiedError, ExPyReRemoteTraceback, ExPyReResultError, RemoteBaseException, RemoteError
from .layout import FAILED, STDERR, STDOUT, SUCCEEDED
from .staging import copy_outputs

__all__ = ["outcome_files", "open_marker", "read_text", "tail", "remote_exception", "finish"]


def outcome_files(stage_dir: Path) -> str | None:
    """``"succeeded"``/``"failed"`` when the runner's result marker is in ``stage_dir``, else None."""
    # listing the directory also refreshes NFS attribute caches before exists()
    names = set(os.listdir(stage_dir)) if stage_dir.exists() else set()
    if SUCCEEDED in names:
        return "succeeded"
    if FAILED in names:
        return "failed"
    return None


def open_marker(stage_dir: Path, fname: str) -> BinaryIO:
    """A marker file of a job's own directory, opened for reading, never through a symlink."""
    if stage_dir.is_symlink():
        raise OSError(f"stage directory {stage_dir} is a symlink; not following it")
    return os.fdopen(os.open(stage_dir / fname, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def read_text(stage_dir: Path, fname: str) -> str:
    """A text file of the stage dir, or "" if it cannot be read."""
    try:
        return (stage_dir / fname).read_text(errors="replace")
    except OSError:
        return ""


def tail(stage_dir: Path, fname: str, n: int = 20) -> str:
    """The last ``n`` lines of a text file of the stage dir ("" if it cannot be read)."""
    try:
        lines = (stage_dir / fname).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def remote_exception(job: Any) -> BaseException:
    """The exception of a failed job, its remote traceback as ``__cause__`` (also set as
    ``job.remote_traceback``)."""
    try:
        with open_marker(job.stage_dir, FAILED) as f:
            info = pickle.load(f)
    except Exception as exc:
        return ExPyReResultError(f"job {job.id} failed, and its error file cannot be read: {exc}")
    exc = info.get("exception")
    tb = info.get("traceback", "")
    if not isinstance(exc, BaseException):
        exc = RemoteError(f"{info.get('type')}: {info.get('message')}")
    elif not isinstance(exc, Exception):  # a SystemExit recorded by an older runner: never raise it here
        code = exc.code if isinstance(exc, SystemExit) else None
        exc = RemoteBaseException(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc),
                                  code if code is None or isinstance(code, (int, str)) else repr(code), tb)
    exc.__cause__ = ExPyReRemoteTraceback(tb)
    if hasattr(exc, "add_note"):
        exc.add_note(f"raised in expyre job {job.id} on {info.get('host')} while {info.get('stage')}")
    job.remote_traceback = tb
    return exc


def finish(job: Any, outcome: str) -> Any:
    """The final step for a job handle whose ``outcome`` is known (``succeeded``, ``failed`` or
    ``died``): record it, set ``job.stdout``/``job.stderr``, copy the output files here and return
    the value, or raise the job's exception (:class:`~expyre.errors.ExPyReJobDiedError` if it died)."""
    from .usage import record_job_usage  # noqa: PLC0415 - kept apart from the module's imports

    record_job_usage(job, outcome)
    if outcome == "died":
        job.reload()
        raise ExPyReJobDiedError(job.reason or f"job {job.id} died")
    job.stdout = read_text(job.stage_dir, STDOUT)
    job.stderr = read_text(job.stage_dir, STDERR)
    if outcome == "failed":
        config.db.update(job.id, status="failed")
        job.status = "failed"
        raise remote_exception(job)
    try:
        with open_marker(job.stage_dir, SUCCEEDED) as f:
            value = pickle.load(f)
    except Exception as exc:
        raise ExPyReResultError(
            f"job {job.id}: result file {job.stage_dir / SUCCEEDED} cannot be read ({type(exc).__name__}: {exc}); "
            f"it may be truncated or corrupted. Re-run with start(..., force_rerun=True)"
        ) from exc
    _faults.point("results_read")
    config.db.update(job.id, status="succeeded")
    _faults.point("results_recorded")
    job.status = "succeeded"
    copy_outputs(job.id, job.stage_dir)
    return value
