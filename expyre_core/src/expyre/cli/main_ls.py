"""``xpr ls``: the click form of the command (the usual forms are answered without click by
:mod:`expyre.cli_ls`, which also lists and prints for this one)."""

from __future__ import annotations

import click

from ..cli_ls import ALL_OPTIONS, list_jobs, show
from .common import click_options, fail

__all__ = ["ls_cmd"]


@click.command("ls")
@click_options(ALL_OPTIONS)
def ls_cmd(ids, name, status, system, long_, sort, reverse, limit, as_json) -> None:
    """List jobs (oldest first).

    \b
    Examples:
      xpr ls -s ongoing -S 'archer2.*' -l
      xpr ls -n 'relax_.*' -s 'failed|died' --sort updated -r --limit 20
      xpr ls -s unprocessed --json | jq -r '.[].id'
    """
    try:
        rows = list_jobs(ids, name, status, system, sort, reverse, limit)
    except ValueError as exc:
        fail(str(exc))
    show(rows, long_, as_json)
