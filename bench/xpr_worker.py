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


_USER_MODULE = """\
def square(x):
    return x * x
"""


def run_ship(n: int, mode: str, fn_kind: str, chunksize: int) -> dict:
    """n calls of a one-argument function on `local`: from an installed module (math.sqrt), from
    the user's own module next to the script (shipped with each call), or from that module
    pickled by value (cloudpickle.register_pickle_by_value, shipping off). mode: api | executor."""
    import importlib

    import cloudpickle

    from expyre import Executor
    from expyre.func import ExPyRe

    where = Path(os.environ["EXPYRE_ROOT"]).parent / "usermod"
    where.mkdir(exist_ok=True)
    (where / "bench_usermod.py").write_text(_USER_MODULE)
    sys.path.insert(0, str(where))
    mod = importlib.import_module("bench_usermod")
    ship = True
    if fn_kind == "installed":
        import math

        fn, expect = math.sqrt, [math.sqrt(i) for i in range(n)]
    else:
        fn, expect = mod.square, [i * i for i in range(n)]
        if fn_kind == "byvalue":
            cloudpickle.register_pickle_by_value(mod)
            ship = False
    t0 = time.perf_counter()
    construct = 0.0
    if mode == "api":
        xprs = []
        for i in range(n):
            tc = time.perf_counter()
            xpr = ExPyRe("ship", fn, args=[i], ship_modules=ship)
            construct += time.perf_counter() - tc
            xpr.start(resources=LOCAL_RES, system_name="local", partial_node=True)
            xprs.append(xpr)
        out = []
        for xpr in xprs:
            out.append(xpr.get_results(timeout=1800, check_interval=30, quiet=True))
            xpr.mark_processed()
    else:
        with Executor(system_name="local", resources=LOCAL_RES, partial_node=True, progress=False,
                      ship_modules=ship) as ex:
            tc = time.perf_counter()
            futs = ex.map_futures(fn, range(n), chunksize=chunksize)
            construct = time.perf_counter() - tc
            out = [f.result() for f in futs]
    t1 = time.perf_counter()
    assert out == expect, "wrong results"
    from expyre import config

    stage = [Path(r["from_dir"]) for r in config.db.jobs()]
    shipped = sum(1 for d in stage if (d / "_expyre_modules").is_dir())
    task_bytes = sum((d / "_expyre_task.pkl").stat().st_size for d in stage)
    return {"available": True, "time": t1 - t0, "construct_time": construct, "jobs": len(stage),
            "jobs_with_modules": shipped, "task_bytes_per_job": task_bytes / max(1, len(stage))}


