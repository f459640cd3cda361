"""The one progress display of expyre (the Python API's waits and ``xpr``'s batch commands alike).

Where it goes depends on where expyre runs (:func:`display_mode`):

* ``"notebook"``: inside a Jupyter kernel (ipykernel), one HTML output in the cell, updated in
  place through IPython's display handles (no ipywidgets needed); it stays, with the final state,
  when the wait ends.
* ``"terminal"``: stderr is a terminal: a transient rich bar (or spinner) on stderr, erased when
  the wait ends, before the waiting call returns or raises.
* ``"log"``: anything else (stderr on a pipe or a file: a batch job, ``nohup``, CI, a service):
  one INFO line on the logger ``expyre.progress`` (:data:`LOGGER_NAME`) per
  ``EXPYRE_PROGRESS_INTERVAL`` seconds (default 30) of waiting. When the program has configured no
  logging at all (no handler anywhere), the line is written to stderr anyway, formatted
  ``<time> expyre.progress INFO <message>``; once logging is configured its levels and handlers
  decide.

``EXPYRE_PROGRESS=0`` turns every display off (and nothing of rich or IPython is imported then).
A wait of unknown length (``total=None``) is a spinner with the elapsed time that appears only once
the wait gets long (:data:`SHOW_AFTER`); a counted batch is a bar with ``done/total``.
"""

from __future__ import annotations

import html
import logging
import os
import sys
import threading
import time

TYPE_CHECKING = False  # no runtime import of typing: keep this leaf light
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Progress", "Waiting", "Display", "progress_enabled", "display_mode", "interval", "SHOW_AFTER",
           "LOGGER_NAME", "DEFAULT_INTERVAL", "format_duration"]

#: seconds before the spinner of a wait appears
SHOW_AFTER = 2.0
#: the logger of the progress lines written when there is no terminal and no notebook
LOGGER_NAME = "expyre.progress"
#: seconds between two progress lines of one wait (``EXPYRE_PROGRESS_INTERVAL`` changes it)
DEFAULT_INTERVAL = 30.0

logger = logging.getLogger(LOGGER_NAME)


def interval() -> float:
    """Seconds between two log lines: ``EXPYRE_PROGRESS_INTERVAL`` (a number > 0), default 30.

    :raises ValueError: the variable is set to something else (the message names it).
    """
    raw = os.environ.get("EXPYRE_PROGRESS_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"EXPYRE_PROGRESS_INTERVAL={raw!r}: must be a number of seconds > 0 (e.g. 30 or 0.5)")
    return value


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")  # never imported here: only a kernel that runs us has it
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:  # noqa: BLE001 - an odd IPython: no notebook display
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def _isatty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def display_mode(requested: bool = True) -> str | None:
    """``"notebook"``, ``"terminal"`` or ``"log"`` (see the module's doc); None when not
    ``requested`` or ``EXPYRE_PROGRESS=0``."""
    if not requested or os.environ.get("EXPYRE_PROGRESS", "1") == "0":
        return None
    if _in_notebook():
        return "notebook"
    if _isatty():
        return "terminal"
    return "log"


def progress_enabled(requested: bool = True) -> bool:
    """True when a live display (terminal or notebook) should appear: asked for, stderr is a
    terminal or this runs in a Jupyter kernel, and ``EXPYRE_PROGRESS`` is not ``0``."""
    return display_mode(requested) in ("terminal", "notebook")


def format_duration(seconds: float) -> str:
    """``"45s"``, ``"3m05s"``, ``"2h03m"``."""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _log_line(message: str) -> None:
    if logger.hasHandlers():
        logger.info(message)
        return
    # logging not configured at all: the line would be lost (the last-resort handler shows only
    # warnings), which leaves a batch run silent; write it to stderr as a handler would
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    handler.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, message, (), None))


class _Html:
    """What the notebook display shows: an HTML ``<progress>`` with the text, and the text alone
    as ``text/plain``."""

    def __init__(self, text: str, completed: int, total: int | None, elapsed: float, final: bool) -> None:
        self.text, self.completed, self.total, self.elapsed, self.final = text, completed, total, elapsed, final

    def plain(self) -> str:
        count = f" {self.completed}/{self.total}" if self.total is not None else ""
        return f"{self.text}{count} [{format_duration(self.elapsed)}]"

    def __repr__(self) -> str:
        return self.plain()

    def _repr_html_(self) -> str:
        bar = ""
        if self.total is not None:
            bar = f'<progress value="{self.completed}" max="{max(self.total, 1)}" style="width:16em"></progress> '
        return (f'<div class="expyre-progress" style="font-family:monospace">{bar}'
                f"{html.escape(self.plain())}</div>")


