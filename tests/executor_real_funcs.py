"""Functions the real-scheduler Executor tests run in jobs. Pickled by value (the remote Python
has only cloudpickle), and imported under this one module name by the tests and by the driver
processes they start, so that a call hashes the same in both (restart)."""

from __future__ import annotations

import os
import sys
import time

import cloudpickle


def square(x):
    return x * x


def raise_at(x, bad):
    if x == bad:
        raise ValueError(f"element {x} raised on purpose")
    return x


def wait_for_file(x, flag, quick=()):
    """Return ``x`` at once if it is in ``quick``, else once ``flag`` (relative to the job's
    directory) exists; give up after 10 minutes."""
    deadline = time.time() + 600
    while x not in quick and not os.path.exists(flag):
        if time.time() > deadline:
            raise TimeoutError(f"{flag} never appeared")
        time.sleep(0.05)
    return x


def fail_unless_file(x, bad, flag):
    """Raise for ``x == bad`` unless ``flag`` (relative to the job's directory) exists."""
    if x == bad and not os.path.exists(flag):
        raise ValueError(f"element {x} raised: {flag} is missing")
    return x


cloudpickle.register_pickle_by_value(sys.modules[__name__])
