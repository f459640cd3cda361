"""``xpr``: the expyre command line (jobs database and plugins).

Every command takes the job filters ``-i/--id``, ``-n/--name``, ``-s/--status``, ``-S/--system``
(regexps matching whole values; ``-s`` also takes the groups ongoing, unprocessed, finished and
can_produce_results). Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

from . import config, plugins

__all__ = ["main", "cli"]


def _filters(f):
    f = click.option("-S", "--system", multiple=True, help="system name regexp (repeatable)")(f)
    f = click.option("-s", "--status", multiple=True, help="status or group regexp, e.g. 'ongoing', 'failed|died'")(f)
    f = click.option("-n", "--name", multiple=True, help="job name regexp (repeatable)")(f)
    f = click.option("-i", "--id", "ids", multiple=True, help="job id regexp (repeatable)")(f)
    return f


def _select(ids, name, status, system) -> list[dict[str, Any]]:
    return config.db.jobs(
        id=list(ids) or None, name=list(name) or None, status=list(status) or None, system=list(system) or None
    )


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _fail(message: str) -> None:
    raise click.ClickException(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="expyre-core")
def cli() -> None:
    """expyre jobs database and plugins.

    \b
    Examples:
      xpr ls -s ongoing
      xpr rm -n 'fit_.*' -s failed -y --clean
      xpr plugins
    """


@cli.command("ls")
@_filters
@click.option("-l", "--long", "long_", is_flag=True, help="also show system, remote id/status, stage dir, reason")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def ls_cmd(ids, name, status, system, long_, as_json) -> None:
    """List jobs, oldest first.

    \b
    Example:  xpr ls -s ongoing -S 'archer2.*' -l
    """
    try:
        rows = _select(ids, name, status, system)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no jobs match", err=True)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    table = Table(box=None, show_edge=False, pad_edge=False)
    cols = ["id", "name", "status", "created", "updated"] + (["system", "remote id", "remote status", "stage dir", "reason"] if long_ else [])
    for c in cols:
        table.add_column(c, overflow="fold" if long_ else "ellipsis")
    for r in rows:
        cells = [r["id"], r["name"], r["status"], _when(r["creation_time"]), _when(r["status_time"])]
        if long_:
            cells += [r["system"] or "-", r["remote_id"] or "-", r["remote_status"] or "-", r["from_dir"], (r["reason"] or "").splitlines()[0] if r["reason"] else ""]
        table.add_row(*cells)
    console.print(table)


def _inside_root(path: Path) -> bool:
    root = Path(config.root).resolve()
    try:
        p = path.resolve()
    except OSError:
        return False
    return p.parent == root and p.name.startswith("run_")


@cli.command("rm")
@_filters
@click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--clean/--no-clean", default=False, help="also delete the local (and remote) stage directories")
@click.option("--cancel", is_flag=True, help="cancel jobs that are still queued or running first")
@click.option("--dry-run", is_flag=True, help="only say what would be done")
def rm_cmd(ids, name, status, system, yes, clean, cancel, dry_run) -> None:
    """Delete jobs from the database (at least one filter is required).

    \b
    Example:  xpr rm -s 'failed|died' -n 'relax_.*' --clean -y
    """
    if not (ids or name or status or system):
        _fail("give at least one filter (-i, -n, -s or -S); to remove everything use -s '.*'")
    try:
        rows = _select(ids, name, status, system)
    except ValueError as exc:
        _fail(str(exc))
    if not rows:
        click.echo("no jobs match", err=True)
        return
    click.echo(f"{len(rows)} job(s): " + ", ".join(r["id"] for r in rows[:10]) + (" ..." if len(rows) > 10 else ""))
    if dry_run:
        return
    if not yes and not click.confirm("delete them" + (" and their stage directories" if clean else ""), default=False):
        _fail("nothing deleted")
    from .func import ExPyRe

    for row in rows:
        xpr = ExPyRe.from_jobsdb(row)[0]
        if cancel and row["status"] in ("submitted", "started") and row["remote_id"]:
            try:
                xpr.cancel()
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                click.echo(f"{row['id']}: cancel failed: {exc}", err=True)
        if clean:
            stage = Path(row["from_dir"])
            if not _inside_root(stage):
                click.echo(f"{row['id']}: not deleting {stage}: outside the expyre root {config.root}", err=True)
            else:
                try:
                    if row["system"] in config.systems and not config.systems[row["system"]].shares_stage_dirs:
                        xpr.clean(wipe=True)
                    shutil.rmtree(stage, ignore_errors=True)
                except Exception as exc:  # noqa: BLE001
                    click.echo(f"{row['id']}: cleaning failed: {exc}", err=True)
        config.db.remove(row["id"])
    click.echo(f"deleted {len(rows)} job(s)")


@cli.command("db_unlock")
@click.option("--force", is_flag=True, help="replace a database that stays locked with an unlocked copy")
def db_unlock_cmd(force) -> None:
    """Unlock the jobs database if it was left locked when a process crashed.

    \b
    Example:  xpr db_unlock --force
    """
    click.echo(config.db.unlock(force=force))


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins_cmd(as_json) -> None:
    """List scheduler and transport plugins, and any that failed to load.

    \b
    Example:  EXPYRE_DISABLE_PLUGINS=pbs xpr plugins
    """
    infos = plugins.plugin_infos()
    data = {
        "plugins": [
            {
                "name": i.name,
                "module": i.module,
                "distribution": i.distribution,
                "version": i.version,
                "hooks": list(i.hooks),
                "schedulers": list(i.schedulers),
                "transports": list(i.transports),
                "status": i.status,
            }
            for i in infos
        ],
        "schedulers": sorted(plugins.schedulers()),
        "transports": sorted(plugins.transports()),
    }
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    for p in data["plugins"]:
        dist = f"{p['distribution']} {p['version']}" if p["distribution"] else "built-in"
        provides = ", ".join([f"scheduler {s}" for s in p["schedulers"]] + [f"transport {t}" for t in p["transports"]])
        click.echo(f"{p['name']:<34} {dist:<22} {p['status']:<10} {provides}")
    click.echo(f"schedulers: {', '.join(data['schedulers'])}")
    click.echo(f"transports: {', '.join(data['transports'])}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except (config.ConfigError, plugins.PluginLoadError) as exc:
        click.echo(f"xpr: {exc}", err=True)
        sys.exit(2)

if __name__ == "__main__":
    main()
