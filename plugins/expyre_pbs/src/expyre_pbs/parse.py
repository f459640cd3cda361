"""Parsers for the outputs of ``qsub`` and ``qstat`` of both PBS families.

Everything here is pure: text in, data out. The formats (see tests/fixtures/README.md for where
each recorded output comes from):

* ``qsub``: the job id alone on the last line: ``123`` (Slurm's Torque wrappers),
  ``123.server.domain`` (Torque, PBS Pro), ``123[].server`` (array jobs).
* ``qstat -f`` (both families, and the Slurm wrappers): blocks that start with ``Job Id: <id>``,
  then ``<indent>attribute = value`` lines; long values wrap onto continuation lines that start
  with a tab and are joined without a separator; blank lines may appear inside a block.
* ``qstat -f -F json`` (PBS Pro/OpenPBS only): ``{"pbs_version": ..., "Jobs": {"<id>": {...}}}``;
  ``"Jobs"`` is left out when no job matched. Some versions print invalid escapes or raw
  control characters inside values, which are tolerated.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping, Sequence

__all__ = [
    "JOB_ID_RE",
    "parse_job_id",
    "parse_qstat_full",
    "parse_qstat_json",
    "parse_qstat",
    "job_key",
    "match_ids",
    "benign_qstat_errors",
    "QstatParseError",
]

#: a PBS job id: sequence number, optional array brackets, optional ``.server.domain``
JOB_ID_RE = re.compile(r"^(?P<seq>\d+)(?P<array>\[\d*\])?(?P<server>\.[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")

_JOB_ID_LINE = re.compile(r"^Job Id:\s*(?P<id>\S+)\s*$")
_ATTR_LINE = re.compile(r"^[ \t]+(?P<key>[A-Za-z_][A-Za-z0-9_.]*) = ?(?P<value>.*)$")
# qstat errors about ids the server no longer (or never) knew: not a failure of the query
_BENIGN = re.compile(
    r"Unknown Job Id|Job has finished|job .*has finished|use -x or -H|"
    r"qstat: \S+ Job has finished|^\s*obtain historical job information",
    re.IGNORECASE,
)
_BAD_ESCAPE = re.compile(r'\\(?!["\\/bfnrtu])')


class QstatParseError(ValueError):
    """The output is not in the expected qstat format."""


def parse_job_id(text: str) -> str | None:
    """The job id ``qsub`` printed, or None when no line is one.

    The last line that is a job id wins, so banners or warnings before it do not matter.

    >>> parse_job_id("123.pbs01.example.org\\n")
    '123.pbs01.example.org'
    >>> parse_job_id("qsub: warning: foo\\n42[].srv\\n")
    '42[].srv'
    """
    for line in reversed(text.strip().splitlines()):
        token = line.strip()
        if JOB_ID_RE.match(token):
            return token
    return None


def job_key(job_id: str) -> str:
    """The server-independent part of an id (sequence number and array brackets): ``123[]``
    for ``123[].srv.dom``. Used when the server suffix qstat prints differs from qsub's."""
    m = JOB_ID_RE.match(job_id.strip())
    if not m:
        return job_id.strip()
    return m.group("seq") + (m.group("array") or "")


def match_ids(reported: Iterable[str], wanted: Sequence[str]) -> dict[str, str]:
    """Map each wanted id to the id qstat reported for it.

    An exact match wins; otherwise the sequence number (and array brackets) must match and be
    unambiguous among the reported ids, so ``123.srv`` finds ``123.srv.example.org`` (and a bare
    ``123`` from Slurm's wrappers finds ``123``).
    """
    reported = list(reported)
    exact = set(reported)
    by_key: dict[str, list[str]] | None = None  # built when an id is not reported as asked
    out: dict[str, str] = {}
    for w in wanted:
        if w in exact:
            out[w] = w
            continue
        if by_key is None:
            by_key = {}
            for r in reported:
                by_key.setdefault(job_key(r), []).append(r)
        candidates = by_key.get(job_key(w), [])
        if len(candidates) == 1:
            out[w] = candidates[0]
    return out


# what str.splitlines() ends a line at, besides "\n": text with any of them takes the line parser
_OTHER_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_JOB_ID_LINE_M = re.compile(r"^Job Id:[^\S\n]*(\S+)[^\S\n]*$", re.MULTILINE)
_ATTR_LINE_M = re.compile(r"^([ \t]+)[A-Za-z_][A-Za-z0-9_.]* = ?.*$", re.MULTILINE)
_ATTR_LINE_SOME: dict[tuple[str, ...], re.Pattern] = {}


