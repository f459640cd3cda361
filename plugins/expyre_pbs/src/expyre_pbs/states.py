"""PBS job state codes and ``Exit_status`` values, mapped to :class:`~expyre.types.JobState`.

State codes (PBS Pro Reference Guide, "Job States"; Torque Administrator Guide, qstat):

====  ===================================================  ==========================
code  meaning                                              JobState
====  ===================================================  ==========================
Q     queued                                               QUEUED
H     held                                                 HELD
W     waiting for its start time (or stage-in retry)       QUEUED
T     transiting to or from a server                       QUEUED
M     moved to another server (Pro)                        QUEUED
R     running                                              RUNNING
B     array job: at least one subjob begun (Pro)           RUNNING
E     exiting after having run (files may still land)      RUNNING
S     suspended                                            SUSPENDED
U     suspended, workstation busy (Pro)                    SUSPENDED
X     array subjob finished (Pro)                          terminal, from Exit_status
F     finished, from job history (Pro, ``qstat -x``)       terminal, from Exit_status
C     completed (Torque; kept ``keep_completed`` seconds)  terminal, from exit_status
====  ===================================================  ==========================

Anything else maps to ``UNKNOWN`` (the core keeps waiting and logs it once).

``Exit_status``: 0 is success; 1..255 is the job script's own exit status (128+N when a command
it waited for was killed by signal N); 256+N means the job shell itself was killed by signal N
(265 = SIGKILL, 271 = SIGTERM: qdel, or a limit); negative values are set by PBS itself and mean
different things in the two families (OpenPBS ``src/include/job.h``; Torque 6.1
"Job exit status" page).
"""

from __future__ import annotations

import signal

from expyre.types import JobState, JobStatus

from .flavors import Flavor

__all__ = ["STATE_CODES", "TERMINAL_CODES", "map_state", "decode_exit", "status_from"]

#: every code of both families -> (state for an active job, one-line meaning)
STATE_CODES: dict[str, tuple[JobState, str]] = {
    "Q": (JobState.QUEUED, "queued"),
    "H": (JobState.HELD, "held"),
    "W": (JobState.QUEUED, "waiting for its start time or a stage-in retry"),
    "T": (JobState.QUEUED, "transiting between servers"),
    "M": (JobState.QUEUED, "moved to another server"),
    "R": (JobState.RUNNING, "running"),
    "B": (JobState.RUNNING, "array job begun"),
    "E": (JobState.RUNNING, "exiting"),
    "S": (JobState.SUSPENDED, "suspended"),
    "U": (JobState.SUSPENDED, "suspended while the workstation is busy"),
}
#: codes of a job PBS is done with; the state then comes from the exit status
TERMINAL_CODES: dict[str, str] = {
    "X": "array subjob finished",
    "F": "finished",
    "C": "completed",
}

