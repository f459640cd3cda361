"""Service layer: a job's stage directory on this machine: creating it (the pickled call, its
digest, the input files, the runner), and what later operations do to its files (the job
script's atomic write, archiving an earlier run, copying the output files back, cleaning).

The file names are those of :mod:`expyre.layout`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import pickle
import shutil
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import _faults, config, files, packing, shipping
from .digest import HASH_VERSION, Tee, hash_file, write_call
from .layout import (ARRAY_OUTPUT_PREFIX, CHUNK_RUNNER, CLAIM, FAILED, HASHES, JOB_STDERR, JOB_STDOUT, META, MODULES,
                     PARTIAL_PREFIX, PREVIOUS_RUN_PREFIX, RUNNER, STARTED, STATUS_RECORD, STDERR, STDOUT, SUBMITTED,
                     SUCCEEDED, TASK)
from .names import make_job_id
from .shell import remote_path
from .stagedir import StageDir, UnsafePathError, open_stage_dir
from .stage_records import record_status
from .system import System

__all__ = ["StagedCall", "stage_call", "replace_incomplete", "expand_inputs", "atomic_text", "run_outputs", "archive_previous",
           "discard_remote_results", "copy_outputs", "read_meta", "clean_targets", "clean"]

#: the logger of the API this serves (``expyre.func``): what users configure keeps working
logger = logging.getLogger("expyre.func")
timing = logging.getLogger("expyre.timing")


class StagedCall:
    """A call staged in a temporary directory of the root, before it becomes (or is found to
    equal) a job: ``tmp`` (to rename to the job's stage dir), ``digest`` and ``meta``."""

    def __init__(self, tmp: Path, digest: str, meta: dict[str, Any]) -> None:
        self.tmp = tmp
        self.digest = digest
        self.meta = meta

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def expand_inputs(input_files: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """(source, path relative to the stage dir) for every input file or directory."""
    pairs: list[tuple[Path, Path]] = []
    for item in input_files:
        p = Path(item)
        if not p.is_absolute() and ".." in p.parts:
            raise ValueError(f"input file {str(item)!r}: '..' path components are not supported")
        matches = sorted(glob.glob(str(p))) if glob.has_magic(str(p)) else ([str(p)] if p.exists() else [])
        if not matches:
            raise FileNotFoundError(f"input file {str(item)!r} does not exist (relative to {Path.cwd()})")
        for m in matches:
            mp = Path(m)
            if mp.is_dir():
                _check_links(mp, str(item))
            pairs.append((mp, Path(mp.name) if mp.is_absolute() else mp))
    return pairs


def _check_links(directory: Path, item: str) -> None:
    """An input directory is copied with its symlinks followed: one whose target does not exist
    (or a loop) is named here, before anything is staged."""
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink() and not path.exists():
                raise FileNotFoundError(
                    f"input file {item!r}: {path} is a symlink to {os.readlink(path)!r}, which does not exist "
                    f"(input directories are copied with their symlinks followed); remove the link or "
                    f"list the files you need in input_files")


#: how many names of functions pickled by value META records (for the error that names them)
_BY_VALUE_NAMES = 5


def stage_call(root: Path, name: str, function: Callable, args: Sequence[Any], kwargs: Mapping[str, Any],
               hash_ignore: Sequence[int | str], inputs: Sequence[tuple[Path, Path]], meta: dict[str, Any],
               ship_modules: bool = True) -> StagedCall:
    """Write the call (pickled once, through its digest), the user's own modules it needs
    (:mod:`expyre.shipping`, unless ``ship_modules`` is false), the input files, the
    per-component digests, the runner and ``meta`` to a fresh temporary directory of ``root``.

    ``meta`` gains ``python`` (this Python's ``[major, minor]``, which wrote the pickles) and
    ``by_value`` (the first names of the functions pickled by value: only a Python of that minor
    version can load them).

    :raises expyre.shipping.ModuleShipError: the call refers to a module no job can import.
    """
    t0 = time.monotonic()
    tmp = root / f".tmp_run_{make_job_id('x')}"
    tmp.mkdir(mode=0o700)
    try:
        h = hashlib.sha256()
        h.update(HASH_VERSION)
        parts: dict[str, Any] = {"version": 2, "args": {}, "kwargs": {}, "files": {},
                                 "ignored": [str(x) for x in hash_ignore]}
        info = shipping.PickleInfo()
        write_call(tmp / TASK, function, args, kwargs, hash_ignore, h, parts, info)
        timing.debug("%s: pickled in %.3f s", name, time.monotonic() - t0)
        try:
            shipping.ship_modules(info, tmp / MODULES, h, parts, ship=ship_modules)
        except shipping.ModuleShipError as exc:
            raise shipping.ModuleShipError(f"ExPyRe({name!r}): {exc}", name=exc.name) from None
        meta["python"] = list(sys.version_info[:2])
        meta["by_value"] = list(dict.fromkeys(info.by_value))[:_BY_VALUE_NAMES]
        for src, rel in inputs:
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            h.update(f"\0file:{rel.as_posix()}\0".encode())
            part = hashlib.sha256()
            fh = Tee(h, part)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
                for sub in sorted(p for p in dest.rglob("*")):
                    fh.update(f"\0{sub.relative_to(tmp).as_posix()}\0".encode())
                    if sub.is_file():
                        hash_file(sub, fh)
            else:
                shutil.copy2(src, dest)
                hash_file(dest, fh)
            parts["files"][rel.as_posix()] = part.hexdigest()
        digest = h.hexdigest()
        parts["hash"] = digest
        (tmp / HASHES).write_text(json.dumps(parts))
        shutil.copy2(Path(__file__).with_name("_runner.py"), tmp / RUNNER)
        if packing.JOB_MODULE in info.job_modules:  # the Executor's chunk runner, imported by name in the job
            shutil.copy2(Path(packing.__file__), tmp / CHUNK_RUNNER)
        (tmp / META).write_text(json.dumps(meta))
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)) and "pickle" in str(exc).lower():
            raise pickle.PicklingError(f"ExPyRe({name!r}): the function or an argument cannot be pickled: {exc}") from exc
        raise
    timing.debug("%s: staged and hashed in %.3f s", name, time.monotonic() - t0)
    _faults.point("create_staged")
    return StagedCall(tmp, digest, meta)


