"""``xpr cancel``, ``xpr hold``, ``xpr release``: :func:`expyre.control.control` of the selected
jobs, printed."""

from __future__ import annotations

from typing import Any

import click

from ..cli_output import json_out, status_style, table
from ..control import control, ongoing
from .common import confirm, error_text, fail, filters, report_errors, require_filter, select_rows, summary

__all__ = ["cancel_cmd", "hold_cmd", "release_cmd"]

_PAST = {"cancel": "cancel requested", "hold": "held", "release": "released"}


def _run(op: str, ids, name, status, system, yes: bool, as_json: bool) -> None:
    from .. import config

    require_filter(ids, name, status, system, op)
    rows = select_rows(config.db, ids, name, status, system)
    if not rows:
        fail("no jobs match the filters")
    targets = ongoing(rows)
    if not targets:
        fail(f"none of the {len(rows)} matching job(s) is queued or running (statuses: "
             f"{', '.join(sorted({r['status'] for r in rows}))}); nothing to {op}")
    if op == "cancel" and not yes:
        click.echo(f"{len(targets)} job(s) to cancel:")
        summary(targets)
        if not confirm(f"cancel {len(targets)} job(s)?"):
            fail("nothing cancelled (confirm, or pass -y)")
    report = control(op, [r["id"] for r in targets], by="xpr")  # type: ignore[arg-type]
    outcome = {o.id: o for o in report.outcomes}
    errors = [error_text(o.id, o.note, o.error) if o.error is not None else f"{o.id}: {o.note}"
              for o in report.outcomes if o.failed]
    results: list[dict[str, Any]] = []
    for r in rows:
        x = {"id": r["id"], "name": r["name"], "system": r["system"], "remote_id": r["remote_id"], "status": r["status"]}
        o = outcome.get(r["id"])
        if o is None:
            x.update(done=False, note=f"already {r['status']}")
        else:
            x["done"] = o.done
            if not o.done and not o.failed:
                x["note"] = o.note
        results.append(x)
    results.sort(key=lambda x: x["id"] not in outcome)  # the jobs acted on first
    if as_json:
        json_out(results)
    else:
        table(["id", "name", "status", "system", "remote id", op],
              [[x["id"], x["name"], x["status"], x["system"] or "-", x["remote_id"] or "-",
                _PAST[op] if x["done"] else x.get("note", "FAILED")] for x in results], styles=status_style)
    report_errors(errors)


def _command(op: str, example: str) -> click.Command:
    doc = {
        "cancel": "Cancel queued or running jobs in their schedulers (one command per system).\n\n"
                  "A job not yet submitted is marked died. Asks for confirmation unless -y.",
        "hold": "Hold queued jobs in their schedulers so that they do not start (one command per system).",
        "release": "Release held jobs (one command per system).",
    }[op]

    def command(ids, name, status, system, as_json, yes=False) -> None:
        _run(op, ids, name, status, system, yes, as_json)

    command.__doc__ = f"{doc}\n\n\b\nExample:  {example}"  # \b (a real backspace): click keeps the line as is
    command = click.option("--json", "as_json", is_flag=True, help="machine-readable output")(command)
    if op == "cancel":
        command = click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")(command)
    return click.command(op)(filters(command))


cancel_cmd = _command("cancel", "xpr cancel -n 'relax_.*' -S archer2 -y")
hold_cmd = _command("hold", "xpr hold -s submitted -n 'big_.*'")
release_cmd = _command("release", "xpr release -n 'big_.*'")
