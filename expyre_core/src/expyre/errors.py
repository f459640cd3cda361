"""Leaf layer: the exceptions a caller of :class:`~expyre.func.ExPyRe` may catch.

They are re-exported by :mod:`expyre.func` (their documented home); the services raise them
from here so that no service needs the facade.
"""

from __future__ import annotations

# defined where the job runs (the runner is stdlib-only and stands alone); caught here
from ._runner import RemoteBaseException
from .jobpython import JobPythonError, JobPythonVersionError  # defined with the job Python's check

__all__ = [
    "RemoteBaseException",
    "ExPyReJobDiedError",
    "ExPyReJobDied",
    "ExPyReTimeoutError",
    "ExPyReResultError",
    "ExPyReRemoteTraceback",
    "RemoteError",
    "JobsDBDamagedError",
    "JobPythonVersionError",
]


class ExPyReJobDiedError(RuntimeError):
    """The job ended (or vanished) without a result; the message says what the scheduler said."""


ExPyReJobDied = ExPyReJobDiedError  # the original's name


class ExPyReTimeoutError(TimeoutError):
    """``get_results`` ran out of its ``timeout``; the job itself goes on."""


class ExPyReResultError(RuntimeError):
    """A result file exists but cannot be read (corrupted or truncated)."""


class ExPyReRemoteTraceback(Exception):
    """Carries the traceback text of an exception raised inside a job (set as ``__cause__``)."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f"\n\nRemote traceback:\n{self.tb}"


class RemoteError(RuntimeError):
    """Stands for a remote exception that could not be pickled or unpickled here."""


class JobsDBDamagedError(RuntimeError):
    """The jobs database file is damaged (not a database, or a malformed image); the message names
    the file and the recovery command, ``xpr db rebuild`` (:func:`expyre.jobsdb.rebuild`), which
    keeps the damaged file aside and rebuilds the database from the stage directories."""

    def __init__(self, path: object, detail: str) -> None:
        super().__init__(
            f"the jobs database {path} is damaged ({detail}); rebuild it from the stage directories with "
            f"`xpr db rebuild` (it moves the damaged file aside to {path}.damaged-<time> and writes a new one)"
        )
        self.path = path
        self.detail = detail


