"""Leaf layer: this machine's cores and memory, and the name of the embedded ``local`` system's
one partition (read by the config loading and by the built-in ``local`` scheduler)."""

from __future__ import annotations

import os

__all__ = ["LOCAL_PARTITION", "machine_ncores", "machine_mem_kb"]

#: the embedded ``local`` system's single partition: all of this machine's memory is available to
#: it, and the name lets the example of ExPyRe's README (``'partitions': '.*bigmem'``) run unchanged
LOCAL_PARTITION = "local_bigmem"


def machine_ncores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_mem_kb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
