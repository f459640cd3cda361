"""``xpr db rebuild``: :func:`expyre.jobsdb.rebuild` of the root's jobs database from its stage
directories."""

from __future__ import annotations

import click

from ..config_files import check_root, find_config_files
from ..jobsdb import rebuild
from .common import fail

__all__ = ["db_group"]


@click.group("db")
def db_group() -> None:
    """The jobs database (see also `xpr db_unlock`)."""


@db_group.command("rebuild")
def rebuild_cmd() -> None:
    """Rebuild the jobs database from the stage directories (run_*) of the expyre root.

    Each job missing from the database gets back its row as its stage directory records it:
    name, call digest, status (succeeded, failed, died, processed from its result files and
    records; submitted or started with the scheduler id of a job still queued or running, so that
    it is not submitted again). Rows already in a sound database are left as they are. A damaged
    database file is first moved aside (kept as jobs.db.damaged-<time>); stop the processes using
    it first. A missing or empty database is rebuilt like this automatically when it is opened.

    \b
    Example:  xpr db rebuild && xpr ls
    """
    root, _ = find_config_files()
    root = root.absolute()
    if not root.is_dir():
        fail(f"no expyre root at {root}: there is nothing to rebuild the jobs database from")
    check_root(root)  # owned by you and private, as for every use of it
    click.echo(str(rebuild(root / "jobs.db", root)))
