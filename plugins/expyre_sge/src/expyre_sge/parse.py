"""Parsing what Grid Engine's commands print: ``qsub``, ``qstat -xml``, ``qstat -j``, ``qacct -j``,
``qdel``/``qhold``/``qrls``. Pure functions on text; nothing here runs a command.

The formats are those of SGE 8.1.9 (Son of Grid Engine, Debian's gridengine 8.1.9+dfsg),
recorded verbatim in the tests' data files.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Iterable

from attrs import frozen

from expyre.types import JobStatus, JobUsage

from .states import FAILED_REASONS, accounting_state

__all__ = [
    "QstatJob",
    "QacctRecord",
    "parse_job_id",
    "submit_failure_is_ambiguous",
    "parse_qstat_xml",
    "parse_qstat_xml_states",
    "parse_error_reasons",
    "parse_qacct",
    "qacct_status",
    "control_failures",
    "is_grid_engine_banner",
    "expand_tasks",
    "parse_max_aj_tasks",
    "parse_sge_memory_bytes",
    "parse_qacct_usage",
]

# "-terse": "22" or, for an array job, "25.1-3:1"
_TERSE = re.compile(r"^\s*(\d+)(?:\.\d+(?:-\d+(?::\d+)?)?)?\s*$")
# without -terse: 'Your job 21 ("sfmt") has been submitted' / 'Your job-array 25.1-3:1 ("arr") has been submitted'
_VERBOSE = re.compile(r"\bYour job(?:-array)? (\d+)(?:\.\S*)? \(")


def parse_job_id(text: str) -> str | None:
    """The job number in ``qsub`` output (``-terse`` or not, array or not); None if there is none.

    >>> parse_job_id("25.1-3:1\\n"), parse_job_id('Your job 21 ("x") has been submitted')
    ('25', '21')
    """
    for line in text.splitlines():
        m = _TERSE.match(line) or _VERBOSE.search(line)
        if m:
            return m.group(1)
    return None


# qsub failures after which the job may or may not be in the queue (the request reached qmaster,
# the answer did not), or that are transient (qmaster down): the core then looks the job up by
# name before submitting again. Everything else ("job rejected: ...", unknown queue or PE, bad
# option) is a definite refusal.
_AMBIGUOUS = (
    "failed receiving gdi request",
    "timeout",
    "timed out",
    "commlib error",
    "unable to contact qmaster",
    "unable to send message to qmaster",
    "error reading answer list from qmaster",
)


def submit_failure_is_ambiguous(text: str) -> bool:
    low = text.lower()
    if "job rejected" in low:
        return False
    return any(s in low for s in _AMBIGUOUS)


@frozen
class QstatJob:
    """One ``<job_list>`` element of ``qstat -xml``.

    :param number: ``JB_job_number``.
    :param name: ``JB_name`` (expyre's job id).
    :param owner: ``JB_owner``.
    :param state: the state code (``qw``, ``r``, ``Eqw``...).
    :param tasks: array task range (``1-3:1``) or ``""``.
    :param queue: ``queue_name`` (``all.q@vm``) or ``""`` while pending.
    """

    number: str
    name: str
    owner: str
    state: str
    tasks: str = ""
    queue: str = ""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str:
    for child in elem:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def parse_qstat_xml(text: str) -> list[QstatJob]:
    """Every job of ``qstat -xml`` (running ones under ``queue_info``, pending/zombie under ``job_info``).

    :raises ValueError: the text is not qstat's XML (empty, truncated, an error message).
    """
    if not text.strip():
        raise ValueError("qstat -xml printed nothing")
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise ValueError(f"qstat -xml printed invalid XML ({exc})") from None
    if _local(root.tag) != "job_info":
        raise ValueError(f"qstat -xml printed <{_local(root.tag)}>, not <job_info>")
    jobs = []
    for elem in root.iter():
        if _local(elem.tag) != "job_list":
            continue
        number = _child_text(elem, "JB_job_number")
        if not number:
            continue
        jobs.append(
            QstatJob(
                number=number,
                name=_child_text(elem, "JB_name"),
                owner=_child_text(elem, "JB_owner"),
                state=_child_text(elem, "state"),
                tasks=_child_text(elem, "tasks"),
                queue=_child_text(elem, "queue_name"),
            )
        )
    return jobs


# one <job_list> of qstat -xml as SGE prints it: its number first, its state later, then the rest
_JOB_LIST_STATE = re.compile(
    r"<job_list\b[^>]*>\s*<JB_job_number>([^<&]*)</JB_job_number>.*?<state>([^<&]*)</state>(.*?)</job_list>",
    re.DOTALL)  # a job without a state would span two: the count check below sends it to the XML parser
_TASKS = re.compile(r"<tasks>([^<&]*)</tasks>")


def parse_qstat_xml_states(text: str) -> list[tuple[str, str, str]]:
    """``(number, state, tasks)`` of every job of ``qstat -xml`` (what a status needs), as
    :func:`parse_qstat_xml` gives them. Output in SGE's own layout (each ``<job_list>`` opening
    with its number, plain-text fields, the whole document there) is read by one regular
    expression; anything else goes through the XML parser.

    :raises ValueError: as :func:`parse_qstat_xml`.
    """
    body = text.strip()
    if body.startswith("<?xml") and body.endswith("</job_info>") and "<job_info" in body[:300]:
        found = _JOB_LIST_STATE.findall(body)
        if len(found) == body.count("<job_list") and body.count("</job_list>") == len(found):
            out = []
            for number, state, rest in found:
                number = number.strip()
                if not number:
                    continue
                m = _TASKS.search(rest) if "<tasks>" in rest else None
                out.append((number, state.strip(), m.group(1).strip() if m else ""))
            return out
    return [(j.number, j.state, j.tasks) for j in parse_qstat_xml(text)]


_QSTAT_J_NUMBER = re.compile(r"^job_number:\s*(\d+)\s*$")
# "error reason          1:      11/24/2026 16:22:46 [0:28702]: error: can't open output file ..."
_QSTAT_J_ERROR = re.compile(r"^error reason\s+(\d+):\s*(.*?)\s*$")


def parse_error_reasons(text: str) -> dict[str, str]:
    """Job number -> its ``error reason`` lines from ``qstat -j <ids>`` (jobs without one left out)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = _QSTAT_J_NUMBER.match(line)
        if m:
            current = m.group(1)
            continue
        m = _QSTAT_J_ERROR.match(line)
        if m and current is not None:
            out.setdefault(current, []).append(m.group(2))
    return {k: "; ".join(v) for k, v in out.items()}