def replace_incomplete(staged: StagedCall, stage: Path) -> None:
    """Put the identical call ``staged`` in place of the stage directory ``stage`` that an
    interrupted run left without its pickled call (or did not create), by renames: a concurrent
    reader sees the old directory, none, or the new one, never a half-filled one; when another
    process put its identical copy there first, ours is discarded."""
    if (stage / TASK).exists():
        staged.discard()
        return
    old = stage.with_name(f"{staged.tmp.name}_old")
    try:
        os.rename(stage, old)
    except FileNotFoundError:
        old = None  # type: ignore[assignment]
    try:
        os.rename(staged.tmp, stage)
    except OSError:  # another process's copy is there now
        staged.discard()
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a private temporary name (concurrent writers are safe)."""
    files.atomic_text(path, text)


def read_meta(stage_dir: Path | StageDir) -> dict[str, Any]:
    """The job's :data:`~expyre.layout.META` (what it needs besides the call), read through the
    verified stage directory (:mod:`expyre.stagedir`)."""
    if isinstance(stage_dir, StageDir):
        return json.loads(stage_dir.read_bytes(META))
    with open_stage_dir(stage_dir) as sd:
        return json.loads(sd.read_bytes(META))


def run_outputs(stage: StageDir) -> list[str]:
    """What a run left in the (open) stage dir: the markers and logs, its submission and status
    records, the per-call outcomes of a packed job (:data:`~expyre.layout.PARTIAL_PREFIX`) and a job
    array's own output files."""
    names = stage.names()
    fixed = [f for f in (SUCCEEDED, FAILED, STARTED, STDOUT, STDERR, JOB_STDOUT, JOB_STDERR, CLAIM, SUBMITTED,
                               STATUS_RECORD) if f in names]
    extra = [n for n in names
             if n.startswith(PARTIAL_PREFIX) or (n.startswith(ARRAY_OUTPUT_PREFIX) and n.endswith((".out", ".err")))]
    return fixed + sorted(extra)


def archive_previous(stage_dir: Path) -> None:
    """Move an earlier run's outputs to the next free ``_expyre_prev_<n>/`` of the stage dir
    (all through its verified directory descriptor)."""
    with open_stage_dir(stage_dir) as sd:
        n = 1
        while sd.exists(f"{PREVIOUS_RUN_PREFIX}{n}"):
            n += 1
        prev = f"{PREVIOUS_RUN_PREFIX}{n}"
        os.mkdir(prev, 0o700, dir_fd=sd.fd)
        for f in run_outputs(sd):
            os.replace(f, f"{prev}/{f}", src_dir_fd=sd.fd, dst_dir_fd=sd.fd)


