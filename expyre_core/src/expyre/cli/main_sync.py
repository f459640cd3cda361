"""``xpr sync``: :func:`expyre.sync.sync` of the selected jobs, printed."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..cli_output import STATUS_STYLE, json_out, table
from .common import error_text, filters, report_errors, select_rows

__all__ = ["sync_cmd"]


@click.command("sync")
@filters
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sync_cmd(ids, name, status, system, as_json) -> None:
    """Refresh the status of queued and running jobs from their schedulers and bring finished
    results back (default: every ongoing job). Never waits for jobs to finish.

    Each system is polled once for all its jobs. A job gone from the queue without a result is
    declared died only when seen so by two polls the scheduler's grace period apart (run sync
    again later).

    \b
    Examples:
      xpr sync
      xpr sync -S archer2 -n 'relax_.*' --json
    """
    from .. import config
    from ..sync import sync

    rows = select_rows(config.db, ids, name, status or ("ongoing",), system)
    results = sync([r["id"] for r in rows], db=config.db)
    errors = [error_text(x.id, x.error_context, x.error) for x in results if x.error is not None]
    polled = sum(1 for x in results if x.before in ("submitted", "started"))
    if as_json:
        json_out([{k: v for k, v in asdict(x).items() if k not in ("error", "error_context")} for x in results])
    elif not results:
        click.echo("no jobs match", err=True)
    else:
        table(["id", "name", "was", "status", "remote status", "note"],
              [[x.id, x.name, x.before, x.status, x.remote_status or "-", x.note] for x in results],
              styles=lambda i, j, c: STATUS_STYLE.get(c) if j in (2, 3) else None)
        changed = sum(1 for x in results if x.status != x.before)
        click.echo(f"{polled} job(s) polled, {changed} changed status", err=True)
    report_errors(errors)
