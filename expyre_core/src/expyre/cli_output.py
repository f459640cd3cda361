"""What ``xpr`` prints, without click: tables (rich on a terminal, plain aligned columns when
piped), times and ages, JSON. rich is imported only when the output is a terminal."""

from __future__ import annotations

import sys
import time
from functools import lru_cache

TYPE_CHECKING = False  # see cli_select
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

__all__ = ["STATUS_STYLE", "isatty", "console", "table", "status_style", "when", "ago", "first_line", "json_out",
           "TIME_FORMAT", "printable"]

STATUS_STYLE = {
    "created": "cyan",
    "submitted": "yellow",
    "started": "bold yellow",
    "succeeded": "green",
    "failed": "bold red",
    "died": "red",
    "processed": "dim green",
    "cleaned": "dim",
}

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def _unsafe(c: str) -> bool:
    import unicodedata

    # control characters (C0, DEL, C1: terminal escapes start here) and invisible format
    # characters such as the bidirectional overrides, which reorder what the terminal shows
    return unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control and format characters (newlines, ``ESC`` of
    terminal escape sequences, bidirectional overrides...) shown as Python-style escapes
    (``\\n``, ``\\x1b``, ``\\u202e``); other text unchanged."""
    if text.isprintable():
        return text  # the common case, fast
    return "".join(_escape_char(c) if _unsafe(c) else c for c in text)


def isatty(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def console(stderr: bool = False):
    """A rich console (imports rich)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Callable[[int, int, str], str | None] | None = None,
          wrap: bool = False) -> None:
    """A rich table on a terminal; plain columns separated by two spaces when piped (never cut).
    Every cell is shown through :func:`printable`: a job name cannot move the cursor, clear the
    screen or fake a row."""
    rows = [[printable(str(c)) for c in r] for r in rows]
    if isatty():
        from rich.markup import escape
        from rich.table import Table

        t = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
        for h in headers:
            t.add_column(h, overflow="fold" if wrap else "ellipsis", no_wrap=not wrap)
        for i, r in enumerate(rows):
            cells = []
            for j, c in enumerate(r):
                style = styles(i, j, c) if styles else None
                cells.append(f"[{style}]{escape(c)}[/]" if style else escape(c))
            t.add_row(*cells)
        console().print(t)
        return
    widths = [len(h) for h in headers]
    for r in rows:
        for j, c in enumerate(r):
            if len(c) > widths[j]:
                widths[j] = len(c)
    last = len(headers) - 1
    out = ["  ".join(h if j == last else h.ljust(widths[j]) for j, h in enumerate(headers)).rstrip()]
    out.extend("  ".join(c if j == last else c.ljust(widths[j]) for j, c in enumerate(r)).rstrip() for r in rows)
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def status_style(i: int, j: int, cell: str, col: int = 2) -> str | None:
    """The colour of a status cell (column ``col``) in :func:`table`."""
    return STATUS_STYLE.get(cell) if j == col else None


def when(t: float | None) -> str:
    """A time as local ``YYYY-mm-dd HH:MM:SS`` ("-" for none); cached per second (tables repeat them)."""
    return _local_second(int(t)) if t else "-"


@lru_cache(maxsize=4096)
def _local_second(t: int) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(t))


def ago(t: float | None, now: float) -> str:
    if not t:
        return "-"
    s = max(0, int(now - t))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def first_line(text: str | None, n: int = 120) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= n else line[: n - 3] + "..."


def json_out(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")
    sys.stdout.flush()