def discard_remote_results(job_id: str, stage_dir: Path, system: System) -> None:
    """Before a forced re-run on a host with its own copy of the stage dir: remove the earlier
    run's markers there (the copy to the host adds files, it deletes none), so that the new
    run is not taken for finished."""
    rd = remote_path(system.remote_dir(stage_dir))
    names = " ".join(f"{rd}/{m}" for m in (SUCCEEDED, FAILED, STARTED, SUBMITTED))
    result = system.transport.run(f"rm -f -- {names} {rd}/{PARTIAL_PREFIX}*")
    if not result.ok:
        raise RuntimeError(f"job {job_id}: cannot remove the earlier run's results on {system.host or system.rundir} "
                           f"before running it again: {result.describe()}")


def copy_outputs(job_id: str, stage: StageDir) -> None:
    """Copy the job's ``output_files`` (globs of its META) from its open stage dir to the current
    directory. Everything is reached through the stage dir's descriptor: a symlink (or a file
    another user owns) among the outputs is not copied, with a warning naming it."""
    try:
        patterns = json.loads(stage.read_bytes(META)).get("output_files", [])
    except FileNotFoundError:
        return
    hidden = {"include_hidden": True} if sys.version_info >= (3, 11) else {}
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, dir_fd=stage.fd, recursive=True, **hidden))
        if not matches:
            logger.warning("job %s: output file %r was not produced", job_id, pattern)
        for m in matches:
            rel = Path(m)
            try:
                _copy_out(stage, rel.parts, Path.cwd() / rel)
            except (OSError, UnsafePathError) as exc:
                logger.warning("job %s: output file %s not copied: %s", job_id, stage.path / rel, exc)


def _copy_out(d: StageDir, parts: Sequence[str], dest: Path) -> None:
    """Copy ``parts`` (a path relative to ``d``, each component reached without following a
    symlink) to ``dest``: a regular file with its mode and times (renamed into place from a
    temporary name), a directory recursively."""
    if len(parts) > 1:
        with d.subdir(parts[0], private=False) as sub:
            return _copy_out(sub, parts[1:], dest)
    name = parts[0]
    st = d.lstat(name)
    if stat.S_ISDIR(st.st_mode):
        with d.subdir(name, private=False) as sub:
            dest.mkdir(parents=True, exist_ok=True)
            for child in sorted(sub.names()):
                try:
                    _copy_out(sub, [child], dest / child)
                except (OSError, UnsafePathError) as exc:
                    logger.warning("output file %s not copied: %s", sub.path / child, exc)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    # through a temporary name: a concurrent driver (or reader) never sees half a file
    tmp = files.temp_name(dest)
    try:
        with d.open(name) as src, open(tmp, "wb") as out:  # refuses a symlink, FIFO, another's file
            shutil.copyfileobj(src, out)
            fst = os.fstat(src.fileno())
        os.chmod(tmp, stat.S_IMODE(fst.st_mode))
        os.utime(tmp, ns=(fst.st_atime_ns, fst.st_mtime_ns))
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def clean_targets(job_id: str, stage_dir: Path, system: System | None, wipe: bool, dry_run: bool) -> list[str]:
    """Remove the job's pickled call and result (or, with ``wipe``, its whole stage directories),
    here and on the executing host; return the paths removed (or that would be)."""
    targets = [stage_dir] if wipe else [stage_dir / TASK, stage_dir / SUCCEEDED]
    remote: list[str] = []
    if system is not None and not system.shares_stage_dirs:
        rd = system.remote_dir(stage_dir)
        remote = [rd] if wipe else [f"{rd}/{TASK}", f"{rd}/{SUCCEEDED}"]
    report = [str(t) for t in targets] + [f"{system.host or ''}:{r}" for r in remote] if system else [str(t) for t in targets]
    if dry_run:
        return report
    if remote and system is not None:
        result = system.transport.run("rm -rf -- " + " ".join(remote_path(r) for r in remote))
        if not result.ok:
            logger.warning("job %s: removing remote files failed: %s", job_id, result.describe())
    for t in targets:
        if t.is_dir():
            shutil.rmtree(t, ignore_errors=True)
        elif t.exists():
            t.unlink()
    return report


def clean(job: Any, wipe: bool = False, dry_run: bool = False) -> list[str]:
    """``ExPyRe.clean`` for a job handle (:class:`~expyre.job.JobHandle`): :func:`clean_targets`
    on the system it ran on (if still configured), then the status ``cleaned``."""
    job.reload()
    system = config.systems.get(job.system_name) if job.system_name else None
    report = clean_targets(job.id, job.stage_dir, system, wipe, dry_run)
    if dry_run:
        return report
    if not wipe:
        record_status(job.stage_dir, "cleaned")
    config.db.update(job.id, status="cleaned")
    job.status = "cleaned"
    return report
