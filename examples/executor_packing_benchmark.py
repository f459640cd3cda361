"""200 trivial calls on the zero-config local system: packed into few jobs vs one job per call.

    uv run python examples/executor_packing_benchmark.py [N]

Runs in a throw-away expyre root (so it never reuses earlier results) and prints the wall time of
each variant, the number of ExPyRe jobs and the background thread's polls.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from executor_funcs import inc  # noqa: E402  (a real module: pickled by reference)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
RES = {"max_time": "10m", "n": (1, "tasks")}


def run(label, go):
    with tempfile.TemporaryDirectory() as d:
        os.environ["EXPYRE_ROOT"] = str(Path(d) / "_expyre")
        Path(os.environ["EXPYRE_ROOT"]).mkdir()
        from expyre import config

        config.init()
        from expyre import Executor

        t0 = time.monotonic()
        with Executor(system_name="local", resources=RES, partial_node=True, progress=False) as ex:
            out = go(ex)
        dt = time.monotonic() - t0
        assert out == [i + 1 for i in range(N)], label
        print(f"{label:<34} {dt:7.2f} s  {len(config.db.jobs()):4d} jobs  {ex.stats['polls']:4d} polls  "
              f"{1000 * dt / N:6.1f} ms/call")


if __name__ == "__main__":
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    print(f"{N} calls of a trivial function, local system, {os.cpu_count()} cores")
    run("map, chunksize=N (1 job)", lambda ex: list(ex.map(inc, range(N), chunksize=N)))
    run("map, chunksize=50", lambda ex: list(ex.map(inc, range(N), chunksize=50)))
    run("map, chunksize=1 (1 job per call)", lambda ex: list(ex.map(inc, range(N), chunksize=1)))
    run("submit (1 plain job per call)", lambda ex: [f.result() for f in [ex.submit(inc, i) for i in range(N)]])
