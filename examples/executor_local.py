"""expyre.Executor on the zero-config local system (no config.json needed).

    uv run python examples/executor_local.py

Run it twice: after a crash (Ctrl-C mid-map) the second run reuses every job that was already
submitted or finished; after a clean run the jobs are marked processed and run afresh.
"""

import concurrent.futures as cf
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
from executor_funcs import inc, risky  # noqa: E402

from expyre import Executor  # noqa: E402

with Executor(system_name="local", resources={"max_time": "10m", "n": (1, "tasks")}, partial_node=True) as ex:
    # many tiny calls: pack them (4 jobs of 50 calls), results in order
    print(sum(ex.map(inc, range(200), chunksize=50)))

    # one raising element fails only its own future
    futures = ex.map_futures(risky, range(10), chunksize=5)
    for f in cf.as_completed(futures):
        print(f.index, f.job_id, f.exception() or f.result())

    # a single call is one ordinary ExPyRe job (xpr ls shows it)
    print(ex.submit(pow, 2, 10).result())
