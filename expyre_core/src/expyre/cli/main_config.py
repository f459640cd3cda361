"""``xpr config show`` and ``xpr config check``: the merged configuration, and the probes of
:func:`expyre.check.check_system` for each system."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Sequence

import click

from ..cli_output import isatty, json_out
from ..config_files import ConfigError
from .common import Group, fail, one_line

__all__ = ["config_group"]


@click.group("config", cls=Group)
def config_group() -> None:
    """Show or check the merged configuration (config.json files and the embedded `local`).

    \b
    Examples:
      xpr config show
      xpr config check -S 'archer2|local'
    """


def _origin_text(files: Sequence[Path]) -> str:
    return " + ".join(map(str, files)) if files else "embedded default"


def _fmt_seconds(s: int | None) -> str:
    if s is None:
        return "-"
    d, rem = divmod(int(s), 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return (f"{d}-" if d else "") + f"{h:02d}:{m:02d}:{sec:02d}"


def _fmt_kb(kb: int | None) -> str:
    if kb is None:
        return "-"
    for unit, size in (("TB", 1 << 30), ("GB", 1 << 20), ("MB", 1 << 10)):
        if kb >= size:
            return f"{kb / size:.1f} {unit}"
    return f"{kb} kB"


def _load_selected(systems: Sequence[str]):
    from .. import config

    loaded = config.load_config()
    names = sorted(loaded.config.systems)
    if systems:
        rxs = []
        for s in systems:
            try:
                rxs.append(re.compile(s))
            except re.error as exc:
                fail(f"invalid system regexp {s!r}: {exc}")
        names = [n for n in names if any(rx.fullmatch(n) for rx in rxs)]
        if not names:
            fail(f"no configured system matches {' or '.join(map(repr, systems))}; systems: {', '.join(sorted(loaded.config.systems))}")
    return loaded, names


@config_group.command("show")
@click.option("-S", "--system", multiple=True, metavar="REGEXP", help="only these systems (regexp, repeatable)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def config_show_cmd(system, as_json) -> None:
    """Show the merged configuration and where each system came from.

    \b
    Example:  xpr config show -S archer2
    """
    from .. import plugins
    from ..config_model import unstructure_config

    loaded, names = _load_selected(system)
    raw = unstructure_config(loaded.config)["systems"]
    if as_json:
        json_out({
            "root": str(loaded.root.absolute()),
            "sources": [str(s) for s in loaded.sources],
            "systems": {n: {"origins": [str(p) for p in loaded.origins.get(n, [])], **raw[n]} for n in names},
        })
        return
    click.echo(f"expyre root:  {loaded.root.absolute()}")
    click.echo(f"config files: {', '.join(map(str, loaded.sources)) or 'none (only the embedded local system)'}")
    for n in names:
        cfg = loaded.config.systems[n]
        click.echo("")
        click.echo(f"system {n}  (from {_origin_text(loaded.origins.get(n, []))})")
        click.echo(f"  host:       {cfg.host or 'this machine'}")
        click.echo(f"  scheduler:  {cfg.scheduler}")
        click.echo(f"  transport:  {cfg.transport_name}" + ("" if cfg.transport else " (default)"))
        if cfg.remsh_cmd:
            click.echo(f"  remsh_cmd:  {cfg.remsh_cmd}")
        click.echo(f"  rundir:     {cfg.rundir or ('the stage dirs themselves' if cfg.host is None else 'expyre_rundir (default)')}")
        if cfg.python_cmd:
            click.echo(f"  python_cmd: {cfg.python_cmd}")
        for c in cfg.commands:
            click.echo(f"  command:    {c}")
        for h in cfg.header:
            click.echo(f"  header:     {h}")
        if cfg.no_default_header:
            click.echo("  no_default_header: true")
        if cfg.scheduler_options:
            click.echo(f"  scheduler_options: {json.dumps(cfg.scheduler_options)}")
        parts = cfg.partitions
        if not parts:
            try:
                parts = plugins.default_partitions(cfg.scheduler) or {}
            except plugins.UnknownBackendError:
                parts = {}
            label = "partitions (scheduler default):"
        else:
            label = "partitions:"
        click.echo(f"  {label}")
        for pname, p in parts.items():
            click.echo(f"    {pname:<24} ncores {p.ncores:<4} max_time {_fmt_seconds(p.max_time.seconds if p.max_time else None):<12} "
                       f"max_mem {_fmt_kb(p.max_mem.kb if p.max_mem else None)}")


@config_group.command("check")
@click.option("-S", "--system", multiple=True, metavar="REGEXP", help="only these systems (regexp, repeatable)")
@click.option("--timeout", type=float, default=60, show_default=True, help="seconds allowed for each remote command")
@click.option("--offline", is_flag=True,
              help="validate config.json and the plugins' options only: run no command on any host")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def config_check_cmd(system, timeout, offline, as_json) -> None:
    """Validate the configuration and probe each system: host reachable, scheduler commands
    present, configured partitions exist. With --offline, only what needs no host: config.json,
    the scheduler and transport plugins, their options, the partitions. Exits 1 if any check fails.

    \b
    Examples:
      xpr config check -S 'archer2|local'
      xpr config check --offline
    """
    from ..check import check_system, check_system_offline

    try:
        loaded, names = _load_selected(system)
    except ConfigError as exc:
        if as_json:
            json_out({"config": {"ok": False, "error": one_line(exc)}, "systems": {}})
            sys.exit(1)
        click.echo(f"config: FAIL  {one_line(exc)}")
        sys.exit(1)
    if offline:
        report = {n: check_system_offline(n, loaded.config.systems[n], loaded.root.absolute()) for n in names}
    else:
        report = {n: check_system(n, loaded.config.systems[n], loaded.root.absolute(), timeout) for n in names}
    ok = all(c.ok for checks in report.values() for c in checks)
    if as_json:
        json_out({"config": {"ok": True, "sources": [str(s) for s in loaded.sources]},
                  "systems": {n: {"ok": all(c.ok for c in checks), "origins": [str(p) for p in loaded.origins.get(n, [])],
                                  "checks": [{"check": c.check, "ok": c.ok, "detail": c.detail} for c in checks]}
                              for n, checks in report.items()}})
    else:
        tty = isatty()
        click.echo(f"config: ok ({', '.join(map(str, loaded.sources)) or 'embedded default only'})")
        for n, checks in report.items():
            passed = all(c.ok for c in checks)
            verdict = "PASS" if passed else "FAIL"
            if tty:
                verdict = click.style(verdict, fg="green" if passed else "red", bold=True)
            click.echo(f"{n}: {verdict}  (from {_origin_text(loaded.origins.get(n, []))})")
            for c in checks:
                mark = "ok  " if c.ok else "FAIL"
                if tty:
                    mark = click.style(mark, fg="green" if c.ok else "red")
                click.echo(f"  {mark} {c.check:<10} {c.detail}")
    if not ok:
        sys.exit(1)
