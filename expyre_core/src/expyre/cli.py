"""``xpr``: the expyre command line.

Job commands (``ls``, ``rm``, ``sync``, ``cancel``, ``hold``, ``release``) take the filters
``-i/--id``, ``-n/--name``, ``-s/--status``, ``-S/--system``: regexps matching whole values,
repeatable (any of them matches); ``-s`` also takes the groups ongoing, unprocessed, finished and
can_produce_results. Output is a table with colours on a terminal, plain aligned text when piped,
JSON with ``--json``. Errors are one line on stderr (``xpr: ...``) and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import click

from .config_files import ConfigError, find_config_files
from .cli_ls import ALL_OPTIONS as ALL_LS_OPTIONS
from .cli_ls import list_jobs, show
from .cli_output import STATUS_STYLE
from .cli_output import console as _console
from .cli_output import first_line as _first_line
from .cli_output import isatty as _isatty
from .cli_output import json_out as _json_out
from .cli_output import status_style as _status_style
from .cli_output import table as _table
from .cli_output import when as _when
from .cli_select import FILTER_OPTIONS, Option, light_db, select
from .jobsdb import STATUS_GROUPS, JobsDB
from .layout import HASHES

__all__ = ["main", "cli"]

_ONGOING_REMOTE = ("submitted", "started")


# ---------------------------------------------------------------------------------------------
# errors: one line, non-zero exit
# ---------------------------------------------------------------------------------------------


class XprError(click.ClickException):
    """An error shown as one line ``xpr: <message>`` with exit code 1."""

    def show(self, file=None) -> None:  # noqa: D401 - click API
        click.echo(f"xpr: {self.format_message()}", err=True)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return f"{exc.source}: " + "; ".join(f"{p}: {m}" if p else m for p, m in exc.problems)
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = "; ".join(lines) if len(lines) <= 3 else "; ".join(lines[:3]) + " ..."
    if isinstance(exc, (KeyError, ValueError, RuntimeError, OSError, LookupError)) and type(exc).__module__ == "builtins":
        return msg.strip("'\"") if isinstance(exc, KeyError) else msg
    return f"{type(exc).__name__}: {msg}"


def _fail(message: str) -> None:
    raise XprError(message)


class _Group(click.Group):
    """Turns any uncaught exception of a command into one line and exit code 1 (2 for config)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except ConfigError as exc:
            err = XprError(_one_line(exc))
            err.exit_code = 2
            raise err from exc
        except Exception as exc:  # noqa: BLE001 - the CLI's one-line error contract
            if os.environ.get("EXPYRE_DEBUG"):
                raise
            raise XprError(_one_line(exc)) from exc


# ---------------------------------------------------------------------------------------------
# options (described once in cli_select / cli_ls)
# ---------------------------------------------------------------------------------------------


def _click_options(options: Sequence[Option]):
    """Decorate a command with click options built from their one description (:mod:`expyre.cli_select`)."""

    def decorate(f):
        for o in reversed(options):  # click lists options in decorator order, innermost last
            names = [*o.flags, o.dest]
            if o.kind == "multi":
                f = click.option(*names, multiple=True, metavar=o.metavar, help=o.help)(f)
            elif o.kind == "flag":
                f = click.option(*names, is_flag=True, help=o.help)(f)
            elif o.kind == "choice":
                f = click.option(*names, type=click.Choice(list(o.choices)), default=o.default, show_default=True,
                                 help=o.help)(f)
            else:
                f = click.option(*names, type=click.IntRange(min=1), default=o.default, help=o.help)(f)
        return f

    return decorate


_filters = _click_options(FILTER_OPTIONS)


def _select(db, ids, name, status, system, order: str = "creation_time") -> list[dict[str, Any]]:
    try:
        return select(db, ids, name, status, system, order=order)
    except ValueError as exc:
        _fail(str(exc))
        raise  # unreachable


def _require_filter(ids, name, status, system, what: str) -> None:
    if not (ids or name or status or system):
        _fail(f"give at least one filter (-i, -n, -s or -S) to select the jobs to {what}; for every job use -s '.*'")


