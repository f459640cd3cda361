"""Fault injection for the reliability tests: kill this process at a named point between two
persistent steps, to prove that re-running the same script picks up where it was.

Inactive (one dict lookup) unless ``EXPYRE_FAULT_POINT`` is set, to ``NAME`` or ``NAME:K``: the
K-th time (default 1st) this process passes :func:`point` ``NAME``, it kills itself with SIGKILL
(no cleanup, no atexit, exactly like ``kill -9`` or a laptop losing power). ``NAME`` ``*`` counts
every point. ``EXPYRE_FAULT_LOG=path`` appends each point passed (``pid name``) to ``path``, so a
test can list the points a script goes through.
"""

from __future__ import annotations

import os
import signal

__all__ = ["point", "POINTS", "COPY_POINTS"]

#: every injection point, in the order a create/start/get_results run passes them
POINTS = (
    "create_staged",        # constructor: call pickled to the temporary dir, nothing recorded yet
    "create_renamed",       # constructor: stage dir renamed into place, db transaction not committed
    "create_recorded",      # constructor: db row committed
    "start_script_written",  # start: job script written, submission not claimed
    "start_claimed",        # start: submission claimed in the db, nothing submitted
    "start_staged",         # start: stage dir copied to the executing host
    "start_submitted",      # start: the scheduler accepted the job, the db does not know its id yet
    "start_recorded",       # start: db says submitted
    "results_read",         # get_results: result unpickled, db not yet updated
    "results_recorded",     # get_results: db says succeeded
)

#: points passed only where results are copied back from a run directory (a system with a
#: ``rundir`` or a remote host), inside the copy
COPY_POINTS = (
    "copy_back_partial",    # copy back: part of the files written under temporary names, result markers not in place
)

_counts: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("EXPYRE_FAULT_POINT")
    log = os.environ.get("EXPYRE_FAULT_LOG")
    if not spec and not log:
        return
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {name}\n")
    if not spec:
        return
    want, _, k = spec.partition(":")
    if want not in (name, "*"):
        return
    _counts[want] = _counts.get(want, 0) + 1
    if _counts[want] == int(k or 1):
        os.kill(os.getpid(), signal.SIGKILL)
