"""Plain data types shared by the core and the plugins: job requests, scheduler states, command results.

Everything here is a frozen attrs class or an enum; nothing does I/O.
"""

from __future__ import annotations

import enum
from typing import Sequence

from attrs import frozen

from .units import Duration, Memory

__all__ = [
    "CommandResult",
    "JobRequest",
    "JobState",
    "JobStatus",
    "JobUsage",
    "NodeAllocation",
    "SchedulerContext",
    "ConfigValue",
    "TransportError",
    "SubmitError",
    "SchedulerCommandError",
]


class JobState(str, enum.Enum):
    """What a scheduler says about one job, in scheduler-independent terms.

    The active states (``QUEUED``, ``HELD``, ``RUNNING``, ``SUSPENDED``) mean "keep waiting". The
    terminal ones mean the scheduler is done with the job; whether the *function* succeeded is then
    decided by the job's own result files, never by the scheduler alone. ``UNKNOWN`` is for codes a
    plugin does not recognise: the core logs it once and keeps waiting, it never crashes on it.
    """

    QUEUED = "queued"
    HELD = "held"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPLETED = "completed"  # the job script exited 0
    FAILED = "failed"  # the job script exited non-zero
    TIMEOUT = "timeout"  # killed at its time limit
    CANCELLED = "cancelled"  # cancelled by the user or an admin
    NODE_FAIL = "node_fail"  # a node died or the job could not be launched
    OUT_OF_MEMORY = "out_of_memory"
    PREEMPTED = "preempted"  # may come back as QUEUED if the site requeues
    UNKNOWN = "unknown"

    @property
    def active(self) -> bool:
        return self in _ACTIVE

    @property
    def terminal(self) -> bool:
        return self not in _ACTIVE and self is not JobState.UNKNOWN


_ACTIVE = frozenset({JobState.QUEUED, JobState.HELD, JobState.RUNNING, JobState.SUSPENDED})


@frozen
class JobStatus:
    """One scheduler observation of one job.

    :param state: the mapped state.
    :param reason: human-readable detail, e.g. Slurm's pending reason or SGE's error reason.
    :param raw: the scheduler's own code (``"PD"``, ``"Eqw"``, ``"C"``...), kept for messages.
    :param exit_code: the job script's exit code when the scheduler reports one.
    """

    state: JobState
    reason: str = ""
    raw: str = ""
    exit_code: int | None = None

    def describe(self) -> str:
        parts = [self.state.value]
        if self.raw and self.raw.lower() != self.state.value:
            parts.append(f"({self.raw})")
        if self.reason:
            parts.append(f"- {self.reason}")
        if self.exit_code is not None:
            parts.append(f"[exit {self.exit_code}]")
        return " ".join(parts)


