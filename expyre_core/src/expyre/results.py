"""Service layer: reading a job's outcome from its stage directory.

The runner's marker files (:data:`~expyre.layout.SUCCEEDED`, :data:`~expyre.layout.FAILED`) are
the truth about a job that ended; the functions here read them through the verified directory
descriptor of :mod:`expyre.stagedir` (never through a symlink, never from a directory another
user owns or can write), and
:func:`finish` turns an outcome into the function's value (or its exception) for a job handle
(a :class:`~expyre.job.JobHandle`, e.g. an :class:`~expyre.func.ExPyRe`).
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from . import _faults, config
from .errors import ExPyReJobDiedError, ExPyReRemoteTraceback, ExPyReResultError, RemoteBaseException, RemoteError
from .files import temp_name
from .layout import FAILED, STDERR, STDOUT, SUCCEEDED
from .stagedir import StageDir, UnsafePathError, open_stage_dir, why_refused
from .staging import copy_outputs
from .types import TransportError

__all__ = ["open_stage", "outcome_files", "open_marker", "load_marker", "read_text", "tail", "remote_exception", "finish"]

#: the logger of the API this serves (``expyre.func``): what users configure keeps working
logger = logging.getLogger("expyre.func")


def _refused(stage_dir: Path, exc: UnsafePathError) -> ExPyReResultError:
    return ExPyReResultError(f"not reading the job's results in {stage_dir}: {why_refused(exc)}")


def open_stage(stage_dir: Path) -> StageDir:
    """The job's stage directory, opened and verified (:func:`expyre.stagedir.open_stage_dir`).

    :raises expyre.errors.ExPyReResultError: it is a symlink, or not owned by you or private to you for writing.
    :raises FileNotFoundError: it does not exist.
    """
    try:
        return open_stage_dir(stage_dir)
    except UnsafePathError as exc:
        raise _refused(stage_dir, exc) from exc


def _outcome_of(names: Iterable[str]) -> str | None:
    names = set(names)
    if SUCCEEDED in names:
        return "succeeded"
    if FAILED in names:
        return "failed"
    return None


def outcome_files(stage_dir: Path) -> str | None:
    """``"succeeded"``/``"failed"`` when the runner's result marker is in ``stage_dir``, else None
    (also when it does not exist). :class:`~expyre.errors.ExPyReResultError` when it must not be read (see
    :func:`open_stage`)."""
    # listing the directory also refreshes NFS attribute caches
    try:
        sd = open_stage(stage_dir)
    except FileNotFoundError:
        return None
    with sd:
        return _outcome_of(sd.names())


def open_marker(stage_dir: Path | StageDir, fname: str) -> BinaryIO:
    """A marker file of a job's own directory, opened for reading through the verified directory
    (:class:`~expyre.errors.ExPyReResultError` when it or the file must not be read)."""
    sd = stage_dir if isinstance(stage_dir, StageDir) else open_stage(stage_dir)
    try:
        return sd.open(fname)
    except UnsafePathError as exc:
        raise _refused(sd.path, exc) from exc
    finally:
        if sd is not stage_dir:
            sd.close()


def _unpickle(stage: Path | StageDir, fname: str) -> Any:
    with open_marker(stage, fname) as f:
        return pickle.load(f)


def load_marker(job: Any, fname: str, stage: StageDir | None = None) -> Any:
    """The unpickled result marker ``fname`` of a job handle's stage directory (read through
    ``stage``, its open stage directory, when given).

    A file found incomplete or unreadable (truncated by a crash of an older copy, corrupted) is
    fetched again from the run directory where the job ran, which still holds it, before
    anything is reported: only when that copy is bad too (or cannot be fetched) is it an
    :class:`~expyre.errors.ExPyReResultError`, naming both files. A file that must not be read
    (a symlink, a FIFO, another user's file: see :mod:`expyre.stagedir`) is refused at once."""
    where: Path | StageDir = stage if stage is not None else job.stage_dir
    try:
        return _unpickle(where, fname)
    except ExPyReResultError:
        raise  # refused: never repaired behind the user's back
    except Exception as exc:
        first = exc
    local = job.stage_dir / fname
    problem = f"{type(first).__name__}: {first}"
    system = config.systems.get(job.system_name) if job.system_name else None
    if system is None or system.shares_stage_dirs:
        raise ExPyReResultError(
            f"job {job.id}: result file {local} cannot be read ({problem}); the job ran in this directory, so "
            f"there is no other copy: it may be truncated or corrupted. Re-run with start(..., force_rerun=True)"
        ) from first
    remote = f"{system.host + ':' if system.host else ''}{system.remote_dir(job.stage_dir)}/{fname}"
    logger.warning("job %s: result file %s cannot be read (%s); fetching it again from %s", job.id, local, problem, remote)
    aside = temp_name(local, ".bad")  # a writer's temporary name: never copied, removed if this process dies
    try:
        os.replace(local, aside)  # out of the way: the copy back skips files it takes for up to date
    except FileNotFoundError:
        aside = None  # type: ignore[assignment]

    def restore() -> None:
        """Put the bad file back if nothing came in its place (else drop it)."""
        if aside is None:
            return
        try:
            if os.path.lexists(local):
                os.unlink(aside)
            else:
                os.replace(aside, local)
        except OSError:
            pass

    try:
        system.stage_out([job.stage_dir])
    except (TransportError, OSError) as exc:
        restore()
        raise ExPyReResultError(
            f"job {job.id}: result file {local} cannot be read ({problem}), and fetching it again from where the "
            f"job ran, {remote}, failed: {exc}. Call get_results() again once {system.host or system.rundir} "
            f"is reachable, or re-run with start(..., force_rerun=True)"
        ) from first
    try:
        value = _unpickle(where, fname)
    except Exception as exc:
        restore()
        raise ExPyReResultError(
            f"job {job.id}: result file {local} cannot be read ({problem}), and neither can its copy where the job "
            f"ran, {remote} ({type(exc).__name__}: {exc}); both may be truncated or corrupted. "
            f"Re-run with start(..., force_rerun=True)"
        ) from exc
    if aside is not None:
        try:
            os.unlink(aside)
        except OSError:
            pass
    logger.warning("job %s: result file %s fetched again from %s and read", job.id, local, remote)
    return value


def read_text(stage_dir: Path | StageDir, fname: str) -> str:
    """A text file of the stage dir, or "" if it cannot (or must not) be read."""
    try:
        if isinstance(stage_dir, StageDir):
            return stage_dir.read_text(fname)
        with open_stage_dir(stage_dir) as sd:
            return sd.read_text(fname)
    except (OSError, UnsafePathError):
        return ""


def tail(stage_dir: Path | StageDir, fname: str, n: int = 20) -> str:
    """The last ``n`` lines of a text file of the stage dir ("" if it cannot be read)."""
    return "\n".join(read_text(stage_dir, fname).splitlines()[-n:])


def remote_exception(job: Any, stage: StageDir | None = None) -> BaseException:
    """The exception of a failed job, its remote traceback as ``__cause__`` (also set as
    ``job.remote_traceback``); read from ``stage`` when given (the job's open stage directory)."""
    try:
        info = load_marker(job, FAILED, stage)
    except ExPyReResultError as exc:
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
    try:
        stage = open_stage(job.stage_dir)
    except FileNotFoundError as exc:
        raise ExPyReResultError(f"job {job.id}: its stage directory {job.stage_dir} is gone ({exc.strerror}); "
                                f"re-run with start(..., force_rerun=True)") from exc
    with stage:  # every file below is read through this one verified directory
        job.stdout = read_text(stage, STDOUT)
        job.stderr = read_text(stage, STDERR)
        if outcome == "failed":
            config.db.update(job.id, status="failed")
            job.status = "failed"
            raise remote_exception(job, stage)
        value = load_marker(job, SUCCEEDED, stage)  # fetched again from the run directory if unreadable here
        _faults.point("results_read")
        row = config.db.get(job.id)
        if row is not None and row["status"] == "failed":
            # a packed Executor chunk some of whose calls raised was recorded failed (with how many):
            # the job's function returned, but that record stays
            job.status = "failed"
        else:
            config.db.update(job.id, status="succeeded")
            job.status = "succeeded"
        _faults.point("results_recorded")
        copy_outputs(job.id, stage)
    return value
