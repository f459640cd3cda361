"""Parsers for the output of ``sbatch --parsable``, ``squeue`` and ``sacct`` (pure functions).

Every format parsed here is one that :mod:`expyre_slurm.scheduler` asks for explicitly, with ``|``
between fields and the free-text field (reason, job name) last, so that a ``|`` or a blank inside
it cannot shift the columns. Lines that do not parse are skipped with a debug message: one odd
line never fails the whole poll.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable, Sequence

from expyre.hookspecs import JobStatus, JobUsage

from .states import map_state

__all__ = [
    "SQUEUE_STATUS_FORMAT",
    "SQUEUE_FIND_FORMAT",
    "SACCT_FIELDS",
    "parse_job_id",
    "submit_failure_is_ambiguous",
    "parse_squeue_status",
    "parse_sacct",
    "parse_find",
    "parse_exit_code",
    "accounting_disabled",
    "parse_max_array_size",
    "SACCT_USAGE_FIELDS",
    "parse_sacct_usage",
    "parse_slurm_memory_kib",
]

logger = logging.getLogger(__name__)

#: ``squeue -o``: job id, long state, reason (free text, last)
SQUEUE_STATUS_FORMAT = "%i|%T|%r"
#: ``squeue -o``: job id, job name (free text, last)
SQUEUE_FIND_FORMAT = "%i|%j"
#: ``sacct -o``: the allocation's id, state (``CANCELLED by 1234``), ``exit:signal``, reason (last)
SACCT_FIELDS = "JobID,State,ExitCode,Reason"

# "8" or "8;cluster" (sbatch --parsable, multi-cluster setups)
_PARSABLE_ID = re.compile(r"^(\d+)(?:;(\S+))?$")

# sbatch errors after which the job may or may not be queued (the request may have reached
# slurmctld) or that are certainly transient: the core then looks the job up by name before
# trying again, instead of reporting a refusal. A refusal ("Invalid partition name specified",
# "Requested time limit is invalid") is definitive.
_AMBIGUOUS_SUBMIT = re.compile(
    r"Socket timed out|timed out on send/recv|Zero Bytes were transmitted or received|"
    r"Unable to contact slurm controller|Connection refused|Connection reset|"
    r"Transport endpoint|Resource temporarily unavailable|slurm_receive_msg|"
    r"Slurm temporarily unable to accept job|Communication connection failure",
    re.IGNORECASE,
)

_ACCOUNTING_DISABLED = re.compile(r"accounting storage is disabled|not running a supported accounting_storage", re.IGNORECASE)


def _lines(text: str) -> Iterable[str]:
    for line in text.splitlines():
        line = line.strip()
        if line:
            yield line


def _reason(text: str) -> str:
    text = text.strip()
    return "" if text in ("None", "(null)", "") else text


def parse_job_id(stdout: str) -> str | None:
    """The job id printed by ``sbatch --parsable`` (``"8"``, or ``"8;cluster"`` -> ``"8"``), or
    None if no line of ``stdout`` is one."""
    for line in reversed(list(_lines(stdout))):
        m = _PARSABLE_ID.match(line)
        if m:
            return m.group(1)
    return None


def submit_failure_is_ambiguous(message: str) -> bool:
    """True if sbatch's error message leaves open whether the job was queued (or is transient)."""
    return bool(_AMBIGUOUS_SUBMIT.search(message))


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """``"3:0"`` -> ``(3, 0)``: sacct's ``exit status:terminating signal``; ``(None, None)`` if
    it is not of that form."""
    m = re.fullmatch(r"\s*(\d+):(\d+)\s*", text)
    if not m:
        return None, None
    return int(m.group(1)), int(m.group(2))


def _split(line: str, ncols: int) -> list[str] | None:
    """Split a ``|``-separated line into ``ncols`` fields; the last one keeps any further ``|``."""
    parts = line.split("|", ncols - 1)
    return [p.strip() for p in parts] if len(parts) == ncols else None


