"""The ``pbs`` scheduler backend: PBS Pro/OpenPBS and Torque (and Slurm's Torque wrappers).

Commands (``<q>`` is ``qsub``, ``qstat``... prefixed with ``scheduler_options.bin_dir``):

==============  =========================================  ==========================================
operation       torque                                     pbspro
==============  =========================================  ==========================================
detect (auto)   ``qstat --version``                        same
submit          ``qsub -o <out> -e <err> <script>``        same
status          ``qstat -f <ids>``                         ``qstat -f -F json <ids>``
accounting      none (rely on ``vanish_grace``)            ``qstat -x -f -F json <ids>`` (history)
find by name    ``qstat -f``                               ``qstat -f -F json``
cancel          ``qdel <ids>``                             same
hold / release  ``qhold -h u <ids>`` / ``qrls -h u <ids>``  same
job array       ``#PBS -t 0-N``, ``PBS_ARRAYID``,          ``#PBS -J 0-N``, ``PBS_ARRAY_INDEX``,
                elements ``123[4].srv``, ``qstat -f -t``   elements ``123[4].srv``, ``qstat -f -F json -t``
==============  =========================================  ==========================================

Job arrays are off on Slurm's Torque wrappers (see :attr:`expyre_pbs.flavors.Detected.slurm_wrappers`).

``-o``/``-e`` are given on the command line as well as in the header because Slurm's Torque
wrappers override the ``#PBS -o/-e`` lines of the script with their own defaults.
"""

from __future__ import annotations

import logging
import re
import shlex
from typing import Any, Sequence

from expyre.hookspecs import ControlOp, Scheduler, Transport
from expyre.types import (
    CommandResult,
    JobRequest,
    JobState,
    JobStatus,
    SchedulerCommandError,
    SchedulerContext,
    SubmitError,
)

from .flavors import Detected, Flavor, FlavorDetectionError, detect_flavor
from .header import DIRECTIVE, JOB_ENV_PREFIXES, default_header, job_env_lines
from .options import PbsOptions
from .parse import QstatParseError, attr, benign_qstat_errors, match_ids, parse_job_id, parse_qstat, to_int
from .states import status_from

__all__ = ["PbsScheduler"]

logger = logging.getLogger(__name__)

# qsub failures after which the job may nevertheless have been queued: the core then looks the
# job up by name before submitting again (Torque/PBS Pro client errors; Slurm's under the wrappers)
_AMBIGUOUS_SUBMIT = re.compile(
    r"timed? ?out|end of file|communication failure|premature end of message|"
    r"cannot connect|could not connect|connection (?:refused|reset)|socket|"
    r"Unable to contact slurm controller",
    re.IGNORECASE,
)
# qdel complaints that only mean "already finished or gone": cancelling is then done
_GONE = re.compile(
    r"Unknown Job Id|Job has finished|has already finished|invalid state for job - COMPLETE|"
    r"Request invalid for state of job|already completing or completed",
    re.IGNORECASE,
)

_DEFAULT_GRACE = {Flavor.TORQUE: 30.0, Flavor.PBSPRO: 10.0}


