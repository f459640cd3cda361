"""ExPyRe: evaluate a Python function as a batch job and bring its return value back.

Life of a job (the statuses of the jobs database)::

    created --start()--> submitted --runner begins--> started --> succeeded | failed | died
                                                                       |
                                              mark_processed() --> processed --clean()--> cleaned

The stage directory ``<root>/run_<id>`` (mode 0700) is the truth: the pickled call, the job script,
and the runner's marker files (created by atomic rename). The jobs database indexes them.

Restart: the constructor hashes the function (its identity *and* its code), the arguments (except
``hash_ignore``) and the input files (names and contents); with ``try_restart_from_prev`` an
identical call finds the existing job in any status that can still give results (created,
submitted, started, succeeded), and ``start()``/``get_results()`` pick up where it was. The
arguments are pickled exactly once, streamed to the stage directory through the hash.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import inspect
import io
import json
import logging
import os
import pickle
import re
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
import cloudpickle

from . import _faults, config
from ._runner import FAILED, STARTED, STDERR, STDOUT, SUCCEEDED, TASK
from .jobsdb import STATUS_GROUPS, JobsDB
from .names import JOB_ID_RE, make_job_id
from .progress import Waiting
from .resources import Resources
from .script import ARRAY_DIRS, ARRAY_OUTPUT_PREFIX, ARRAY_SCRIPT, JOB_STDERR, JOB_STDOUT, RUNNER, SCRIPT, build_array_script, build_script
from .shell import remote_path
from .system import ELEMENT_PREFIX, System
from .types import JobRequest, JobState, JobStatus, SchedulerCommandError, SubmitError, TransportError
from .units import Duration

__all__ = [
    "ExPyRe",
    "ExPyReJobDiedError",
    "ExPyReTimeoutError",
    "ExPyReResultError",
    "ExPyReRemoteTraceback",
    "RemoteError",
]

logger = logging.getLogger(__name__)
timing = logging.getLogger("expyre.timing")
if os.environ.get("EXPYRE_TIMING_VERBOSE"):
    _h = logging.StreamHandler(sys.stderr)
    _h.setFormatter(logging.Formatter("expyre timing %(created).3f %(message)s"))
    timing.addHandler(_h)
    timing.setLevel(logging.DEBUG)

META = "_expyre_meta.json"
#: per-component digests of a call (function, each argument, each input file), for ``xpr why``
HASHES = "_expyre_hashes.json"
#: in a job's stage dir while it is (being) submitted as an element of a job array: the array's
#: job name and the element's index, so that an interrupted run finds the array before resubmitting
ARRAY_REF = "_expyre_array_ref.json"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ExPyReJobDiedError(RuntimeError):
    """The job ended (or vanished) without a result; the message says what the scheduler said."""


ExPyReJobDied = ExPyReJobDiedError  # the original's name


class ExPyReTimeoutError(TimeoutError):
    """``get_results`` ran out of its ``timeout``; the job itself goes on."""


class ExPyReResultError(RuntimeError):
    """A result file exists but cannot be read (corrupted or truncated)."""


class ExPyReRemoteTraceback(Exception):
    """Carries the traceback text of an exception raised inside a job (set as ``__cause__``)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\nRemote traceback:\n{self.tb}"


class RemoteError(RuntimeError):
    """Stands for a remote exception that could not be pickled or unpickled here."""


# ---------------------------------------------------------------------------------------------
# pickling and hashing: one pass, streamed
# ---------------------------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    def __init__(self, f, h):
        self.f = f
        self.h = h
        self.hashing = True
        self.part = None  # an extra hasher for one component (see HASHES)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        # the pickler hands large buffers over as they are: a pickle.PickleBuffer (numpy arrays,
        # protocol 5) has the buffer protocol but no len()
        self.f.write(b)
        if self.hashing:
            self.h.update(b)
            if self.part is not None:
                self.part.update(b)
        return memoryview(b).nbytes


class _Tee:
    """Feeds one stream of bytes to several hashers."""

    def __init__(self, *hashers):
        self.hashers = hashers

    def update(self, b) -> None:
        for h in self.hashers:
            h.update(b)


class _SortedSet(set):
    """Marks a set to pickle in sorted order (the C pickler never asks about exact sets)."""


class _SortedFrozenSet(frozenset):
    pass


def _stabilize(obj: Any, depth: int = 0) -> Any:
    """Copy plain containers (list, tuple, dict, set) with their sets replaced by markers that pickle
    in sorted order, so equal arguments hash equally in every process (string hashing, and with it
    set iteration order, is randomised per process). Other objects are left alone."""
    t = type(obj)
    if depth > 100:
        return obj
    if t is set or t is frozenset:
        items = [_stabilize(x, depth + 1) for x in obj]
        return (_SortedSet if t is set else _SortedFrozenSet)(items)
    if t is list or t is tuple:
        new = [_stabilize(x, depth + 1) for x in obj]
        if all(a is b for a, b in zip(new, obj)):
            return obj
        return new if t is list else tuple(new)
    if t is dict:
        new_d = {_stabilize(k, depth + 1): _stabilize(v, depth + 1) for k, v in obj.items()}
        if all(a is b for a, b in zip(new_d.values(), obj.values())) and all(a is b for a, b in zip(new_d, obj)):
            return obj
        return new_d
    return obj


class _StablePickler(cloudpickle.CloudPickler):
    """cloudpickle that writes marked sets (see :func:`_stabilize`) as sorted plain sets."""

    def reducer_override(self, obj):
        t = type(obj)
        if t is _SortedSet or t is _SortedFrozenSet:
            base = set if t is _SortedSet else frozenset
            try:
                items = sorted(obj)
            except TypeError:
                items = sorted(obj, key=repr)
            return base, (items,)
        return super().reducer_override(obj)


