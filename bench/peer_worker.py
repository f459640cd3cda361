"""The peers' side of the benchmarks: the original ExPyRe (PyPI `expyre-wfl`, import name `expyre`)
and submitit, run with bench/.venv-peers/bin/python (a separate venv: both ExPyRes are `expyre`).
One measurement per process; the result is one JSON line (common.emit).

The original reads EXPYRE_ROOT/config.json at import; the caller writes it (bench.py).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import ORIG_SLURM_RES, emit  # noqa: E402


def _quiet_stderr():
    """The original prints progress and per-job lines on stderr; keep them out of the terminal."""
    sys.stderr = open(os.devnull, "w")


# ---------------------------------------------------------------------------- original ExPyRe
def orig_calls(system: str, n: int, check_interval: int, log: str | None = None) -> dict:
    """n calls pow(i, 2), one job per call: ExPyRe's API (construct, start, get_results)."""
    from expyre.func import ExPyRe  # the original

    def nlines() -> int:
        return len(Path(log).read_text().splitlines()) if log and Path(log).exists() else 0

    _quiet_stderr()
    t0 = time.perf_counter()
    m0 = nlines()
    xprs = []
    for i in range(n):
        x = ExPyRe("sq", function=pow, args=[i, 2])
        x.start(resources=ORIG_SLURM_RES, system_name=system, partial_node=True, python_cmd=os.environ["BENCH_ORIG_PYTHON"])
        xprs.append(x)
    t_sub = time.perf_counter()
    m_sub = nlines()
    out = []
    for x in xprs:
        res, _, _ = x.get_results(timeout=1800, check_interval=check_interval, quiet=True)
        out.append(res)
        x.mark_processed()
    t1 = time.perf_counter()
    assert out == [i ** 2 for i in range(n)], "wrong results"
    d = {"available": True, "time": t1 - t0, "submit_time": t_sub - t0}
    if log:
        d.update(ssh_total=nlines() - m0, ssh_submit=m_sub - m0, ssh_wait=nlines() - m_sub)
    return d


