"""Progress display for long waits: shown on a terminal only, and only once a wait gets long."""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Waiting", "progress_enabled"]

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


class Waiting:
    """``with Waiting("job x") as w: ... w.update("queued")`` shows a transient spinner with the
    elapsed time after :data:`SHOW_AFTER` seconds; silent when not on a terminal."""

    def __init__(self, description: str, enabled: bool = True) -> None:
        self.description = description
        self.enabled = progress_enabled(enabled)
        self.start = time.monotonic()
        self._progress = None
        self._task = None

    def __enter__(self) -> "Waiting":
        return self

    def update(self, status: str) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            if time.monotonic() - self.start < SHOW_AFTER:
                return
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.description, total=None)
        self._progress.update(self._task, description=f"{self.description}: {status}")

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