@frozen
class JobUsage:
    """What a scheduler's accounting records say one finished job used.

    :param elapsed: wall-clock seconds the job ran (None: not recorded).
    :param max_rss_kib: its peak resident memory in KiB, the largest of its steps/tasks (None: not
        recorded, e.g. Slurm samples memory every ``JobAcctGatherFrequency`` seconds).
    :param max_vmem_kib: its peak virtual memory in KiB, where the scheduler records it.
    :param source: the command the numbers come from (``"sacct"``, ``"qacct"``).
    """

    elapsed: float | None = None
    max_rss_kib: int | None = None
    max_vmem_kib: int | None = None
    source: str = ""

    def to_dict(self) -> dict:
        """JSON-ready: the fields that are known (and ``source``)."""
        out: dict = {"source": self.source}
        for k in ("elapsed", "max_rss_kib", "max_vmem_kib"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        return out


@frozen
class NodeAllocation:
    """How a job's resources map onto nodes of the chosen partition (the header keys of ExPyRe's README)."""

    nnodes: int
    ncores_per_node: int
    tot_ncores: int
    tot_ntasks: int
    ncores_per_task: int
    ntasks_per_node: int | None


@frozen
class JobRequest:
    """Everything a scheduler needs to write a header and submit one job.

    :param id: the job's unique id. It is already sanitised (starts with a letter, then only
        ``[A-Za-z0-9_.-]``, at most 63 characters), so every scheduler can use it verbatim as the job
        name, and file names never depend on the scheduler.
    :param remote_dir: the job's directory on the host that runs the scheduler commands
        (absolute, or relative to the remote home). Submit commands run with this as cwd.
    :param script: file name of the job script inside ``remote_dir``.
    :param stdout: file name (inside ``remote_dir``) for the job script's stdout.
    :param stderr: file name (inside ``remote_dir``) for the job script's stderr.
    :param partition: the chosen partition/queue name (may be a comma list, as in config.json).
    :param max_time: the time limit, or None for none.
    :param nodes: the node allocation (``nnodes``, ``tot_ncores``...).
    :param max_mem_per_node: memory needed per node, if the resources asked for memory.
    :param partial_node: whether less than a whole node was requested.
    :param system_name: the system (config.json key) this job runs on.
    """

    id: str
    remote_dir: str
    script: str
    stdout: str
    stderr: str
    partition: str
    max_time: Duration | None
    nodes: NodeAllocation
    max_mem_per_node: Memory | None = None
    partial_node: bool = False
    system_name: str = ""

    @property
    def header_keys(self) -> dict[str, object]:
        """The keys available to ``str.format`` in header lines (exactly the list of ExPyRe's README)."""
        n = self.nodes
        return {
            "nnodes": n.nnodes,
            "ncores_per_node": n.ncores_per_node,
            "tot_ncores": n.tot_ncores,
            "tot_ntasks": n.tot_ntasks,
            "ncores_per_task": n.ncores_per_task,
            "ntasks_per_node": n.ntasks_per_node if n.ntasks_per_node is not None else "",
            "id": self.id,
            "partition": self.partition,
            "max_time_HMS": self.max_time.hms() if self.max_time is not None else "",
        }


class ConfigValue:
    """Base class of a backend's own value types in its ``scheduler_options`` (its
    :attr:`~expyre.hookspecs.Scheduler.Options` class): the core's converter structures a field of
    such a type by calling the type's classmethod ``from_config(value)``, which returns the value or
    raises ``ValueError``/``TypeError`` saying what is accepted (the core adds the key path
    ``systems.<name>.scheduler_options.<key>``). Put it first among the bases, e.g.
    ``class Mode(ConfigValue, str)``, so that it wins over the built-in type's own rule."""

    @classmethod
    def from_config(cls, value: object) -> "ConfigValue":
        raise NotImplementedError(f"{cls.__qualname__}.from_config")


@frozen
class SchedulerContext:
    """What a scheduler backend knows about the system it serves.

    :param system_name: the config.json key of the system.
    :param rundir: base directory for job directories on the executing host (absolute, or relative
        to the remote home). A scheduler may keep its own state below it (the ``local`` one does).
    :param host: ``None`` when the scheduler commands run on this machine without ssh.
    :param options: the system's ``scheduler_options`` dict from config.json, already structured
        into the backend's :attr:`~expyre.hookspecs.Scheduler.Options` class if it declares one.
    """

    system_name: str
    rundir: str
    host: str | None = None
    options: object = None


@frozen
class CommandResult:
    """The outcome of one command run through a transport."""

    argv: Sequence[str] | str
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        cmd = self.argv if isinstance(self.argv, str) else " ".join(self.argv)
        out = (self.stderr.strip() or self.stdout.strip())[-2000:]
        return f"`{cmd}` exited {self.returncode}" + (f": {out}" if out else "")


class TransportError(RuntimeError):
    """A transport could not run a command or copy files.

    :param retry_safe: True when the command certainly did not start on the other side (e.g. the
        connection could not be opened), so even a non-idempotent command may be sent again.
    """

    def __init__(self, message: str, *, retry_safe: bool = False, result: CommandResult | None = None):
        super().__init__(message)
        self.retry_safe = retry_safe
        self.result = result


class SchedulerCommandError(RuntimeError):
    """A scheduler command ran but reported failure (non-zero exit or unparseable output)."""

    def __init__(self, message: str, result: CommandResult | None = None):
        super().__init__(message)
        self.result = result


class SubmitError(SchedulerCommandError):
    """The scheduler refused a submission; the message carries the scheduler's own words."""

