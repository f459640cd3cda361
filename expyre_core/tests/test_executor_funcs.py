"""Functions the executor tests run in jobs (a real module on the jobs' PYTHONPATH, so they
pickle by reference). No tests here."""

import os
import time


def square(x):
    return x * x


def add(a, b):
    return a + b


def maybe_raise(x):
    if x == 13:
        raise ValueError(f"unlucky {x}")
    return x


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def sleep_in_file(x, flag):
    """Sleep until the file ``flag`` exists (then return x)."""
    while not os.path.exists(flag):
        time.sleep(0.05)
    return x


def pid(_):
    return os.getpid()


def fail_until_file(x, flag):
    """Raise for x == 13 until the file ``flag`` exists."""
    if x == 13 and not os.path.exists(flag):
        raise ValueError(f"unlucky {x}")
    return x


def raise_when_file(x, flag):
    """Wait until the file ``flag`` exists, then raise."""
    sleep_in_file(x, flag)
    raise ValueError(f"raised after the flag, {x}")
