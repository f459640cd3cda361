"""Leaf layer: the exceptions a caller of :class:`~expyre.func.ExPyRe` may catch.

They are re-exported by :mod:`expyre.func` (their documented home); the services raise them
from here so that no service needs the facade.
"""

from __future__ import annotations

# defined where the job runs (the runner is stdlib-only and stands alone); caught here
from ._runner import RemoteBaseException

__all__ = [
    "RemoteBaseException",
    "ExPyReJobDiedError",
    "ExPyReJobDied",
    "ExPyReTimeoutError",
    "ExPyReResultError",
    "ExPyReRemoteTraceback",
    "RemoteError",
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


class JobPythonVersionError(RuntimeError):
    """The jobs' Python cannot load this call (another minor version than the Python that pickled
    functions by value, or older than 3.8); raised by ``start()`` before anything is submitted."""