def parse_squeue_status(stdout: str, ids: Sequence[str], fmt: str = SQUEUE_STATUS_FORMAT) -> dict[str, JobStatus]:
    """Statuses of ``ids`` from ``squeue -h -o FMT`` output (other jobs are ignored).

    :param fmt: the ``-o`` format used: ``|``-separated fields among which ``%i``, ``%T`` (or
        ``%t``) and optionally ``%r``; only the last field may contain ``|``.
    """
    cols = fmt.split("|")
    n = len(cols)
    i_id = cols.index("%i")
    i_state = cols.index("%T") if "%T" in cols else cols.index("%t")
    i_reason = cols.index("%r") if "%r" in cols else None
    wanted = ids if isinstance(ids, (set, frozenset)) else set(ids)
    out: dict[str, JobStatus] = {}
    # jobs in the same state with the same reason share one (immutable) JobStatus: 10^4 live
    # jobs are a handful of distinct (state, reason) pairs
    known: dict[tuple[str, str], JobStatus] = {}
    for line in stdout.splitlines():
        parts = line.split("|", n - 1)
        if len(parts) != n:
            if line.strip():
                logger.debug("squeue: skipping unparseable line %r", line.strip())
            continue
        jid = parts[i_id].strip()
        if jid not in wanted:
            continue
        key = (parts[i_state].strip(), parts[i_reason].strip() if i_reason is not None else "")
        st = known.get(key)
        if st is None:
            state, reason = key
            st = known[key] = JobStatus(state=map_state(state, reason), reason=_reason(reason), raw=state)
        out[jid] = st
    return out


def parse_sacct(stdout: str, ids: Sequence[str], fields: str = SACCT_FIELDS) -> dict[str, JobStatus]:
    """Final states of ``ids`` from ``sacct -X -P -n -o FIELDS`` output (also ``sacct -c``'s,
    where the reason is empty).

    :param fields: the ``-o`` field list used; it must hold ``JobID`` and ``State``, and may hold
        ``ExitCode`` and ``Reason``; only the last field may contain ``|``.

    Step lines (``12.batch``) are ignored. If an id appears more than once (ids reused after the
    controller's state was reset), the last record, the most recent one, wins.
    """
    cols = [f.strip().lower() for f in fields.split(",")]
    i_id, i_state = cols.index("jobid"), cols.index("state")
    i_exit = cols.index("exitcode") if "exitcode" in cols else None
    i_reason = cols.index("reason") if "reason" in cols else None
    wanted = set(ids)
    out: dict[str, JobStatus] = {}
    for line in _lines(stdout):
        parts = line.split("|", len(cols) - 1)
        if len(parts) < max(i_id, i_state) + 1:
            logger.debug("sacct: skipping unparseable line %r", line)
            continue
        jid, state = parts[i_id].strip(), parts[i_state].strip()
        if jid not in wanted:
            continue
        reason = _reason(parts[i_reason]) if i_reason is not None and i_reason < len(parts) else ""
        code, signal = parse_exit_code(parts[i_exit]) if i_exit is not None and i_exit < len(parts) else (None, None)
        if signal:
            reason = f"{reason}; killed by signal {signal}" if reason else f"killed by signal {signal}"
        out[jid] = JobStatus(state=map_state(state, reason), reason=reason, raw=state, exit_code=code)
    return out


# a job id as squeue/sacct print it: "12", an array element "12_4", a pending range "12_[5-199%4]"
_LISTED_ID = re.compile(r"^(\d+)(?:_(?:\d+|\[[0-9,%-]+\]))?$")