# ------------------------------------------------------------------------------------------------
def run_ssh(system: str, n: int, log: Path, resources: dict, one_by_one: bool = False) -> dict:
    """n calls over ssh + Slurm; counts the ssh invocations of every poll cycle. `one_by_one`:
    ExPyRe's README API (construct each, start() each, get_results() each), else start_many."""
    from expyre.func import ExPyRe

    poller = _poller_class()

    def nlines() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    per_poll: list[int] = []
    orig = poller.refresh

    def counting(self, *a, **kw):
        before_count, before = self.count, nlines()
        orig(self, *a, **kw)
        if self.count != before_count:
            per_poll.append(nlines() - before)

    poller.refresh = counting
    xs, ys = _square_calls(n)
    t0 = time.perf_counter()
    m0 = nlines()
    per_start = []
    if one_by_one:
        xprs = []
        for x, y in zip(xs, ys):
            s0 = time.perf_counter()
            xpr = ExPyRe("sq", pow, args=[x, y])
            xpr.start(resources=resources, system_name=system, partial_node=True)
            xprs.append(xpr)
            per_start.append(time.perf_counter() - s0)
    else:
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
    poller.refresh = orig
    extra = {"start_median": sorted(per_start)[len(per_start) // 2], "start_max": max(per_start)} if per_start else {}
    return {**extra, "available": True, "time": t1 - t0, "submit_time": t_sub - t0, "ssh_total": nlines() - m0,
            "ssh_submit": m_sub - m0, "polls": len(per_poll), "ssh_per_poll": per_poll,
            "ssh_per_poll_max": max(per_poll or [0]), "ssh_per_poll_median": sorted(per_poll)[len(per_poll) // 2] if per_poll else 0}



# ------------------------------------------------------------------------------------------------
# scale: Executor.map of 10^3..10^5 packed calls on `local`, ProcessPoolExecutor, the pickling floor
# ------------------------------------------------------------------------------------------------
def _rss_now() -> int:
    """Resident set size of this process now (bytes)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def scale_inputs(n: int, arg_kb: int):
    """(fn, iterables, expected checksum): pow(i, 2), or np.sum of a 10 kB array per call built
    lazily (a generator: what the caller holds is up to the library)."""
    import itertools

    if not arg_kb:
        return pow, (range(n), itertools.repeat(2, n)), sum(i * i for i in range(n))
    import numpy as np

    m = arg_kb * 1024 // 8
    return np.sum, ((np.full(m, float(i)) for i in range(n)),), float(m) * n * (n - 1) / 2


def _disk(path: Path) -> tuple[int, int]:
    """Bytes on disk (blocks) of the jobs database files and of everything else under the root."""
    db = other = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                b = os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                continue
            if dirpath == str(path) and f.startswith("jobs.db"):
                db += b
            else:
                other += b
    return db, other


def run_scale(lib: str, n: int, chunksize: int, arg_kb: int) -> dict:
    """One map of n calls: wall, time to the first result, driver CPU, peak RSS, disk."""
    fn, its, want = scale_inputs(n, arg_kb)
    nproc = os.cpu_count() or 1
    extra: dict = {}
    if lib == "expyre":
        from expyre import Executor, config

        root = Path(os.environ["EXPYRE_ROOT"])
        _ = config.db  # the root's config and database opened before the clock starts
    import_cpu = _cpu() - CPU0
    rss0, cpu0 = _rss_now(), _cpu()
    t0 = time.perf_counter()
    got, k, t_first = 0.0, 0, None
    if lib == "expyre":
        with Executor(system_name="local", resources=LOCAL_RES, partial_node=True, progress=False) as ex:
            for r in ex.map(fn, *its, chunksize=chunksize):
                if t_first is None:
                    t_first = time.perf_counter() - t0
                got += r
                k += 1
            t1 = time.perf_counter()
            cpu1 = _cpu()
            extra["db_bytes"], extra["stage_bytes"] = _disk(root)
            extra["jobs"] = len(list(config.db.jobs()))
        extra["localq_daemon_cpu"] = _daemon_cpu(str(root))
    elif lib == "ppe":
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=nproc) as ex:
            for r in ex.map(fn, *its, chunksize=chunksize):
                if t_first is None:
                    t_first = time.perf_counter() - t0
                got += r
                k += 1
            t1 = time.perf_counter()
            cpu1 = _cpu()
    else:
        raise ValueError(f"unknown library {lib!r}: expyre or ppe")
    assert k == n and got == want, f"wrong results: {k} of {n}, sum {got} != {want}"
    peak = _peak_rss()
    return {"available": True, "time": t1 - t0, "t_first": t_first, "driver_cpu": cpu1 - cpu0,
            "cpu_per_call": (cpu1 - cpu0) / n, "import_cpu": import_cpu, "rss_before": rss0, "peak_rss": peak,
            "rss_growth_per_call": max(0, peak - rss0) / n, "n": n, **extra}


def run_pickle_floor(n: int, arg_kb: int) -> dict:
    """The physical floor per call: cloudpickle one call (function, args) and its result, and load
    both back (what any driver that ships calls to other processes must do), n times."""
    import cloudpickle

    fn, its, want = scale_inputs(n, arg_kb)
    calls = zip(*its)
    cpu0 = _cpu()
    t0 = time.perf_counter()
    got = 0.0
    for args in calls:
        f, a, kw = cloudpickle.loads(cloudpickle.dumps((fn, args, {})))
        got += cloudpickle.loads(cloudpickle.dumps(f(*a, **kw)))
    t1 = time.perf_counter()
    assert got == want
    return {"available": True, "time": t1 - t0, "driver_cpu": _cpu() - cpu0, "cpu_per_call": (_cpu() - cpu0) / n,
            "per_call": (t1 - t0) / n, "n": n}


# ------------------------------------------------------------------------------------------------
# poll: one poll cycle of N live jobs, from recorded scheduler outputs (no scheduler) or real Slurm
# ------------------------------------------------------------------------------------------------
def _poller_class():
    """The core's poller (the one object that refreshes all live jobs of a system): the bench's
    only reference to it, so that a move of the poller is one line here."""
    from expyre.poller import Poller

    return Poller


def poll_cycle(system) -> None:
    """One poll cycle of every live job of ``system``: the status query, its parse, the marker
    files and the reconcile of the jobs database (what a waiting ``get_results`` or ``Executor``
    triggers), forced now."""
    from expyre import config

    _poller_class().get(system, config.db).refresh(0, force=True, tolerate_failure=False)


def _live_rows(root: Path, system: str, ids: list[str]) -> None:
    """ids as live ("submitted") jobs of `system` in the root's jobs database, in one transaction."""
    from expyre.jobsdb import JobsDB

    db = JobsDB(root / "jobs.db")
    now = time.time()
    data = []
    for i, rid in enumerate(ids):
        jid = f"poll_{i:07d}_abcdefghij"
        data.append((jid, "poll", f"{i:064x}", "submitted", system, rid, None, None, str(root / f"run_{jid}"), str(root),
                     now, now))
    with db._tx() as con:
        con.executemany("INSERT INTO jobs (id, name, hash, status, system, remote_id, remote_status, reason, from_dir, "
                        "cwd, creation_time, status_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", data)
    db.close()


def _replay_transport(texts: dict, local: bool):
    """A transport that answers the status query with texts["now"] (the recorded output of the
    current cycle), as one remote round trip (status + marker files) when not `local`."""
    import re

    from expyre.hookspecs import Transport
    from expyre.types import CommandResult

    sep_re = re.compile(r"printf '\\n(\S+) %d\\n' \$\?")

    class Replay(Transport):
        is_local = local

        def __init__(self):
            super().__init__(None if local else "bench@cluster")
            self.calls: dict[str, int] = {}

        def _count(self, k):
            self.calls[k] = self.calls.get(k, 0) + 1

        def run(self, command, **kw):
            text = command if isinstance(command, str) else " ".join(command)
            m = sep_re.search(text)
            if m:  # the remote poll: status output, the separator with its exit status, the markers
                self._count("poll round trip")
                return CommandResult(command, 0, texts["now"] + f"\n{m.group(1)} 0\n", "")
            if re.match(r"^\S*(squeue|qstat) ", text) and "-help" not in text and " -j " not in text:
                self._count("status query")
                return CommandResult(command, 0, texts["now"], "")
            if "-help" in text:  # Grid Engine's setup: the user name, qstat's banner
                self._count("setup")
                return CommandResult(command, 0, "bench\nSGE 8.1.9\n", "")
            self._count(text.split()[0] if text.split() else "?")
            return CommandResult(command, 0, "", "")

        def put(self, local_dirs, remote_parent):
            raise AssertionError(f"the poll bench copies nothing (put {local_dirs})")

        def get(self, remote_dirs, local_parent):
            raise AssertionError(f"the poll bench copies nothing (get {remote_dirs[:3]})")

    return Replay()


def _cycles(system, set_text, ids_n: int, steady: int) -> dict:
    """The first cycle (every job's state is new) and `steady` more, alternating the outputs
    (1 % of the jobs change state each time): driver CPU and wall of each."""
    first = None
    st_cpu, st_wall = [], []
    for c in range(steady + 1):
        set_text(c)
        c0, w0 = _cpu(), time.perf_counter()
        poll_cycle(system)
        c1, w1 = _cpu(), time.perf_counter()
        if c == 0:
            first = (c1 - c0, w1 - w0)
        else:
            st_cpu.append(c1 - c0)
            st_wall.append(w1 - w0)
    st_cpu.sort()
    st_wall.sort()
    return {"first_cpu": first[0], "first_wall": first[1], "steady_cpu": st_cpu[len(st_cpu) // 2],
            "steady_wall": st_wall[len(st_wall) // 2], "steady_cpu_all": st_cpu, "cpu_per_job": st_cpu[len(st_cpu) // 2] / ids_n}


def run_poll_replay(kind: str, n: int, where: str, steady: int = 5) -> dict:
    """One poll cycle of n live jobs of a `kind` scheduler (slurm, torque, pbspro, sge), from
    generated outputs in its recorded format: `where` = remote (one ssh round trip: status +
    markers) or here (host null: the scheduler's commands on this machine, shared stage dirs)."""
    from expyre import config
    from expyre.types import CommandResult
    from poll_outputs import outputs

    root = Path(os.environ["EXPYRE_ROOT"])
    name = f"bench_poll_{kind}_{where}"
    ids, text_a = outputs(kind, n, 0)
    _, text_b = outputs(kind, n, max(1, n // 100))
    _live_rows(root, name, ids)
    texts = {"now": text_a}
    system = config.get_system(name)
    trans = _replay_transport(texts, where == "here")
    system._transport = trans  # the replay stands in for the host (the one private access besides the poller)
    sched = system.scheduler
    # the plugin's parse alone, on the same output
    c0 = _cpu()
    parsed = sched.parse_status(CommandResult(sched.status_command(ids), 0, text_a, ""), ids)
    parse_cpu = _cpu() - c0
    assert len(parsed) == n, f"{kind}: parsed {len(parsed)} of {n} jobs"

    def set_text(c):
        texts["now"] = text_b if c % 2 else text_a

    d = _cycles(system, set_text, n, steady)
    rows = list(config.db.jobs(system=name))
    states = {}
    for r in rows:
        states[r["remote_status"]] = states.get(r["remote_status"], 0) + 1
    assert len(rows) == n and None not in states, f"reconcile left jobs without a state: {states}"
    return {"available": True, "time": d["steady_cpu"], "n": n, "parse_cpu": parse_cpu, "output_bytes": len(text_a),
            "calls": trans.calls, "remote_status_counts": {str(k): v for k, v in states.items()}, **d}


def run_poll_slurm(n: int, name: str, steady: int = 3) -> dict:
    """One poll cycle of up to n held jobs on the real Slurm (bounded by MaxJobCount less the jobs
    already queued, less a margin); every job is cancelled at the end, whatever happens."""
    import re

    from expyre import config

    conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    m = re.search(r"^MaxJobCount\s*=\s*(\d+)", conf, re.M)
    max_jobs = int(m.group(1)) if m else 10000
    queued = len(subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split())
    k = max(0, min(n, max_jobs - queued - 200))
    if k == 0:
        return {"available": False, "error": f"Slurm accepts no more jobs: MaxJobCount {max_jobs}, {queued} queued"}
    root = Path(os.environ["EXPYRE_ROOT"])
    ids: list[str] = []
    try:
        t0 = time.perf_counter()
        p = subprocess.run(["bash", "-c", f"for i in $(seq {k}); do sbatch -H --parsable -J {name} -p debug -n1 -t 1 "
                                          f"-o /dev/null -e /dev/null --wrap true || break; done"],
                           capture_output=True, text=True)
        ids = [l.split(";")[0] for l in p.stdout.split() if l.split(";")[0].isdigit()]
        t_sub = time.perf_counter() - t0
        if not ids:
            return {"available": False, "error": f"sbatch -H accepted no job: {p.stderr.strip()[-300:]}"}
        _live_rows(root, "bench_slurm_poll", ids)
        system = config.get_system("bench_slurm_poll")
        d = _cycles(system, lambda c: None, len(ids), steady)
        return {"available": True, "time": d["steady_cpu"], "n": len(ids), "asked": n, "max_job_count": max_jobs,
                "queued_before": queued, "submit_time": t_sub, "submit_errors": p.stderr.strip()[-300:], **d}
    finally:
        for i in range(0, len(ids), 500):
            subprocess.run(["scancel", *ids[i:i + 500]], capture_output=True)
        subprocess.run(["scancel", "-n", name], capture_output=True)


# ------------------------------------------------------------------------------------------------
# refresh: ExPyRe.refresh_many / refresh() of N live jobs (one shared poll per system)
# ------------------------------------------------------------------------------------------------
def run_refresh_replay(n: int, steady: int = 5) -> dict:
    """A refreshed status of n live jobs of a remote Slurm from generated outputs in its recorded
    format: ``ExPyRe.refresh_many`` (the poll's round trip, parse, reconcile, each job's state
    step), then a loop of ``refresh()`` (the first polls; the others share that poll while it is
    younger than the default max_age of 1 s). Round trips counted by the replayed transport."""
    import statistics

    from expyre import config
    from expyre.func import ExPyRe
    from poll_outputs import outputs

    root = Path(os.environ["EXPYRE_ROOT"])
    name = "bench_poll_slurm_remote"
    ids, text = outputs("slurm", n, 0)
    _live_rows(root, name, ids)
    system = config.get_system(name)
    trans = _replay_transport({"now": text}, False)
    system._transport = trans
    xprs = ExPyRe.from_jobsdb(config.db.jobs(system=name))
    shared = _poller_class().get(system, config.db)
    many_wall, many_cpu = [], []
    for _ in range(steady):
        shared.last = 0.0  # each repetition a fresh poll, not the previous one reused
        c0, w0 = _cpu(), time.perf_counter()
        statuses = ExPyRe.refresh_many(xprs)
        many_cpu.append(_cpu() - c0)
        many_wall.append(time.perf_counter() - w0)
    assert len(statuses) == n and set(statuses) <= {"submitted", "started"}, set(statuses)
    trips_many = trans.calls.get("poll round trip", 0)
    shared.last = 0.0  # the loop's first refresh() polls afresh
    trans.calls.clear()
    c0, w0 = _cpu(), time.perf_counter()
    for x in xprs:
        x.refresh()
    loop_cpu, loop_wall = _cpu() - c0, time.perf_counter() - w0
    return {"available": True, "time": statistics.median(many_wall), "n": n, "many_cpu": statistics.median(many_cpu),
            "many_wall_all": many_wall, "round_trips_per_refresh_many": trips_many / steady, "loop_wall": loop_wall,
            "loop_cpu": loop_cpu, "loop_round_trips": trans.calls.get("poll round trip", 0),
            "started": statuses.count("started")}


def run_refresh_local(n: int) -> dict:
    """n real jobs on the local system, each waiting for a flag file (queued beyond the machine's
    cores, running within): one ``ExPyRe.refresh_many`` of all of them once one runs, timed, with
    the status queries counted; then the flag is set and every result collected."""
    import tempfile

    from expyre.func import ExPyRe
    from expyre.system import System
    from expyre.testing import job_wait_for_file

    flag = Path(tempfile.mkdtemp(prefix="xbflag")) / "go"
    xprs = [ExPyRe(f"refresh{i}", job_wait_for_file, args=[str(flag), i]) for i in range(n)]
    errors = ExPyRe.start_many(xprs, LOCAL_RES, "local", partial_node=True)
    assert not errors, errors
    calls = []
    orig = System.status
    System.status = lambda self, ids: calls.append(len(ids)) or orig(self, ids)
    try:
        deadline = time.monotonic() + 300
        while "started" not in ExPyRe.refresh_many(xprs):
            if time.monotonic() > deadline:
                raise TimeoutError("no job started in 300 s")
            time.sleep(0.1)
        calls.clear()
        c0, w0 = _cpu(), time.perf_counter()
        statuses = ExPyRe.refresh_many(xprs)
        cpu, wall = _cpu() - c0, time.perf_counter() - w0
        queries = len(calls)
    finally:
        System.status = orig
        flag.touch()
    assert [x.get_results(timeout=600, check_interval=0.5, quiet=True) for x in xprs] == list(range(n))
    return {"available": True, "time": wall, "cpu": cpu, "n": n, "status_queries": queries,
            "started": statuses.count("started"), "submitted": statuses.count("submitted")}


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
    ap.add_argument("scenario", choices=["local", "slurm", "ssh", "ssh_api", "db", "bigarg", "bigarg_floor", "array_support",
                                         "scale", "pickle_floor", "poll_replay", "poll_slurm", "ship",
                                         "refresh_replay", "refresh_local"])
    ap.add_argument("--fn", default="shipped", help="ship: installed, shipped or byvalue")
    ap.add_argument("--lib", default="expyre", help="scale: expyre or ppe (ProcessPoolExecutor)")
    ap.add_argument("--arg-kb", type=int, default=0, help="scale: a numpy argument of this many kB per call")
    ap.add_argument("--kind", default="slurm", help="poll_replay: slurm, torque, pbspro or sge")
    ap.add_argument("--where", default="remote", help="poll_replay: remote (one ssh round trip) or here")
    ap.add_argument("--name", default="xbpoll", help="poll_slurm: the held jobs' name")
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
    elif a.scenario == "ssh_api":
        emit(run_ssh(a.system, a.n, Path(a.log), SLURM_RES, one_by_one=True))
    elif a.scenario == "ship":
        emit(run_ship(a.n, a.mode, a.fn, a.chunksize))
    elif a.scenario == "scale":
        emit(run_scale(a.lib, a.n, a.chunksize, a.arg_kb))
    elif a.scenario == "pickle_floor":
        emit(run_pickle_floor(a.n, a.arg_kb))
    elif a.scenario == "poll_replay":
        emit(run_poll_replay(a.kind, a.n, a.where))
    elif a.scenario == "poll_slurm":
        emit(run_poll_slurm(a.n, a.name))
    elif a.scenario == "refresh_replay":
        emit(run_refresh_replay(a.n))
    elif a.scenario == "refresh_local":
        emit(run_refresh_local(a.n))
    elif a.scenario == "db":
        emit(run_db(a.n))
    elif a.scenario == "bigarg":
        emit(run_bigarg(a.gb, a.system, SLURM_RES))
    elif a.scenario == "bigarg_floor":
        emit(run_bigarg_floor(a.gb, a.log))


if __name__ == "__main__":
    main()
