"""Grid Engine job states: the letter codes of ``qstat`` and the ``failed``/``exit_status`` fields of
``qacct``, mapped to :class:`~expyre.types.JobState`.

``qstat`` prints a state as a combination of letters (qstat(1), "state"): ``d``\\ eletion,
``E``\\ rror, ``h``\\ old, ``r``\\ unning, ``R``\\ estarted, ``s``\\ uspended, ``S``\\ uspended (queue),
``t``\\ ransferring, ``T``\\ hreshold (queue suspended by load), ``w``\\ aiting, ``q``\\ ueued, and ``z``
(zombie, finished; only listed by ``qstat -s z``). The codes of the qstat(1) table are::

    pending     qw, hqw, hRwq                     -> queued / held
    running     r, t, Rr, Rt (and hr: qhold of a running job)   -> running
    suspended   s, ts, S, tS, T, tT, Rs, Rts, RS, RtS, RT, RtT (hs)  -> suspended
    error       Eqw, Ehqw, EhRqw                  -> node_fail (SGE could not launch the job; it
                                                     stays in the queue until qdel or qmod -cj)
    deleted     dr, dt, dRr, dRt, ds, dS, dT, dRs, dRS, dRT (dqw...)  -> cancelled
    finished    z                                 -> completed (exit status only in qacct)

Rather than a fixed table, the letters are read with a precedence (error, deletion, suspension,
running, hold, waiting, zombie), so every combination maps; a code with a letter outside the
documented set, or with no state letter at all, is ``unknown`` (never an exception).
"""

from __future__ import annotations

from expyre.types import JobState, JobStatus

__all__ = ["LETTERS", "map_state", "explain_state", "merge_states", "accounting_state", "FAILED_REASONS"]

#: what each letter of a qstat state code means (qstat(1))
LETTERS: dict[str, str] = {
    "d": "being deleted",
    "E": "error",
    "h": "on hold",
    "r": "running",
    "R": "restarted",
    "s": "suspended",
    "S": "queue suspended",
    "t": "transferring to the execution host",
    "T": "queue suspended by a load threshold",
    "w": "waiting",
    "q": "queued",
    "z": "finished",
}

# (letters, state) in order of precedence: the first group with a letter in the code decides
_PRECEDENCE: tuple[tuple[str, JobState], ...] = (
    ("E", JobState.NODE_FAIL),
    ("d", JobState.CANCELLED),
    ("sST", JobState.SUSPENDED),
    ("rt", JobState.RUNNING),
    ("h", JobState.HELD),
    ("qw", JobState.QUEUED),
    ("z", JobState.COMPLETED),
)

_ERROR_HINT = "SGE could not start it and keeps it in error state (`qstat -j {id}` says why; `qdel {id}` removes it)"


def explain_state(code: str) -> str:
    """Human-readable meaning of a state code, e.g. ``"hRwq"`` -> ``"on hold, restarted, waiting, queued"``."""
    return ", ".join(LETTERS.get(c, f"unknown letter {c!r}") for c in code)


def map_state(code: str, job_id: str = "") -> JobStatus:
    """The :class:`JobStatus` of one ``qstat`` state code (``raw`` keeps the code)."""
    code = (code or "").strip()
    if not code or any(c not in LETTERS for c in code):
        return JobStatus(JobState.UNKNOWN, reason=f"unrecognised Grid Engine state code {code!r}", raw=code)
    for letters, state in _PRECEDENCE:
        if any(c in letters for c in code):
            reason = explain_state(code)
            if state is JobState.NODE_FAIL:
                reason = f"{reason}: " + _ERROR_HINT.format(id=job_id or "<id>")
            return JobStatus(state, reason=reason, raw=code)
    # only "R" (restarted) without a state letter
    return JobStatus(JobState.UNKNOWN, reason=f"Grid Engine state code {code!r} has no state letter", raw=code)


# when one job number is listed several times (array tasks), the most "alive" view wins
_MERGE_RANK = {
    JobState.RUNNING: 0,
    JobState.SUSPENDED: 1,
    JobState.QUEUED: 2,
    JobState.HELD: 3,
    JobState.UNKNOWN: 4,
}


def merge_states(a: JobStatus, b: JobStatus) -> JobStatus:
    """One status for a job listed twice (array tasks in different states): active beats terminal."""
    return a if _MERGE_RANK.get(a.state, 9) <= _MERGE_RANK.get(b.state, 9) else b


#: the ``failed`` codes of qacct (sge_status(5) / the "Job exit status" table of the SGE docs)
FAILED_REASONS: dict[int, str] = {
    1: "assumedly before job",
    2: "before writing config",
    3: "before writing PID",
    4: "on reading config file",
    5: "setting processor set",
    6: "before prolog",
    7: "in prolog",
    8: "before pestart",
    9: "in pestart",
    10: "before job",
    11: "before pestop",
    12: "in pestop",
    13: "before epilog",
    14: "in epilog",
    15: "releasing processor set",
    16: "through signal",
    17: "shepherd returns error",
    18: "before writing exit_status",
    19: "found unexpected error file",
    20: "in recognizing job",
    24: "migrating (checkpointing jobs)",
    25: "rescheduling",
    26: "opening output file",
    27: "searching requested shell",
    28: "changing to working directory",
    29: "AFS setup",
    30: "application error returned",
    31: "accessing sgepasswd file",
    32: "entry is missing in password file",
    33: "wrong password",
    34: "communicating with Grid Engine Helper Service",
    35: "before job in Grid Engine Helper Service",
    36: "checking configured daemons",
    37: "qmaster enforced h_rt, h_cpu, or h_vmem limit",
    38: "adding supplementary group",
    100: "assumedly after job",
}

def accounting_state(failed: int, exit_status: int | None) -> JobState:
    """The final state of a job from qacct's ``failed`` code and ``exit_status``.

    * ``failed 0``: the script ran; ``exit_status`` 0 is completed, anything else failed.
    * ``failed 37`` (qmaster enforced h_rt/h_cpu/h_vmem): timeout. With the default header (only
      ``h_rt``) that is the time limit; the reason quotes qacct, so a memory limit is still visible.
    * ``failed 100`` (assumedly after job) with a signal exit status (> 128, e.g. 137 after
      ``qdel`` of a running job): cancelled; otherwise failed.
    * ``failed 25`` (rescheduling): preempted.
    * any other code: the job could not be started or finished by SGE itself: node_fail.
    """
    if failed == 0:
        return JobState.COMPLETED if exit_status == 0 else JobState.FAILED
    if failed == 37:
        return JobState.TIMEOUT
    if failed == 100:
        return JobState.CANCELLED if exit_status is not None and exit_status > 128 else JobState.FAILED
    if failed == 25:
        return JobState.PREEMPTED
    return JobState.NODE_FAIL

