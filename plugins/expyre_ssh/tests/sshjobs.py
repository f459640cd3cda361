"""Job functions for the ssh tests. conftest registers this module for pickling by value, so the
remote Python needs nothing but cloudpickle to run them."""

from __future__ import annotations

import os
import time


def square(x: int) -> int:
    return x * x


def transform_files(src: str, dst: str, extra_dir: str) -> str:
    """Read an input file, write an output file and one inside a new directory."""
    with open(src) as f:
        text = f.read()
    with open(dst, "w") as f:
        f.write(text.upper())
    os.makedirs(extra_dir, exist_ok=True)
    with open(os.path.join(extra_dir, "inner out.txt"), "w") as f:
        f.write("inner")
    return text


def wait_for_file(path: str, timeout: float) -> float:
    """Block until ``path`` exists (the test creates it), at most ``timeout`` s."""
    t0 = time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def whoami() -> tuple[str, str, str]:
    import getpass
    import socket

    return getpass.getuser(), socket.gethostname(), os.getcwd()


def gated_square(gate: str, x: int, timeout: float = 120.0) -> int:
    """``x * x`` once the file ``gate`` exists on the host that runs the job."""
    wait_for_file(gate, timeout)
    return x * x
