"""The Slurm backend: ``sbatch``, ``squeue``, ``sacct``, ``scancel`` and ``scontrol`` command lines
and the parsing of what they print.

Status is one ``squeue --me -t all`` per poll for all of a system's jobs. ``-t all`` keeps finished
jobs visible (COMPLETED, FAILED, TIMEOUT, CANCELLED...) for ``MinJobAge`` (default 300 s) after
they end, and the ids are filtered here rather than passed with ``-j``: ``squeue -j <one purged
id>`` exits 1 with "Invalid job id specified" and would fail the whole poll. Jobs that have left
``squeue`` are reconciled by the core (result files, then :meth:`SlurmScheduler.accounting`, then a
grace period); accounting is ``sacct -X`` when slurmdbd is there, else the ``jobcomp`` file
(``sacct -c``), else nothing.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Sequence

import attrs
from attrs import field, frozen
from expyre.hookspecs import ControlOp, Scheduler, Transport
from expyre.types import (
    CommandResult,
    ConfigValue,
    JobRequest,
    JobStatus,
    JobUsage,
    SchedulerCommandError,
    SchedulerContext,
)

from . import header as _header
from .environment import JOB_ENV_PREFIXES
from .parse import (
    SACCT_FIELDS,
    SQUEUE_FIND_FORMAT,
    SQUEUE_STATUS_FORMAT,
    accounting_disabled,
    parse_find,
    parse_job_id,
    parse_max_array_size,
    SACCT_USAGE_FIELDS,
    parse_sacct,
    parse_sacct_usage,
    parse_squeue_status,
    submit_failure_is_ambiguous,
)

__all__ = ["SlurmOptions", "SlurmScheduler"]

logger = logging.getLogger(__name__)

ACCOUNTING_MODES = ("auto", "slurmdbd", "jobcomp", "none")


# per-value checks in ``from_config`` (see expyre.types.ConfigValue), so that config errors carry
# the key path
class AccountingMode(ConfigValue, str):
    """One of :data:`ACCOUNTING_MODES` (a config value)."""

    @classmethod
    def from_config(cls, value: object) -> "AccountingMode":
        if not isinstance(value, str) or value not in ACCOUNTING_MODES:
            raise ValueError(f"invalid accounting {value!r}: use one of {', '.join(ACCOUNTING_MODES)}")
        return cls(value)


class Seconds(ConfigValue, float):
    """A number of seconds >= 0 (a config value)."""

    @classmethod
    def from_config(cls, value: object) -> "Seconds":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"invalid number of seconds {value!r}: use a number >= 0")
        return cls(value)

# scancel/scontrol messages that mean "the job is already gone or finished": nothing left to do
_CONTROL_MOOT = ("Invalid job id specified", "has already finished", "already completing or completed")
_PER_JOB_LINE = re.compile(r"\bjob(?: id)? \d+", re.IGNORECASE)


@frozen
class SlurmOptions:
    """``scheduler_options`` of a ``"scheduler": "slurm"`` system in config.json.

    :param user: list this user's jobs with ``-u USER`` instead of ``--me`` (``--me`` needs Slurm
        20.11 or later).
    :param accounting: where the final state of a job that left ``squeue`` comes from: ``"auto"``
        (``sacct``; if the site has no accounting storage, the ``jobcomp`` file with ``sacct -c``;
        if that fails too, none), ``"slurmdbd"``, ``"jobcomp"`` or ``"none"``.
    :param find_days: how far back ``sacct`` looks for a job by name (the no-double-submit check
        after an interrupted submission), in days.
    :param vanish_grace: seconds a finished or vanished job without result files is given before
        it is declared died (default 30: NFS clients may show new files up to ~30-60 s late).
    :param min_status_interval: when the Slurm commands run on this machine (``"host": null``),
        status queries closer together than this many seconds are answered from the previous ``squeue``
        (Slurm asks programs not to call squeue in tight loops; its scheduler ticks once a second).
    :param max_array_size: the most elements of one job array (``--array=0-N``); default: the
        cluster's ``MaxArraySize`` from ``scontrol show config`` (an array's largest index must be
        below it), else 1001, Slurm's default.
    :param array_throttle: at most this many elements of one array run at once (``--array=0-N%T``).
    """

    user: str | None = None
    accounting: AccountingMode = AccountingMode("auto")
    find_days: int = field(default=7, validator=attrs.validators.ge(0))
    vanish_grace: Seconds | None = None
    min_status_interval: Seconds = Seconds(1.0)
    max_array_size: int | None = field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))
    array_throttle: int | None = field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))


class SlurmScheduler(Scheduler):
    """Slurm through its command-line tools (22.05 verified; ``--parsable``, ``--me``, ``-t all``)."""

    name = "slurm"
    Options = SlurmOptions
    # what Slurm sets in an enclosing job or step (SLURM_JOB_ID, SLURM_MEM_PER_CPU, SLURM_CPUS_PER_TASK...)
    # must not reach a nested sbatch, which exports its environment into the new job; its own inputs
    # (SLURM_CONF, SLURM_CLUSTERS, SBATCH_*...) must. See expyre_slurm.environment
    foreign_env_prefixes = JOB_ENV_PREFIXES
    vanish_grace = 30.0
    directive = _header.DIRECTIVE
    max_array_size = 1001  # Slurm's default MaxArraySize; the cluster's own is asked
    array_index_var = "SLURM_ARRAY_TASK_ID"
    array_output_token = "%a"

    def __init__(self, context: SchedulerContext) -> None:
        super().__init__(context)
        opts = self.context.options
        self.options = opts
        if opts.vanish_grace is not None:
            self.vanish_grace = opts.vanish_grace
        # "auto" resolves to the first mode that works, on first use
        self._accounting_mode = "slurmdbd" if opts.accounting == "auto" else opts.accounting
        self._lock = threading.Lock()
        # (monotonic time the query started, ids it covered, statuses)
        self._last_status: tuple[float, frozenset[str], dict[str, JobStatus]] | None = None

    # -- helpers -----------------------------------------------------------------------------
    def _user_args(self) -> list[str]:
        return ["-u", self.options.user] if self.options.user else ["--me"]

    @property
    def accounting_mode(self) -> str:
        """``"slurmdbd"``, ``"jobcomp"`` or ``"none"``: the accounting source in use now."""
        return self._accounting_mode

    # -- header ----------------------------------------------------------------------------------
    def header(self, job: JobRequest) -> list[str]:
        return _header.default_header(job)

    def job_env(self, job: JobRequest) -> list[str]:
        return _header.job_env(job)

    # -- submit ----------------------------------------------------------------------------------
    def submit_command(self, job: JobRequest) -> list[str]:
        return ["sbatch", "--parsable", job.script]

    def parse_submit(self, result: CommandResult, job: JobRequest) -> str:
        if result.ok:
            jid = parse_job_id(result.stdout)
            if jid is not None:
                return jid
            # exit 0 but no id: it may well be queued; the core looks it up by name
            raise SchedulerCommandError(
                f"sbatch of job {job.id} exited 0 but printed no job id: {result.describe()}", result
            )
        if submit_failure_is_ambiguous(result.stderr + result.stdout):
            raise SchedulerCommandError(f"Slurm submission of job {job.id} may have failed: {result.describe()}", result)
        raise self.submit_failed(result, f"Slurm (job {job.id})")

    def find_command(self, names: Sequence[str]) -> list[str]:
        return ["squeue", *self._user_args(), "-t", "all", "-h", "-o", SQUEUE_FIND_FORMAT, f"--name={','.join(names)}"]

    def parse_find(self, result: CommandResult, names: Sequence[str]) -> dict[str, str]:
        if not result.ok:
            raise SchedulerCommandError(f"squeue could not look up jobs by name: {result.describe()}", result)
        return parse_find(result.stdout, names)

    def find_accounting_command(self, names: Sequence[str]) -> list[str] | None:
        """``sacct`` by job name over the last ``find_days`` days, for jobs ``squeue`` has purged."""
        if self._accounting_mode != "slurmdbd":
            return None
        cmd = ["sacct", "-X", "-P", "-n", "-S", f"now-{self.options.find_days}days", "-o", "JobID,JobName"]
        if self.options.user:
            cmd += ["-u", self.options.user]
        return [*cmd, f"--name={','.join(names)}"]

    def find(self, transport: Transport, names: Sequence[str]) -> dict[str, str] | None:
        """Jobs by name: ``squeue -t all`` first, then ``sacct`` for names it does not list."""
        found = self.parse_find(transport.run(self.find_command(names)), names)
        missing = [n for n in names if n not in found]
        cmd = self.find_accounting_command(missing) if missing else None
        if cmd is not None:
            result = transport.run(cmd)
            if result.ok:
                found.update(parse_find(result.stdout, missing))
            elif accounting_disabled(result.stderr + result.stdout):
                self._accounting_unavailable(result)
            else:
                raise SchedulerCommandError(f"sacct could not look up jobs by name: {result.describe()}", result)
        return found

    # -- job arrays ------------------------------------------------------------------------------
    def array_size_limit(self, transport: Transport) -> int | None:
        """``scheduler_options.max_array_size``, else ``MaxArraySize`` of ``scontrol show config``
        (0 there means the site disabled arrays: None)."""
        if self.options.max_array_size is not None:
            return self.options.max_array_size
        result = transport.run(["scontrol", "show", "config"], timeout=60)
        if not result.ok:
            raise SchedulerCommandError(f"scontrol show config failed: {result.describe()}", result)
        value = parse_max_array_size(result.stdout)
        if value is None:
            logger.info("%s: scontrol show config names no MaxArraySize; assuming %d", self.context.system_name, self.max_array_size)
            return self.max_array_size
        return value or None

    def array_header(self, job: JobRequest, n: int) -> list[str]:
        return _header.array_header(n, self.options.array_throttle)

    def array_element_id(self, array_id: str, i: int) -> str:
        return f"{array_id}_{i}"

    # -- describing and checking a system ------------------------------------------------------
    def probe_command(self) -> str:
        """``command -v squeue``: prints where Slurm's commands are, fails without them."""
        return "command -v squeue"

    def partitions_command(self) -> list[str]:
        return ["sinfo", "-h", "-o", "%P"]

    def parse_partitions(self, result: CommandResult) -> set[str]:
        """``sinfo -h -o %P`` prints one partition a line, the default one marked ``*``."""
        return {ln.strip().rstrip("*") for ln in result.stdout.splitlines() if ln.strip()}

    # -- status ----------------------------------------------------------------------------------
    def status_command(self, ids: Sequence[str]) -> list[str]:
        # all of this user's jobs, in every state, in one RPC; the ids are picked out by parse_status.
        # Array elements ("123_4") need -r: without it a pending array is one line "123_[0-199]"
        array = ["-r"] if "_" in "\n".join(ids) else []
        return ["squeue", *self._user_args(), "-t", "all", *array, "-h", "-o", SQUEUE_STATUS_FORMAT]

    def parse_status(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            raise SchedulerCommandError(f"squeue failed: {result.describe()}", result)
        return parse_squeue_status(result.stdout, ids)

    def status(self, transport: Transport, ids: Sequence[str]) -> dict[str, JobStatus]:
        """One ``squeue`` for all ``ids``; a repeat within ``min_status_interval`` seconds for ids
        the previous query covered is answered from it."""
        if not ids:
            return {}
        wanted = frozenset(ids)
        started = time.monotonic()
        with self._lock:
            last = self._last_status
        if last is not None and wanted <= last[1] and started - last[0] < self.options.min_status_interval:
            return {i: st for i, st in last[2].items() if i in wanted}
        statuses = self.parse_status(transport.run(self.status_command(ids)), ids)
        with self._lock:
            self._last_status = (started, wanted, statuses)
        return statuses

    # -- accounting ------------------------------------------------------------------------------
    def accounting_command(self, ids: Sequence[str]) -> list[str] | None:
        mode = self._accounting_mode
        if mode == "none" or not ids:
            return None
        cmd = ["sacct"]
        if mode == "jobcomp":
            cmd.append("-c")
        return [*cmd, "-X", "-P", "-n", "-o", SACCT_FIELDS, "-j", ",".join(ids)]

    def parse_accounting(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            if accounting_disabled(result.stderr + result.stdout):
                self._accounting_unavailable(result)
                return {}
            raise SchedulerCommandError(f"sacct failed: {result.describe()}", result)
        return parse_sacct(result.stdout, ids)

    def _accounting_unavailable(self, result: CommandResult) -> None:
        with self._lock:
            before = self._accounting_mode
            if before == "slurmdbd" and self.options.accounting == "auto":
                self._accounting_mode = "jobcomp"
            elif before != "none":
                self._accounting_mode = "none"
            if before != self._accounting_mode:
                logger.info("%s: Slurm accounting via %s is not available (%s); using %s from now on",
                            self.context.system_name, before, result.describe(), self._accounting_mode)

    def accounting(self, transport: Transport, ids: Sequence[str]) -> dict[str, JobStatus]:
        """Final states of jobs that left ``squeue``; falls back from ``sacct`` to ``sacct -c``
        (within the same call) when the site has no accounting storage."""
        while True:
            mode = self._accounting_mode
            cmd = self.accounting_command(ids)
            if cmd is None:
                return {}
            result = transport.run(cmd)
            if not result.ok and mode == "jobcomp" and self.options.accounting == "auto":
                # sacct -c needs a readable jobcomp/filetxt log; without it there is no record at all
                self._accounting_unavailable(result)
                return {}
            statuses = self.parse_accounting(result, ids)
            if self._accounting_mode == mode:
                return statuses

    # -- usage -----------------------------------------------------------------------------------
    def usage_command(self, ids: Sequence[str]) -> list[str] | None:
        """``sacct -P -n -o JobID,State,ElapsedRaw,MaxRSS -j IDS`` (no ``-X``: ``MaxRSS`` is on the
        step lines); None without slurmdbd (``sacct -c``'s job completion log has no memory)."""
        if self._accounting_mode != "slurmdbd" or not ids:
            return None
        return ["sacct", "-P", "-n", "-o", SACCT_USAGE_FIELDS, "-j", ",".join(ids)]

    def parse_usage(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobUsage]:
        if not result.ok:
            if accounting_disabled(result.stderr + result.stdout):
                self._accounting_unavailable(result)
                return {}
            raise SchedulerCommandError(f"sacct (usage) failed: {result.describe()}", result)
        return parse_sacct_usage(result.stdout, ids)

    # -- cancel / hold / release -----------------------------------------------------------------
    def control_command(self, op: ControlOp, ids: Sequence[str]) -> list[str]:
        if op == "cancel":
            return ["scancel", *ids]
        if op in ("hold", "release"):
            return ["scontrol", op, ",".join(ids)]
        raise ValueError(f"unknown control operation {op!r}; valid: cancel, hold, release")

    def check_control(self, op: ControlOp, result: CommandResult, ids: Sequence[str]) -> None:
        """A job that already finished or was purged needs nothing more: that is not a failure.

        scancel says nothing then; scontrol prints one line per job (``Job has already finished for
        job 18``) and a summary line (``slurm_suspend error: ...``, which may even read ``No
        error``). Only the per-job lines are judged when there are any.
        """
        if result.ok:
            return
        lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
        per_job = [line for line in lines if _PER_JOB_LINE.search(line)]
        problems = [line for line in (per_job or lines) if not any(m in line for m in _CONTROL_MOOT)]
        if problems or not lines:
            raise SchedulerCommandError(f"Slurm {op} of {', '.join(ids)} failed: {result.describe()}", result)
        logger.info("%s: %s of %s: nothing to do for job(s) that already ended: %s",
                    self.context.system_name, op, ", ".join(ids), "; ".join(per_job or lines))