class PbsScheduler(Scheduler):
    """PBS Pro/OpenPBS and Torque through ``qsub``/``qstat``/``qdel``/``qhold``/``qrls``.

    The family comes from ``scheduler_options.flavor`` or, with ``"auto"``, from
    ``qstat --version`` in :meth:`setup` (once per process and system).
    """

    name = "pbs"
    Options = PbsOptions
    foreign_env_prefixes = JOB_ENV_PREFIXES
    vanish_grace = 30.0  # replaced per instance once the flavor is known
    directive = DIRECTIVE
    max_array_size = 10000  # PBS Pro's default server max_array_size; scheduler_options overrides

    def __init__(self, context: SchedulerContext) -> None:
        super().__init__(context)
        opts = self.context.options
        self.options = opts
        self._detected: Detected | None = None
        if opts.flavor != "auto":
            flavor = Flavor(opts.flavor)
            self._detected = Detected(flavor, f"{flavor.value} (from scheduler_options)")
        self._update_grace()

    # -- flavor --------------------------------------------------------------------------------
    @property
    def flavor(self) -> Flavor:
        """The family; before detection (``"auto"`` and :meth:`setup` not run yet) Torque's
        commands are used, as they are the common subset."""
        return self._detected.flavor if self._detected else Flavor.TORQUE

    @property
    def flavor_known(self) -> bool:
        return self._detected is not None

    def describe(self) -> str:
        """For messages: ``"PBS (torque: Slurm's Torque-compatible wrappers)"``."""
        if self._detected is None:
            return "PBS (flavor not detected yet)"
        return f"PBS ({self._detected.flavor.value}: {self._detected.detail})"

    def set_flavor(self, detected: Detected) -> None:
        self._detected = detected
        self._update_grace()

    def _update_grace(self) -> None:
        if self.options.vanish_grace is not None:
            self.vanish_grace = float(self.options.vanish_grace)
        else:
            self.vanish_grace = _DEFAULT_GRACE[self.flavor]

    # -- job arrays ----------------------------------------------------------------------------
    def arrays_supported(self) -> bool:
        if self.options.arrays is not None:
            return self.options.arrays
        return self._detected is not None and not self._detected.slurm_wrappers

    @property
    def array_index_var(self) -> str:  # type: ignore[override]
        return "PBS_ARRAY_INDEX" if self.flavor is Flavor.PBSPRO else "PBS_ARRAYID"

    @property
    def array_output_token(self) -> str:  # type: ignore[override]
        # PBS Pro replaces ^array_index^ in -o/-e; Torque has no such token: its elements share
        # the array's files (each element's own output is in its directory anyway)
        return "^array_index^" if self.flavor is Flavor.PBSPRO else ""

    def array_size_limit(self, transport: Transport) -> int | None:
        return self.options.max_array_size or self.max_array_size

    def array_header(self, job: JobRequest, n: int) -> list[str]:
        if n < 1:
            raise ValueError(f"a job array needs at least one element, got {n}")
        flag = "-J" if self.flavor is Flavor.PBSPRO else "-t"
        return [f"{DIRECTIVE} {flag} 0-{n - 1}"]

    def array_element_id(self, array_id: str, i: int) -> str:
        """``123[].srv`` -> ``123[4].srv`` (the brackets are what qsub printed for the array)."""
        if "[]" not in array_id:
            raise SchedulerCommandError(f"{self.describe()}: qsub printed {array_id!r} for a job array, not an id with '[]'")
        return array_id.replace("[]", f"[{int(i)}]", 1)

    def cmd(self, name: str) -> str:
        """A PBS command, prefixed with ``bin_dir`` when configured."""
        if self.options.bin_dir:
            return f"{self.options.bin_dir.rstrip('/')}/{name}"
        return name

    # -- describing and checking a system ------------------------------------------------------
    def probe_command(self) -> str:
        """``command -v qstat`` (in ``bin_dir`` when set): where the PBS commands are."""
        return f"command -v {shlex.quote(self.cmd('qstat'))}"

    def partitions_command(self) -> list[str]:
        """``qstat -Q``: the queues, a table (Torque and PBS Pro alike)."""
        return [self.cmd("qstat"), "-Q"]

    def parse_partitions(self, result: CommandResult) -> set[str]:
        """The first column of ``qstat -Q``'s table, below its header and dashed line."""
        lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
        dash = next((i for i, ln in enumerate(lines) if set(ln.replace(" ", "")) <= {"-"}), None)
        body = lines[dash + 1:] if dash is not None else [
            ln for ln in lines if ln.split()[0].lower() not in ("queue", "server:")]
        return {ln.split()[0] for ln in body}

    # -- header --------------------------------------------------------------------------------
    def header(self, job: JobRequest) -> list[str]:
        return default_header(job)

    def job_env(self, job: JobRequest) -> list[str]:
        return job_env_lines()

    # -- setup ---------------------------------------------------------------------------------
    def setup(self, transport: Transport) -> None:
        if self._detected is not None:
            return
        qstat = self.cmd("qstat")
        result = transport.run([qstat, "--version"], timeout=60)
        try:
            detected = detect_flavor(result, qstat)
        except FlavorDetectionError as exc:
            raise SchedulerCommandError(f"system {self.context.system_name!r}: {exc}", result) from None
        logger.info("system %s: %s detected from `%s --version`", self.context.system_name, detected.detail, qstat)
        self.set_flavor(detected)

    # -- submit --------------------------------------------------------------------------------
    def submit_command(self, job: JobRequest) -> list[str]:
        return [self.cmd("qsub"), "-o", job.stdout, "-e", job.stderr, job.script]

    def parse_submit(self, result: CommandResult, job: JobRequest) -> str:
        output = f"{result.stdout}\n{result.stderr}"
        if result.ok:
            jid = parse_job_id(result.stdout)
            if jid:
                return jid
            raise SchedulerCommandError(
                f"{self.describe()}: qsub of job {job.id} exited 0 but printed no job id: {result.describe()}", result
            )
        if _AMBIGUOUS_SUBMIT.search(output):
            raise SchedulerCommandError(
                f"{self.describe()}: qsub of job {job.id} failed in a way that may have queued it: {result.describe()}",
                result,
            )
        raise SubmitError(f"{self.describe()}: qsub of job {job.id} was refused: {_reason(result)}", result)

    def find_command(self, names: Sequence[str]) -> list[str]:
        if self.flavor is Flavor.PBSPRO:
            return [self.cmd("qstat"), "-f", "-F", "json"]
        return [self.cmd("qstat"), "-f"]

    def parse_find(self, result: CommandResult, names: Sequence[str]) -> dict[str, str]:
        jobs = self._parse_jobs(result, "job look-up by name")
        wanted = set(names)
        found: dict[str, str] = {}
        for jid, job in jobs.items():
            name = attr(job, "Job_Name")
            if isinstance(name, str) and name in wanted:
                found[name] = jid
        return found

    # -- status --------------------------------------------------------------------------------
    @staticmethod
    def _array_flag(ids: Sequence[str]) -> list[str]:
        """``-t`` when ``ids`` include array elements ("123[4].srv"): qstat lists them only with it."""
        return ["-t"] if any("[" in i for i in ids) else []

    def status_command(self, ids: Sequence[str]) -> list[str]:
        t = self._array_flag(ids)
        if self.flavor is Flavor.PBSPRO:
            return [self.cmd("qstat"), "-f", "-F", "json", *t, *ids]
        return [self.cmd("qstat"), "-f", *t, *ids]

    def parse_status(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        return self._statuses(self._parse_jobs(result, "status query", _STATUS_KEYS), ids)

    def accounting_command(self, ids: Sequence[str]) -> list[str] | None:
        if self.flavor is Flavor.PBSPRO:
            return [self.cmd("qstat"), "-x", "-f", "-F", "json", *self._array_flag(ids), *ids]
        return None  # Torque keeps no history a user can query: the core relies on vanish_grace

    def parse_accounting(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        return self._statuses(self._parse_jobs(result, "job history query", _STATUS_KEYS), ids)

    # -- cancel / hold / release ---------------------------------------------------------------
    def control_command(self, op: ControlOp, ids: Sequence[str]) -> list[str]:
        if op == "cancel":
            return [self.cmd("qdel"), *ids]
        if op == "hold":
            return [self.cmd("qhold"), "-h", "u", *ids]
        if op == "release":
            return [self.cmd("qrls"), "-h", "u", *ids]
        raise ValueError(f"unknown control operation {op!r}: use cancel, hold or release")

    def check_control(self, op: ControlOp, result: CommandResult, ids: Sequence[str]) -> None:
        if result.ok:
            if result.stderr.strip():
                logger.debug("%s %s of %s: %s", self.describe(), op, ", ".join(ids), result.stderr.strip())
            return
        output = f"{result.stdout}\n{result.stderr}".strip()
        if op == "cancel" and (not output or all(_GONE.search(ln) for ln in output.splitlines() if ln.strip())):
            # Slurm's qdel exits 1 silently for a job that already ended; PBS says "Unknown Job Id"
            logger.info("%s: cancel of %s: already finished or gone (%s)", self.describe(), ", ".join(ids), result.describe())
            return
        raise SchedulerCommandError(f"{self.describe()}: {op} of {', '.join(ids)} failed: {result.describe()}", result)

    # -- helpers -------------------------------------------------------------------------------
    def _parse_jobs(self, result: CommandResult, what: str, keys: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Jobs from a qstat result; a failed query raises (never "all jobs vanished")."""
        if not result.ok:
            # Unknown or finished ids make qstat exit non-zero (153, 35) with one complaint per id
            # on stderr and the jobs it knows on stdout; Slurm's wrappers exit 153 silently when
            # they know none. Anything else is a failed query: the core keeps the last states.
            stderr = result.stderr.strip()
            benign = benign_qstat_errors(stderr) if stderr else (result.returncode == 153 and not result.stdout.strip())
            if not benign:
                raise SchedulerCommandError(f"{self.describe()}: {what} failed: {_reason(result)}", result)
        try:
            return parse_qstat(result.stdout, keys)
        except QstatParseError as exc:
            raise SchedulerCommandError(f"{self.describe()}: {what}: {exc}", result) from None

    def _statuses(self, jobs: dict[str, dict[str, Any]], ids: Sequence[str]) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        # jobs with the same state, exit status and comment share one (immutable) JobStatus
        known: dict[tuple[str, int | None, str, bool], JobStatus] = {}
        torque = self.flavor is Flavor.TORQUE
        for wanted, reported in match_ids(jobs, ids).items():
            job = jobs[reported]
            state = attr(job, "job_state")
            exit_status = to_int(attr(job, "Exit_status", "exit_status"))
            comment = attr(job, "comment")
            key = (str(state or ""), exit_status, str(comment or ""), torque and _held_under_slurm(job))
            st = known.get(key)
            if st is None:
                st = status_from(key[0], exit_status, self.flavor, key[2])
                if st.raw == "Q" and key[3]:
                    st = JobStatus(state=JobState.HELD, reason=_WRAPPER_HELD, raw="Q")
                known[key] = st
            out[wanted] = st
        return out


_WRAPPER_HELD = "held: Slurm's Torque wrappers show a held job as Q with Priority 0"
#: the attributes a status needs (:meth:`PbsScheduler._statuses`, :func:`_held_under_slurm`)
_STATUS_KEYS = ("job_state", "Exit_status", "exit_status", "comment", "Hold_Types", "Priority")


def _held_under_slurm(job: dict[str, Any]) -> bool:
    """A ``Q`` job that Slurm's Torque wrappers print is held when its priority is 0 (Slurm
    gives every held job priority 0 and every other job a positive one). Real Torque and PBS Pro
    print ``Hold_Types`` and show held jobs as ``H``, and their ``Priority`` is the user's
    ``qsub -p`` value (default 0), so the rule applies only where ``Hold_Types`` is absent."""
    return attr(job, "Hold_Types") is None and str(attr(job, "Priority")).strip() == "0"


def _reason(result: CommandResult) -> str:
    """The scheduler's own words from a failed command, without the wrappers' boilerplate."""
    text = (result.stdout + "\n" + result.stderr).strip()
    # Slurm's Torque wrappers: "There was an error running the Slurm sbatch command. ... and the
    # output was:\n'sbatch: error: ...'" (real-schedulers.md §4.3)
    m = re.search(r"and the output was:\s*'(.*)'\s*$", text, re.DOTALL)
    if m:
        return f"`{_argv(result)}` exited {result.returncode}: {m.group(1).strip()}"
    return result.describe()


def _argv(result: CommandResult) -> str:
    return result.argv if isinstance(result.argv, str) else " ".join(result.argv)
