"""The ``xpr`` click group: one thin command module per command or command family
(``main_<command>.py``), each parsing options, calling a library function and printing."""

from __future__ import annotations

import sys
from typing import Sequence

import click

from ..config_files import ConfigError
from . import (main_config, main_control, main_db, main_db_unlock, main_logs, main_ls, main_plugins, main_rm, main_show,
               main_sync, main_why)
from .common import Group, one_line

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="expyre-core", prog_name="xpr")
def cli() -> None:
    """expyre: jobs database, remote jobs, configuration and plugins.

    \b
    Examples:
      xpr ls -s ongoing                    # queued or running jobs
      xpr sync                             # refresh every ongoing job from its scheduler
      xpr rm -n 'fit_.*' -s failed -y --clean
      xpr config check                     # can every system run jobs?
      xpr why fit_energy                   # why was (or wasn't) an old job reused?
      xpr show fit_energy_ab12cd34ef_3     # everything known of a job, its traceback if it failed
      xpr logs -f fit_energy_ab12cd34ef_3  # its output so far, following it while it runs
      xpr db rebuild                       # the jobs database lost or damaged: rebuild it from the stage dirs
    """


for _command in (main_ls.ls_cmd, main_rm.rm_cmd, main_db.db_group, main_db_unlock.db_unlock_cmd, main_sync.sync_cmd,
                 main_control.cancel_cmd, main_control.hold_cmd, main_control.release_cmd, main_plugins.plugins_cmd,
                 main_config.config_group, main_why.why_cmd, main_show.show_cmd, main_logs.logs_cmd):
    cli.add_command(_command)


def _is_setup_error(exc: BaseException) -> bool:
    """A broken config.json or a plugin that cannot load (plugins is only imported if it was used)."""
    plugins = sys.modules.get("expyre.plugins")
    return isinstance(exc, ConfigError) or (plugins is not None and isinstance(exc, plugins.PluginLoadError))


def main(args: Sequence[str] | None = None) -> None:
    """The click application (``xpr`` goes through :func:`expyre.xpr.main` first)."""
    try:
        cli(args=None if args is None else list(args), standalone_mode=True, prog_name="xpr")
    except Exception as exc:  # noqa: BLE001 - only setup errors, re-raised otherwise
        if not _is_setup_error(exc):
            raise
        click.echo(f"xpr: {one_line(exc)}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