def _summary(rows: Sequence[dict], limit: int = 20) -> None:
    shown = rows[:limit]
    _table(["id", "name", "status", "system"], [[r["id"], r["name"], r["status"], r["system"] or "-"] for r in shown],
           styles=_status_style)
    if len(rows) > limit:
        click.echo(f"... and {len(rows) - limit} more")


# ---------------------------------------------------------------------------------------------
# the command group
# ---------------------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    """


# ---------------------------------------------------------------------------------------------
# ls
# ---------------------------------------------------------------------------------------------

@cli.command("ls")
@_click_options(ALL_LS_OPTIONS)
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
        _fail(str(exc))
    show(rows, long_, as_json)


# ---------------------------------------------------------------------------------------------
# rm
# ---------------------------------------------------------------------------------------------


def _inside_root(path: Path) -> bool:
    """Only ``<root>/run_*`` directories (not through a symlink) are expyre's to delete."""
    from . import config

    root = Path(config.root).resolve()
    try:
        if path.is_symlink():
            return False
        p = path.resolve()
    except OSError:
        return False
    return p.parent == root and p.name.startswith("run_") and p.name == path.name


def _cancel_rows(rows: Sequence[dict], errors: list[str]) -> list[str]:
    """Cancel the queued/running ``rows``, batched per system; returns the ids cancelled."""
    from . import config

    db = config.db
    done = []
    for r in rows:
        if r["status"] == "created":
            db.update(r["id"], status="died", reason="cancelled before submission (xpr)")
            done.append(r["id"])
    by_system: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] in _ONGOING_REMOTE and r["remote_id"]:
            by_system[r["system"]].append(r)
    for sysname, group in by_system.items():
        try:
            system = config.get_system(sysname)
            system.control("cancel", [r["remote_id"] for r in group])
        except Exception as exc:  # noqa: BLE001 - report and go on with other systems
            errors.extend(f"{r['id']}: cancel on {sysname} failed: {_one_line(exc)}" for r in group)
            continue
        for r in group:
            db.update(r["id"], reason="cancel requested by user (xpr)")
            done.append(r["id"])
    return done


@cli.command("rm")
@_filters
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
    from . import config

    _require_filter(ids, name, status, system, "delete")
    rows = _select(config.db, ids, name, status, system)
    if not rows:
        _fail("no jobs match the filters; nothing deleted")
    what = "delete" + (", cancelling the ongoing ones," if cancel else "") + (" with their stage directories" if clean else "")
    click.echo(f"{len(rows)} job(s) to {what}:")
    _summary(rows)
    if dry_run:
        click.echo("dry run: nothing done")
        return
    if not yes:
        try:
            ok = click.confirm(f"{what} {len(rows)} job(s)?", default=False)
        except click.Abort:
            ok = False
        if not ok:
            _fail("nothing deleted (confirm, or pass -y)")
    errors: list[str] = []
    cancelled: set[str] = set()
    if cancel:
        cancelled = set(_cancel_rows([r for r in rows if r["status"] in STATUS_GROUPS["ongoing"]], errors))
    from .func import ExPyRe

    deleted = left_running = 0
    for r in rows:
        still_running = r["status"] in _ONGOING_REMOTE and r["id"] not in cancelled
        if clean:
            if still_running:
                errors.append(f"{r['id']}: still {r['status']}: not deleted (use --cancel to cancel it first)")
                continue
            stage = Path(r["from_dir"])
            if not _inside_root(stage):
                errors.append(f"{r['id']}: not deleted: its stage dir {stage} is not a run_* directory of the expyre root {config.root}")
                continue
            try:
                xpr = ExPyRe.from_jobsdb(r)[0]
                if r["system"] and r["system"] not in config.systems:
                    errors.append(f"{r['id']}: system {r['system']!r} is no longer configured: only the local stage dir is deleted")
                    xpr.system_name = None
                xpr.clean(wipe=True)
            except Exception as exc:  # noqa: BLE001 - report and go on with the others
                errors.append(f"{r['id']}: cleaning failed, not deleted: {_one_line(exc)}")
                continue
        elif still_running:
            left_running += 1
        config.db.remove(r["id"])
        deleted += 1
    click.echo(f"deleted {deleted} job(s)" + (f"; {len(cancelled)} cancelled" if cancel else ""))
    if left_running:
        click.echo(f"note: {left_running} job(s) still queued or running were only removed from the database "
                   f"(use --cancel to stop them)", err=True)
    _report_errors(errors)