def orig_db(rows: int, lookups: int = 20) -> dict:
    import re

    from expyre import config
    from expyre.jobsdb import JobsDB

    root = Path(os.environ["EXPYRE_ROOT"])
    db = config.db
    rnd = random.Random(1)
    now = int(time.time())
    finals = ["processed"] * 6 + ["succeeded", "failed", "died", "cleaned"]
    ongoing = set(rnd.sample(range(rows), min(1000, rows // 10)))
    data = []
    for i in range(rows):
        status = rnd.choice(["submitted", "started", "created"]) if i in ongoing else rnd.choice(finals)
        jid = f"task_{i % 500}_{i:043x}=_abcdefgh"
        data.append((jid, f"task_{i % 500}", str(root / f"run_{jid}"), status, "bench_slurm", str(100000 + i), status,
                     now - (rows - i), now - (rows - i) + 5))
    t0 = time.perf_counter()
    with db.db:
        db.db.executemany("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?)", data)
    bulk = time.perf_counter() - t0
    add_n = 20 if rows >= 50_000 else 200
    t0 = time.perf_counter()
    for i in range(add_n):
        jid = f"new_{i:07d}_abcdefghij"
        db.add(jid, "new", str(root / f"run_{jid}"))
    add_per_job = (time.perf_counter() - t0) / add_n
    # the original's restart lookup (func.py): jobs(status='can_produce_results', id=<name>_<hash>_.*)
    ts = []
    for _ in range(lookups):
        i = rnd.randrange(rows)
        prefix = f"task_{i % 500}_{i:043x}="
        t0 = time.perf_counter()
        list(db.jobs(status="can_produce_results", id=re.escape(prefix) + "_.*"))
        ts.append(time.perf_counter() - t0)
    ts.sort()
    ls = {}
    xpr = str(Path(sys.executable).with_name("xpr"))
    for args in (["ls", "-s", "ongoing"], ["ls", "-s", "ongoing", "-l"], ["ls", "-n", "task_7"]):
        best = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([xpr, *args], capture_output=True, check=True)
            best.append(time.perf_counter() - t0)
        ls[" ".join(args)] = sorted(best)[1]
    return {"available": True, "rows": rows, "bulk_build": bulk, "add_per_job": add_per_job,
            "lookup_median": ts[len(ts) // 2], "lookup_max": ts[-1], "xpr_ls": ls, "xpr_ls_ongoing": ls["ls -s ongoing"]}


def orig_bigarg(gb: float, system: str) -> dict:
    import numpy as np

    from expyre.func import ExPyRe

    _quiet_stderr()
    arr = np.ones(int(gb * 2**30) // 8)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    x = ExPyRe("big", function=np.sum, args=[arr])
    t_c = time.perf_counter()
    x.start(resources=ORIG_SLURM_RES, system_name=system, partial_node=True, python_cmd=os.environ["BENCH_ORIG_PYTHON"])
    t1 = time.perf_counter()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    x.cancel()
    return {"available": True, "time": t1 - t0, "construct": t_c - t0, "start": t1 - t_c, "payload": arr.nbytes,
            "rss_before": rss0, "peak_rss": rss1, "peak_over_payload": rss1 / arr.nbytes}


# ---------------------------------------------------------------------------- submitit
def submitit_calls(kind: str, n: int, folder: str, array: bool = False) -> dict:
    import submitit

    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=30)
    else:
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
        ex.update_parameters(partition="debug", time=5, cpus_per_task=1, ntasks_per_node=1, mem="512M")
    xs = list(range(n))
    t0 = time.perf_counter()
    if array:
        jobs = ex.map_array(pow, xs, [2] * n)
    else:
        jobs = [ex.submit(pow, x, 2) for x in xs]
    t_sub = time.perf_counter()
    out = [j.result() for j in jobs]
    t1 = time.perf_counter()
    assert out == [x ** 2 for x in xs], "wrong results"
    return {"available": True, "time": t1 - t0, "submit_time": t_sub - t0}


# ---------------------------------------------------------------------------- Dask
def dask_calls(n: int, arg_kb: int, form: str, nproc: int, chunk: int = 1000) -> dict:
    """n calls on a LocalCluster of nproc single-threaded worker processes: `form` = map
    (client.map of the calls, results gathered as they complete) or bag (dask.bag of n/chunk
    partitions, each partition's results as it completes). The cluster's start is timed apart
    (a user keeps one); the driver (this process) also runs Dask's scheduler."""
    import itertools

    import dask.bag as db
    from dask.distributed import Client, LocalCluster, as_completed

    def rss_now() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    if arg_kb:
        import numpy as np

        m = arg_kb * 1024 // 8
        fn, want = np.sum, float(m) * n * (n - 1) / 2
        inputs = ((np.full(m, float(i)),) for i in range(n))
    else:
        fn, want = pow, sum(i * i for i in range(n))
        inputs = zip(range(n), itertools.repeat(2, n))
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=nproc, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    start = time.perf_counter() - t0
    try:
        rss0, cpu0 = rss_now(), cpu()
        t0 = time.perf_counter()
        got, k, t_first = 0.0, 0, None
        if form == "map":
            cols = list(zip(*inputs))
            futs = client.map(fn, *cols, pure=False)
            del cols
            for f in as_completed(futs):
                if t_first is None:
                    t_first = time.perf_counter() - t0
                got += f.result()
                k += 1
        else:
            calls = list(inputs)
            bag = db.from_sequence(calls, npartitions=max(1, n // chunk)).map(lambda c: fn(*c))
            del calls
            for f in as_completed(client.compute(bag.to_delayed())):
                if t_first is None:
                    t_first = time.perf_counter() - t0
                part = f.result()
                got += sum(part)
                k += len(part)
        t1 = time.perf_counter()
        cpu1 = cpu()
    finally:
        client.close()
        cluster.close()
    assert k == n and got == want, f"wrong results: {k} of {n}, sum {got} != {want}"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"available": True, "time": t1 - t0, "t_first": t_first, "cluster_start": start, "driver_cpu": cpu1 - cpu0,
            "cpu_per_call": (cpu1 - cpu0) / n, "rss_before": rss0, "peak_rss": peak,
            "rss_growth_per_call": max(0, peak - rss0) / n, "n": n}


def main() -> None:
    try:
        _main()
    except Exception:  # noqa: BLE001 - the peer failed: say how (its stderr is silenced)
        import traceback

        emit({"available": False, "error": traceback.format_exc()[-2000:]})


def _main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["orig_slurm", "orig_db", "orig_bigarg", "submitit_local", "submitit_slurm",
                                     "submitit_slurm_array", "dask_map", "dask_bag"])
    ap.add_argument("--arg-kb", type=int, default=0)
    ap.add_argument("--nproc", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--system", default="bench_slurm")
    ap.add_argument("--check-interval", type=int, default=30)
    ap.add_argument("--log", default="")
    ap.add_argument("--folder", default="")
    ap.add_argument("--gb", type=float, default=1.0)
    a = ap.parse_args()
    if a.what == "orig_slurm":
        emit(orig_calls(a.system, a.n, a.check_interval, a.log or None))
    elif a.what == "orig_db":
        emit(orig_db(a.n))
    elif a.what == "orig_bigarg":
        emit(orig_bigarg(a.gb, a.system))
    elif a.what == "submitit_local":
        emit(submitit_calls("local", a.n, a.folder))
    elif a.what == "submitit_slurm":
        emit(submitit_calls("slurm", a.n, a.folder))
    elif a.what == "submitit_slurm_array":
        emit(submitit_calls("slurm", a.n, a.folder, array=True))
    elif a.what in ("dask_map", "dask_bag"):
        emit(dask_calls(a.n, a.arg_kb, a.what[5:], a.nproc))


if __name__ == "__main__":
    main()
