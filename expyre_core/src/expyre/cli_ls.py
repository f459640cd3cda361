"""``xpr ls``: its options, what it prints, and a parser for it that needs no click.

``xpr ls`` is the command people run most, in loops and scripts too, and it should answer at the
speed of its indexed query even on a jobs database of 100k jobs. Most of a naive run is the
interpreter importing click (~30 ms) and the plugin machinery, none of which listing rows needs.
So the ``xpr`` entry point (:mod:`expyre.xpr`) first offers its arguments to :func:`run_fast`,
which reads the usual forms of the options below and declines anything else (help, a bad value,
combined short flags, ...). Declined arguments go to click (:mod:`expyre.cli`), which builds its
``ls`` from the same :data:`LS_OPTIONS` and prints through the same :func:`show`; the two parsers
are compared option by option in the tests.
"""

from __future__ import annotations

import sys
import time

TYPE_CHECKING = False  # see cli_select
if TYPE_CHECKING:
    from typing import Any

from .cli_output import ago, first_line, json_out, status_style, table, when
from .cli_select import FILTER_OPTIONS, Option, light_db, select
from .jobsdb import STATUS_GROUPS

__all__ = ["SORT", "LS_OPTIONS", "ALL_OPTIONS", "parse_fast", "list_jobs", "show", "run_fast"]

#: ``--sort`` key -> jobs table column
SORT = {"created": "creation_time", "updated": "status_time", "name": "name", "status": "status",
        "id": "id", "system": "system"}

LS_OPTIONS: tuple[Option, ...] = (
    Option(("-l", "--long"), "long_", "flag", "also show system, remote id and status, hash, usage, stage dir, reason"),
    Option(("--sort",), "sort", "choice", "sort key", choices=tuple(sorted(SORT)), default="created"),
    Option(("-r", "--reverse"), "reverse", "flag", "reverse the order (newest first for --sort created)"),
    Option(("--limit",), "limit", "count", "show at most this many jobs (after sorting)"),
    Option(("--json",), "as_json", "flag", "machine-readable output (all fields, times in epoch seconds)"),
)

ALL_OPTIONS = FILTER_OPTIONS + LS_OPTIONS


def _defaults() -> dict[str, Any]:
    return {o.dest: (() if o.kind == "multi" else False if o.kind == "flag" else o.default) for o in ALL_OPTIONS}


_BY_FLAG = {f: o for o in ALL_OPTIONS for f in o.flags}


def parse_fast(argv: list[str]) -> dict[str, Any] | None:
    """The parameters of ``xpr ls ARGS`` as click would give them to the command, or None for
    anything that is not a plain use of the options (click then parses it and says what is wrong)."""
    if not argv or argv[0] != "ls":
        return None
    params = _defaults()
    multi: dict[str, list[str]] = {}
    i = 1
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--"):
            flag, eq, value = arg.partition("=")
            opt = _BY_FLAG.get(flag)
            if opt is None:
                return None
            if opt.kind == "flag":
                if eq:
                    return None
                params[opt.dest] = True
                continue
            if not eq:
                if i >= len(argv):
                    return None
                value = argv[i]
                i += 1
        elif arg.startswith("-") and len(arg) > 1:
            opt = _BY_FLAG.get(arg[:2])
            if opt is None:
                return None
            if opt.kind == "flag":
                if len(arg) > 2:  # -lr: combined flags are click's business
                    return None
                params[opt.dest] = True
                continue
            if len(arg) > 2:
                value = arg[2:]
            else:
                if i >= len(argv):
                    return None
                value = argv[i]
                i += 1
        else:
            return None  # ls takes no arguments
        if value.startswith("-") and len(value) > 1:
            return None  # an option or a value that looks like one: click decides
        if opt.kind == "multi":
            multi.setdefault(opt.dest, []).append(value)
        elif opt.kind == "choice":
            if value not in opt.choices:
                return None
            params[opt.dest] = value
        else:  # count
            if not value.isdigit() or int(value) < 1:
                return None
            params[opt.dest] = int(value)
    for dest, values in multi.items():
        params[dest] = tuple(values)
    return params


def list_jobs(ids, name, status, system, sort: str, reverse: bool, limit: int | None) -> list[dict[str, Any]]:
    """The selected rows, sorted, reversed and cut as asked. :class:`ValueError` for a bad filter."""
    rows = select(light_db(), ids, name, status, system, order=SORT[sort])
    if reverse:
        rows.reverse()
    if limit is not None:
        rows = rows[:limit]
    return rows


def show(rows: list[dict[str, Any]], long_: bool, as_json: bool) -> None:
    """Print the rows: a table (rich on a terminal, plain text when piped) or JSON."""
    if as_json:
        import json

        for r in rows:
            for key in ("resources", "usage"):
                if isinstance(r.get(key), str):
                    try:
                        r[key] = json.loads(r[key])
                    except ValueError:
                        pass
        json_out(rows)
        return
    if not rows:
        sys.stderr.write("no jobs match\n")
        return
    now = time.time()
    headers = ["id", "name", "status", "created", "updated", "age"]
    if long_:
        from .usage import of_row, summary

        headers += ["system", "remote id", "remote status", "hash", "usage", "stage dir", "reason"]
    out = []
    for r in rows:
        cells = [r["id"], r["name"], r["status"], when(r["creation_time"]), when(r["status_time"]), ago(r["creation_time"], now)]
        if long_:
            cells += [r["system"] or "-", r["remote_id"] or "-", _remote_status(r), (r["hash"] or "-")[:12],
                      summary(of_row(r)), r["from_dir"], first_line(r["reason"])]
        out.append(cells)
    table(headers, out, styles=status_style, wrap=long_)


def _remote_status(row: dict[str, Any]) -> str:
    """The scheduler's last word for a queued or running job; ``(finished)`` once the job ended
    (the last state a poll recorded, e.g. ``running``, is no longer true then)."""
    if row["status"] in STATUS_GROUPS["ongoing"]:
        return row["remote_status"] or "-"
    return "(finished)" if row["remote_id"] else "-"


def run_fast(argv: list[str]) -> bool:
    """Run ``xpr ls`` without click if ``argv`` is a plain use of it; False (nothing printed) if
    not, or if the query fails (a bad filter, a locked database: click's path then reports the
    error in its usual one-line form)."""
    params = parse_fast(argv)
    if params is None:
        return False
    try:
        rows = list_jobs(params["ids"], params["name"], params["status"], params["system"], params["sort"],
                         params["reverse"], params["limit"])
    except Exception:  # noqa: BLE001 - a bad filter, a locked database...: click's path reports it
        return False
    show(rows, params["long_"], params["as_json"])
    return True