_QSTAT_J_SCHEDULING = re.compile(r"^scheduling info:\s*(.*?)\s*$")
#: what qstat -j says instead when the site set ``schedd_job_info false`` (the default)
SCHEDULING_INFO_OFF = "Collecting of scheduler job information is turned off"


def parse_scheduling_info(text: str) -> dict[str, str]:
    """Job number -> its ``scheduling info`` (why it is still pending: the scheduler's messages,
    joined with "; ") from ``qstat -j <ids>``; jobs without one are left out.

    The first message follows ``scheduling info:``; further ones are on indented lines below it::

        scheduling info:            queue instance "all.q@vm" dropped because it is disabled
                                    All queues dropped because of overload or full
    """
    out: dict[str, list[str]] = {}
    current = None
    in_info = False
    for line in text.splitlines():
        m = _QSTAT_J_NUMBER.match(line)
        if m:
            current, in_info = m.group(1), False
            continue
        m = _QSTAT_J_SCHEDULING.match(line)
        if m and current is not None:
            in_info = True
            if m.group(1):
                out.setdefault(current, []).append(m.group(1))
            continue
        if in_info and current is not None and line[:1].isspace() and line.strip():
            out.setdefault(current, []).append(line.strip())
        else:
            in_info = False
    return {k: "; ".join(v) for k, v in out.items()}


@frozen
class QacctRecord:
    """The fields of one ``qacct -j`` record that matter here (all fields are kept in ``fields``)."""

    jobnumber: str
    jobname: str
    taskid: str
    failed: int
    failed_text: str
    exit_status: int | None
    exit_text: str
    fields: dict[str, str]


def _int_and_text(value: str) -> tuple[int | None, str]:
    # "100 : assumedly after job", "137                  (Killed)", "0"
    m = re.match(r"^\s*(-?\d+)\s*:?\s*(.*?)\s*$", value)
    if not m:
        return None, value.strip()
    return int(m.group(1)), m.group(2)


def parse_qacct(text: str) -> list[QacctRecord]:
    """Every record of ``qacct -j`` output (records are separated by lines of ``=``)."""
    records: list[QacctRecord] = []
    blocks: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("=" * 10):
            current = {}
            blocks.append(current)
            continue
        if current is None or not line.strip():
            continue
        key, _, value = line.partition(" ")
        current[key.strip()] = value.strip()
    for f in blocks:
        if "jobnumber" not in f:
            continue
        failed, failed_text = _int_and_text(f.get("failed", "0"))
        exit_status, exit_text = _int_and_text(f.get("exit_status", ""))
        records.append(
            QacctRecord(
                jobnumber=f["jobnumber"],
                jobname=f.get("jobname", ""),
                taskid=f.get("taskid", ""),
                failed=failed or 0,
                failed_text=failed_text,
                exit_status=exit_status,
                exit_text=exit_text,
                fields=f,
            )
        )
    return records


def qacct_status(record: QacctRecord) -> JobStatus:
    """The final :class:`JobStatus` of one qacct record; ``reason`` quotes qacct's own words."""
    state = accounting_state(record.failed, record.exit_status)
    parts = []
    if record.failed:
        text = record.failed_text or FAILED_REASONS.get(record.failed, "")
        parts.append(f"qacct: failed {record.failed}" + (f" : {text}" if text else ""))
    else:
        parts.append("qacct: failed 0")
    if record.exit_status is not None:
        parts.append(f"exit_status {record.exit_status}" + (f" {record.exit_text}" if record.exit_text else ""))
    wall = record.fields.get("ru_wallclock")
    if wall:
        parts.append(f"ru_wallclock {wall}")
    return JobStatus(state, reason=", ".join(parts), raw=f"failed {record.failed}", exit_code=record.exit_status)