def parse_find(stdout: str, names: Sequence[str]) -> dict[str, str]:
    """``name -> job id`` from ``id|name`` lines (``squeue -o '%i|%j'``, ``sacct -o JobID,JobName``).
    The elements of a job array share its name: they give the array's id (``12_4`` -> ``12``).
    If a name appears more than once, the highest (most recent) job id wins."""
    wanted = set(names)
    out: dict[str, str] = {}
    for line in _lines(stdout):
        jid, sep, name = line.partition("|")
        jid, name = jid.strip(), name.strip()
        m = _LISTED_ID.match(jid)
        if not sep or name not in wanted or not m:
            continue
        jid = m.group(1)
        if name not in out or int(jid) > int(out[name]):
            out[name] = jid
    return out


def accounting_disabled(text: str) -> bool:
    """True if sacct says there is no accounting database (``Slurm accounting storage is disabled``)."""
    return bool(_ACCOUNTING_DISABLED.search(text))


_MAX_ARRAY_SIZE = re.compile(r"^\s*MaxArraySize\s*=\s*(\d+)\s*$", re.MULTILINE)


def parse_max_array_size(stdout: str) -> int | None:
    """``MaxArraySize`` from ``scontrol show config`` (``MaxArraySize            = 1001``), or None."""
    m = _MAX_ARRAY_SIZE.search(stdout)
    return int(m.group(1)) if m else None


#: ``sacct -o`` for usage (without ``-X``: peak memory is recorded on the step lines, ``12.batch``)
SACCT_USAGE_FIELDS = "JobID,State,ElapsedRaw,MaxRSS"

_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)$", re.IGNORECASE)
_MEMORY_POWER = {"": -1, "K": 0, "M": 1, "G": 2, "T": 3, "P": 4}


def parse_slurm_memory_kib(text: str) -> int | None:
    """A sacct memory field in KiB: ``221200K`` -> 221200, ``1.50G`` -> 1572864 (Slurm's units
    are powers of 1024; a bare number is bytes); None for an empty or unreadable field."""
    m = _MEMORY.match(text.strip())
    if not m:
        return None
    power = _MEMORY_POWER[m.group(2).upper()]
    return int(round(float(m.group(1)) * (1024.0 ** power)))


def parse_sacct_usage(stdout: str, ids: Sequence[str]) -> dict[str, JobUsage]:
    """What each finished job of ``ids`` used, from ``sacct -P -n -o JobID,State,ElapsedRaw,MaxRSS``
    output: elapsed seconds from the job's own line (``12``, ``12_4``), peak memory the largest
    ``MaxRSS`` of its step lines (``12.batch``, ``12.extern``, ``12.0``). A job whose own line is
    not in a final state (still running, or the accounting daemon lags) is left out; so is one
    without its own line. ``MaxRSS`` stays None when no step has it (Slurm samples memory every
    ``JobAcctGatherFrequency`` seconds, 30 by default: a shorter job may have no sample, unless
    it was submitted with ``--acctg-freq=task=1``). The last line of an id wins (ids reused)."""
    wanted = set(ids)
    elapsed: dict[str, float] = {}
    final: set[str] = set()
    rss: dict[str, int] = {}
    for line in _lines(stdout):
        parts = line.split("|")
        if len(parts) < 4:
            logger.debug("sacct: skipping unparseable usage line %r", line)
            continue
        jid, state, raw_elapsed, raw_rss = (p.strip() for p in parts[:4])
        job, dot, _step = jid.partition(".")
        if job not in wanted:
            continue
        if not dot:
            st = map_state(state, "")
            if st.terminal:
                final.add(job)
            else:
                final.discard(job)
            try:
                elapsed[job] = float(raw_elapsed)
            except ValueError:
                elapsed.pop(job, None)
            rss.pop(job, None)  # a newer record of a reused id: its steps follow it
            continue
        kib = parse_slurm_memory_kib(raw_rss)
        if kib is not None:
            rss[job] = max(kib, rss.get(job, 0))
    return {j: JobUsage(elapsed=elapsed.get(j), max_rss_kib=rss.get(j), source="sacct") for j in final}
