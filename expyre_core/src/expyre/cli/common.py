"""What every ``xpr`` command shares: the one-line error contract, the click options built from
their one description (:mod:`expyre.cli_select`, :mod:`expyre.cli_ls`), job selection and printing
helpers."""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import click

from ..cli_output import status_style, table
from ..cli_select import FILTER_OPTIONS, Option, select
from ..config_files import ConfigError

__all__ = ["XprError", "Group", "one_line", "fail", "click_options", "filters", "select_rows", "require_filter",
           "summary", "report_errors", "error_text"]


class XprError(click.ClickException):
    """An error shown as one line ``xpr: <message>`` with exit code 1."""

    def show(self, file=None) -> None:  # noqa: D401 - click API
        click.echo(f"xpr: {self.format_message()}", err=True)


def one_line(exc: BaseException) -> str:
    """An exception as one line: builtin errors by their message, others prefixed with their type."""
    if isinstance(exc, ConfigError):
        return f"{exc.source}: " + "; ".join(f"{p}: {m}" if p else m for p, m in exc.problems)
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = "; ".join(lines) if len(lines) <= 3 else "; ".join(lines[:3]) + " ..."
    if isinstance(exc, (KeyError, ValueError, RuntimeError, OSError, LookupError)) and type(exc).__module__ == "builtins":
        return msg.strip("'\"") if isinstance(exc, KeyError) else msg
    return f"{type(exc).__name__}: {msg}"


def error_text(job_id: str, context: str, exc: BaseException | None, note: str = "") -> str:
    """``"<id>: <context>: <exception>"`` for a job's failure reported by a library function."""
    parts = [p for p in (context, one_line(exc) if exc is not None else note) if p]
    return f"{job_id}: " + ": ".join(parts)


def fail(message: str) -> None:
    raise XprError(message)


class Group(click.Group):
    """Turns any uncaught exception of a command into one line and exit code 1 (2 for config)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except ConfigError as exc:
            err = XprError(one_line(exc))
            err.exit_code = 2
            raise err from exc
        except Exception as exc:  # noqa: BLE001 - the CLI's one-line error contract
            if os.environ.get("EXPYRE_DEBUG"):
                raise
            raise XprError(one_line(exc)) from exc


def click_options(options: Sequence[Option]):
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


filters = click_options(FILTER_OPTIONS)


def select_rows(db, ids, name, status, system, order: str = "creation_time") -> list[dict[str, Any]]:
    """The jobs the filters select; a bad filter is a one-line error."""
    try:
        return select(db, ids, name, status, system, order=order)
    except ValueError as exc:
        fail(str(exc))
        raise  # unreachable


def require_filter(ids, name, status, system, what: str) -> None:
    if not (ids or name or status or system):
        fail(f"give at least one filter (-i, -n, -s or -S) to select the jobs to {what}; for every job use -s '.*'")


def summary(rows: Sequence[dict], limit: int = 20) -> None:
    shown = rows[:limit]
    table(["id", "name", "status", "system"], [[r["id"], r["name"], r["status"], r["system"] or "-"] for r in shown],
          styles=status_style)
    if len(rows) > limit:
        click.echo(f"... and {len(rows) - limit} more")


def confirm(question: str) -> bool:
    try:
        return click.confirm(question, default=False)
    except click.Abort:
        return False


def report_errors(errors: Sequence[str]) -> None:
    """Each error as ``xpr: ...`` on stderr, then exit 1 if there were any."""
    for e in errors:
        click.echo(f"xpr: {e}", err=True)
    if errors:
        sys.exit(1)
