"""Functions run in the trust-boundary tests' jobs (a real module, so they pickle by reference)."""

import os
import sys


def exit_with(code):
    sys.exit(code)


def interrupt():
    raise KeyboardInterrupt("stop")


def big_result(nbytes):
    return b"x" * nbytes


def fill_disk_then_return(path):
    """Fill the file system of ``path`` (a file in the job's directory), then return a value."""
    chunk = b"\0" * (1 << 16)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass
    return "x" * 100_000


def square(x):
    return x * x


def exit_or_square(x, bad):
    if x == bad:
        sys.exit(7)
    return x * x
