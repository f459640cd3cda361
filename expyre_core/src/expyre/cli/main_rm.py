"""``xpr rm``: :func:`expyre.remove.remove` of the selected jobs (after confirmation)."""

from __future__ import annotations

import click

from ..remove import remove
from .common import confirm, error_text, fail, filters, report_errors, require_filter, select_rows, summary

__all__ = ["rm_cmd"]


@click.command("rm")
@filters
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--clean/--no-clean", default=False, help="also delete the jobs' stage directories, here and on the remote host")
@click.option("--cancel", is_flag=True, help="cancel jobs that are still queued or running first")
@click.option("--dry-run", is_flag=True, help="only show what would be done")
def rm_cmd(ids, name, status, system, yes, clean, cancel, dry_run) -> None:
    """Delete jobs from the jobs database (at least one filter is required).

    With --clean the stage directories go too: only <root>/run_<id> and the same directory under
    the system's rundir, never anything else. A job that is still queued or running is only
    cleaned together with --cancel.

    \b
    Examples:
      xpr rm -s 'failed|died' -n 'relax_.*' --clean -y
      xpr rm -i 'fit_ab12.*' --cancel --clean
    """
    from .. import config

    require_filter(ids, name, status, system, "delete")
    rows = select_rows(config.db, ids, name, status, system)
    if not rows:
        fail("no jobs match the filters; nothing deleted")
    what = "delete" + (", cancelling the ongoing ones," if cancel else "") + (" with their stage directories" if clean else "")
    click.echo(f"{len(rows)} job(s) to {what}:")
    summary(rows)
    if dry_run:
        click.echo("dry run: nothing done")
        return
    if not yes and not confirm(f"{what} {len(rows)} job(s)?"):
        fail("nothing deleted (confirm, or pass -y)")
    report = remove([r["id"] for r in rows], clean=clean, cancel=cancel, by="xpr", db=config.db)
    click.echo(f"deleted {len(report.deleted)} job(s)" + (f"; {len(report.cancelled)} cancelled" if cancel else ""))
    if report.left_running:
        click.echo(f"note: {len(report.left_running)} job(s) still queued or running were only removed from the database "
                   f"(use --cancel to stop them)", err=True)
    report_errors([error_text(jid, problem, exc) for jid, problem, exc in report.errors])