def _report_errors(errors: Sequence[str]) -> None:
    for e in errors:
        click.echo(f"xpr: {e}", err=True)
    if errors:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# db_unlock
# ---------------------------------------------------------------------------------------------


@cli.command("db_unlock")
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
    if not path.exists():
        _fail(f"no jobs database at {path}")
    db = JobsDB.__new__(JobsDB)  # do not run the schema script: it could wait on the lock
    import threading

    db.path = path
    db._local = threading.local()
    report = db.unlock(force=force)
    click.echo(report)
    if ": locked (" in report:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# sync
# ---------------------------------------------------------------------------------------------


def _progress(total: int, what: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .progress import progress_enabled

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=_console(stderr=True), transient=True, disable=not progress_enabled())


@cli.command("sync")
@_filters
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
    from . import config
    from .func import ExPyRe
    from .poller import Poller, evaluate

    db = config.db
    rows = _select(db, ids, name, status or ("ongoing",), system)
    todo = [r for r in rows if r["status"] in _ONGOING_REMOTE]
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    for r in rows:
        if r["status"] not in _ONGOING_REMOTE:
            results.append({"id": r["id"], "name": r["name"], "before": r["status"], "status": r["status"],
                            "remote_status": r["remote_status"], "note": "not submitted" if r["status"] == "created" else "already final"})
    by_system: dict[str, list[dict]] = defaultdict(list)
    for r in todo:
        by_system[r["system"]].append(r)
    with _progress(len(todo), "sync") as progress:
        task = progress.add_task("syncing", total=len(todo) + len(by_system))
        for sysname, group in by_system.items():
            progress.update(task, description=f"polling {sysname}")
            try:
                sysobj = config.get_system(sysname)
                poller = Poller.get(sysobj, db)
                poller.resume_suspects(group)
                poller.refresh(0, tolerate_failure=False)
                if _new_suspects(poller, group) and sysobj.scheduler.vanish_grace <= 1 and sysobj.scheduler.min_poll_interval <= 1:
                    # a scheduler whose view is definitive (e.g. local): confirm with a second poll now
                    time.sleep(max(sysobj.scheduler.vanish_grace, sysobj.scheduler.min_poll_interval, 0.05))
                    poller.refresh(0, tolerate_failure=False)
            except Exception as exc:  # noqa: BLE001 - report and go on with other systems
                for r in group:
                    errors.append(f"{r['id']}: polling {sysname} failed: {_one_line(exc)}")
                    results.append({"id": r["id"], "name": r["name"], "before": r["status"], "status": r["status"],
                                    "remote_status": r["remote_status"], "note": "poll failed"})
                progress.advance(task, len(group) + 1)
                continue
            progress.advance(task)
            progress.update(task, description=f"evaluating {sysname}")
            for r in group:
                note = ""
                try:
                    xpr = ExPyRe.from_jobsdb(r)[0]
                    outcome = evaluate(xpr, poller)
                    if outcome in ("succeeded", "failed"):
                        db.update(r["id"], status=outcome)
                        note = "results here"
                    elif outcome == "died":
                        note = _first_line(xpr.reason, 100)
                    elif r["remote_id"] in poller.suspects:
                        grace = sysobj.scheduler.vanish_grace
                        note = f"gone from the queue without a result; confirming (grace {grace:g} s): sync again"
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{r['id']}: {_one_line(exc)}")
                    note = "error"
                new = db.get(r["id"]) or r
                results.append({"id": r["id"], "name": r["name"], "before": r["status"], "status": new["status"],
                                "remote_status": new["remote_status"], "note": note})
                progress.advance(task)
    if as_json:
        _json_out(results)
    elif not results:
        click.echo("no jobs match", err=True)
    else:
        _table(["id", "name", "was", "status", "remote status", "note"],
               [[x["id"], x["name"], x["before"], x["status"], x["remote_status"] or "-", x["note"]] for x in results],
               styles=lambda i, j, c: STATUS_STYLE.get(c) if j in (2, 3) else None)
        changed = sum(1 for x in results if x["status"] != x["before"])
        click.echo(f"{len(todo)} job(s) polled, {changed} changed status", err=True)
    _report_errors(errors)


