"""expyre's side of the benchmarks: one measurement per process, result as JSON on the last line.

Run by bench/bench.py with the workspace's Python (the one `uv sync` makes); never imported by
the library or the tests. EXPYRE_ROOT is set by the caller to a fresh root with a config.json.

    python bench/xpr_worker.py local --n 200 --mode api
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import LOCAL_RES, SLURM_RES, emit  # noqa: E402


_ru0 = resource.getrusage(resource.RUSAGE_SELF)
CPU0 = _ru0.ru_utime + _ru0.ru_stime  # interpreter start, before expyre is imported


def _daemon_cpu(root: str) -> float | None:
    """CPU seconds used so far by the local queue daemon(s) of this root (not our children)."""
    tot, found = 0.0, False
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"daemon" in cmd and any(root.encode() in c for c in cmd):
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                tot += (int(f[11]) + int(f[12])) / tick
                found = True
        except OSError:
            continue
    return tot if found else None


def _square_calls(n: int):
    return list(range(n)), [2] * n


def array_support() -> dict:
    """How (if at all) this expyre's Executor submits job arrays. Detected, never assumed, so the
    arrays scenario starts to run without edits once the feature lands."""
    from expyre import Executor

    params = inspect.signature(Executor.__init__).parameters
    for p in ("arrays", "array", "use_arrays", "job_array", "job_arrays"):
        if p in params:
            return {"available": True, "how": f"Executor({p}=True)", "kwarg": p}
    if hasattr(Executor, "map_array"):
        return {"available": True, "how": "Executor.map_array", "method": "map_array"}
    try:  # the core may use arrays on its own when the scheduler plugin declares them
        from expyre import plugins

        sched = plugins.schedulers().get("slurm")
        cls = getattr(sched, "cls", None) or getattr(sched, "scheduler", None) or sched
        if cls is not None and getattr(cls, "max_array_size", None) and callable(getattr(cls, "array_header", None)):
            return {"available": True, "how": "automatic (slurm plugin declares max_array_size/array_header)"}
    except Exception as exc:  # noqa: BLE001
        return {"available": False, "how": f"probe failed: {exc!r}"}
    return {"available": False, "how": "Executor has no array option and the slurm plugin declares no arrays"}


# ------------------------------------------------------------------------------------------------
def power(x, y):
    """pow, but defined here in __main__: pickled by value, so the job must import cloudpickle."""
    return x ** y


def run_calls(system: str, n: int, mode: str, resources: dict, chunksize: int = 1) -> dict:
    """n calls pow(i, 2) on `system`; returns timings. mode: api | api_byvalue | executor | array."""
    from expyre import Executor
    from expyre.func import ExPyRe

    fn = pow
    if mode == "api_byvalue":
        mode, fn = "api", power

    xs, ys = _square_calls(n)
    extra: dict = {}
    t0 = time.perf_counter()
    if mode == "api":
        xprs = []
        for x, y in zip(xs, ys):
            xpr = ExPyRe("sq", fn, args=[x, y])
            xpr.start(resources=resources, system_name=system, partial_node=True)
            xprs.append(xpr)
        t_sub = time.perf_counter()
        out = []
        for xpr in xprs:
            out.append(xpr.get_results(timeout=1800, check_interval=30, quiet=True))
            xpr.mark_processed()
    else:
        kw: dict = {}
        how = None
        if mode == "array":
            sup = array_support()
            if not sup["available"]:
                return {"available": False, "reason": sup["how"]}
            how = sup
            if "kwarg" in sup:
                kw[sup["kwarg"]] = True
        with Executor(system_name=system, resources=resources, partial_node=True, progress=False, **kw) as ex:
            if how and "method" in how:
                futs = getattr(ex, how["method"])(pow, xs, ys)
                out = [f.result() if hasattr(f, "result") else f for f in futs]
            else:
                out = list(ex.map(pow, xs, ys, chunksize=chunksize))
            t_sub = time.perf_counter()
            extra["executor_stats"] = dict(ex.stats)
        if mode == "array":
            extra["array_how"] = how["how"]
    t1 = time.perf_counter()
    assert out == [x ** 2 for x in xs], "wrong results"
    ru = resource.getrusage(resource.RUSAGE_SELF)
    extra["driver_cpu"] = ru.ru_utime + ru.ru_stime - CPU0
    extra["localq_daemon_cpu"] = _daemon_cpu(os.environ["EXPYRE_ROOT"])
    from expyre import config

    rows = list(config.db.jobs())
    rids = [r["remote_id"] for r in rows if r.get("remote_id")]
    extra["jobs"] = len(rows)
    extra["distinct_submissions"] = len({r.split("_")[0].split(".")[0].split("[")[0] for r in rids})
    return {"available": True, "time": t1 - t0, "submit_time": t_sub - t0, **extra}


# ------------------------------------------------------------------------------------------------
def run_ssh(system: str, n: int, log: Path, resources: dict) -> dict:
    """n calls over ssh + Slurm; counts the ssh invocations of every poll cycle."""
    from expyre.func import ExPyRe
    from expyre.poller import Poller

    def nlines() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    per_poll: list[int] = []
    orig = Poller.refresh

    def counting(self, max_age, force=False):
        before_count, before = self.count, nlines()
        orig(self, max_age, force)
        if self.count != before_count:
            per_poll.append(nlines() - before)

    Poller.refresh = counting
    xs, ys = _square_calls(n)
    t0 = time.perf_counter()
    m0 = nlines()
    xprs = [ExPyRe("sq", pow, args=[x, y]) for x, y in zip(xs, ys)]
    errs = ExPyRe.start_many(xprs, resources, system, partial_node=True)
    assert not errs, errs
    t_sub = time.perf_counter()
    m_sub = nlines()
    out = []
    for xpr in xprs:
        out.append(xpr.get_results(timeout=1800, check_interval=30, quiet=True))
        xpr.mark_processed()
    t1 = time.perf_counter()
    assert out == [x ** 2 for x in xs]
    Poller.refresh = orig
    return {"available": True, "time": t1 - t0, "submit_time": t_sub - t0, "ssh_total": nlines() - m0,
            "ssh_submit": m_sub - m0, "polls": len(per_poll), "ssh_per_poll": per_poll,
            "ssh_per_poll_max": max(per_poll or [0]), "ssh_per_poll_median": sorted(per_poll)[len(per_poll) // 2] if per_poll else 0}


# ------------------------------------------------------------------------------------------------
def run_db(rows: int, lookups: int = 50) -> dict:
    """Jobs DB at `rows` jobs: creation through the API (per job), the restart lookup, `xpr ls -s ongoing`."""
    from expyre import config
    from expyre.jobsdb import JobsDB

    from bench_xpr_ls import build  # the same 100k-row table as the timing test of test_cli.py

    root = Path(os.environ["EXPYRE_ROOT"])
    rnd = random.Random(2)
    t0 = time.perf_counter()
    build(root, rows, min(1000, rows // 10))  # one executemany in one transaction
    bulk = time.perf_counter() - t0
    db = JobsDB(root / "jobs.db")
    # creation of 200 more jobs one by one through the API, at this size
    add_n = 200
    t0 = time.perf_counter()
    for i in range(add_n):
        jid = f"new_{i:07d}_abcdefghij"
        db.add(jid, "new", str(root / f"run_{jid}"), hash=f"{rows + i:064x}")
    add_per_job = (time.perf_counter() - t0) / add_n
    # the restart lookup that ExPyRe(...) does: by hash, of a job in the middle of the table
    ts = []
    for k in range(lookups):
        h = f"{rnd.randrange(rows):064x}"
        t0 = time.perf_counter()
        with db._tx() as con:
            db.find_reusable(con, h)
        ts.append(time.perf_counter() - t0)
    ts.sort()
    db.close()
    ls = {}
    env = dict(os.environ)
    xpr = str(Path(sys.executable).with_name("xpr"))  # the console script users run, as for the original
    for args in (["ls", "-s", "ongoing"], ["ls", "-s", "ongoing", "-l"], ["ls", "-n", "task_7"]):
        best = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([xpr, *args], env=env, capture_output=True, check=True)
            best.append(time.perf_counter() - t0)
        ls[" ".join(args)] = sorted(best)[1]
    t0 = time.perf_counter()
    subprocess.run([xpr, "--version"], env=env, capture_output=True, check=True)
    base = time.perf_counter() - t0
    return {"available": True, "rows": rows, "bulk_build": bulk, "add_per_job": add_per_job,
            "lookup_median": ts[len(ts) // 2], "lookup_max": ts[-1], "xpr_ls": ls, "xpr_ls_ongoing": ls["ls -s ongoing"],
            "xpr_version": base}


# ------------------------------------------------------------------------------------------------
def run_bigarg(gb: float, system: str, resources: dict) -> dict:
    """One call with a `gb` GB numpy argument: construct + start (stage) time and peak RSS."""
    import numpy as np

    from expyre.func import ExPyRe

    arr = np.ones(int(gb * 2**30) // 8)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    xpr = ExPyRe("big", np.sum, args=[arr])
    t_c = time.perf_counter()
    xpr.start(resources=resources, system_name=system, partial_node=True)
    t1 = time.perf_counter()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        xpr.cancel()
    except Exception:  # noqa: BLE001
        pass
    return {"available": True, "time": t1 - t0, "construct": t_c - t0, "start": t1 - t_c, "payload": arr.nbytes,
            "rss_before": rss0, "peak_rss": rss1, "peak_over_payload": rss1 / arr.nbytes}


def run_bigarg_floor(gb: float, path: str) -> dict:
    """The floor of the 1 GB argument: one cloudpickle dump of it to a file on the same disk."""
    import cloudpickle
    import numpy as np

    arr = np.ones(int(gb * 2**30) // 8)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        cloudpickle.dump(arr, f)
    t1 = time.perf_counter()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    os.unlink(path)
    return {"available": True, "time": t1 - t0, "payload": arr.nbytes, "rss_before": rss0, "peak_rss": rss1,
            "peak_over_payload": rss1 / arr.nbytes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["local", "slurm", "ssh", "db", "bigarg", "bigarg_floor", "array_support"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--mode", default="api")
    ap.add_argument("--chunksize", type=int, default=1)
    ap.add_argument("--system", default="bench_slurm")
    ap.add_argument("--log", default="")
    ap.add_argument("--gb", type=float, default=1.0)
    a = ap.parse_args()
    if a.scenario == "array_support":
        emit(array_support())
    elif a.scenario == "local":
        emit(run_calls("local", a.n, a.mode, LOCAL_RES, a.chunksize))
    elif a.scenario == "slurm":
        emit(run_calls(a.system, a.n, a.mode, SLURM_RES, a.chunksize))
    elif a.scenario == "ssh":
        emit(run_ssh(a.system, a.n, Path(a.log), SLURM_RES))
    elif a.scenario == "db":
        emit(run_db(a.n))
    elif a.scenario == "bigarg":
        emit(run_bigarg(a.gb, a.system, SLURM_RES))
    elif a.scenario == "bigarg_floor":
        emit(run_bigarg_floor(a.gb, a.log))


if __name__ == "__main__":
    main()
