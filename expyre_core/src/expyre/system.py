"""A configured system at run time: its scheduler and transport backends, and the operations the
core performs through them (with retries only where repeating is safe).

* Idempotent commands (status, accounting, find, cancel/hold/release, copying) are retried
  ``EXPYRE_RETRY="n t"`` times (default ``"3 5"``).
* Submission is never retried blindly: after an ambiguous failure the job is looked up by its
  unique name first, so a job is never submitted twice.
* On a remote host, one poll is ONE round trip: the status query and the listing of the jobs'
  marker files travel in the same command.
"""

from __future__ import annotations

import atexit
import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from . import _faults, plugins
from .config_model import Partition, SystemConfig, structure_scheduler_options
from .hookspecs import ControlOp, Scheduler, Transport
from .layout import MARKERS, PARTIAL_PREFIX
from .shell import join as shell_join
from .shell import remote_path
from .types import (
    CommandResult,
    JobRequest,
    JobStatus,
    JobUsage,
    SchedulerCommandError,
    SchedulerContext,
    SubmitError,
    TransportError,
)

__all__ = ["System", "SubmitOutcomeUnknownError", "close_all", "retry_policy", "MARKERS"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_REMOTE_RUNDIR = "expyre_rundir"
#: seconds a scheduler command (status, find, submit, cancel...) may take before it is killed and
#: treated as failed (``command_timeout`` in config.json overrides it per system)
DEFAULT_COMMAND_TIMEOUT = 300.0
#: per-call outcome files of a packed job (prefix + index), listed by the poll with the markers
#: so that finished calls can be fetched before the whole job ends
ELEMENT_PREFIX = PARTIAL_PREFIX
_SEP = "__EXPYRE_POLL_SEPARATOR__"

_open_systems: "set[System]" = set()
_open_lock = threading.Lock()


class SubmitOutcomeUnknownError(RuntimeError):
    """A submission may or may not have reached the scheduler and the scheduler cannot be asked.
    The job keeps its claim; calling ``start()`` again re-checks before submitting."""


def retry_policy() -> tuple[int, float]:
    """``(tries, wait seconds)`` from ``EXPYRE_RETRY`` ("n t"), default (3, 5)."""
    raw = os.environ.get("EXPYRE_RETRY", "3 5")
    try:
        n, t = raw.split()
        n_i, t_f = int(n), float(t)
        if n_i < 1 or t_f < 0:
            raise ValueError
        return n_i, t_f
    except ValueError:
        raise ValueError(f"EXPYRE_RETRY={raw!r} is invalid: use 'n t' (tries >= 1, wait seconds >= 0), e.g. '3 5'") from None


def close_all() -> None:
    with _open_lock:
        systems = list(_open_systems)
        _open_systems.clear()
    for s in systems:
        s.close()


atexit.register(close_all)


class System:
    """One system of config.json, with lazily created backends."""

    def __init__(self, name: str, cfg: SystemConfig, root: Path) -> None:
        self.name = name
        self.cfg = cfg
        self.root = Path(root)
        self._scheduler: Scheduler | None = None
        self._transport: Transport | None = None
        self._setup_done = False
        self._lock = threading.RLock()
        self._array_limit: int | None | bool = False  # False: not asked yet
        self._python_versions: dict[str, tuple[int, int] | None] = {}

    def __repr__(self) -> str:
        return f"System({self.name!r}, host={self.cfg.host!r}, scheduler={self.cfg.scheduler!r})"

    # -- configuration -------------------------------------------------------------------------
    @property
    def host(self) -> str | None:
        return self.cfg.host

    @property
    def partitions(self) -> dict[str, Partition]:
        if self.cfg.partitions:
            return self.cfg.partitions
        return plugins.default_partitions(self.cfg.scheduler) or {}

    @property
    def shares_stage_dirs(self) -> bool:
        """True when jobs run in the local stage directories themselves (nothing is copied)."""
        return self.cfg.host is None and self.cfg.rundir is None

    @property
    def rundir(self) -> str:
        if self.shares_stage_dirs:
            return str(self.root)
        if self.cfg.host is None:
            return str(Path(self.cfg.rundir).expanduser().absolute())  # type: ignore[arg-type]
        return self.cfg.rundir or DEFAULT_REMOTE_RUNDIR

    def remote_dir(self, stage_dir: Path) -> str:
        """Where the job whose local stage dir is ``stage_dir`` runs."""
        if self.shares_stage_dirs:
            return str(stage_dir)
        return f"{self.rundir.rstrip('/')}/{Path(stage_dir).name}"

    @property
    def command_timeout(self) -> float:
        """Seconds a command on this system's host may take (``command_timeout``, default
        :data:`DEFAULT_COMMAND_TIMEOUT`); also the copies' I/O inactivity limit."""
        t = self.cfg.command_timeout
        return float(t.seconds) if t is not None else DEFAULT_COMMAND_TIMEOUT

    def default_python(self) -> str:
        if self.cfg.python_cmd:
            return self.cfg.python_cmd
        return shlex.quote(sys.executable) if self.cfg.host is None else "python3"

    def job_python_version(self, python_cmd: str | None = None) -> tuple[int, int] | None:
        """``(major, minor)`` of the jobs' Python (``python_cmd``, default :meth:`default_python`),
        asked once per process and command (:meth:`Transport.python_version`, after the system's
        ``commands``); this interpreter's own for the default of a ``"host": null`` system.
        None when it cannot be told."""
        cmd = python_cmd or self.default_python()
        if self.cfg.host is None and cmd == shlex.quote(sys.executable):
            return (sys.version_info[0], sys.version_info[1])
        with self._lock:
            if cmd in self._python_versions:
                return self._python_versions[cmd]
        _, trans = self._ready()
        version = trans.python_version(cmd, list(self.cfg.commands))
        logger.debug("%s: the jobs' Python %s is %s", self.name, cmd, version)
        with self._lock:
            self._python_versions[cmd] = version
        return version

    # -- backends ------------------------------------------------------------------------------
    @property
    def transport(self) -> Transport:
        with self._lock:
            if self._transport is None:
                spec = plugins.get_transport_spec(self.cfg.transport_name)
                remsh = self.cfg.remsh_cmd or os.environ.get("EXPYRE_RSH") or "ssh"
                self._transport = spec.backend(self.cfg.host, remsh)
                self._transport.command_timeout = self.command_timeout
                with _open_lock:
                    _open_systems.add(self)
            return self._transport

    @property
    def scheduler(self) -> Scheduler:
        with self._lock:
            if self._scheduler is None:
                spec = plugins.get_scheduler_spec(self.cfg.scheduler)
                options = structure_scheduler_options(spec.backend.Options, self.cfg.scheduler_options, self.name)
                ctx = SchedulerContext(system_name=self.name, rundir=self.rundir, host=self.cfg.host, options=options)
                self._scheduler = spec.backend(ctx)
            return self._scheduler

    def _ready(self) -> tuple[Scheduler, Transport]:
        sched, trans = self.scheduler, self.transport
        with self._lock:
            if not self._setup_done:
                self._retry(lambda: trans.probe(self.default_python(), list(self.cfg.commands)),
                            f"{self.name}: checking {self.host or 'this machine'}")
                self._retry(lambda: sched.setup(trans), f"{self.name}: scheduler setup")
                self._setup_done = True
        return sched, trans

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                try:
                    self._transport.close()
                except Exception as exc:  # noqa: BLE001 - closing must not raise at exit
                    logger.debug("closing transport of %s: %s", self.name, exc)
                self._transport = None
                self._setup_done = False

    # -- retries -------------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], T], what: str) -> T:
        tries, wait = retry_policy()
        for attempt in range(1, tries + 1):
            try:
                return fn()
            except (TransportError, SchedulerCommandError) as exc:
                if isinstance(exc, SubmitError) or attempt == tries:
                    raise
                logger.warning("%s failed (try %d of %d), retrying in %g s: %s", what, attempt, tries, wait, exc)
                time.sleep(wait)
        raise AssertionError("unreachable")

    # -- operations ----------------------------------------------------------------------------
    def stage_in(self, stage_dirs: Sequence[Path]) -> None:
        if self.shares_stage_dirs or not stage_dirs:
            return
        _, trans = self._ready()
        self._retry(lambda: trans.put(list(stage_dirs), self.rundir), f"{self.name}: copying {len(stage_dirs)} job dir(s) to {self.host or 'rundir'}")

    def stage_out(self, stage_dirs: Sequence[Path]) -> None:
        if self.shares_stage_dirs or not stage_dirs:
            return
        _, trans = self._ready()
        remote = [self.remote_dir(d) for d in stage_dirs]
        parent = Path(stage_dirs[0]).parent
        self._retry(lambda: trans.get(remote, parent), f"{self.name}: copying {len(remote)} job dir(s) back")

    def submit(self, job: JobRequest) -> str:
        """Submit ``job`` (its directory already staged); never submits it twice."""
        sched, trans = self._ready()
        _faults.point("start_staged")
        tries, wait = retry_policy()
        last: Exception | None = None
        for attempt in range(1, tries + 1):
            try:
                remote_id = sched.submit(trans, job)
                _faults.point("start_submitted")
                return remote_id
            except SubmitError:
                raise
            except (TransportError, SchedulerCommandError) as exc:
                last = exc
                if isinstance(exc, TransportError) and exc.retry_safe:
                    logger.warning("%s: submitting %s failed before reaching the host (try %d of %d): %s",
                                   self.name, job.id, attempt, tries, exc)
                else:
                    found = self.find([job.id])
                    if found is None:
                        raise SubmitOutcomeUnknownError(
                            f"submitting job {job.id} to {self.name} may or may not have succeeded ({exc}); "
                            f"the {self.cfg.scheduler} scheduler cannot look jobs up by name. Check the queue, "
                            f"then call start() again"
                        ) from exc
                    if job.id in found:
                        logger.warning("%s: submit of %s reported %s, but the job is queued as %s; using it",
                                       self.name, job.id, exc, found[job.id])
                        return found[job.id]
                    logger.warning("%s: submitting %s failed (try %d of %d), not queued, retrying: %s",
                                   self.name, job.id, attempt, tries, exc)
                if attempt < tries:
                    time.sleep(wait)
        assert last is not None
        raise last

    def array_limit(self) -> int | None:
        """The most elements one job array may have here, or None when this system's scheduler
        cannot submit arrays. Asked once per process (``scheduler_options.max_array_size``, else
        the scheduler's own limit, e.g. Slurm's ``MaxArraySize``)."""
        sched, trans = self._ready()
        with self._lock:
            if self._array_limit is False:
                limit: int | None = None
                if sched.arrays_supported():
                    try:
                        limit = self._retry(lambda: sched.array_size_limit(trans), f"{self.name}: asking the array size limit")
                    except (TransportError, SchedulerCommandError) as exc:
                        limit = sched.max_array_size
                        logger.warning("%s: could not ask the scheduler's array size limit (%s); using %s", self.name, exc, limit)
                    if limit is not None and limit < 1:
                        raise ValueError(f"systems.{self.name}.scheduler_options.max_array_size: must be >= 1, got {limit}")
                self._array_limit = limit
                logger.debug("%s: job arrays: %s", self.name, f"at most {limit} elements" if limit else "not supported")
            return self._array_limit  # type: ignore[return-value]

    def find(self, names: Sequence[str]) -> dict[str, str] | None:
        sched, trans = self._ready()
        return self._retry(lambda: sched.find(trans, names), f"{self.name}: looking up jobs by name")

    def status(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        sched, trans = self._ready()
        return self._retry(lambda: sched.status(trans, ids), f"{self.name}: status query")

    def accounting(self, ids: Sequence[str]) -> dict[str, JobStatus]:
        sched, trans = self._ready()
        try:
            return self._retry(lambda: sched.accounting(trans, ids), f"{self.name}: accounting query")
        except (TransportError, SchedulerCommandError) as exc:
            logger.info("%s: accounting query failed, relying on result files: %s", self.name, exc)
            return {}

    def usage(self, ids: Sequence[str]) -> dict[str, JobUsage]:
        """What the finished jobs ``ids`` used, from the scheduler's accounting records (one
        command; :meth:`Scheduler.usage`). {} when not available or when the query fails (logged)."""
        if not ids:
            return {}
        if type(self.scheduler).usage is Scheduler.usage and self.scheduler.usage_command(ids) is None:
            return {}  # not available: no need to reach the host
        sched, trans = self._ready()
        try:
            return self._retry(lambda: sched.usage(trans, ids), f"{self.name}: usage query")
        except (TransportError, SchedulerCommandError) as exc:
            logger.info("%s: usage query failed: %s", self.name, exc)
            return {}

    def control(self, op: ControlOp, ids: Sequence[str]) -> None:
        sched, trans = self._ready()
        self._retry(lambda: sched.control(trans, op, ids), f"{self.name}: {op}")

    def explain_queued(self, ids: Sequence[str]) -> dict[str, str]:
        """Why the queued jobs ``ids`` wait, as far as the scheduler can say
        (:meth:`Scheduler.explain_queued`; {} when it cannot)."""
        sched, trans = self._ready()
        return self._retry(lambda: sched.explain_queued(trans, ids), f"{self.name}: asking why jobs wait")

    def poll(self, ids: Sequence[str], stage_dirs: Sequence[Path | str]) -> tuple[dict[str, JobStatus], dict[str, set[str]]]:
        """One status query for ``ids`` plus the marker files of ``stage_dirs`` on the executing host.

        Returns ``(status by id, markers by stage dir name)``: only the stage dirs with markers
        have an entry. On a remote host both travel in a single round
        trip. Markers of jobs on shared stage dirs are read by the caller directly.
        """
        sched, trans = self._ready()
        dir_names = [_basename(os.fspath(d)) for d in stage_dirs]
        if self.shares_stage_dirs or trans.is_local:
            statuses = self.status(ids) if ids else {}
            markers: dict[str, set[str]] = {}
            if not self.shares_stage_dirs:
                for name in dir_names:
                    rd = Path(self.remote_dir(Path(name)))
                    found = {m for m in MARKERS if (rd / m).exists()} | _element_files(rd)
                    if found:
                        markers[name] = found
            return statuses, markers

        parts = []
        if ids:
            parts.append(shell_join(sched.status_command(ids)) + f"; printf '\\n{_SEP} %d\\n' $?")
        else:
            parts.append(f"printf '\\n{_SEP} 0\\n'")
        names = shell_join(dir_names)
        marks = " ".join(f'"$d"/{m}' for m in MARKERS) + f' "$d"/{ELEMENT_PREFIX}*'
        if stage_dirs:
            parts.append(
                f"cd -- {remote_path(self.rundir)} 2>/dev/null && for d in {names}; do for m in {marks}; do "
                f'[ -e "$m" ] && printf "%s\\n" "$m"; done; done; true'
            )

        def once() -> tuple[dict[str, JobStatus], dict[str, set[str]]]:
            result = trans.run("\n".join(parts))
            head, sep, tail = result.stdout.rpartition(f"\n{_SEP} ")
            if not sep:
                raise SchedulerCommandError(f"{self.name}: poll printed no separator: {result.describe()}", result)
            rc_text, _, marker_text = tail.partition("\n")
            status_result = CommandResult(parts[0], int(rc_text.strip() or 0), head, result.stderr)
            statuses = sched.explain(trans, sched.parse_status(status_result, ids)) if ids else {}
            found: dict[str, set[str]] = {}
            if marker_text.strip():
                names = set(dir_names)
                for line in marker_text.splitlines():
                    d, _, m = line.strip().partition("/")
                    if d in names and (m in MARKERS or _is_element_file(m)):
                        found.setdefault(d, set()).add(m)
            return statuses, found

        return self._retry(once, f"{self.name}: poll")


def _basename(path: str) -> str:
    """``Path(path).name``, without making a Path (10^4 per poll)."""
    path = path.rstrip("/")
    return path[path.rfind("/") + 1:]


def _is_element_file(name: str) -> bool:
    return name.startswith(ELEMENT_PREFIX) and name[len(ELEMENT_PREFIX):].isdigit()


def _element_files(d: Path) -> set[str]:
    try:
        return {n for n in os.listdir(d) if _is_element_file(n)}
    except OSError:
        return set()

