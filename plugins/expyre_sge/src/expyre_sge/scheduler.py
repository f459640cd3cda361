"""The Grid Engine backend: ``qsub``, ``qstat``, ``qacct``, ``qdel``, ``qhold`` and ``qrls`` command
lines, and the parsing of what they print.

* Status is ONE ``qstat -xml -u <user>`` per poll for all of a system's jobs (the ids are filtered
  here). Finished jobs leave ``qstat`` about a second after they end; the core then reconciles
  them through the result files and :meth:`SgeScheduler.accounting` (``qacct -j``).
* A job in error state (``Eqw``) is reported as ``node_fail``; :meth:`SgeScheduler.explain` adds
  its ``error reason`` from ``qstat -j`` (one extra query, only while such a job is new).
* Look-up by name after an ambiguous submission: ``qstat -xml -u <user> -s prsz`` lists
  ``JB_name`` of pending, running, suspended and recently finished jobs; a name it does not
  list is looked up in ``qacct`` (``qstat -s z`` keeps only the cluster's last 100 finished jobs).
* The commands must be Grid Engine's: :meth:`SgeScheduler.setup` checks that ``qstat -help``
  says so (Slurm's Torque-style wrappers also install ``qsub``/``qstat``), and finds the user.
"""

from __future__ import annotations

import getpass
import logging
import posixpath
import shlex
import threading
import time
from typing import Sequence

from attrs import field, frozen, validators

from expyre.hookspecs import ControlOp, Scheduler, Transport
from expyre.types import (
    CommandResult,
    JobRequest,
    JobState,
    JobStatus,
    JobUsage,
    SchedulerCommandError,
    SchedulerContext,
    SubmitError,
)

from . import header as _header
from .parse import (
    control_failures,
    expand_tasks,
    is_grid_engine_banner,
    parse_error_reasons,
    parse_job_id,
    parse_max_aj_tasks,
    parse_qacct,
    parse_qacct_usage,
    parse_qstat_xml,
    parse_qstat_xml_states,
    parse_scheduling_info,
    qacct_status,
    SCHEDULING_INFO_OFF,
    submit_failure_is_ambiguous,
)
from .states import map_state, merge_states

__all__ = ["SgeOptions", "SgeScheduler", "SgeSetupError", "FOREIGN_ENV_NAMES", "FOREIGN_ENV_PREFIXES"]

logger = logging.getLogger(__name__)

#: Prefixes of the variables Grid Engine sets in a job (sge_environ: SGE_O_*, SGE_TASK_*,
#: SGE_STDOUT_PATH, SGE_CKPT_*...). Not "SGE_" as a whole: SGE_ROOT, SGE_CELL, SGE_ARCH,
#: SGE_QMASTER_PORT, SGE_EXECD_PORT and SGE_CLUSTER_NAME tell qsub where the cluster is.
FOREIGN_ENV_PREFIXES = (
    "SGE_O_",
    "SGE_TASK_",
    "SGE_STDIN_",
    "SGE_STDOUT_",
    "SGE_STDERR_",
    "SGE_CWD_",
    "SGE_JOB_",
    "SGE_CKPT_",
    "SGE_BINDING",
    "SGE_BINARY_PATH",
    "SGE_ACCOUNT",
    "SGE_HGR_",
)
#: Exact names Grid Engine sets in a job. With ``-V`` (``#$ -V`` is common at sites) qsub copies
#: its whole environment into the new job, and e.g. PE, PE_HOSTFILE, SGE_CKPT_DIR of an enclosing
#: job then survive into a nested job that has no parallel environment (verified on SGE 8.1.9).
#: Removed with ``env -u`` in front of qsub: the transport's ``unset_env_prefixes`` only takes
#: prefixes, and "PE" or "QUEUE" as prefixes would hit unrelated variables.
FOREIGN_ENV_NAMES = (
    "JOB_ID",
    "JOB_NAME",
    "JOB_SCRIPT",
    "NSLOTS",
    "NHOSTS",
    "NQUEUES",
    "PE",
    "PE_HOSTFILE",
    "QUEUE",
    "REQUEST",
    "REQNAME",
    "RESTARTED",
    "ENVIRONMENT",
    "ARC",
)