def _new_suspects(poller, rows: Sequence[dict]) -> bool:
    return any(r["remote_id"] in poller.suspects and poller.suspects[r["remote_id"]][0] >= poller.count for r in rows)


# ---------------------------------------------------------------------------------------------
# cancel / hold / release
# ---------------------------------------------------------------------------------------------


def _control_cmd(op: str, ids, name, status, system, yes: bool, as_json: bool) -> None:
    _require_filter(ids, name, status, system, op)
    from . import config

    rows = _select(config.db, ids, name, status, system)
    if not rows:
        _fail("no jobs match the filters")
    targets = [r for r in rows if r["status"] in STATUS_GROUPS["ongoing"]]
    skipped = [r for r in rows if r["status"] not in STATUS_GROUPS["ongoing"]]
    if not targets:
        _fail(f"none of the {len(rows)} matching job(s) is queued or running (statuses: "
              f"{', '.join(sorted({r['status'] for r in rows}))}); nothing to {op}")
    if op == "cancel" and not yes:
        click.echo(f"{len(targets)} job(s) to cancel:")
        _summary(targets)
        try:
            ok = click.confirm(f"cancel {len(targets)} job(s)?", default=False)
        except click.Abort:
            ok = False
        if not ok:
            _fail("nothing cancelled (confirm, or pass -y)")
    errors: list[str] = []
    results: list[dict[str, Any]] = []
    if op == "cancel":
        done = set(_cancel_rows(targets, errors))
    else:
        done = set()
        for r in targets:
            if r["status"] == "created":
                errors.append(f"{r['id']}: not submitted yet: cannot {op} it")
        by_system: dict[str, list[dict]] = defaultdict(list)
        for r in targets:
            if r["status"] in _ONGOING_REMOTE and r["remote_id"]:
                by_system[r["system"]].append(r)
        for sysname, group in by_system.items():
            try:
                config.get_system(sysname).control(op, [r["remote_id"] for r in group])  # type: ignore[arg-type]
                done.update(r["id"] for r in group)
            except Exception as exc:  # noqa: BLE001
                errors.extend(f"{r['id']}: {op} on {sysname} failed: {_one_line(exc)}" for r in group)
    for r in targets:
        results.append({"id": r["id"], "name": r["name"], "system": r["system"], "remote_id": r["remote_id"],
                        "status": r["status"], "done": r["id"] in done})
    for r in skipped:
        results.append({"id": r["id"], "name": r["name"], "system": r["system"], "remote_id": r["remote_id"],
                        "status": r["status"], "done": False, "note": f"already {r['status']}"})
    if as_json:
        _json_out(results)
    else:
        past = {"cancel": "cancel requested", "hold": "held", "release": "released"}[op]
        _table(["id", "name", "status", "system", "remote id", op],
               [[x["id"], x["name"], x["status"], x["system"] or "-", x["remote_id"] or "-",
                 past if x["done"] else x.get("note", "FAILED")] for x in results], styles=_status_style)
    _report_errors(errors)


