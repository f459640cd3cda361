"""How ``xpr`` job commands select jobs, without click: the filter options (defined once here, as
data, and turned into click options by :mod:`expyre.cli`), status filters expanded to the exact
statuses they match, and the query on the jobs database (opened without reading config.json or
loading plugins)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

TYPE_CHECKING = False  # no runtime typing import on the click-free `xpr ls` path
if TYPE_CHECKING:
    from typing import Any, Iterable, Sequence

from .config_files import find_config_files
from .jobsdb import STATUS_GROUPS, STATUSES, JobsDB
from .layout import STAGE_DIR_PREFIX

__all__ = ["Option", "FILTER_OPTIONS", "expand_status_filters", "light_db", "select", "check_regexp"]


class Option:
    """One command-line option, described once for click and for the click-free ``xpr ls``.

    ``kind``: ``multi`` (a repeatable string), ``flag``, ``choice`` (one of ``choices``) or
    ``count`` (an integer >= 1)."""

    __slots__ = ("flags", "dest", "kind", "help", "metavar", "choices", "default")

    def __init__(self, flags: tuple[str, ...], dest: str, kind: str, help: str, metavar: str | None = None,
                 choices: tuple[str, ...] = (), default: Any = None):
        if kind not in ("multi", "flag", "choice", "count"):
            raise ValueError(f"option {flags}: unknown kind {kind!r}")
        self.flags, self.dest, self.kind, self.help = flags, dest, kind, help
        self.metavar, self.choices, self.default = metavar, choices, default

    def __repr__(self) -> str:
        return f"Option({'/'.join(self.flags)}, dest={self.dest!r}, kind={self.kind!r})"


FILTER_OPTIONS: tuple[Option, ...] = (
    Option(("-i", "--id"), "ids", "multi", "job id regexp (repeatable)", "REGEXP"),
    Option(("-n", "--name"), "name", "multi", "job name regexp (repeatable)", "REGEXP"),
    Option(("-s", "--status"), "status", "multi",
           "status or group regexp, e.g. 'ongoing', 'failed|died' (repeatable); groups: " + ", ".join(STATUS_GROUPS),
           "STATUS"),
    Option(("-S", "--system"), "system", "multi", "system name regexp (repeatable)", "REGEXP"),
)

_STATUS_WORDS = tuple(STATUSES) + tuple(STATUS_GROUPS)


def expand_status_filters(values: Iterable[str]) -> list[str]:
    """Status filters (regexps or group names) as the exact statuses they match: the statuses are
    a closed set, so the query becomes an indexed ``IN`` instead of a regexp scan of every row.
    A filter that can match nothing is a typo: :class:`ValueError` says so instead of 'no jobs'."""
    out: list[str] = []
    for v in values:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid status regexp {v!r}: {exc}") from None
        matched = [s for s in STATUSES if rx.fullmatch(s)]
        for group, members in STATUS_GROUPS.items():
            if rx.fullmatch(group):
                matched.extend(members)
        if not matched:
            import difflib

            close = difflib.get_close_matches(v, _STATUS_WORDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"status {v!r} matches no status{hint}; statuses: {', '.join(STATUSES)}; "
                             f"groups: {', '.join(STATUS_GROUPS)}")
        out.extend(s for s in matched if s not in out)
    return out


# -- regexps that cannot burn CPU ---------------------------------------------------------------
# Python's re backtracks: '(a+)+' takes seconds on one 30-character name, and doubles with every
# character more. A filter is checked before it runs: a repetition inside another repetition, or
# a repeated alternation whose alternatives can start alike ('(a|ab)+'), is refused with a message
# saying why; every usual filter ('fit_.*', 'run[0-9]+', '(relax|md)_.*') passes.


def check_regexp(pattern: str, what: str = "name") -> None:
    """:class:`ValueError` for an invalid regexp, or one whose matching time can explode."""
    try:
        re.compile(pattern)
        from re import _parser  # type: ignore[attr-defined]
    except re.error as exc:
        raise ValueError(f"invalid {what} regexp {pattern!r}: {exc}") from None
    except ImportError:  # Python < 3.11
        import sre_parse as _parser  # type: ignore[no-redef]
    problem = _backtracking_risk(_parser.parse(pattern), False)
    if problem:
        raise ValueError(f"{what} regexp {pattern!r} is refused: it has {problem}, which can take exponential "
                         f"time to match; write it without nesting, e.g. '(a+)+' as 'a+', '(a|ab)+' as '[ab]+'")


_REPEATS = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")


def _backtracking_risk(items, in_repeat: bool) -> str | None:
    for op, av in items:
        name = str(op)
        if name in _REPEATS:
            lo, hi, sub = av
            if in_repeat and (hi > 1 or lo == 0) and lo != hi:
                return "a repetition inside a repetition"
            found = _backtracking_risk(sub, in_repeat or hi > 1)
            if found:
                return found
        elif name == "SUBPATTERN":
            found = _backtracking_risk(av[-1], in_repeat)
            if found:
                return found
        elif name == "BRANCH":
            branches = av[1]
            if in_repeat:
                starts = [_first(b) for b in branches]
                for i, a in enumerate(starts):
                    for b in starts[i + 1:]:
                        if a is None or b is None or a & b:
                            return "a repeated alternation whose alternatives can start with the same character"
            for b in branches:
                found = _backtracking_risk(b, in_repeat)
                if found:
                    return found
        elif name in ("ASSERT", "ASSERT_NOT"):
            found = _backtracking_risk(av[1], in_repeat)
            if found:
                return found
        elif name == "GROUPREF_EXISTS":
            for b in av[1:]:
                if b is not None:
                    found = _backtracking_risk(b, in_repeat)
                    if found:
                        return found
    return None


def _first(items) -> set[int] | None:
    """The characters a match of ``items`` can start with; None: any, or it can match empty."""
    for op, av in items:
        name = str(op)
        if name == "AT":
            continue  # anchors match no character
        if name == "LITERAL":
            return {av}
        if name == "IN":
            chars: set[int] = set()
            for iop, iav in av:
                if str(iop) == "LITERAL":
                    chars.add(iav)
                elif str(iop) == "RANGE" and iav[1] - iav[0] < 512:
                    chars.update(range(iav[0], iav[1] + 1))
                else:
                    return None
            return chars
        if name == "SUBPATTERN":
            return _first(av[-1])
        if name in _REPEATS:
            return _first(av[2]) if av[0] > 0 else None
        if name == "BRANCH":
            out: set[int] = set()
            for b in av[1]:
                f = _first(b)
                if f is None:
                    return None
                out |= f
            return out
        return None
    return None


def light_db() -> JobsDB | None:
    """The jobs database without loading plugins or validating config.json (fast, and works with a
    broken config). None when there is no database yet."""
    config = sys.modules.get("expyre.config")  # imported only if this process already used expyre
    if config is not None and config._loaded:  # initialised in this process (tests, library use)
        return config.db
    root, _ = find_config_files()
    root = root.absolute()
    path = root / "jobs.db"
    if not path.exists() and not _has_stage_dirs(root):
        return None
    return JobsDB(path, root=root)  # a missing or empty database is rebuilt from the stage directories


def _has_stage_dirs(root: Path) -> bool:
    try:
        with os.scandir(root) as it:
            return any(e.name.startswith(STAGE_DIR_PREFIX) for e in it)
    except OSError:
        return False


def select(db: JobsDB | None, ids: Sequence[str], name: Sequence[str], status: Sequence[str], system: Sequence[str],
           order: str = "creation_time") -> list[dict[str, Any]]:
    """The jobs matching every given filter (each a list of regexps, any of which matches), as
    dicts, ordered by ``order``. :class:`ValueError` for an invalid filter."""
    statuses = expand_status_filters(status)
    for what, patterns in (("job id", ids), ("name", name), ("system", system)):
        for p in patterns:
            check_regexp(p, what)
    if db is None:
        return []
    return db.jobs(id=list(ids) or None, name=list(name) or None, status=statuses or None,
                   system=list(system) or None, order=order)
