"""Functions run in test jobs (a real module, so they pickle by reference)."""

import os
import sys
import time


def add(a, b, scratch=None):
    return a + b


def write_output(name, text):
    with open(name, "w") as f:
        f.write(text)
    os.makedirs("sub", exist_ok=True)
    with open(os.path.join("sub", "more.txt"), "w") as f:
        f.write("more")
    return sorted(os.listdir("."))


def read_input(path):
    with open(path) as f:
        return f.read()


def env(*names):
    return {n: os.environ.get(n) for n in names}


def die_hard():
    sys.stdout.flush()
    os._exit(7)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def record_interval(path, seconds):
    start = time.time()
    time.sleep(seconds)
    with open(path, "a") as f:
        f.write(f"{start} {time.time()}\n")
    return True


def unpicklable_result():
    import threading

    return threading.Lock()


class CustomError(Exception):
    """An exception of a class only this module defines."""


def raise_custom(message):
    raise CustomError(message)


def print_then_wait(first, flag, last="the end", timeout=120):
    """Print ``first``, wait until the file ``flag`` exists, print ``last`` (and the same on stderr)."""
    print(first, flush=True)
    print(f"err {first}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + timeout
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} never appeared")
        time.sleep(0.05)
    print(last, flush=True)
    return True


class Settings:
    """A plain object whose attributes hold a set and a dict (hashing must not depend on their order)."""

    def __init__(self, tags, table):
        self.tags = tags
        self.table = table


def describe_settings(settings, groups):
    """What the job received: the dict's key order, the set, and the groups (dict of sets) in order."""
    return list(settings.table), sorted(settings.tags), [(k, sorted(v)) for k, v in groups.items()], os.getpid()


def hold_memory(mib, seconds=0.0):
    """Allocate ``mib`` MiB, touch every page (so it is resident), hold it ``seconds``."""
    buf = bytearray(mib * 1024 * 1024)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    time.sleep(seconds)
    return len(buf)
