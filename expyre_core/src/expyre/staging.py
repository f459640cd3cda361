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
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import _faults, config
from .digest import HASH_VERSION, Tee, hash_file, write_call
from .layout import (ARRAY_OUTPUT_PREFIX, FAILED, HASHES, JOB_STDERR, JOB_STDOUT, META, PARTIAL_PREFIX,
                     PREVIOUS_RUN_PREFIX, RUNNER, STARTED, STDERR, STDOUT, SUCCEEDED, TASK)
from .names import make_job_id
from .shell import remote_path
from .system import System

__all__ = ["StagedCall", "stage_call", "expand_inputs", "atomic_text", "run_outputs", "archive_previous",
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
            pairs.append((mp, Path(mp.name) if mp.is_absolute() else mp))
    return pairs


def stage_call(root: Path, name: str, function: Callable, args: Sequence[Any], kwargs: Mapping[str, Any],
               hash_ignore: Sequence[int | str], inputs: Sequence[tuple[Path, Path]], meta: dict[str, Any]) -> StagedCall:
    """Write the call (pickled once, through its digest), the input files, the per-component
    digests, the runner and ``meta`` to a fresh temporary directory of ``root``."""
    t0 = time.monotonic()
    tmp = root / f".tmp_run_{make_job_id('x')}"
    tmp.mkdir(mode=0o700)
    try:
        h = hashlib.sha256()
        h.update(HASH_VERSION)
        parts: dict[str, Any] = {"version": 2, "args": {}, "kwargs": {}, "files": {},
                                 "ignored": [str(x) for x in hash_ignore]}
        write_call(tmp / TASK, function, args, kwargs, hash_ignore, h, parts)
        timing.debug("%s: pickled in %.3f s", name, time.monotonic() - t0)
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
        (tmp / META).write_text(json.dumps(meta))
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)) and "pickle" in str(exc).lower():
            raise pickle.PicklingError(f"ExPyRe({name!r}): the function or an argument cannot be pickled: {exc}") from exc
        raise
    timing.debug("%s: staged and hashed in %.3f s", name, time.monotonic() - t0)
    _faults.point("create_staged")
    return StagedCall(tmp, digest, meta)


def atomic_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a private temporary name (concurrent writers are safe)."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_meta(stage_dir: Path) -> dict[str, Any]:
    """The job's :data:`~expyre.layout.META` (what it needs besides the call)."""
    return json.loads((stage_dir / META).read_text())


def run_outputs(stage_dir: Path) -> list[str]:
    """What a run left in the stage dir: the markers and logs, the per-call outcomes of a packed
    job (:data:`~expyre.layout.PARTIAL_PREFIX`) and a job array's own output files."""
    fixed = [f for f in (SUCCEEDED, FAILED, STARTED, STDOUT, STDERR, JOB_STDOUT, JOB_STDERR) if (stage_dir / f).exists()]
    extra = [n for n in os.listdir(stage_dir)
             if n.startswith(PARTIAL_PREFIX) or (n.startswith(ARRAY_OUTPUT_PREFIX) and n.endswith((".out", ".err")))]
    return fixed + sorted(extra)


def archive_previous(stage_dir: Path) -> None:
    """Move an earlier run's outputs to the next free ``_expyre_prev_<n>/`` of the stage dir."""
    n = 1
    while (stage_dir / f"{PREVIOUS_RUN_PREFIX}{n}").exists():
        n += 1
    prev = stage_dir / f"{PREVIOUS_RUN_PREFIX}{n}"
    prev.mkdir(mode=0o700)
    for f in run_outputs(stage_dir):
        os.replace(stage_dir / f, prev / f)


def discard_remote_results(job_id: str, stage_dir: Path, system: System) -> None:
    """Before a forced re-run on a host with its own copy of the stage dir: remove the earlier
    run's markers there (the copy to the host adds files, it deletes none), so that the new
    run is not taken for finished."""
    rd = remote_path(system.remote_dir(stage_dir))
    names = " ".join(f"{rd}/{m}" for m in (SUCCEEDED, FAILED, STARTED))
    result = system.transport.run(f"rm -f -- {names} {rd}/{PARTIAL_PREFIX}*")
    if not result.ok:
        raise RuntimeError(f"job {job_id}: cannot remove the earlier run's results on {system.host or system.rundir} "
                           f"before running it again: {result.describe()}")


def copy_outputs(job_id: str, stage_dir: Path) -> None:
    """Copy the job's ``output_files`` (globs of its META) to the current directory."""
    meta_path = stage_dir / META
    if not meta_path.exists():
        return
    patterns = json.loads(meta_path.read_text()).get("output_files", [])
    for pattern in patterns:
        matches = sorted(stage_dir.glob(pattern))
        if not matches:
            logger.warning("job %s: output file %r was not produced", job_id, pattern)
        for m in matches:
            rel = m.relative_to(stage_dir)
            dest = Path.cwd() / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if m.is_dir():
                shutil.copytree(m, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(m, dest)


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
    config.db.update(job.id, status="cleaned")
    job.status = "cleaned"
    return report