# negative Exit_status values: (state, symbol, meaning)
_PBSPRO_NEGATIVE: dict[int, tuple[JobState, str, str]] = {
    -1: (JobState.NODE_FAIL, "JOB_EXEC_FAIL1", "job could not be started (before its files were set up)"),
    -2: (JobState.NODE_FAIL, "JOB_EXEC_FAIL2", "job could not be started (after its files were set up)"),
    -3: (JobState.NODE_FAIL, "JOB_EXEC_RETRY", "job start failed, PBS retries it"),
    -4: (JobState.NODE_FAIL, "JOB_EXEC_INITABT", "job aborted at MoM initialisation"),
    -5: (JobState.NODE_FAIL, "JOB_EXEC_INITRST", "job aborted at MoM initialisation (checkpoint, no migrate)"),
    -6: (JobState.NODE_FAIL, "JOB_EXEC_INITRMG", "job aborted at MoM initialisation (checkpoint, migrate)"),
    -7: (JobState.NODE_FAIL, "JOB_EXEC_BADRESRT", "job restart failed"),
    -10: (JobState.FAILED, "JOB_EXEC_FAILUID", "invalid uid/gid for the job"),
    -11: (JobState.PREEMPTED, "JOB_EXEC_RERUN", "job rerun"),
    -12: (JobState.PREEMPTED, "JOB_EXEC_CHKP", "job checkpointed and killed"),
    -13: (JobState.FAILED, "JOB_EXEC_FAIL_PASSWORD", "bad password"),
    -14: (JobState.NODE_FAIL, "JOB_EXEC_RERUN_SIS_FAIL", "job rerun after a sister node failed"),
    -15: (JobState.PREEMPTED, "JOB_EXEC_QUERST", "job requeued for restart from checkpoint"),
    -16: (JobState.NODE_FAIL, "JOB_EXEC_FAILHOOK_RERUN", "a hook rejected the job start; requeued"),
    -17: (JobState.FAILED, "JOB_EXEC_FAILHOOK_DELETE", "a hook rejected the job start; deleted"),
    -18: (JobState.PREEMPTED, "JOB_EXEC_HOOK_RERUN", "a hook requeued the job"),
    -19: (JobState.CANCELLED, "JOB_EXEC_HOOK_DELETE", "a hook deleted the job"),
    -20: (JobState.NODE_FAIL, "JOB_EXEC_RERUN_MS_FAIL", "connection to the mother superior failed"),
    -21: (JobState.FAILED, "JOB_EXEC_FAIL_SECURITY", "security breach in the PBS directory"),
    -22: (JobState.FAILED, "JOB_EXEC_HOOKERROR", "a hook failed or timed out"),
    -23: (JobState.FAILED, "JOB_EXEC_FAIL_KRB5", "no Kerberos credentials"),
    -24: (JobState.FAILED, "JOB_EXEC_KILL_NCPUS_BURST", "killed for exceeding ncpus (burst)"),
    -25: (JobState.FAILED, "JOB_EXEC_KILL_NCPUS_SUM", "killed for exceeding ncpus (sum)"),
    -26: (JobState.OUT_OF_MEMORY, "JOB_EXEC_KILL_VMEM", "killed for exceeding vmem"),
    -27: (JobState.OUT_OF_MEMORY, "JOB_EXEC_KILL_MEM", "killed for exceeding mem"),
    -28: (JobState.TIMEOUT, "JOB_EXEC_KILL_CPUT", "killed for exceeding cput"),
    -29: (JobState.TIMEOUT, "JOB_EXEC_KILL_WALLTIME", "killed at its walltime limit"),
    -30: (JobState.NODE_FAIL, "JOB_EXEC_JOINJOB", "join job error"),
}
_TORQUE_NEGATIVE: dict[int, tuple[JobState, str, str]] = {
    -1: (JobState.NODE_FAIL, "JOB_EXEC_FAIL1", "job could not be started (before its files were set up)"),
    -2: (JobState.NODE_FAIL, "JOB_EXEC_FAIL2", "job could not be started (after its files were set up)"),
    -3: (JobState.NODE_FAIL, "JOB_EXEC_RETRY", "job start failed, Torque retries it"),
    -4: (JobState.NODE_FAIL, "JOB_EXEC_INITABT", "job aborted at MoM initialisation"),
    -5: (JobState.NODE_FAIL, "JOB_EXEC_INITRST", "job aborted at MoM initialisation (checkpoint, no migrate)"),
    -6: (JobState.NODE_FAIL, "JOB_EXEC_INITRMG", "job aborted at MoM initialisation (checkpoint, migrate)"),
    -7: (JobState.NODE_FAIL, "JOB_EXEC_BADRESRT", "job restart failed"),
    -8: (JobState.FAILED, "JOB_EXEC_CMDFAIL", "exec() of the job script failed"),
    -9: (JobState.FAILED, "JOB_EXEC_STDOUTFAIL", "could not create/open the stdout/stderr files"),
    -10: (JobState.OUT_OF_MEMORY, "JOB_EXEC_OVERLIMIT_MEM",
          "killed for exceeding a memory limit (before Torque 6: any resource limit)"),
    -11: (JobState.TIMEOUT, "JOB_EXEC_OVERLIMIT_WT", "killed at its walltime limit"),
    -12: (JobState.TIMEOUT, "JOB_EXEC_OVERLIMIT_CPUT", "killed for exceeding its cpu time limit"),
    -13: (JobState.NODE_FAIL, "JOB_EXEC_RETRY_CGROUP", "could not create the job's cgroups"),
    -14: (JobState.NODE_FAIL, "JOB_EXEC_RETRY_PROLOGUE", "the prologue failed"),
}
_CANCEL_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def decode_exit(code: int, flavor: Flavor) -> tuple[JobState, str]:
    """The terminal state and a one-line explanation for an exit status of ``flavor``.

    Example: ``decode_exit(-29, Flavor.PBSPRO) == (JobState.TIMEOUT,
    "killed at its walltime limit (JOB_EXEC_KILL_WALLTIME)")``
    """
    if code == 0:
        return JobState.COMPLETED, ""
    if code < 0:
        table = _PBSPRO_NEGATIVE if flavor is Flavor.PBSPRO else _TORQUE_NEGATIVE
        if code in table:
            state, symbol, meaning = table[code]
            return state, f"{meaning} ({symbol})"
        return JobState.FAILED, f"{flavor.value} internal exit status {code}"
    if code > 256:
        sig = code - 256
        state = JobState.CANCELLED if sig in _CANCEL_SIGNALS else JobState.FAILED
        return state, f"killed by signal {sig} ({_signal_name(sig)}): qdel or a limit enforced by the scheduler"
    if 128 < code < 128 + 65:
        return JobState.FAILED, f"job script exited {code} (128+{code - 128}: a command was killed by {_signal_name(code - 128)})"
    return JobState.FAILED, f"job script exited {code}"


def map_state(code: str) -> tuple[JobState, str]:
    """State and meaning of a non-terminal code; ``UNKNOWN`` for codes of neither family."""
    if code in STATE_CODES:
        return STATE_CODES[code]
    return JobState.UNKNOWN, f"unrecognised PBS state code {code!r}"


def status_from(code: str, exit_status: int | None, flavor: Flavor, comment: str = "") -> JobStatus:
    """One :class:`JobStatus` from a job's ``job_state``, exit status and comment.

    A terminal code without an exit status (a job deleted before it ran, or Slurm's Torque
    wrappers, which never report one) maps to ``COMPLETED`` with a reason saying so: whether
    the function succeeded is decided by its result files, never by this state alone.
    """
    code = (code or "").strip()
    if code in TERMINAL_CODES:
        meaning = TERMINAL_CODES[code]
        if exit_status is None:
            what = "exit status not reported" if meaning == JobState.COMPLETED.value else f"{meaning}, exit status not reported"
            reason = "; ".join(p for p in (what, comment) if p)
            return JobStatus(state=JobState.COMPLETED, reason=reason, raw=code)
        state, why = decode_exit(exit_status, flavor)
        reason = "; ".join(p for p in (why, comment) if p)
        return JobStatus(state=state, reason=reason, raw=code, exit_code=exit_status)
    state, meaning = map_state(code)
    reason = comment if state is not JobState.UNKNOWN else "; ".join(p for p in (meaning, comment) if p)
    if state is JobState.QUEUED and code in ("W", "T", "M"):
        reason = "; ".join(p for p in (meaning, comment) if p)
    return JobStatus(state=state, reason=reason, raw=code, exit_code=exit_status)
