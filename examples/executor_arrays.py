"""expyre.Executor submitting scheduler job arrays (Slurm ``--array``, Grid Engine ``-t``,
PBS Pro ``-J``, Torque ``-t``): one submission for many jobs, each element an ordinary ExPyRe job.

    uv run python examples/executor_arrays.py cluster    # a system of your config.json (Slurm, SGE, PBS; here or over ssh)

Use arrays when each call needs its own allocation (many cores, a GPU, a long run) and the
scheduler should spread and backfill them; combine with ``chunksize`` to put several short calls
in each element. A system whose scheduler has no arrays (the built-in ``local``, Slurm's Torque
wrappers) submits the same jobs one by one. Arrays larger than the site's limit (Slurm's
``MaxArraySize``, SGE's ``max_aj_tasks``, ``scheduler_options.max_array_size``) are split.
"""

import concurrent.futures as cf
import sys

import cloudpickle

from expyre import Executor


def relax(key, steps=200_000):
    import random

    rng = random.Random(key)
    x = 0.0
    for _ in range(steps):
        x += rng.uniform(-1, 1) * 1e-3
    return key, round(x, 6)


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # remote hosts need only cloudpickle

if __name__ == "__main__":
    system = sys.argv[1] if len(sys.argv) > 1 else "local"
    res = {"max_time": "10m", "n": (1, "tasks")}
    with Executor(system_name=system, resources=res, partial_node=True, name="relax", array=True) as ex:
        # 40 calls, 4 per array element: ONE array of 10 elements (one sbatch --array=0-9)
        futures = ex.map_futures(relax, range(40), chunksize=4)
        for f in cf.as_completed(futures):
            key, x = f.result()
            print(f"key {key:2d}: {x:+.6f}  (job {f.job_id}, scheduler id {f.xpr.remote_id})")
        # the same in order, as plain map(); array=False would submit 10 separate jobs
        print(sum(x for _, x in ex.map(relax, range(40), chunksize=4)))
