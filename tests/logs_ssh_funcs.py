"""Functions the ``xpr logs`` tests over ssh run in jobs (pickled by value: the remote Python has
only cloudpickle)."""

from __future__ import annotations

import os
import sys
import time

import cloudpickle


def print_then_wait(first, flag, last="the end", timeout=600):
    """Print ``first``, wait until ``flag`` (relative to the job's directory) exists, print ``last``."""
    print(first, flush=True)
    print(f"err {first}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} never appeared")
        time.sleep(0.1)
    print(last, flush=True)
    return True


cloudpickle.register_pickle_by_value(sys.modules[__name__])