def _control_command(op: str, example: str):
    doc = {
        "cancel": "Cancel queued or running jobs in their schedulers (one command per system).\n\n"
                  "A job not yet submitted is marked died. Asks for confirmation unless -y.",
        "hold": "Hold queued jobs in their schedulers so that they do not start (one command per system).",
        "release": "Release held jobs (one command per system).",
    }[op]

    @_filters
    @click.option("-y", "--yes", is_flag=True, help="do not ask for confirmation (cancel only)")
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
    def command(ids, name, status, system, yes, as_json) -> None:
        _control_cmd(op, ids, name, status, system, yes, as_json)

    command.__doc__ = f"{doc}\n\n\\b\nExample:  {example}"
    return cli.command(op)(command)


cancel_cmd = _control_command("cancel", "xpr cancel -n 'relax_.*' -S archer2 -y")
hold_cmd = _control_command("hold", "xpr hold -s submitted -n 'big_.*'")
release_cmd = _control_command("release", "xpr release -n 'big_.*'")


# ---------------------------------------------------------------------------------------------
# plugins
# ---------------------------------------------------------------------------------------------


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins_cmd(as_json) -> None:
    """List scheduler and transport plugins with their distribution and version, and any that
    failed to load (with the reason).

    \b
    Examples:
      xpr plugins
      EXPYRE_DISABLE_PLUGINS=pbs xpr plugins --json
    """
    from . import plugins

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
        "failed": plugins.failed_plugins(),
    }
    if as_json:
        _json_out(data)
        return
    rows = []
    for p in data["plugins"]:
        dist = f"{p['distribution']} {p['version']}" if p["distribution"] else "built in (expyre-core)"
        provides = ", ".join([f"scheduler {s}" for s in p["schedulers"]] + [f"transport {t}" for t in p["transports"]])
        rows.append([p["name"], dist, p["status"], provides or "-"])

    def style(i, j, c):
        if j == 2:
            return "green" if c == "loaded" else ("dim" if c == "disabled" else "bold red")
        return None

    _table(["plugin", "distribution", "status", "provides"], rows, styles=style, wrap=True)
    click.echo(f"schedulers: {', '.join(data['schedulers'])}")
    click.echo(f"transports: {', '.join(data['transports'])}")
    for n, reason in data["failed"].items():
        click.echo(f"xpr: plugin {n!r} failed to load: {reason} (disable it with EXPYRE_DISABLE_PLUGINS={n})", err=True)


# ---------------------------------------------------------------------------------------------
# config show / check
# ---------------------------------------------------------------------------------------------


@cli.group("config", cls=_Group)
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
    from . import config

    loaded = config.load_config()
    names = sorted(loaded.config.systems)
    if systems:
        rxs = []
        for s in systems:
            try:
                rxs.append(re.compile(s))
            except re.error as exc:
                _fail(f"invalid system regexp {s!r}: {exc}")
        names = [n for n in names if any(rx.fullmatch(n) for rx in rxs)]
        if not names:
            _fail(f"no configured system matches {' or '.join(map(repr, systems))}; systems: {', '.join(sorted(loaded.config.systems))}")
    return loaded, names