def _dump(obj: Any, out) -> None:
    _StablePickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(_stabilize(obj))


def _code_digest(code, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if inspect.iscode(const):
            _code_digest(const, h)
        elif isinstance(const, frozenset):
            h.update(repr(sorted(map(repr, const))).encode())
        else:
            h.update(repr(const).encode())


def _function_digest(fn: Any, h, seen: set[int] | None = None) -> None:
    """Identity and code of a callable (not its pickle: that may carry per-process ids)."""
    seen = seen if seen is not None else set()
    if id(fn) in seen:
        return
    seen.add(id(fn))
    if isinstance(fn, functools.partial):
        h.update(b"partial:")
        _function_digest(fn.func, h, seen)
        buf = io.BytesIO()
        _dump((fn.args, dict(sorted(fn.keywords.items()))), buf)
        h.update(buf.getvalue())
        return
    if inspect.ismethod(fn):
        _function_digest(fn.__func__, h, seen)
        buf = io.BytesIO()
        _dump(fn.__self__, buf)
        h.update(buf.getvalue())
        return
    h.update(f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}".encode())
    target = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(target, "__code__", None)
    if code is not None:
        _code_digest(code, h)
    elif not (inspect.isbuiltin(fn) or inspect.isclass(fn) or hasattr(fn, "__code__")):
        call = getattr(type(fn), "__call__", None)
        if call is not None and hasattr(call, "__code__"):
            _code_digest(call.__code__, h)
        if not type(fn).__module__ == "numpy":  # ufuncs etc. pickle by name
            buf = io.BytesIO()
            _dump(fn, buf)
            h.update(buf.getvalue())


def _expand_inputs(input_files: Iterable[str | os.PathLike]) -> list[tuple[Path, Path]]:
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


def _hash_file(path: Path, h) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def _owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def _proc_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def _owner_dead(owner: str | None, claimed_at: float | None) -> bool:
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_s, _, start = rest.partition(":")
    if host == socket.gethostname():
        try:
            return _proc_start(int(pid_s)) != start
        except ValueError:
            return True
    return claimed_at is not None and time.time() - claimed_at > 600


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# one shared poll per system
# ---------------------------------------------------------------------------------------------


class _Poller:
    """Refreshes the state of *all* ongoing jobs of one system in one query, at most once per
    ``max_age``, however many waiters ask (threads included)."""

    _registry: dict[tuple[str, str], "_Poller"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, system: System, db: JobsDB) -> None:
        self.system = system
        self.db = db
        self.lock = threading.Lock()
        self.last = 0.0
        self.count = 0
        self.statuses: dict[str, JobStatus] = {}
        self.polled: set[str] = set()
        self.warned: set[str] = set()
        #: remote id -> (poll count, time) when it was first seen absent/terminal without results
        self.suspects: dict[str, tuple[int, float]] = {}
        #: remote id -> final state from the accounting records (asked once, for all new suspects)
        self.accounting: dict[str, JobStatus] = {}
        #: monotonic time of the first of the current run of failed polls (None: the last worked)
        self.failing_since: float | None = None

    @classmethod
    def get(cls, system: System, db: JobsDB) -> "_Poller":
        key = (str(db.path), system.name)
        with cls._registry_lock:
            p = cls._registry.get(key)
            if p is None or p.system is not system:
                p = cls._registry[key] = _Poller(system, db)
            return p

    def refresh(self, max_age: float, force: bool = False, tolerate_failure: bool = True) -> None:
        """Poll unless the last poll is younger than ``max_age`` (never more often than the
        scheduler's ``min_poll_interval`` unless ``force``). A failed poll is logged and
        tolerated (see :meth:`_failed`) unless ``not tolerate_failure``: then it raises."""
        with self.lock:
            if not force:
                max_age = max(max_age, self.system.scheduler.min_poll_interval)
            if time.monotonic() - self.last < max_age:
                return
            rows = self.db.jobs(system=self.system.name, status=["submitted", "started"])
            ids = [r["remote_id"] for r in rows if r["remote_id"]]
            dirs = [Path(r["from_dir"]) for r in rows]
            t0 = time.monotonic()
            try:
                statuses, markers = self.system.poll(ids, dirs)
                timing.debug("poll %s: %d jobs in %.3f s", self.system.name, len(ids), time.monotonic() - t0)
                done = [d for d in dirs if markers.get(d.name, set()) & {SUCCEEDED, FAILED}]
                # a running packed job's finished calls (their outcome files) come back with them
                done += [d for d in dirs if d not in done and any(
                    m.startswith(ELEMENT_PREFIX) and not (d / m).exists() for m in markers.get(d.name, ()))]
                if done:
                    self.system.stage_out(done)
            except (TransportError, SchedulerCommandError) as exc:
                if not tolerate_failure:
                    raise
                self._failed(exc, len(ids))
                return
            if self.failing_since is not None:
                logger.warning("%s: polling works again after %.0f s of failures", self.system.name,
                               time.monotonic() - self.failing_since)
                self.failing_since = None
            for r in rows:
                st = statuses.get(r["remote_id"])
                started = st is not None and st.state is JobState.RUNNING
                started = started or STARTED in markers.get(Path(r["from_dir"]).name, set())
                fields: dict[str, Any] = {}
                if st is not None and st.state is JobState.UNKNOWN and r["id"] not in self.warned:
                    self.warned.add(r["id"])
                    logger.warning("job %s: %s reported an unrecognised state %r; still waiting",
                                   r["id"], self.system.cfg.scheduler, st.raw)
                new_remote = st.describe() if st else "absent"
                if new_remote != r["remote_status"]:
                    fields["remote_status"] = new_remote
                if started and r["status"] == "submitted":
                    fields["status"] = "started"
                if fields:
                    self.db.update(r["id"], **fields)
            # every job that is gone or terminal without a result starts its grace period now,
            # whoever waits on it; the accounting records are asked once for all new ones
            now = time.time()
            new_absent = []
            for r in rows:
                rid = r["remote_id"]
                if not rid:
                    continue
                st = statuses.get(rid)
                has_result = bool(markers.get(Path(r["from_dir"]).name, set()) & {SUCCEEDED, FAILED}) or (
                    self.system.shares_stage_dirs and any((Path(r["from_dir"]) / m).exists() for m in (SUCCEEDED, FAILED)))
                if has_result or (st is not None and not st.state.terminal):
                    if self.suspects.pop(rid, None) is not None:
                        self.db.update(r["id"], suspect_since=None)
                    continue
                if rid not in self.suspects:
                    self.suspects[rid] = (self.count + 1, now)
                    self.db.update(r["id"], suspect_since=now)
                    if st is None:
                        new_absent.append(rid)
            if new_absent:
                self.accounting.update(self.system.accounting(new_absent))
            self.statuses = statuses
            self.polled = set(ids)
            self.count += 1
            self.last = time.monotonic()

    def _failed(self, exc: Exception, n_jobs: int) -> None:
        """A poll failed even after its retries (scheduler or connection down): the jobs keep
        their last known state and the next poll tries again, until the failures have lasted
        :func:`poll_outage_limit` seconds; then the error is raised to the waiter."""
        now = time.monotonic()
        self.last = now  # the next try waits for the usual interval, no hot loop
        if self.failing_since is None:
            self.failing_since = now
        outage = now - self.failing_since
        limit = poll_outage_limit()
        if outage >= limit:
            raise type(exc)(f"{self.system.name}: polling has failed for {outage:.0f} s "
                            f"(EXPYRE_POLL_OUTAGE={limit:g}); last error: {exc}") from exc
        logger.warning("%s: poll of %d job(s) failed (%s); they keep their last known state, the next poll "
                       "tries again (failing for %.0f s, giving up after %g s)", self.system.name, n_jobs, exc,
                       outage, limit)


def poll_outage_limit() -> float:
    """``EXPYRE_POLL_OUTAGE``: seconds of consecutive failed polls of a system (each already
    retried ``EXPYRE_RETRY`` times) tolerated while waiting, default 600; 0 fails at once."""
    raw = os.environ.get("EXPYRE_POLL_OUTAGE", "600")
    try:
        value = float(raw)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise ValueError(f"EXPYRE_POLL_OUTAGE={raw!r} is invalid: give seconds >= 0, e.g. 600") from None


# ---------------------------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------------------------


class ExPyRe:
    """A function call to evaluate as a batch job.

    :param name: job name (any text; the job id and file names derive a safe form of it).
    :param function: the callable (also accepted as the second positional argument).
    :param args: positional arguments.
    :param kwargs: keyword arguments.
    :param input_files: files/directories (globs allowed) copied into the job's directory; relative
        paths keep their relative path (no ``..``), absolute ones land at its top.
    :param output_files: files (globs, relative) copied back to the current directory with the results.
    :param env_vars: ``"NAME=value"`` or ``"NAME"`` (value taken from this environment now).
    :param pre_run_commands: shell lines run before the function (after the system's ``commands``).
    :param post_run_commands: shell lines run after it.
    :param try_restart_from_prev: reuse an identical previous job (see module docs).
    :param hash_ignore: positions (int) or keyword names (str) of arguments left out of the hash.
    """

    def __init__(
        self,
        name: str,
        function: Callable | None = None,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        input_files: Iterable[str | os.PathLike] = (),
        output_files: Iterable[str] = (),
        env_vars: Iterable[str] = (),
        pre_run_commands: Iterable[str] = (),
        post_run_commands: Iterable[str] = (),
        try_restart_from_prev: bool = True,
        hash_ignore: Iterable[int | str] = (),
        _from_db_info: Mapping[str, Any] | None = None,
    ) -> None:
        self.stdout: str | None = None
        self.stderr: str | None = None
        self.recreated = False
        if _from_db_info is not None:
            self._load_row(_from_db_info)
            self.recreated = True
            return
        t0 = time.monotonic()
        if not isinstance(name, str) or not name:
            raise ValueError(f"job name must be a non-empty string, got {name!r}")
        if function is None or not callable(function):
            raise TypeError(f"ExPyRe({name!r}): function must be callable, got {function!r}")
        args = list(args)
        kwargs = dict(kwargs or {})
        hash_ignore = list(hash_ignore)
        for h in hash_ignore:
            if isinstance(h, bool) or not isinstance(h, (int, str)):
                raise TypeError(f"hash_ignore entries are argument positions (int) or keyword names (str), got {h!r}")
        output_files = [str(f) for f in output_files]
        for f in output_files:
            if f.startswith("/") or ".." in Path(f).parts:
                raise ValueError(f"output file {f!r}: must be a relative path without '..'")
        env = []
        for item in env_vars:
            k, eq, v = str(item).partition("=")
            if not _ENV_NAME.match(k):
                raise ValueError(f"env_vars entry {item!r}: {k!r} is not a valid variable name")
            if not eq:
                if k not in os.environ:
                    raise KeyError(f"env_vars entry {item!r}: {k} is not set in this environment (use '{k}=value')")
                v = os.environ[k]
            env.append((k, v))
        inputs = _expand_inputs(input_files)
        meta = {
            "name": name,
            "env_vars": env,
            "pre_run_commands": list(pre_run_commands),
            "post_run_commands": list(post_run_commands),
            "output_files": output_files,
            "input_files": [str(rel) for _, rel in inputs],
            "cwd": str(Path.cwd()),
        }

        root: Path = config.root
        db: JobsDB = config.db
        tmp = root / f".tmp_run_{make_job_id('x')}"
        tmp.mkdir(mode=0o700)
        try:
            h = hashlib.sha256()
            h.update(b"expyre-1\0")
            parts: dict[str, Any] = {"version": 1, "args": {}, "kwargs": {}, "files": {},
                                     "ignored": [str(x) for x in hash_ignore]}
            part = hashlib.sha256()
            _function_digest(function, _Tee(h, part))
            parts["function"] = part.hexdigest()
            parts["function_name"] = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', type(function).__qualname__)}"
            with open(tmp / TASK, "wb") as f:
                w = _HashingWriter(f, h)
                w.hashing = False
                _dump(function, w)
                _dump(len(args), w)
                for i, a in enumerate(args):
                    w.hashing = i not in hash_ignore
                    h.update(f"\0arg{i}\0".encode()) if w.hashing else None
                    w.part = hashlib.sha256() if w.hashing else None
                    _dump(a, w)
                    if w.part is not None:
                        parts["args"][str(i)] = w.part.hexdigest()
                    w.part = None
                w.hashing = False
                keys = sorted(kwargs)
                _dump(keys, w)
                for k in keys:
                    w.hashing = k not in hash_ignore
                    h.update(f"\0kw:{k}\0".encode()) if w.hashing else None
                    w.part = hashlib.sha256() if w.hashing else None
                    _dump(kwargs[k], w)
                    if w.part is not None:
                        parts["kwargs"][k] = w.part.hexdigest()
                    w.part = None
            timing.debug("%s: pickled in %.3f s", name, time.monotonic() - t0)
            for src, rel in inputs:
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                h.update(f"\0file:{rel.as_posix()}\0".encode())
                part = hashlib.sha256()
                fh = _Tee(h, part)
                if src.is_dir():
                    shutil.copytree(src, dest, dirs_exist_ok=True)
                    for sub in sorted(p for p in dest.rglob("*")):
                        fh.update(f"\0{sub.relative_to(tmp).as_posix()}\0".encode())
                        if sub.is_file():
                            _hash_file(sub, fh)
                else:
                    shutil.copy2(src, dest)
                    _hash_file(dest, fh)
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

        with db._tx() as con:
            existing = db.find_reusable(con, digest) if try_restart_from_prev else None
            if existing is not None and existing["name"] != name:
                existing = None
            if existing is None:
                job_id = make_job_id(name)
                stage = root / f"run_{job_id}"
                os.rename(tmp, stage)
                now = time.time()
                con.execute(
                    "INSERT INTO jobs (id, name, hash, status, from_dir, cwd, creation_time, status_time) "
                    "VALUES (?, ?, ?, 'created', ?, ?, ?, ?)",
                    (job_id, name, digest, str(stage), meta["cwd"], now, now),
                )
                row = dict(con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
                _faults.point("create_renamed")
        _faults.point("create_recorded")
        if existing is not None:
            stage = Path(existing["from_dir"])
            if not (stage / TASK).exists() and existing["status"] == "created":
                # a previous run died between staging and recording: repair with our identical copy
                shutil.rmtree(stage, ignore_errors=True)
                os.rename(tmp, stage)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
            row = existing
            self.recreated = True
            logger.info("job %r: reusing %s (status %s)", name, existing["id"], existing["status"])
        self._load_row(row)
        timing.debug("%s: constructor done in %.3f s", name, time.monotonic() - t0)

    # -- state ---------------------------------------------------------------------------------
    def _load_row(self, row: Mapping[str, Any]) -> None:
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.stage_dir = Path(row["from_dir"])
        self.status: str = row["status"]
        self.remote_id: str | None = row.get("remote_id")
        self.system_name: str | None = row.get("system")
        self.hash: str | None = row.get("hash")
        self.reason: str | None = row.get("reason")
        if not JOB_ID_RE.match(self.id):
            raise ValueError(f"jobs database row has an invalid job id {self.id!r}")
        own = Path(config.root) / f"run_{self.id}"
        if self.stage_dir != own:  # results are only ever unpickled from the job's own directory
            raise ValueError(f"jobs database row {self.id}: {self.stage_dir} is not its own stage directory {own}; refusing it")

    def _refresh_row(self) -> dict:
        row = config.db.get(self.id)
        if row is None:
            raise RuntimeError(f"job {self.id} is no longer in the jobs database {config.db.path}")
        self._load_row(row)
        return row

    def __repr__(self) -> str:
        return f"ExPyRe(id={self.id!r}, status={self.status!r}, system={self.system_name!r})"

    @property
    def system(self) -> System:
        return config.get_system(self.system_name)

    @staticmethod
    def from_jobsdb(db_jobs: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list["ExPyRe"]:
        """ExPyRe objects for rows returned by ``expyre.config.db.jobs(...)``."""
        if isinstance(db_jobs, Mapping):
            db_jobs = [db_jobs]
        return [ExPyRe(j["name"], _from_db_info=j) for j in db_jobs]

    # -- start ---------------------------------------------------------------------------------
    def start(
        self,
        resources: Resources | Mapping[str, Any],
        system_name: str | None = None,
        header_extra: Sequence[str] = (),
        exact_fit: bool = True,
        partial_node: bool = False,
        python_cmd: str | None = None,
        force_rerun: bool = False,
    ) -> None:
        """Submit the job (a job recreated from an earlier identical call is not submitted again).

        :param resources: a :class:`~expyre.resources.Resources` or a dict of its arguments.
        :param system_name: a system of config.json; default ``$EXPYRE_SYS``, else ``local``.
        :param header_extra: extra header lines (formatted with the header keys).
        :param exact_fit: only partitions whose nodes the tasks fill exactly.
        :param partial_node: allow less than a whole node (overrides ``exact_fit``).
        :param python_cmd: the job's Python (default: the system's ``python_cmd``; for
            ``"host": null`` this interpreter, else ``python3``).
        :param force_rerun: submit again even if this job already ran (earlier outputs are kept
            in ``_expyre_prev_<n>/`` inside the stage directory).
        """
        t0 = time.monotonic()
        pending = self._start_prepare(resources, system_name, header_extra, exact_fit, partial_node, python_cmd, force_rerun)
        if pending is None:
            return
        pending[0].stage_in([self.stage_dir])
        self._start_submit(*pending)
        timing.debug("%s: start() done in %.3f s", self.id, time.monotonic() - t0)

    @staticmethod
    def start_many(xprs: Sequence["ExPyRe"], resources: Resources | Mapping[str, Any], system_name: str | None = None,
                   **start_kw: Any) -> dict[str, BaseException]:
        """:meth:`start` for many jobs of one system, with ONE copy of all their stage directories
        to the executing host (one rsync over ssh) before they are submitted one by one.

        Jobs that need no submission (already submitted, finished, or being submitted by another
        process) are skipped as by :meth:`start`. Takes the keyword arguments of :meth:`start`.

        :return: the exception of each job (by id) whose preparation or submission failed; the
            other jobs are submitted regardless.
        """
        errors: dict[str, BaseException] = {}
        pending = ExPyRe._prepare_each(xprs, resources, system_name, start_kw, errors)
        if pending:
            try:
                pending[0][1][0].stage_in([x.stage_dir for x, _ in pending])
            except Exception as exc:  # noqa: BLE001 - every job of the batch gets the error
                ExPyRe._release_claims([x for x, _ in pending], exc, errors)
                return errors
        for x, p in pending:
            try:
                x._start_submit(*p)
            except Exception as exc:  # noqa: BLE001 - reported per job
                errors[x.id] = exc
        return errors

    @staticmethod
    def start_array(xprs: Sequence["ExPyRe"], resources: Resources | Mapping[str, Any], system_name: str | None = None,
                    **start_kw: Any) -> dict[str, BaseException]:
        """:meth:`start_many`, submitting the jobs as scheduler job arrays: one submission (one
        ``sbatch --array``, ``qsub -t``, ``qsub -J``) per array of at most the system's array size
        limit (see ``System.array_limit``). Each element stays an ordinary job (its own stage
        directory, hash, jobs-database row, restart, status and cancel, by the element's own
        scheduler id). All stage directories are copied in ONE operation. Systems whose scheduler
        has no arrays fall back to :meth:`start_many`.

        :return: the exception of each job (by id) whose preparation or submission failed.
        """
        system = config.get_system(system_name)
        limit = system.array_limit()
        if limit is None:
            logger.info("system %s (%s) has no job arrays here; submitting %d jobs one by one",
                        system.name, system.cfg.scheduler, len(xprs))
            return ExPyRe.start_many(xprs, resources, system.name, **start_kw)
        errors: dict[str, BaseException] = {}
        pending = [(x, p[1]) for x, p in ExPyRe._prepare_each(xprs, resources, system.name, start_kw, errors)]
        arrays: list[tuple[JobRequest, list[ExPyRe]]] = []
        singles: list[tuple[ExPyRe, JobRequest]] = []
        for k in range(0, len(pending), limit):
            group = pending[k : k + limit]
            if len(group) == 1:  # an array of one is a plain job (PBS Pro refuses -J 0-0)
                singles.append(group[0])
                continue
            try:
                arrays.append(ExPyRe._prepare_array(system, group, start_kw.get("header_extra", ())))
            except Exception as exc:  # noqa: BLE001 - every element of this array gets the error
                ExPyRe._release_claims([x for x, _ in group], exc, errors)
        if not arrays and not singles:
            return errors
        try:
            system.stage_in([x.stage_dir for _, elems in arrays for x in elems] + [x.stage_dir for x, _ in singles])
        except Exception as exc:  # noqa: BLE001 - every job of the batch gets the error
            ExPyRe._release_claims([x for _, elems in arrays for x in elems] + [x for x, _ in singles], exc, errors)
            return errors
        for x, job in singles:
            try:
                x._start_submit(system, job)
            except Exception as exc:  # noqa: BLE001 - reported per job
                errors[x.id] = exc
        for array_job, elems in arrays:
            try:
                array_id = system.submit(array_job)
            except SubmitError as exc:  # refused: nothing was queued
                ExPyRe._release_claims(elems, exc, errors)
                continue
            except Exception as exc:  # noqa: BLE001 - claims kept: the next start() looks the array up
                for x in elems:
                    errors[x.id] = exc
                continue
            logger.info("system %s: job array %s (%s) of %d jobs submitted", system.name, array_job.id, array_id, len(elems))
            for i, x in enumerate(elems):
                x._mark_submitted(system.scheduler.array_element_id(array_id, i))
        return errors

    @staticmethod
    def _prepare_each(xprs: Sequence["ExPyRe"], resources: Resources | Mapping[str, Any], system_name: str | None,
                      start_kw: Mapping[str, Any], errors: dict[str, BaseException]) -> list[tuple["ExPyRe", tuple]]:
        """:meth:`_start_prepare` of each job: ``(job, (system, request))`` for those to stage and
        submit; a job whose preparation fails gets its exception in ``errors``."""
        pending = []
        for x in xprs:
            try:
                p = x._start_prepare(resources, system_name, **start_kw)
            except Exception as exc:  # noqa: BLE001 - reported per job
                errors[x.id] = exc
                continue
            if p is not None:
                pending.append((x, p))
        return pending

    @staticmethod
    def _release_claims(xprs: Iterable["ExPyRe"], exc: BaseException, errors: dict[str, BaseException]) -> None:
        """Nothing of these jobs was queued: drop their submission claims (the next start()
        submits them) and report ``exc`` for each."""
        for x in xprs:
            config.db.update(x.id, submit_owner=None)
            errors[x.id] = exc

    @staticmethod
    def _prepare_array(system: System, group: Sequence[tuple["ExPyRe", JobRequest]], header_extra: Sequence[str]):
        """Write one array's shared script and directory list into its first element's stage dir
        and each element's :data:`ARRAY_REF`; return ``(array request, elements)``."""
        first_x, first_job = group[0]
        array_name = make_job_id(f"xa_{first_x.name}")
        token = system.scheduler.array_output_token
        array_job = attrs.evolve(first_job, id=array_name, script=ARRAY_SCRIPT,
                                 stdout=f"{ARRAY_OUTPUT_PREFIX}{token}.out", stderr=f"{ARRAY_OUTPUT_PREFIX}{token}.err")
        names = [x.stage_dir.name for x, _ in group]
        text = build_array_script(system, array_job, names, header_extra=header_extra)
        _atomic_text(first_x.stage_dir / ARRAY_DIRS, "".join(f"{n}\n" for n in names))
        _atomic_text(first_x.stage_dir / ARRAY_SCRIPT, text)
        for i, (x, _) in enumerate(group):
            _atomic_text(x.stage_dir / ARRAY_REF, json.dumps({"array": array_name, "index": i}))
        return array_job, [x for x, _ in group]

    def _array_ref(self) -> dict | None:
        try:
            ref = json.loads((self.stage_dir / ARRAY_REF).read_text())
            return ref if isinstance(ref.get("array"), str) and isinstance(ref.get("index"), int) else None
        except (OSError, ValueError, AttributeError):
            return None

    def _start_prepare(self, resources, system_name=None, header_extra=(), exact_fit=True, partial_node=False,
                       python_cmd=None, force_rerun=False):
        """The part of :meth:`start` before the stage directory is copied: writes the script and
        claims the submission. Returns ``(system, job)`` to stage and submit, or None."""
        row = self._refresh_row()
        rerun = False
        if force_rerun and self.status != "created":
            self._archive_previous()
            config.db.update(self.id, force=True, status="created", remote_id=None, remote_status=None,
                             reason=None, suspect_since=None, submit_owner=None, submit_time=None)
            row = self._refresh_row()
            rerun = True
        if self.status != "created":
            logger.info("job %s already %s; not submitting again", self.id, self.status)
            return
        system = config.get_system(system_name)
        if rerun and not system.shares_stage_dirs:
            self._discard_remote_results(system)
        res = Resources.from_any(resources)
        partition, alloc = res.find_nodes(system.partitions, exact_fit=exact_fit, partial_node=partial_node)
        mem = None
        if res.max_mem_per_task is not None:
            from .units import Memory

            mem = Memory(int(res.max_mem_per_task.kb * alloc.tot_ntasks / alloc.nnodes))
        job = JobRequest(
            id=self.id,
            remote_dir=system.remote_dir(self.stage_dir),
            script=SCRIPT,
            stdout=JOB_STDOUT,
            stderr=JOB_STDERR,
            partition=partition,
            max_time=res.max_time,
            nodes=alloc,
            max_mem_per_node=mem,
            partial_node=partial_node,
            system_name=system.name,
        )
        system.scheduler.check_request(job)  # e.g. more cores than a local machine has: refused here
        meta = json.loads((self.stage_dir / META).read_text())
        text = build_script(
            system,
            job,
            header_extra=header_extra,
            python_cmd=python_cmd or system.default_python(),
            env_vars=[tuple(e) for e in meta["env_vars"]],
            pre_run_commands=meta["pre_run_commands"],
            post_run_commands=meta["post_run_commands"],
        )
        _atomic_text(self.stage_dir / SCRIPT, text)  # a private temporary name: concurrent start()s
        _faults.point("start_script_written")

        # intent before side effects: claim the submission, then look before submitting again
        owner = _owner()
        stale = [row["submit_owner"]] if _owner_dead(row.get("submit_owner"), row.get("submit_time")) else []
        previous_claim = row.get("submit_owner")
        if not config.db.claim_submit(self.id, owner, stale=[s for s in stale if s]):
            logger.info("job %s is being submitted by %s; not submitting it again", self.id, row.get("submit_owner"))
            self._refresh_row()
            return
        config.db.update(self.id, system=system.name, resources=res.to_dict())
        self.system_name = system.name
        _faults.point("start_claimed")
        if previous_claim:
            found = system.find([self.id])
            if found and self.id in found:
                logger.warning("job %s was already submitted (as %s) by an interrupted run; adopting it", self.id, found[self.id])
                self._mark_submitted(found[self.id])
                return None
            ref = self._array_ref()
            if ref is not None:  # it may have been submitted as an element of a job array
                found = system.find([ref["array"]])
                if found and ref["array"] in found:
                    element = system.scheduler.array_element_id(found[ref["array"]], ref["index"])
                    logger.warning("job %s was already submitted as element %s of job array %s by an interrupted run; "
                                   "adopting it", self.id, element, ref["array"])
                    self._mark_submitted(element)
                    return None
        return system, job

    def _start_submit(self, system: System, job: JobRequest) -> None:
        """The part of :meth:`start` after the stage directory was copied."""
        try:
            (self.stage_dir / ARRAY_REF).unlink()  # submitted on its own now, not as an array element
        except FileNotFoundError:
            pass
        try:
            remote_id = system.submit(job)
        except SubmitError:
            config.db.update(self.id, submit_owner=None)  # refused: nothing was queued
            raise
        # any other failure keeps the claim: the next start() looks the job up before submitting
        self._mark_submitted(remote_id)

    def _mark_submitted(self, remote_id: str) -> None:
        config.db.update(self.id, status="submitted", remote_id=remote_id, remote_status="submitted")
        _faults.point("start_recorded")
        self.remote_id = remote_id
        self.status = "submitted"

    def _run_outputs(self) -> list[str]:
        """What a run left in the stage dir: the markers and logs, the per-call outcomes of a
        packed job (``expyre.packing.PARTIAL_PREFIX``) and a job array's own output files."""
        fixed = [f for f in (SUCCEEDED, FAILED, STARTED, STDOUT, STDERR, JOB_STDOUT, JOB_STDERR) if (self.stage_dir / f).exists()]
        extra = [n for n in os.listdir(self.stage_dir)
                 if n.startswith(ELEMENT_PREFIX) or (n.startswith(ARRAY_OUTPUT_PREFIX) and n.endswith((".out", ".err")))]
        return fixed + sorted(extra)

    def _archive_previous(self) -> None:
        n = 1
        while (self.stage_dir / f"_expyre_prev_{n}").exists():
            n += 1
        prev = self.stage_dir / f"_expyre_prev_{n}"
        prev.mkdir(mode=0o700)
        for f in self._run_outputs():
            os.replace(self.stage_dir / f, prev / f)

    def _discard_remote_results(self, system: System) -> None:
        """Before a forced re-run on a host with its own copy of the stage dir: remove the earlier
        run's markers there (the copy to the host adds files, it deletes none), so that the new
        run is not taken for finished."""
        rd = remote_path(system.remote_dir(self.stage_dir))
        names = " ".join(f"{rd}/{m}" for m in (SUCCEEDED, FAILED, STARTED))
        result = system.transport.run(f"rm -f -- {names} {rd}/{ELEMENT_PREFIX}*")
        if not result.ok:
            raise RuntimeError(f"job {self.id}: cannot remove the earlier run's results on {system.host or system.rundir} "
                               f"before running it again: {result.describe()}")

    # -- results -------------------------------------------------------------------------------
    def _check_files(self) -> str | None:
        # listing the directory also refreshes NFS attribute caches before exists()
        names = set(os.listdir(self.stage_dir)) if self.stage_dir.exists() else set()
        if SUCCEEDED in names:
            return "succeeded"
        if FAILED in names:
            return "failed"
        return None

    def _evaluate(self, poller: _Poller) -> str | None:
        """One step of the state machine; returns a final status or None to keep waiting."""
        outcome = self._check_files()
        if outcome:
            return outcome
        self._refresh_row()
        if self.status in ("succeeded", "failed", "died"):
            return self.status
        if self.remote_id is None or self.remote_id not in poller.polled:
            return None
        st = poller.statuses.get(self.remote_id)
        suspect = poller.suspects.get(self.remote_id)
        if suspect is None:
            return None
        # gone or terminal without a result file: never declare death from one observation
        first_poll, since = suspect
        if poller.count <= first_poll or time.time() - since < self.system.scheduler.vanish_grace:
            return None
        if not self.system.shares_stage_dirs:
            self.system.stage_out([self.stage_dir])  # the results may have landed after all; and the logs
            outcome = self._check_files()
            if outcome:
                return outcome
        if st is None:
            acct = poller.accounting.get(self.remote_id)
            if acct is None:  # accounting records can lag the queue (qacct ~2 s): ask again, once
                acct = self.system.accounting([self.remote_id]).get(self.remote_id)
                if acct is not None:
                    poller.accounting[self.remote_id] = acct
            why = f"scheduler accounting says {acct.describe()}" if acct else "it vanished from the queue"
        else:
            why = f"the scheduler reports it {st.describe()}"
        tail = self._tail(JOB_STDERR)
        reason = f"job {self.id} ({self.remote_id} on {self.system_name}) ended without a result: {why}"
        if tail:
            reason += f"; end of its stderr:\n{tail}"
        config.db.update(self.id, status="died", reason=reason)
        self.reason = reason
        return "died"

    def _tail(self, fname: str, n: int = 20) -> str:
        try:
            lines = (self.stage_dir / fname).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def get_results(
        self,
        timeout: float | str | None = 3600,
        check_interval: float = 30,
        sync: bool = True,
        quiet: bool = False,
        verbose: bool = False,
        **_compat: Any,
    ) -> Any:
        """Wait for the job and return the function's value.

        The captured output of the function is then in :attr:`stdout` and :attr:`stderr`, and the
        ``output_files`` are copied to the current directory.

        :param timeout: seconds (or a time string) to wait; None or <= 0 waits for ever.
        :param check_interval: the longest wait between checks (checks start fast and back off).
        :param quiet: no progress display.
        :raises ExPyReTimeoutError: (a ``TimeoutError``) the job did not finish within ``timeout``.
        :raises ExPyReJobDiedError: the job ended without a result.
        :raises Exception: the function's own exception, re-raised with its remote traceback.
        """
        if self.status in ("processed", "cleaned"):
            raise RuntimeError(f"job {self.id} has status {self.status}; its results are no longer available")
        if timeout is not None and not isinstance(timeout, (int, float)):
            timeout = Duration.parse(timeout).seconds
        deadline = None if timeout is None or timeout <= 0 else time.monotonic() + float(timeout)
        self._refresh_row()
        if self.status == "created":
            raise RuntimeError(f"job {self.id} has not been started: call start() first")
        system = self.system
        poller = _Poller.get(system, config.db)
        wait = 0.02 if system.shares_stage_dirs else min(1.0, check_interval)
        outcome = None
        with Waiting(f"job {self.name}", enabled=not quiet) as progress:
            while True:
                outcome = self._check_files()
                if outcome is None and sync:
                    poller.refresh(max_age=wait)
                    outcome = self._evaluate(poller)
                if outcome is not None:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise ExPyReTimeoutError(
                        f"job {self.id} not finished after {timeout} s (status {self.status}, "
                        f"scheduler: {config.db.get(self.id)['remote_status']}); it keeps running: call get_results() again"
                    )
                if progress.enabled:  # the scheduler's word costs a DB read: only for the display
                    progress.update(f"{self.status} ({(config.db.get(self.id) or {}).get('remote_status') or ''})")
                sleep = wait if deadline is None else max(0.0, min(wait, deadline - time.monotonic()))
                time.sleep(sleep)
                wait = min(check_interval, wait * 1.5)
        return self._finish(outcome)

    def _finish(self, outcome: str) -> Any:
        if outcome == "died":
            self._refresh_row()
            raise ExPyReJobDiedError(self.reason or f"job {self.id} died")
        self.stdout = self._read_text(STDOUT)
        self.stderr = self._read_text(STDERR)
        if outcome == "failed":
            config.db.update(self.id, status="failed")
            self.status = "failed"
            raise self._remote_exception()
        try:
            with self._open_marker(SUCCEEDED) as f:
                value = pickle.load(f)
        except Exception as exc:
            raise ExPyReResultError(
                f"job {self.id}: result file {self.stage_dir / SUCCEEDED} cannot be read ({type(exc).__name__}: {exc}); "
                f"it may be truncated or corrupted. Re-run with start(..., force_rerun=True)"
            ) from exc
        _faults.point("results_read")
        config.db.update(self.id, status="succeeded")
        _faults.point("results_recorded")
        self.status = "succeeded"
        self._copy_outputs()
        return value

    def _open_marker(self, fname: str):
        """A marker file of this job's own directory, never through a symlink."""
        if self.stage_dir.is_symlink():
            raise OSError(f"stage directory {self.stage_dir} is a symlink; not following it")
        return os.fdopen(os.open(self.stage_dir / fname, os.O_RDONLY | os.O_NOFOLLOW), "rb")

    def _read_text(self, fname: str) -> str:
        try:
            return (self.stage_dir / fname).read_text(errors="replace")
        except OSError:
            return ""

    def _remote_exception(self) -> BaseException:
        try:
            with self._open_marker(FAILED) as f:
                info = pickle.load(f)
        except Exception as exc:
            return ExPyReResultError(f"job {self.id} failed, and its error file cannot be read: {exc}")
        exc = info.get("exception")
        if not isinstance(exc, BaseException):
            exc = RemoteError(f"{info.get('type')}: {info.get('message')}")
        tb = info.get("traceback", "")
        exc.__cause__ = ExPyReRemoteTraceback(tb)
        if hasattr(exc, "add_note"):
            exc.add_note(f"raised in expyre job {self.id} on {info.get('host')} while {info.get('stage')}")
        self.remote_traceback = tb
        return exc

    def _copy_outputs(self) -> None:
        meta_path = self.stage_dir / META
        if not meta_path.exists():
            return
        patterns = json.loads(meta_path.read_text()).get("output_files", [])
        for pattern in patterns:
            matches = sorted(self.stage_dir.glob(pattern))
            if not matches:
                logger.warning("job %s: output file %r was not produced", self.id, pattern)
            for m in matches:
                rel = m.relative_to(self.stage_dir)
                dest = Path.cwd() / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                if m.is_dir():
                    shutil.copytree(m, dest, dirs_exist_ok=True)
                else:
                    shutil.copy2(m, dest)

    # -- bookkeeping ---------------------------------------------------------------------------
    def mark_processed(self) -> None:
        """Record that the results were used: an identical call will now make a new job."""
        config.db.update(self.id, status="processed")
        self.status = "processed"

    def cancel(self) -> None:
        """Cancel the job in its scheduler (no-op if it already finished)."""
        self._refresh_row()
        if self.status == "created":
            config.db.update(self.id, status="died", reason="cancelled before submission")
            self.status = "died"
            return
        if self.status in STATUS_GROUPS["ongoing"] and self.remote_id:
            self.system.control("cancel", [self.remote_id])
            config.db.update(self.id, reason="cancel requested by user")

    def hold(self) -> None:
        """Hold the queued job in its scheduler (it will not start until :meth:`release`)."""
        self._control("hold")

    def release(self) -> None:
        """Release a held job."""
        self._control("release")

    def _control(self, op: str) -> None:
        self._refresh_row()
        if self.status not in STATUS_GROUPS["ongoing"] or not self.remote_id:
            raise RuntimeError(f"job {self.id} is {self.status}; only a submitted job can be {op}ed")
        self.system.control(op, [self.remote_id])  # type: ignore[arg-type]

    def clean(self, wipe: bool = False, dry_run: bool = False, verbose: bool = False) -> list[str]:
        """Free the job's disk space, here and on the remote host; status becomes ``cleaned``.

        :param wipe: remove the whole stage directories (default: only the pickled call and result).
        :param dry_run: only return what would be removed.
        :return: the paths removed (or that would be).
        """
        self._refresh_row()
        targets = [self.stage_dir] if wipe else [self.stage_dir / TASK, self.stage_dir / SUCCEEDED]
        system = config.systems.get(self.system_name) if self.system_name else None
        remote = []
        if system is not None and not system.shares_stage_dirs:
            rd = system.remote_dir(self.stage_dir)
            remote = [rd] if wipe else [f"{rd}/{TASK}", f"{rd}/{SUCCEEDED}"]
        report = [str(t) for t in targets] + [f"{system.host or ''}:{r}" for r in remote] if system else [str(t) for t in targets]
        if dry_run:
            return report
        if remote and system is not None:
            result = system.transport.run("rm -rf -- " + " ".join(remote_path(r) for r in remote))
            if not result.ok:
                logger.warning("job %s: removing remote files failed: %s", self.id, result.describe())
        for t in targets:
            if t.is_dir():
                shutil.rmtree(t, ignore_errors=True)
            elif t.exists():
                t.unlink()
        config.db.update(self.id, status="cleaned")
        self.status = "cleaned"
        return report