class SgeSetupError(RuntimeError):
    """The commands on the host are not Grid Engine's (or missing): a configuration problem, not
    retried."""


@frozen
class SgeOptions:
    """``scheduler_options`` of a ``"scheduler": "sge"`` system in config.json.

    :param bin_dir: directory holding Grid Engine's ``qsub``, ``qstat``... (e.g. ``"/usr/bin"`` or
        ``"/opt/sge/bin/lx-amd64"``). Default: whatever ``PATH`` finds on the host, which
        :meth:`SgeScheduler.setup` checks is Grid Engine's.
    :param user: list this user's jobs (``qstat -u``). Default: ``id -un`` on the host.
    :param vanish_grace: seconds a vanished job without result files is given before it is
        declared died (default :attr:`SgeScheduler.vanish_grace`).
    :param max_array_size: the most tasks of one array job (``-t 1-N``); default: the cluster's
        ``max_aj_tasks`` from ``qconf -sconf``, else 75000 (Grid Engine's default).
    :param array_throttle: at most this many tasks of one array job run at once (``-tc``).
    :param pending_reason_interval: for jobs that have waited in the queue (``qw``) this many
        seconds, ask Grid Engine why (``qstat -j``: its "scheduling info", e.g. ``queue instance
        "all.q@vm" dropped because it is disabled``), at most once per this many seconds, for at
        most 100 jobs; it becomes the reason of their status. 0 never asks. Needs ``schedd_job_info true`` in ``qconf -ssconf``
        (without it, asking stops after the first answer).
    """

    bin_dir: str | None = None
    user: str | None = None
    vanish_grace: float | None = None
    max_array_size: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    array_throttle: int | None = field(default=None, validator=validators.optional(validators.ge(1)))
    pending_reason_interval: float = field(default=60.0, validator=validators.ge(0))