def parse_qstat_full(text: str, keys: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
    """``qstat -f`` text -> ``{job id: {attribute: value}}``; with ``keys``, only the attributes
    of these names (compared case-insensitively), found without going through every line (a
    status query of 10^4 jobs is some 300,000 lines, of which a few per job matter).

    Attributes keep their names (``job_state``, ``exit_status`` / ``Exit_status``,
    ``Resource_List.walltime``...). Real Torque and PBS Pro indent attributes with spaces and
    continuation lines with a tab, and wrap long values mid-word, so a continuation is appended
    without a separator. Slurm's wrappers indent attributes with a tab and never wrap. The
    indentation of a block's first attribute tells which style it uses.

    :raises QstatParseError: attribute lines appear before any ``Job Id:`` line.
    """
    if keys is None:
        return _parse_qstat_full_lines(text)
    keys = tuple(keys)
    if _OTHER_LINE_BREAKS.search(text):
        lower = {k.lower() for k in keys}
        return {jid: {k: v for k, v in job.items() if k.lower() in lower}
                for jid, job in _parse_qstat_full_lines(text).items()}
    return _parse_qstat_full_some(text, keys)


_JOB_ID_AT = re.compile(r"Job Id:[^\S\n]*(\S+)[^\S\n]*$", re.MULTILINE)
_UNIFORM: dict[tuple[str, str], re.Pattern] = {}


def _uniform_pattern(key: str, indent: str) -> re.Pattern:
    """``key = value`` on a line indented exactly ``indent`` (the literal key first: the regex
    engine skips to it), its value with the tab-led continuation lines of the space style,
    followed by another attribute line of the same indentation, a job or the end."""
    pat = _UNIFORM.get((key, indent))
    if pat is None:
        cont = r"(?:\n\t[^\n]*)*" if indent[0] == " " else ""
        pat = _UNIFORM[(key, indent)] = re.compile(
            rf"{re.escape(key)}(?<=\n{re.escape(indent)}{re.escape(key)}) = ?([^\n]*{cont})"
            rf"(?=\n{re.escape(indent[0])}[ \t]*[A-Za-z_][A-Za-z0-9_.]* =|\n[^\S\n]*(?:\n[^\S\n]*)*(?:Job Id:|\Z)|\Z)")
    return pat


def _parse_qstat_full_uniform(text: str, keys: tuple[str, ...],
                              heads: list[re.Match]) -> dict[str, dict[str, str]] | None:
    """The common case, mostly inside the regex engine: every block indents its attributes the
    same way (four spaces: Torque, PBS Pro; a tab: Slurm's wrappers) and each wanted attribute
    is spelled as in ``keys`` and found where a line parser would find it. None when the text is
    not that simple (then the caller takes the general way)."""
    first = _ATTR_LINE_M.search(text, heads[0].end() + 1, heads[1].start() if len(heads) > 1 else len(text))
    if first is None or first.group(1) not in ("    ", "\t") or not text.isascii():
        return None
    indent = first.group(1)
    low = text.lower()
    starts = [h.start() for h in heads]
    jobs: dict[str, dict[str, str]] = {}
    blocks = [jobs.setdefault(h.group(1), {}) for h in heads]
    seen: dict[str, int] = {}
    expected: dict[str, int] = {}
    for key in keys:
        k = key.lower()
        if k not in expected:  # every occurrence of a wanted name (any case) must be found below
            expected[k] = low.count(f"{k} =")
        seen[k] = seen.get(k, 0)
        if not expected[k]:
            continue
        b, nxt = -1, starts[0]
        for m in _uniform_pattern(key, indent).finditer(text, starts[0]):
            pos = m.start()
            while pos > nxt:
                b += 1
                nxt = starts[b + 1] if b + 1 < len(starts) else len(text) + 1
            value = m.group(1)
            if "\n" in value:
                parts = value.split("\n")
                value = parts[0].strip() + "".join(p[1:].rstrip() for p in parts[1:])
            else:
                value = value.strip()
            blocks[b][key] = value
            seen[k] += 1
    # else the general way
    if seen != expected:
        return None
    return jobs


def _parse_qstat_full_some(text: str, keys: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """:func:`parse_qstat_full` restricted to ``keys``, on text whose lines end at ``\n`` only:
    the same rules as the line parser, applied to the ``Job Id:`` lines and the lines of the
    wanted attributes (and their continuations) alone."""
    # "Job Id:" lines (found by their literal text, then checked to start a line)
    heads = [m for m in _JOB_ID_AT.finditer(text) if m.start() == 0 or text[m.start() - 1] == "\n"]
    # what precedes the first job: a message is ignored, an attribute line is an error
    _parse_qstat_full_lines(text[: heads[0].start()] if heads else text)
    if not heads:
        return {}
    fast = _parse_qstat_full_uniform(text, keys, heads)
    if fast is not None:
        return fast
    jobs: dict[str, dict[str, str]] = {}
    blocks = [jobs.setdefault(m.group(1), {}) for m in heads]
    ends = [m.start() for m in heads[1:]] + [len(text)]
    wanted = _ATTR_LINE_SOME.get(keys)
    if wanted is None:
        alternatives = "|".join(re.escape(k) for k in keys)
        wanted = _ATTR_LINE_SOME[keys] = re.compile(rf"^([ \t]+)({alternatives}) = ?(.*)$",
                                                    re.MULTILINE | re.IGNORECASE | re.ASCII)
    b = -1
    first_start, attr_ch = -1, ""
    for m in wanted.finditer(text, heads[0].end()):
        pos = m.start()
        if b < 0 or pos >= ends[b]:
            b = max(b, 0)
            while pos >= ends[b]:
                b += 1
            # the block's first attribute line sets which indentation attributes have
            first = _ATTR_LINE_M.search(text, heads[b].end() + 1, ends[b])
            first_start, attr_ch = (first.start(), first.group(1)[0]) if first else (-1, "")
        if pos != first_start and m.group(1)[0] != attr_ch:
            continue  # indented otherwise: the continuation of another attribute's value
        value = m.group(3).strip()
        end = ends[b]
        at = m.end()
        while at < end:  # continuation lines, up to the next attribute line of the block
            start = at + 1
            if start >= end:
                break
            stop = text.find("\n", start, end)
            if stop < 0:
                stop = end
            line = text[start:stop]
            at = stop
            if not line.strip() or line[0] not in " \t":
                continue  # blank, or an unindented message: ignored
            if line[0] == attr_ch and _ATTR_LINE.match(line):
                break
            value += (line[1:] if line[0] == "\t" else line.lstrip()).rstrip()
        blocks[b][m.group(2)] = value
    return jobs


def _parse_qstat_full_lines(text: str) -> dict[str, dict[str, str]]:
    """:func:`parse_qstat_full` of every attribute, line by line."""
    jobs: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    last_key: str | None = None
    attr_indent = ""
    for raw in text.splitlines():
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        m = _JOB_ID_LINE.match(line)
        if m:
            current = jobs.setdefault(m.group("id"), {})
            last_key = None
            attr_indent = ""
            continue
        if current is None:
            if line[:1] in (" ", "\t"):
                raise QstatParseError(f"qstat -f output has attributes before the first 'Job Id:' line: {line!r}")
            continue  # a message mixed into stdout
        indent = line[: len(line) - len(line.lstrip())]
        a = _ATTR_LINE.match(line)
        is_attr = a is not None and (last_key is None or not attr_indent or indent[:1] == attr_indent[:1])
        if is_attr and a is not None:
            if not attr_indent:
                attr_indent = indent
            last_key = a.group("key")
            current[last_key] = a.group("value").strip()
        elif last_key is not None and indent:
            # the wrapped rest of the value follows the one tab exactly (spaces kept)
            current[last_key] += (line[1:] if line.startswith("\t") else line.lstrip()).rstrip()
        # else: an unindented message mixed into stdout; ignored
    return jobs


def parse_qstat_json(text: str) -> dict[str, dict[str, Any]]:
    """``qstat -f -F json`` -> ``{job id: {attribute: value}}`` (``{}`` when ``"Jobs"`` is absent).

    :raises QstatParseError: the text is not JSON even after repairing invalid escapes.
    """
    if not text.strip():
        return {}
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError:
        try:
            data = json.loads(_BAD_ESCAPE.sub(r"\\\\", text), strict=False)
        except json.JSONDecodeError as exc:
            raise QstatParseError(f"qstat -F json printed invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise QstatParseError(f"qstat -F json printed {type(data).__name__}, not an object")
    jobs = data.get("Jobs") or {}
    if not isinstance(jobs, dict):
        raise QstatParseError("qstat -F json: 'Jobs' is not an object")
    return {str(k): v for k, v in jobs.items() if isinstance(v, dict)}


def parse_qstat(text: str, keys: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Either format, told apart by the first character (``{`` is JSON). ``keys``: the
    attributes needed (case-insensitive names); others may be left out."""
    return parse_qstat_json(text) if text.lstrip().startswith("{") else parse_qstat_full(text, keys)


def benign_qstat_errors(stderr: str) -> bool:
    """True when every line on qstat's stderr only says that some id is unknown or finished
    (qstat then exits non-zero, e.g. 153 or 35, but the jobs it printed are valid)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return all(_BENIGN.search(ln) for ln in lines)


def attr(job: Mapping[str, Any], *names: str) -> Any:
    """The first present attribute of ``names`` (case-sensitive first, then insensitive)."""
    for n in names:
        if n in job:
            return job[n]
    lower = {k.lower(): v for k, v in job.items()}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def to_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None