@config_group.command("show")
@click.option("-S", "--system", multiple=True, metavar="REGEXP", help="only these systems (regexp, repeatable)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def config_show_cmd(system, as_json) -> None:
    """Show the merged configuration and where each system came from.

    \b
    Example:  xpr config show -S archer2
    """
    from . import plugins
    from .config_model import unstructure_config

    loaded, names = _load_selected(system)
    raw = unstructure_config(loaded.config)["systems"]
    if as_json:
        _json_out({
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
                default = getattr(plugins.get_scheduler_spec(cfg.scheduler).backend, "default_partitions", None)
                parts = default() if default else {}
            except plugins.UnknownBackendError:
                parts = {}
            label = "partitions (scheduler default):"
        else:
            label = "partitions:"
        click.echo(f"  {label}")
        for pname, p in parts.items():
            click.echo(f"    {pname:<24} ncores {p.ncores:<4} max_time {_fmt_seconds(p.max_time.seconds if p.max_time else None):<12} "
                       f"max_mem {_fmt_kb(p.max_mem.kb if p.max_mem else None)}")


_PARTITION_LISTERS: dict[str, tuple[str, Callable[[str], set[str]]]] = {}


def _parse_sinfo(out: str) -> set[str]:
    return {ln.strip().rstrip("*") for ln in out.splitlines() if ln.strip()}


def _parse_lines(out: str) -> set[str]:
    return {ln.strip() for ln in out.splitlines() if ln.strip()}


def _parse_qstat_q(out: str) -> set[str]:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    dash = next((i for i, ln in enumerate(lines) if set(ln.replace(" ", "")) <= {"-"}), None)
    body = lines[dash + 1:] if dash is not None else [ln for ln in lines if not ln.split()[0].lower() in ("queue", "server:")]
    return {ln.split()[0] for ln in body}


_PARTITION_LISTERS = {
    "slurm": ("sinfo -h -o %P", _parse_sinfo),
    "sge": ("qconf -sql", _parse_lines),
    "pbs": ("qstat -Q", _parse_qstat_q),
}


def _check_system(name: str, cfg, root: Path, timeout: float) -> list[tuple[str, bool, str]]:
    """[(check, passed, detail)] for one system; stops at the first failure that makes the rest moot."""
    from .system import System

    checks: list[tuple[str, bool, str]] = []
    system = System(name, cfg, root)
    where = cfg.host or "this machine"
    try:
        trans = system.transport
        result = trans.run(["true"], timeout=timeout)
        if not result.ok:
            checks.append(("host", False, f"`true` on {where} failed: {result.describe()}"))
            return checks
        checks.append(("host", True, f"{where} reachable" + (f" ({cfg.transport_name})" if cfg.host else "")))
        if cfg.scheduler == "local" and trans.is_local:
            checks.append(("scheduler", True, "built-in local queue"))
            parts = ", ".join(system.partitions)
            checks.append(("partitions", True, parts or "none"))
            return checks
        try:
            status_cmd = system.scheduler.status_command(["0"])
            first = status_cmd[0]
        except Exception:  # noqa: BLE001 - a backend that must be set up first
            first = {"slurm": "squeue", "sge": "qstat", "pbs": "qstat"}.get(cfg.scheduler, "")
        if cfg.scheduler == "local":
            first = shlex.split(system.scheduler._options.python)[0]  # type: ignore[attr-defined]
        if first:
            result = trans.run(f"command -v {shlex.quote(first)}", timeout=timeout)
            if not result.ok or not result.stdout.strip():
                checks.append(("scheduler", False, f"{cfg.scheduler}: `{first}` not found on {where}"))
                return checks
            checks.append(("scheduler", True, f"{cfg.scheduler}: {result.stdout.strip().splitlines()[0]}"))
        else:
            checks.append(("scheduler", True, f"{cfg.scheduler}: no status command to look for"))
        configured = [p.strip() for key in system.partitions for p in key.split(",") if p.strip()]
        lister = _PARTITION_LISTERS.get(cfg.scheduler)
        if cfg.scheduler == "local":
            checks.append(("partitions", True, ", ".join(configured)))
        elif lister is None:
            checks.append(("partitions", True, f"not checked (no partition listing known for {cfg.scheduler!r})"))
        else:
            cmd, parse = lister
            argv = shlex.split(cmd)
            if "/" in first:  # a bin_dir: use the scheduler's own install
                argv[0] = str(Path(first).parent / argv[0])
            result = trans.run(argv, timeout=timeout)
            if not result.ok:
                checks.append(("partitions", False, f"listing partitions failed: {result.describe()}"))
                return checks
            existing = parse(result.stdout)
            missing = [p for p in configured if p not in existing]
            if missing:
                checks.append(("partitions", False, f"not on {where}: {', '.join(missing)} (there: {', '.join(sorted(existing)) or 'none'})"))
            else:
                checks.append(("partitions", True, ", ".join(configured)))
    except Exception as exc:  # noqa: BLE001 - any failure is this system's failure
        checks.append(("host" if not checks else "scheduler" if len(checks) == 1 else "partitions", False, _one_line(exc)))
    finally:
        system.close()
    return checks


@config_group.command("check")
@click.option("-S", "--system", multiple=True, metavar="REGEXP", help="only these systems (regexp, repeatable)")
@click.option("--timeout", type=float, default=60, show_default=True, help="seconds allowed for each remote command")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def config_check_cmd(system, timeout, as_json) -> None:
    """Validate the configuration and probe each system: host reachable, scheduler commands
    present, configured partitions exist. Exits 1 if any check fails.

    \b
    Example:  xpr config check -S 'archer2|local'
    """
    try:
        loaded, names = _load_selected(system)
    except ConfigError as exc:
        if as_json:
            _json_out({"config": {"ok": False, "error": _one_line(exc)}, "systems": {}})
            sys.exit(1)
        click.echo(f"config: FAIL  {_one_line(exc)}")
        sys.exit(1)
    report: dict[str, list[tuple[str, bool, str]]] = {}
    for n in names:
        report[n] = _check_system(n, loaded.config.systems[n], loaded.root.absolute(), timeout)
    ok = all(passed for checks in report.values() for _, passed, _ in checks)
    if as_json:
        _json_out({"config": {"ok": True, "sources": [str(s) for s in loaded.sources]},
                   "systems": {n: {"ok": all(p for _, p, _ in c), "origins": [str(p) for p in loaded.origins.get(n, [])],
                                   "checks": [{"check": k, "ok": p, "detail": d} for k, p, d in c]}
                               for n, c in report.items()}})
    else:
        tty = _isatty()
        click.echo(f"config: ok ({', '.join(map(str, loaded.sources)) or 'embedded default only'})")
        for n, checks in report.items():
            passed = all(p for _, p, _ in checks)
            verdict = "PASS" if passed else "FAIL"
            if tty:
                verdict = click.style(verdict, fg="green" if passed else "red", bold=True)
            click.echo(f"{n}: {verdict}  (from {_origin_text(loaded.origins.get(n, []))})")
            for k, p, d in checks:
                mark = "ok  " if p else "FAIL"
                if tty:
                    mark = click.style(mark, fg="green" if p else "red")
                click.echo(f"  {mark} {k:<10} {d}")
    if not ok:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# why
# ---------------------------------------------------------------------------------------------


def _read_hashes(row: dict) -> dict | None:
    try:
        return json.loads((Path(row["from_dir"]) / HASHES).read_text())
    except (OSError, ValueError):
        return None


def _diff_hashes(new: dict, old: dict) -> list[str]:
    """What differs between two jobs' per-component digests, in words."""
    out = []
    if new.get("function") != old.get("function"):
        fn_new, fn_old = new.get("function_name"), old.get("function_name")
        out.append(f"function {fn_old} -> {fn_new}" if fn_new != fn_old else f"function code of {fn_new}")
    for kind, label in (("args", "argument"), ("kwargs", "keyword argument")):
        a, b = new.get(kind, {}), old.get(kind, {})
        for k in sorted(set(a) | set(b), key=lambda x: (len(x), x)):
            if k not in b:
                out.append(f"{label} {k} added")
            elif k not in a:
                out.append(f"{label} {k} removed")
            elif a[k] != b[k]:
                out.append(f"{label} {k}")
    fa, fb = new.get("files", {}), old.get("files", {})
    for k in sorted(set(fa) | set(fb)):
        if k not in fb:
            out.append(f"input file {k} added")
        elif k not in fa:
            out.append(f"input file {k} removed")
        elif fa[k] != fb[k]:
            out.append(f"input file {k} contents")
    if not out and new.get("hash") != old.get("hash"):
        out.append("something outside the recorded components (e.g. hash_ignore or expyre version)")
    return out


def why_report(rows: Sequence[dict]) -> dict[str, Any]:
    """For jobs of one name (any order): which one an identical new call would reuse, why each
    other is not reused, and what changed between calls with different hashes."""
    reusable_status = STATUS_GROUPS["can_produce_results"]
    rows = sorted(rows, key=lambda r: r["creation_time"], reverse=True)  # newest first
    reused_by_hash: dict[str, str] = {}
    for r in rows:
        if r["hash"] and r["status"] in reusable_status and r["hash"] not in reused_by_hash:
            reused_by_hash[r["hash"]] = r["id"]
    newest = rows[0] if rows else None
    newest_digests = _read_hashes(newest) if newest else None
    jobs = []
    for r in rows:
        if r["status"] in reusable_status:
            if reused_by_hash.get(r["hash"]) == r["id"]:
                why = f"an identical call reuses it (status {r['status']})"
                reusable = True
            else:
                why = f"an identical call reuses the newer job {reused_by_hash.get(r['hash'])} instead"
                reusable = False
        else:
            reusable = False
            why = {
                "processed": "its results were used (mark_processed): an identical call makes a new job",
                "cleaned": "its files were cleaned: an identical call makes a new job",
                "failed": "it failed: an identical call makes a new job",
                "died": "it died: an identical call makes a new job",
            }.get(r["status"], f"status {r['status']} cannot give results: an identical call makes a new job")
        entry: dict[str, Any] = {"id": r["id"], "status": r["status"], "hash": r["hash"], "created": r["creation_time"],
                                 "reusable": reusable, "why": why}
        if newest is not None and r is not newest and r["hash"] != newest["hash"]:
            digests = _read_hashes(r)
            if newest_digests and digests:
                entry["changed_since"] = _diff_hashes(newest_digests, digests)
            else:
                entry["changed_since"] = None  # no per-component digests recorded
        jobs.append(entry)
    verdict = None
    if newest is not None:
        target = reused_by_hash.get(newest["hash"])
        verdict = (f"a new call identical to the newest job ({newest['id']}) would reuse {target}"
                   if target else f"a new call identical to the newest job ({newest['id']}) would make a new job")
    return {"jobs": jobs, "verdict": verdict}


@cli.command("why")
@click.argument("name")
@click.option("-r", "--regexp", is_flag=True, help="NAME is a regexp (default: the exact job name)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def why_cmd(name, regexp, as_json) -> None:
    """Explain job reuse for a job NAME: the recorded jobs of that name, their hashes, which one an
    identical new call would reuse and why the others would not; and, where the jobs recorded
    per-component digests, what changed between calls (function code, an argument, an input file).

    A call is reused only if its name and hash (function identity and code, arguments except
    hash_ignore, input file names and contents) match a job that can still give results
    (created, submitted, started, succeeded).

    \b
    Example:  xpr why relax_structure
    """
    db = light_db()
    rows = []
    if db is not None:
        try:
            rows = db.jobs(name=name if regexp else re.escape(name))
        except ValueError as exc:
            _fail(str(exc))
    if not rows:
        _fail(f"no recorded job is named {name!r}" + ("" if regexp else " (use -r for a regexp)"))
    by_name: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_name[r["name"]].append(r)
    reports = {n: why_report(rs) for n, rs in sorted(by_name.items())}
    if as_json:
        _json_out(reports)
        return
    for n, rep in reports.items():
        click.echo(f"job name {n!r}: {len(rep['jobs'])} recorded job(s), newest first")
        _table(["id", "status", "created", "hash", "reusable", "why"],
               [[j["id"], j["status"], _when(j["created"]), (j["hash"] or "-")[:12], "yes" if j["reusable"] else "no", j["why"]]
                for j in rep["jobs"]], styles=lambda i, j, c: STATUS_STYLE.get(c) if j == 1 else None, wrap=True)
        newest = rep["jobs"][0]
        for j in rep["jobs"][1:]:
            if "changed_since" not in j:
                continue
            if j["changed_since"] is None:
                click.echo(f"  {newest['id']} vs {j['id']}: different hash; no per-component digests recorded to say what changed")
            else:
                click.echo(f"  {newest['id']} vs {j['id']}: changed: {'; '.join(j['changed_since'])}")
        click.echo(rep["verdict"])


# ---------------------------------------------------------------------------------------------


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
        click.echo(f"xpr: {_one_line(exc)}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
