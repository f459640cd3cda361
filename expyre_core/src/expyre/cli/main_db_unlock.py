"""``xpr db_unlock``: :meth:`expyre.jobsdb.JobsDB.unlock_file` of the root's jobs database."""

from __future__ import annotations

import sys

import click

from ..config_files import find_config_files
from ..jobsdb import JobsDB
from .common import fail

__all__ = ["db_unlock_cmd"]


@click.command("db_unlock")
@click.option("--force", is_flag=True, help="replace a database that stays locked with an unlocked copy (the old one is kept)")
def db_unlock_cmd(force) -> None:
    """Unlock the jobs database if a crashed or hung process left it locked.

    Without --force this only checks (and exits 1 if the database is locked). With --force a locked
    database is copied consistently to a fresh file that atomically replaces it; the locked file is
    kept beside it. Stop every expyre process using it first.

    \b
    Example:  xpr db_unlock && xpr db_unlock --force
    """
    root, _ = find_config_files()
    path = root.absolute() / "jobs.db"
    try:
        report = JobsDB.unlock_file(path, force=force)
    except FileNotFoundError as exc:
        fail(str(exc))
    click.echo(report)
    if ": locked (" in report:
        sys.exit(1)
