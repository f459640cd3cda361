"""expyre.Executor on a Slurm cluster: this machine (``"host": null``) or over ssh
(``"host": "me@login.cluster"``); the code is the same, only the system differs.

config.json (``$HOME/.expyre/config.json`` or ``./_expyre/config.json``)::

    {"systems": {
        "cluster": {"host": "me@login.cluster", "scheduler": "slurm", "rundir": "expyre_rundir",
                    "commands": ["module load python"],
                    "partitions": {"standard": {"ncores": 128, "max_time": "24h", "max_mem": "256GB"}}}}}

    uv run python examples/executor_slurm.py cluster

Over ssh the functions must be importable on the remote Python, or be pickled by value
(``cloudpickle.register_pickle_by_value(my_module)``) — as here, where they are defined in
``__main__``. The whole batch of job directories is copied in one rsync, every poll is one
ssh round trip for all jobs, and finished jobs come back in one rsync.
"""

import sys

from expyre import Executor


def simulate(key):
    import random

    rng = random.Random(key)
    return sum(rng.random() for _ in range(1_000_000))


if __name__ == "__main__":
    system = sys.argv[1] if len(sys.argv) > 1 else "local"
    res = {"max_time": "30m", "n": (1, "tasks")}
    with Executor(system_name=system, resources=res, partial_node=True, name="simulate") as ex:
        # 1000 calls of ~0.1 s: 20 Slurm jobs of 50 calls, not 1000 tiny jobs
        values = list(ex.map(simulate, range(1000), chunksize=50))
    print(len(values), min(values), max(values))