class SgeScheduler(Scheduler):
    """Son of Grid Engine / Sun Grid Engine (8.1.9 verified) through its command-line tools."""

    name = "sge"
    Options = SgeOptions
    foreign_env_prefixes = FOREIGN_ENV_PREFIXES
    #: a job leaves qstat ~1 s after it ends and qacct has it ~1 s later (reporting flush_time);
    #: the grace also covers NFS attribute caches showing result files late
    vanish_grace = 10.0
    directive = _header.DIRECTIVE
    max_array_size = 75000  # Grid Engine's default max_aj_tasks; the cluster's own is asked
    array_index_var = "SGE_TASK_ID"
    array_index_base = 1
    array_output_token = "$TASK_ID"  # a pseudo variable Grid Engine expands in -o/-e paths

    def __init__(self, context: SchedulerContext) -> None:
        super().__init__(context)
        self._user: str | None = self._options.user
        self._reasons: dict[str, str] = {}
        #: job number -> why it is pending (scheduling info), and when it was last asked
        self._pending: dict[str, str] = {}
        self._pending_asked = float("-inf")
        self._pending_off = False
        self._queued_since: dict[str, float] = {}
        self._lock = threading.Lock()
        if self._options.vanish_grace is not None:
            self.vanish_grace = float(self._options.vanish_grace)

    @property
    def _options(self) -> SgeOptions:
        return self.context.options

    def _cmd(self, name: str) -> str:
        d = self._options.bin_dir
        return posixpath.join(d, name) if d else name

    @property
    def user(self) -> str:
        """The user whose jobs are listed: the option, else what :meth:`setup` found on the host,
        else the ``user@`` of the host, else the local user."""
        if self._user:
            return self._user
        host = self.context.host or ""
        if "@" in host:
            return host.split("@", 1)[0]
        return getpass.getuser()

    # -- setup -----------------------------------------------------------------------------------
    def setup_command(self) -> str:
        """Bash that prints the user name and the first line of ``qstat -help``."""
        return f"id -un; {shlex.quote(self._cmd('qstat'))} -help 2>&1 | head -n 1"

    def setup(self, transport: Transport) -> None:
        result = transport.run(self.setup_command(), timeout=60)
        lines = result.stdout.splitlines()
        user = lines[0].strip() if lines else ""
        banner = lines[1].strip() if len(lines) > 1 else ""
        where = self.context.host or "this machine"
        if not is_grid_engine_banner(banner):
            if not banner or "not found" in banner or "No such file" in banner:
                problem = f"`{self._cmd('qstat')}` was not found on {where}"
            else:
                problem = f"`{self._cmd('qstat')}` on {where} is not Grid Engine's (`qstat -help` printed {banner!r}; the Torque-style wrappers of Slurm?)"
            raise SgeSetupError(
                f"system {self.context.system_name!r}: {problem}. Put Grid Engine's commands first in PATH on "
                f'that host, or set "scheduler_options": {{"bin_dir": "/path/to/sge/bin"}} for the system in config.json'
            )
        if user and not self._options.user:
            self._user = user
        logger.debug("%s: Grid Engine %s on %s, user %s", self.context.system_name, banner, where, self.user)

    # -- header ----------------------------------------------------------------------------------
    def header(self, job: JobRequest) -> list[str]:
        return _header.default_header(job)

    def job_env(self, job: JobRequest) -> list[str]:
        return _header.job_env(job)

    # -- submit ----------------------------------------------------------------------------------
    def submit_command(self, job: JobRequest) -> list[str]:
        unset = [arg for name in FOREIGN_ENV_NAMES for arg in ("-u", name)]
        return ["env", *unset, self._cmd("qsub"), "-terse", job.script]

    def parse_submit(self, result: CommandResult, job: JobRequest) -> str:
        jid = parse_job_id(result.stdout) if result.ok else None
        if jid is not None:
            return jid
        text = f"{result.stdout}\n{result.stderr}"
        if result.ok or submit_failure_is_ambiguous(text):
            # the request may have reached qmaster: the core looks the job up by name first
            raise SchedulerCommandError(f"Grid Engine submission of {job.id} gave no job id: {result.describe()}", result)
        raise SubmitError(f"Grid Engine submission of {job.id} failed: {result.describe()}", result)

    # -- job arrays ------------------------------------------------------------------------------
    def array_size_limit(self, transport: Transport) -> int | None:
        """``scheduler_options.max_array_size``, else ``max_aj_tasks`` of ``qconf -sconf`` (0 there
        means no limit: the class default is used)."""
        if self._options.max_array_size is not None:
            return self._options.max_array_size
        result = transport.run([self._cmd("qconf"), "-sconf"], timeout=60)
        if not result.ok:
            raise SchedulerCommandError(f"qconf -sconf failed: {result.describe()}", result)
        value = parse_max_aj_tasks(result.stdout)
        return value if value else self.max_array_size

    def array_header(self, job: JobRequest, n: int) -> list[str]:
        return _header.array_header(n, self._options.array_throttle)

    def array_element_id(self, array_id: str, i: int) -> str:
        """``"<job number>.<task id>"`` (task ids count from 1), as ``qdel``/``qhold`` take it."""
        return f"{array_id}.{i + 1}"

    # -- find ------------------------------------------------------------------------------------
    def find_command(self, names: Sequence[str]) -> list[str]:
        return [self._cmd("qstat"), "-xml", "-u", self.user, "-s", "prsz"]

    def parse_find(self, result: CommandResult, names: Sequence[str]) -> dict[str, str]:
        wanted = set(names)
        found: dict[str, str] = {}
        for job in self._parse_qstat(result, "find"):
            if job.name in wanted:
                if job.name in found and found[job.name] != job.number:
                    logger.warning("two Grid Engine jobs are named %s (%s and %s); using the newer", job.name, found[job.name], job.number)
                    if int(job.number) < int(found[job.name]):
                        continue
                found[job.name] = job.number
        return found

    #: how far back (days of job start) ``qacct`` looks for a job by name
    find_days = 7

    def find_accounting_command(self, name: str) -> list[str]:
        """``qacct -o USER -d 7 -j NAME``: this user's finished jobs of that name. ``qstat -s z``
        lists only the cluster's last ``finished_jobs`` (default 100) finished jobs, so on a busy
        cluster a job that ended during a driver's crash may be gone from it."""
        return [self._cmd("qacct"), "-o", self.user, "-d", str(self.find_days), "-j", name]

    def find(self, transport: Transport, names: Sequence[str]) -> dict[str, str] | None:
        """Jobs by name: ``qstat -s prsz`` for all, then ``qacct`` for each name it does not list
        (one call per name: qacct takes one; after an ambiguous submit there is one)."""
        found = self.parse_find(transport.run(self.find_command(names)), names)
        for name in [n for n in names if n not in found]:
            result = transport.run(self.find_accounting_command(name), timeout=300)
            if not result.ok:
                if "not found" in f"{result.stdout}\n{result.stderr}":
                    continue
                raise SchedulerCommandError(f"qacct could not look up job {name}: {result.describe()}", result)
            numbers = {rec.jobnumber for rec in parse_qacct(result.stdout) if rec.jobname == name}
            if numbers:
                found[name] = max(numbers, key=int)
                if len(numbers) > 1:
                    logger.warning("several Grid Engine jobs are named %s (%s); using the newest", name, ", ".join(sorted(numbers)))
        return found

    # -- describing and checking a system ------------------------------------------------------
    def probe_command(self) -> str:
        """``command -v qstat`` (in ``bin_dir`` when set): where Grid Engine's commands are."""
        return f"command -v {shlex.quote(self._cmd('qstat'))}"

    def partitions_command(self) -> list[str]:
        """``qconf -sql``: the cluster queues, one a line."""
        return [self._cmd("qconf"), "-sql"]

    def parse_partitions(self, result: CommandResult) -> set[str]:
        return {ln.strip() for ln in result.stdout.splitlines() if ln.strip()}

    # -- status ----------------------------------------------------------------------------------
    def status_command(self, ids: Sequence[str]) -> list[str]:
        return [self._cmd("qstat"), "-xml", "-u", self.user]

    def _parse_qstat(self, result: CommandResult, what: str):
        if not result.ok:
            raise SchedulerCommandError(f"Grid Engine {what} query failed: {result.describe()}", result)
        try:
            return parse_qstat_xml(result.stdout)
        except ValueError as exc:
            raise SchedulerCommandError(f"Grid Engine {what} query: {exc}: {result.describe()}", result) from None

    def parse_status(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        """States of ``ids``; an array task ``"<number>.<task>"`` is found in the line of its job
        whose ``<tasks>`` (``3``, or a pending range ``4-200:1``) holds it."""
        wanted = set(ids)
        tasks_wanted: dict[str, set[int]] = {}
        for i in ids:
            number, dot, task = i.partition(".")
            if dot and task.isdigit():
                tasks_wanted.setdefault(number, set()).add(int(task))
        out: dict[str, JobStatus] = {}
        # one (immutable) JobStatus per state code, unless its reason names the job
        known: dict[str, JobStatus] = {}

        def status(code: str, jid: str) -> JobStatus:
            st = known.get(code)
            if st is None:
                st = map_state(code, jid)
                if st.state is JobState.NODE_FAIL:
                    return st
                known[code] = st
            return st

        def put(key: str, st: JobStatus) -> None:
            out[key] = merge_states(out[key], st) if key in out else st

        if not result.ok:
            raise SchedulerCommandError(f"Grid Engine status query failed: {result.describe()}", result)
        try:
            jobs = parse_qstat_xml_states(result.stdout)
        except ValueError as exc:
            raise SchedulerCommandError(f"Grid Engine status query: {exc}: {result.describe()}", result) from None
        for number, code, tasks in jobs:
            if number in wanted:
                put(number, status(code, number))
            if number in tasks_wanted and tasks:
                for t in tasks_wanted[number] & expand_tasks(tasks):
                    put(f"{number}.{t}", status(code, f"{number}.{t}"))
        with self._lock:
            for jid, st in out.items():
                if st.state is JobState.NODE_FAIL and jid in self._reasons:
                    out[jid] = JobStatus(st.state, reason=f"{st.reason}; error reason: {self._reasons[jid]}", raw=st.raw)
        return out

    def explain_command(self, ids: Sequence[str]) -> list[str]:
        """``qstat -j``: the ``error reason`` of jobs in error state and the ``scheduling info`` of
        pending ones (an array task's is its job's); read by :meth:`parse_explain` and
        :meth:`explain`."""
        numbers = sorted({i.partition(".")[0] for i in ids}, key=lambda n: (len(n), n))
        return [self._cmd("qstat"), "-j", ",".join(numbers)]

    def parse_explain(self, result: CommandResult, ids: Sequence[str]) -> dict[str, str]:
        """The scheduling info (why a job waits) or, for a job in error state, its error reason
        from ``qstat -j``; an array task gets its job's."""
        info = parse_scheduling_info(result.stdout)
        errors = parse_error_reasons(result.stdout)
        out: dict[str, str] = {}
        for jid in ids:
            number = jid.partition(".")[0]
            text = "; ".join(t for t in (errors.get(jid) or errors.get(number), info.get(number)) if t)
            if text:
                out[jid] = text
        return out

    def explain(self, transport: Transport, statuses: dict[str, JobStatus]) -> dict[str, JobStatus]:
        """Add the ``error reason`` of jobs in error state (``Eqw``), and why queued jobs wait
        (:meth:`_explain_pending`), to their status.

        One ``qstat -j`` for all error-state jobs not explained yet; the reason is remembered, so
        later polls cost nothing extra. A failure here only leaves the reason out.
        """
        statuses = self._explain_pending(transport, statuses)
        with self._lock:
            new = sorted(jid for jid, st in statuses.items() if st.state is JobState.NODE_FAIL and jid not in self._reasons)
        if not new:
            return statuses
        try:
            result = transport.run(self.explain_command(new), timeout=60)
        except Exception as exc:  # noqa: BLE001 - the reason is a nicety; the state is known
            logger.info("qstat -j %s failed: %s", ",".join(new), exc)
            return statuses
        reasons = parse_error_reasons(result.stdout)
        with self._lock:
            for jid in new:
                self._reasons[jid] = reasons.get(jid) or reasons.get(jid.partition(".")[0]) or "(qstat -j gave none)"
        out = dict(statuses)
        for jid in new:
            st = out[jid]
            out[jid] = JobStatus(st.state, reason=f"{st.reason}; error reason: {self._reasons[jid]}", raw=st.raw)
        return out

    def _explain_pending(self, transport: Transport, statuses: dict[str, JobStatus]) -> dict[str, JobStatus]:
        """The scheduling info of queued jobs (why they wait: a disabled queue, no free slots...),
        asked with one ``qstat -j`` at most every ``pending_reason_interval`` seconds."""
        queued = [jid for jid, st in statuses.items() if st.state is JobState.QUEUED]
        interval = self._options.pending_reason_interval
        now = time.monotonic()
        with self._lock:
            self._queued_since = {j: self._queued_since.get(j, now) for j in queued}
            # only jobs that have waited a while need explaining (a job queued for a second does not)
            waiting = [j for j in queued if now - self._queued_since[j] >= interval]
        if not waiting or not interval or self._pending_off:
            return statuses
        if now - self._pending_asked >= interval:
            self._pending_asked = now
            numbers = sorted({j.partition(".")[0] for j in waiting}, key=lambda n: (len(n), n))[:100]
            try:
                result = transport.run(self.explain_command(numbers), timeout=60)
                info = parse_scheduling_info(result.stdout)
            except Exception as exc:  # noqa: BLE001 - the reason is a nicety; the state is known
                logger.info("qstat -j %s failed: %s", ",".join(numbers), exc)
                info = {}
            if any(SCHEDULING_INFO_OFF in v for v in info.values()):
                logger.info("%s: Grid Engine keeps no scheduling info (schedd_job_info false); queued jobs are "
                            "reported without a reason", self.context.system_name)
                self._pending_off = True
                info = {}
            with self._lock:
                self._pending = info
        out = dict(statuses)
        with self._lock:
            for jid in queued:
                why = self._pending.get(jid.partition(".")[0])
                if why:
                    st = out[jid]
                    out[jid] = JobStatus(st.state, reason=f"{st.reason}; {why}" if st.reason else why, raw=st.raw,
                                         exit_code=st.exit_code)
        return out

    # -- accounting ------------------------------------------------------------------------------
    def accounting_command(self, ids: Sequence[str]) -> list[str]:
        """``qacct -j <id>`` (``qacct -j <number> -t <task>`` for an array task): qacct takes one
        job per call (``qacct -j 1 2`` finds nothing)."""
        if len(ids) != 1:
            raise ValueError(f"qacct looks up one job at a time, got {len(ids)} ids")
        number, dot, task = ids[0].partition(".")
        return [self._cmd("qacct"), "-j", number, *(["-t", task] if dot else [])]

    def parse_accounting(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        text = f"{result.stdout}\n{result.stderr}"
        if not result.ok:
            if "not found" in text:
                return {}
            raise SchedulerCommandError(f"Grid Engine accounting query failed: {result.describe()}", result)
        wanted = set(ids)
        out: dict[str, JobStatus] = {}
        # job numbers restart after a cluster is set up anew: the last record is the newest
        for rec in parse_qacct(result.stdout):
            if rec.jobnumber in wanted:
                out[rec.jobnumber] = qacct_status(rec)
            task = f"{rec.jobnumber}.{rec.taskid}"
            if task in wanted:
                out[task] = qacct_status(rec)
        return out

    def accounting(self, transport: Transport, ids: Sequence[str]) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for jid in ids:
            out.update(self.parse_accounting(transport.run(self.accounting_command([jid]), timeout=120), [jid]))
        return out

    # -- usage -----------------------------------------------------------------------------------
    def usage_command(self, ids: Sequence[str]) -> str | None:
        """One bash loop of ``qacct -j <number> [-t <task>]`` over ``ids`` (qacct takes one job
        per call): one round trip for all of them. Ids that are not Grid Engine ids are skipped."""
        calls = []
        for jid in ids:
            number, dot, task = jid.partition(".")
            if not number.isdigit() or (dot and not task.isdigit()):
                continue
            argv = [self._cmd("qacct"), "-j", number, *(["-t", task] if dot else [])]
            calls.append(" ".join(shlex.quote(a) for a in argv) + " 2>/dev/null")
        if not calls:
            return None
        return "; ".join(calls) + "; true"

    def parse_usage(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobUsage]:
        return parse_qacct_usage(result.stdout, ids)

    # -- cancel / hold / release ----------------------------------------------------------------
    _CONTROL = {"cancel": "qdel", "hold": "qhold", "release": "qrls"}

    def control_command(self, op: ControlOp, ids: Sequence[str]) -> list[str]:
        if op not in self._CONTROL:
            raise ValueError(f"unknown control operation {op!r}; valid: {', '.join(self._CONTROL)}")
        return [self._cmd(self._CONTROL[op]), *ids]

    def check_control(self, op: ControlOp, result: CommandResult, ids: Sequence[str]) -> None:
        """``qdel`` of a job that no longer exists is fine (it finished); any other complaint, or a
        hold/release of a job that is gone, raises :class:`SchedulerCommandError`."""
        lines = [line for line in f"{result.stdout}\n{result.stderr}".splitlines() if line.strip()]
        bad = control_failures(lines, gone_is_ok=(op == "cancel"))
        if bad or (not result.ok and (op != "cancel" or not lines)):
            raise SchedulerCommandError(
                f"Grid Engine {op} of {', '.join(ids)} failed: {'; '.join(bad) or result.describe()}", result
            )
