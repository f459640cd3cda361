"""``xpr rm``: delete jobs from the jobs database (cancelling them first through
:func:`expyre.control.control`, cleaning their stage directories with ``ExPyRe.clean``)."""

from __future__ import annotations

from pathlib import Path

import click

from ..control import ONGOING_REMOTE, control, ongoing
from .common import confirm, error_text, fail, filters, one_line, report_errors, require_filter, select_rows, summary

__all__ = ["rm_cmd"]


def _inside_root(path: Path, root: Path) -> bool:
    """Only ``<root>/run_*`` directories (not through a symlink) are expyre's to delete."""
    try:
        if path.is_symlink():
            return False
        p = path.resolve()
    except OSError:
        return False
    return p.parent == root.resolve() and p.name.startswith("run_") and p.name == path.name


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
    errors: list[str] = []
    cancelled: set[str] = set()
    if cancel:
        report = control("cancel", [r["id"] for r in ongoing(rows)], by="xpr")
        cancelled = set(report.done)
        errors += [error_text(o.id, o.note, o.error) for o in report.outcomes if o.error is not None]
    from ..func import ExPyRe

    deleted = left_running = 0
    for r in rows:
        still_running = r["status"] in ONGOING_REMOTE and r["id"] not in cancelled
        if clean:
            if still_running:
                errors.append(f"{r['id']}: still {r['status']}: not deleted (use --cancel to cancel it first)")
                continue
            stage = Path(r["from_dir"])
            if not _inside_root(stage, Path(config.root)):
                errors.append(f"{r['id']}: not deleted: its stage dir {stage} is not a run_* directory of the expyre root {config.root}")
                continue
            try:
                xpr = ExPyRe.from_jobsdb(r)[0]
                if r["system"] and r["system"] not in config.systems:
                    errors.append(f"{r['id']}: system {r['system']!r} is no longer configured: only the local stage dir is deleted")
                    xpr.system_name = None
                xpr.clean(wipe=True)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                errors.append(f"{r['id']}: cleaning failed, not deleted: {one_line(exc)}")
                continue
        elif still_running:
            left_running += 1
        config.db.remove(r["id"])
        deleted += 1
    click.echo(f"deleted {deleted} job(s)" + (f"; {len(cancelled)} cancelled" if cancel else ""))
    if left_running:
        click.echo(f"note: {left_running} job(s) still queued or running were only removed from the database "
                   f"(use --cancel to stop them)", err=True)
    report_errors(errors)
