"""The one progress display of expyre (the Python API's waits and ``xpr``'s batch commands alike).

Shown on stderr when it is a terminal and ``EXPYRE_PROGRESS`` is not ``0``; otherwise nothing is
drawn and nothing of rich is imported. A wait of unknown length (``total=None``) is a spinner with
the elapsed time that appears only once the wait gets long (:data:`SHOW_AFTER`); a counted batch is
a bar with ``done/total`` that appears at once.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Progress", "Waiting", "progress_enabled", "SHOW_AFTER"]

#: seconds before the spinner of a wait appears
SHOW_AFTER = 2.0


def progress_enabled(requested: bool = True) -> bool:
    """True when a progress display should appear: asked for, stderr is a terminal, and
    ``EXPYRE_PROGRESS`` is not ``0``."""
    if not requested or os.environ.get("EXPYRE_PROGRESS", "1") == "0":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A transient progress display on stderr::

        with Progress("syncing", total=12) as p:   # a bar: "polling archer2 ━━━━━  3/12 0:00:04"
            p.update("polling archer2")
            p.advance()

        with Progress("job x", show_after=SHOW_AFTER) as w:   # a spinner: "job x: queued 0:00:07"
            w.update("queued")

    :param description: the text shown first (``update`` replaces or extends it).
    :param total: the number of steps for a bar; None for a spinner.
    :param enabled: False never shows anything (it is also off when not on a terminal).
    :param show_after: seconds before it appears (checked on each ``update``/``advance``).
    """

    def __init__(self, description: str, total: int | None = None, enabled: bool = True,
                 show_after: float = 0.0) -> None:
        self.description = description
        self.total = total
        self.enabled = progress_enabled(enabled)
        self.show_after = show_after
        self.start = time.monotonic()
        self.completed = 0
        self._text = description
        self._progress = None
        self._task = None

    def __enter__(self) -> "Progress":
        self._show()
        return self

    def _show(self) -> bool:
        if not self.enabled:
            return False
        if self._progress is None:
            if time.monotonic() - self.start < self.show_after:
                return False
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            if self.total is None:
                columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
            else:
                columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._progress = RichProgress(*columns, console=Console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self._text, total=self.total, completed=self.completed)
        return True

    def update(self, status: str) -> None:
        """A spinner shows ``"<description>: <status>"``; a bar shows ``status`` alone."""
        self._text = f"{self.description}: {status}" if self.total is None else status
        if self._show():
            self._progress.update(self._task, description=self._text)

    def advance(self, steps: int = 1) -> None:
        self.completed += steps
        if self._show():
            self._progress.update(self._task, completed=self.completed)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class Waiting(Progress):
    """``with Waiting("job x") as w: ... w.update("queued")``: a spinner with the elapsed time after
    :data:`SHOW_AFTER` seconds of waiting; silent when not on a terminal."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        super().__init__(description, total=None, enabled=enabled, show_after=SHOW_AFTER)