class Display:
    """One live status, shown according to ``mode`` (:func:`display_mode`); thread-safe.

    :param description: the text shown first.
    :param total: the number of steps for a bar; None for a spinner.
    :param mode: ``"terminal"``, ``"notebook"``, ``"log"`` or None (nothing).
    :param every: seconds between log lines (default :func:`interval`).
    :param auto_refresh: a terminal's display is also redrawn by rich's own thread (the spinner
        and the elapsed time move between updates); only for a display ended by the thread that
        waits, never by another one (see :class:`expyre.executor.Executor`).
    """

    def __init__(self, description: str, total: int | None = None, mode: str | None = "log",
                 every: float | None = None, auto_refresh: bool = False) -> None:
        self.mode = mode
        self.auto_refresh = auto_refresh
        self.total = total
        self.text = description
        self.completed = 0
        self.start = time.monotonic()
        self.every = interval() if every is None and mode == "log" else (every or DEFAULT_INTERVAL)
        self.lines = 0
        self._last_log = self.start
        self._lock = threading.Lock()
        self._rich: Any = None
        self._task: Any = None
        self._handle: Any = None
        self._last_html = 0.0
        self.closed = False

    def update(self, text: str | None = None, completed: int | None = None, total: int | None = None) -> None:
        with self._lock:
            if self.closed:
                return
            if text is not None:
                self.text = text
            if completed is not None:
                self.completed = completed
            if total is not None:
                self.total = total
            self._render(final=False)

    def _render(self, final: bool) -> None:
        now = time.monotonic()
        if self.mode == "terminal":
            if self._rich is None and not final:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
                from rich.progress import Progress as RichProgress

                if self.total is None:
                    columns: tuple[Any, ...] = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
                else:
                    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
                # by default no refresh thread of rich's own: every frame is drawn here, and the
                # last is erased in close()
                self._rich = RichProgress(*columns, console=Console(stderr=True), transient=True,
                                          auto_refresh=self.auto_refresh, refresh_per_second=4)
                self._rich.start()
                self._task = self._rich.add_task(self.text, total=self.total, completed=self.completed)
            if self._rich is not None:
                self._rich.update(self._task, description=self.text, completed=self.completed, total=self.total)
                if not self.auto_refresh:
                    self._rich.refresh()
        elif self.mode == "notebook":
            if not final and now - self._last_html < 0.5 and self._handle is not None:
                return
            self._last_html = now
            obj = _Html(self.text, self.completed, self.total, now - self.start, final)
            try:
                if self._handle is None:
                    from IPython.display import display

                    self._handle = display(obj, display_id=True)  # type: ignore[no-untyped-call]
                else:
                    self._handle.update(obj)
            except Exception as exc:  # noqa: BLE001 - a display that fails must not fail the wait
                logger.debug("notebook progress display failed: %s", exc)
                self.mode = "log"
        elif self.mode == "log":
            if final or now - self._last_log >= self.every:
                if final and self.lines == 0:
                    return  # a short wait: no line at all
                self._last_log = now
                self.lines += 1
                count = f" {self.completed}/{self.total}" if self.total is not None else ""
                _log_line(f"{self.text}{count} [{format_duration(now - self.start)}]"
                          + (" (finished waiting)" if final else ""))

    def close(self) -> None:
        """End the display: the terminal's bar is erased, the notebook's shows its last state, the
        log gets a last line if it had any."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            if self.mode == "terminal":
                if self._rich is not None:
                    self._rich.stop()
                    self._rich = None
            elif self.mode == "notebook":
                if self._handle is not None:
                    self._render(final=True)
            else:
                self._render(final=True)


class Progress:
    """A progress display (see the module's doc for where it appears)::

        with Progress("syncing", total=12) as p:   # a bar: "polling archer2 ━━━━━  3/12 0:00:04"
            p.update("polling archer2")
            p.advance()

        with Progress("job x", show_after=SHOW_AFTER) as w:   # a spinner: "job x: queued 0:00:07"
            w.update("queued")

    :param description: the text shown first (``update`` replaces or extends it).
    :param total: the number of steps for a bar; None for a spinner.
    :param enabled: False never shows anything (``EXPYRE_PROGRESS=0`` neither).
    :param show_after: seconds before a terminal or notebook display appears (checked on each
        ``update``/``advance``); log lines come every ``EXPYRE_PROGRESS_INTERVAL`` seconds.
    """

    def __init__(self, description: str, total: int | None = None, enabled: bool = True,
                 show_after: float = 0.0) -> None:
        self.description = description
        self.total = total
        self.mode = display_mode(enabled)
        #: a display of some kind is active (the caller may spend a little to feed it)
        self.enabled = self.mode is not None
        self.show_after = show_after
        self.start = time.monotonic()
        self.completed = 0
        self._text = description
        self._display: Display | None = None

    @property
    def _progress(self) -> Any:
        """The rich progress of a terminal display (None when not drawn)."""
        return self._display._rich if self._display is not None else None

    def __enter__(self) -> "Progress":
        self._show()
        return self

    def _show(self) -> bool:
        if self.mode is None:
            return False
        if self._display is None:
            if self.mode != "log" and time.monotonic() - self.start < self.show_after:
                return False
            # ended by __exit__ in the waiting thread itself: rich may refresh it on its own
            self._display = Display(self._text, self.total, self.mode, auto_refresh=True)
            self._display.start = self.start
            self._display._last_log = self.start
        return True

    def update(self, status: str) -> None:
        """A spinner shows ``"<description>: <status>"``; a bar shows ``status`` alone."""
        self._text = f"{self.description}: {status}" if self.total is None else status
        if self._show():
            assert self._display is not None
            self._display.update(self._text, self.completed)

    def advance(self, steps: int = 1) -> None:
        self.completed += steps
        if self._show():
            assert self._display is not None
            self._display.update(self._text, self.completed)

    def __exit__(self, *exc: object) -> None:
        if self._display is not None:
            self._display.close()
            self._display = None


class Waiting(Progress):
    """``with Waiting("job x") as w: ... w.update("queued")``: a spinner with the elapsed time after
    :data:`SHOW_AFTER` seconds of waiting (a log line per interval when there is no terminal)."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        super().__init__(description, total=None, enabled=enabled, show_after=SHOW_AFTER)
