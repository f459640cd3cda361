"""Slurm job state codes and what they mean to expyre.

Slurm reports a job's state in a long form (``squeue -o %T``, ``sacct -o State``: ``PENDING``,
``CANCELLED by 1234``, ``CANCELLED+`` when a column is too narrow) or a compact one (``squeue -o %t``:
``PD``, ``CA``...). :func:`map_state` accepts all of them. The table is the 24 codes of the squeue
man page ("JOB STATE CODES", Slurm 22.05 and later), mapped as field-facts.md recommends:

* the job has not got its allocation yet: PENDING, CONFIGURING (nodes booting), REQUEUED,
  REQUEUE_FED -> queued;
* it cannot run without someone acting: PENDING with a hold reason, REQUEUE_HOLD, RESV_DEL_HOLD,
  SPECIAL_EXIT -> held;
* it holds an allocation: RUNNING, COMPLETING (epilog; result files may still be landing),
  RESIZING, SIGNALING, STAGE_OUT -> running; SUSPENDED and STOPPED -> suspended;
* ended: COMPLETED, FAILED, TIMEOUT (and DEADLINE), CANCELLED (and REVOKED), NODE_FAIL (and
  BOOT_FAIL), OUT_OF_MEMORY, PREEMPTED (which the core does not take as death at once: a site
  that requeues preempted jobs shows them PENDING again within its grace period).

Anything else is ``JobState.UNKNOWN``: the core warns once and keeps waiting, never crashes.
"""

from __future__ import annotations

import re

from expyre.hookspecs import JobState

__all__ = ["COMPACT_CODES", "STATES", "HELD_REASONS", "normalize_state", "map_state"]

#: compact code -> long name (squeue man page, JOB STATE CODES)
COMPACT_CODES: dict[str, str] = {
    "BF": "BOOT_FAIL",
    "CA": "CANCELLED",
    "CD": "COMPLETED",
    "CF": "CONFIGURING",
    "CG": "COMPLETING",
    "DL": "DEADLINE",
    "F": "FAILED",
    "NF": "NODE_FAIL",
    "OOM": "OUT_OF_MEMORY",
    "PD": "PENDING",
    "PR": "PREEMPTED",
    "R": "RUNNING",
    "RD": "RESV_DEL_HOLD",
    "RF": "REQUEUE_FED",
    "RH": "REQUEUE_HOLD",
    "RQ": "REQUEUED",
    "RS": "RESIZING",
    "RV": "REVOKED",
    "SI": "SIGNALING",
    "SE": "SPECIAL_EXIT",
    "SO": "STAGE_OUT",
    "ST": "STOPPED",
    "S": "SUSPENDED",
    "TO": "TIMEOUT",
}

#: long name -> expyre state
STATES: dict[str, JobState] = {
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,
    "REQUEUED": JobState.QUEUED,
    "REQUEUE_FED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.HELD,
    "RESV_DEL_HOLD": JobState.HELD,
    "SPECIAL_EXIT": JobState.HELD,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SUSPENDED": JobState.SUSPENDED,
    "STOPPED": JobState.SUSPENDED,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "NODE_FAIL": JobState.NODE_FAIL,
    "BOOT_FAIL": JobState.NODE_FAIL,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "PREEMPTED": JobState.PREEMPTED,
}

#: pending reasons meaning "will not run until someone acts" (squeue man page, JOB REASON CODES)
HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin", "JobHoldMaxRequeue", "DependencyNeverSatisfied"})
# e.g. "launch failed requeued held", or reasons of future Slurm versions that say so
_HELD_WORDS = re.compile(r"\bheld\b|JobHeld|JobHold", re.IGNORECASE)


def normalize_state(raw: str) -> str:
    """The long state name in ``raw``: ``"CANCELLED by 1234"`` -> ``"CANCELLED"``, ``"CANCELLED+"``
    -> ``"CANCELLED"``, ``"PD"`` -> ``"PENDING"``; unrecognised text is returned upper-cased."""
    word = raw.strip().split(" ", 1)[0].rstrip("+").upper()
    return COMPACT_CODES.get(word, word)


def is_held_reason(reason: str) -> bool:
    reason = reason.strip()
    return reason in HELD_REASONS or bool(_HELD_WORDS.search(reason))


def map_state(raw: str, reason: str = "") -> JobState:
    """Map a Slurm state (long or compact form) and its reason to a :class:`JobState`.

    >>> map_state("PD", "JobHeldUser")
    <JobState.HELD: 'held'>
    >>> map_state("CANCELLED by 1001")
    <JobState.CANCELLED: 'cancelled'>
    >>> map_state("SOMETHING_NEW")
    <JobState.UNKNOWN: 'unknown'>
    """
    state = STATES.get(normalize_state(raw), JobState.UNKNOWN)
    if state is JobState.QUEUED and normalize_state(raw) == "PENDING" and is_held_reason(reason):
        return JobState.HELD
    return state