# qdel/qhold/qrls lines that mean the job is already gone
_GONE = re.compile(r'(denied: job "?[^"\s]+"? does not exist|job "?[^"\s]+"? does not exist|Following jobs do not exist)')
_OK = re.compile(
    r"(has registered the job|has deleted job|has deleted job-array|modified hold of job|"
    r"has already been (?:deleted|registered)|is already in deletion)"
)


def control_failures(lines: Iterable[str], gone_is_ok: bool) -> list[str]:
    """The lines of ``qdel``/``qhold``/``qrls`` output that report a failure.

    :param gone_is_ok: a job that no longer exists is not a failure (cancelling a finished job).
    """
    bad = []
    for line in lines:
        line = line.strip()
        if not line or _OK.search(line):
            continue
        if gone_is_ok and _GONE.search(line):
            continue
        bad.append(line)
    return bad


# first line of `qstat -help`: "SGE 8.1.9", "GE 6.2u5", "OGS/GE 2011.11p1", "UGE 8.6.7", "AGE 2024.1.0"
_BANNER = re.compile(r"^\s*(?:[A-Z]*/)?[A-Z]?GE\s+\d")


def is_grid_engine_banner(line: str) -> bool:
    """Whether ``line`` (the first line of ``qstat -help``) comes from a Grid Engine ``qstat``."""
    return bool(_BANNER.match(line))


_TASK_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def expand_tasks(text: str) -> set[int]:
    """The task ids of a ``<tasks>`` value of ``qstat -xml``: ``"3"``, ``"4-200:1"``, or a comma
    list of those (``"1,5-9:2"``). Parts that do not parse are ignored.

    >>> sorted(expand_tasks("1,5-9:2"))
    [1, 5, 7, 9]
    """
    out: set[int] = set()
    for part in text.split(","):
        m = _TASK_RANGE.match(part.strip())
        if not m:
            continue
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
        step = int(m.group(3)) if m.group(3) else 1
        out.update(range(first, last + 1, max(step, 1)))
    return out


_MAX_AJ_TASKS = re.compile(r"^max_aj_tasks\s+(\d+)\s*$", re.MULTILINE)


def parse_max_aj_tasks(text: str) -> int | None:
    """``max_aj_tasks`` from ``qconf -sconf`` (``max_aj_tasks                 75000``), or None."""
    m = _MAX_AJ_TASKS.search(text)
    return int(m.group(1)) if m else None


_SGE_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]?)B?$", re.IGNORECASE)
_SGE_POWER = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def parse_sge_memory_bytes(text: str) -> float | None:
    """A qacct memory field as the number it denotes in bytes: ``211.184MB`` -> 221441654.8,
    ``0.000B`` -> 0 (qacct's units are powers of 1024); None when unreadable."""
    m = _SGE_MEMORY.match(text.strip())
    if not m:
        return None
    return float(m.group(1)) * (1024.0 ** _SGE_POWER[m.group(2).upper()])


def _seconds(text: str) -> float | None:
    # "2s" (SGE 8.1.9), "2" or "2.000" (older versions)
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$", text)
    return float(m.group(1)) if m else None


def parse_qacct_usage(text: str, ids: Iterable[str]) -> dict[str, JobUsage]:
    """What each job of ``ids`` (``"12"``, array task ``"12.3"``) used, from ``qacct -j`` records:
    ``ru_wallclock`` (seconds), ``ru_maxrss`` and ``maxvmem``. The last record of an id wins.

    ``ru_maxrss``: qacct prints the kernel's value (KiB) as if it were bytes, so ``208.074KB``
    stands for 208.074 * 1024 KiB (a job holding a 200 MiB buffer; ``maxvmem`` of the same job
    reads ``211.184MB``): the number it denotes in bytes is the peak RSS in KiB. ``maxvmem`` is
    in bytes."""
    wanted = set(ids)
    out: dict[str, JobUsage] = {}
    for rec in parse_qacct(text):
        keys = [k for k in (rec.jobnumber, f"{rec.jobnumber}.{rec.taskid}") if k in wanted]
        if not keys:
            continue
        f = rec.fields
        rss = parse_sge_memory_bytes(f.get("ru_maxrss", ""))
        vmem = parse_sge_memory_bytes(f.get("maxvmem", ""))
        usage = JobUsage(
            elapsed=_seconds(f.get("ru_wallclock", "")),
            max_rss_kib=int(round(rss)) if rss is not None else None,
            max_vmem_kib=int(round(vmem / 1024)) if vmem is not None else None,
            source="qacct",
        )
        for k in keys:
            out[k] = usage
    return out
