"""expyre against the original ExPyRe, submitit, Dask and the physical floor, side by side in one run.

    bash bench/run.sh                      # everything, 3 repetitions (about 70 min on 2 cores)
    bash bench/run.sh --quick              # smoke test: small N, 1 repetition (about a minute)
    bash bench/run.sh -s local,db --reps 5 # some scenarios

Scenarios: local, sweep, slurm, executor, ssh, db, bigarg, scale, poll, ssh-shell, ship, refresh. Each measurement
runs in its own process with a fresh expyre root: expyre's (and ProcessPoolExecutor's) with the
workspace's Python, the peers' (the original ExPyRe = PyPI expyre-wfl, also imported as `expyre`,
submitit, Dask) with bench/.venv-peers/bin/python.
The variants of a scenario alternate inside each repetition (rotating their order). Medians,
ratios to the floor and the issue's targets are printed and written to bench/results/<name>.json,
then bench/plot.py draws the PNG. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from common import MARK  # noqa: E402

XPR_PY = os.environ.get("BENCH_XPR_PYTHON", str(REPO / ".venv" / "bin" / "python"))
PEER_PY = os.environ.get("BENCH_PEER_PYTHON", str(BENCH / ".venv-peers" / "bin" / "python"))
SSH_HOST, SSH_PORT = "xprtest@127.0.0.1", 2222
SLOW_HOST = "xprslow@127.0.0.1"
POLL_KINDS = {"slurm": ("slurm", {"min_status_interval": 0}), "torque": ("pbs", {"flavor": "torque"}),
              "pbspro": ("pbs", {"flavor": "pbspro"}), "sge": ("sge", {"user": "bench"})}
REMOTE_PY = "/opt/expyre-remote-venv/bin/python"
ALL = ["local", "sweep", "slurm", "executor", "ssh", "db", "bigarg", "scale", "poll", "ssh-shell", "ship", "refresh"]
TMP = Path(os.environ.get("BENCH_TMP", "/tmp"))
SLURM_SCENARIOS = ("slurm", "executor", "ssh", "ssh-shell")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(cmd: str, **kw) -> str:
    return subprocess.run(cmd, shell=True, capture_output=True, text=True, **kw).stdout.strip()


def slurm_cpus() -> int:
    m = re.search(r"CPUTot=(\d+)", sh("scontrol show node"))
    return int(m.group(1)) if m else 0


def machine() -> dict:
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(), "nproc": os.cpu_count(), "loadavg_start": os.getloadavg(),
        "platform": platform.platform(), "cpu": next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                                                      if l.startswith("model name")), "?"),
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "slurm_node_cpus": slurm_cpus(), "slurm_version": sh("sinfo --version"),
        "git_commit": sh(f"git -C {REPO} rev-parse --short HEAD"),
        # the library is installed editable: uncommitted changes in the checkout are measured too
        "git_dirty": [l.split(maxsplit=1)[-1] for l in sh(f"git -C {REPO} status --porcelain --untracked-files=no").splitlines()],
        "python": sh(f"{XPR_PY} -V"),
        "versions": json.loads(sh(f"{PEER_PY} -c \"import json,importlib.metadata as m; print(json.dumps({{p: m.version(p) for p in "
                                  f"['expyre-wfl','submitit','cloudpickle','dask','distributed']}}))\"") or "{}")
        | {"expyre-core": sh(f"{XPR_PY} -c 'import importlib.metadata as m; print(m.version(\"expyre-core\"))'")},
    }


# ------------------------------------------------------------------------------------------------
# fresh roots and configs
# ------------------------------------------------------------------------------------------------
class Roots:
    """Temporary expyre roots (ours and the original's), removed at the end."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="expyre-bench-", dir=TMP))
        self.n = 0
        self.wrapper = self.base / "ssh-logging"
        self.ssh_log = self.base / "ssh.log"
        self.wrapper.write_text("#!/bin/bash\n"
                                f"{{ printf '%q ' \"$@\"; printf '\\n'; }} >>{shlex.quote(str(self.ssh_log))}\n"
                                'exec ssh "$@"\n')
        self.wrapper.chmod(0o755)
        # the original splits remsh_cmd on blanks into rsync's own arguments (`-e ssh -p 2222 -a` makes
        # -p rsync's flag): it gets a wrapper with the port inside
        self.wrapper_port = self.base / f"ssh-logging-{SSH_PORT}"
        self.wrapper_port.write_text(f"#!/bin/bash\nexec {shlex.quote(str(self.wrapper))} -p {SSH_PORT} \"$@\"\n")
        self.wrapper_port.chmod(0o755)

    def new(self, orig: bool) -> Path:
        self.n += 1
        root = self.base / f"r{self.n}" / "_expyre"
        root.mkdir(parents=True, mode=0o700)
        n = slurm_cpus() or 4
        remsh = f"{self.wrapper} -p {SSH_PORT}"
        if orig:
            parts = {"debug": {"num_cores": n, "max_time": "10m", "max_mem": "20GB"}}
            systems = {
                "bench_slurm": {"host": None, "scheduler": "slurm", "partitions": parts},
                "bench_ssh_slurm": {"host": SSH_HOST, "scheduler": "slurm", "remsh_cmd": str(self.wrapper_port),
                                    "rundir": "expyre_bench_orig", "partitions": parts},
            }
        else:
            parts = {"debug": {"ncores": n, "max_time": "10m"}}
            systems = {
                "bench_slurm": {"host": None, "scheduler": "slurm", "partitions": parts},
                "bench_ssh_slurm": {"host": SSH_HOST, "scheduler": "slurm", "remsh_cmd": remsh,
                                    "rundir": "expyre_bench_rundir", "python_cmd": REMOTE_PY, "partitions": parts},
                # ssh-shell: an account whose ~/.bashrc sleeps 0.3 s (scripts/services/make-slow-user.sh)
                "bench_ssh_slow": {"host": SLOW_HOST, "scheduler": "slurm", "remsh_cmd": remsh,
                                   "rundir": "expyre_bench_rundir", "python_cmd": REMOTE_PY, "partitions": parts},
                # poll: the real Slurm, every status query a fresh squeue
                "bench_slurm_poll": {"host": None, "scheduler": "slurm", "partitions": parts,
                                     "scheduler_options": {"min_status_interval": 0}},
            }
            # poll from recorded outputs: the transport is replaced by a replay (xpr_worker.py)
            for kind, (sched, opts) in POLL_KINDS.items():
                for where in ("remote", "here"):
                    systems[f"bench_poll_{kind}_{where}"] = {
                        "host": None if where == "here" else "bench@cluster", "scheduler": sched, "partitions": parts,
                        "scheduler_options": opts, **({} if where == "here" else {"rundir": "expyre_bench_rundir"})}
        (root / "config.json").write_text(json.dumps({"systems": systems}, indent=1))
        return root

    def cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


def run_worker(py: str, script: str, args: list[str], root: Path | None, extra_env: dict | None = None,
               timeout: float = 3600) -> dict:
    env = dict(os.environ, EXPYRE_PROGRESS="0", PYTHONUNBUFFERED="1")
    env.pop("VIRTUAL_ENV", None)
    if root is not None:
        env["EXPYRE_ROOT"] = str(root)
    env.update(extra_env or {})
    t0 = time.perf_counter()
    p = subprocess.run([py, str(BENCH / script), *args], env=env, capture_output=True, text=True, timeout=timeout,
                       cwd=str(root.parent) if root is not None else None)
    wall = time.perf_counter() - t0
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            d = json.loads(line[len(MARK):])
            d["wall"] = wall
            return d
    return {"available": False, "error": f"exit {p.returncode}: {(p.stderr or p.stdout).strip()[-1500:]}", "wall": wall}


def xpr(args: list[str], root: Path, **kw) -> dict:
    return run_worker(XPR_PY, "xpr_worker.py", args, root, **kw)


def peer(args: list[str], root: Path, orig_python: str | None = None, **kw) -> dict:
    env = {"BENCH_ORIG_PYTHON": orig_python or PEER_PY}
    return run_worker(PEER_PY, "peer_worker.py", args, root, extra_env=env, **kw)


# ------------------------------------------------------------------------------------------------
# floors
# ------------------------------------------------------------------------------------------------
def floor_local(n: int) -> dict:
    """n cold `python3 -c 'import cloudpickle'` (the jobs' interpreter), as many at a time as cores."""
    t0 = time.perf_counter()
    subprocess.run(f"seq {n} | xargs -P {os.cpu_count()} -I{{}} {shlex.quote(XPR_PY)} -c 'import cloudpickle'",
                   shell=True, check=True)
    return {"available": True, "time": time.perf_counter() - t0}


def slurm_busy() -> str:
    """What makes Slurm not ours alone right now ('' if nothing): other jobs, a node not up."""
    jobs = sh("squeue -h -o '%u %j'").splitlines()
    states = set(sh("sinfo -h -N -o %T").split())
    bad = {s for s in states if any(w in s for w in ("drain", "down", "fail", "maint", "reserved"))}
    return (f"{len(jobs)} other jobs queued " if jobs else "") + (f"node {','.join(sorted(bad))}" if bad else "")


def slurm_quiet(max_wait: float) -> dict:
    """Wait (up to max_wait s) until the Slurm queue is empty and the node is up: other test suites
    share this Slurm (and drain its node in their fault tests). Reported with each measurement."""
    t0 = time.perf_counter()
    busy = slurm_busy()
    while busy and time.perf_counter() - t0 < max_wait:
        time.sleep(2)
        busy = slurm_busy()
    return {"quiet_wait": round(time.perf_counter() - t0, 1), "busy_at_start": busy}


OURS = re.compile(r"^(xbfloor|sq_|sq$|submitit|big)")


def foreign_cpu(t0: float, t1: float) -> float | None:
    """CPU-seconds that other people's Slurm jobs held on the node during [t0, t1] (from sacct):
    the interference a measurement suffered on the shared queue."""
    fmt = "%Y-%m-%dT%H:%M:%S"
    out = sh(f"sacct -a -X -n -P -S {time.strftime(fmt, time.localtime(t0 - 1))} -E {time.strftime(fmt, time.localtime(t1 + 1))} "
             f"-o JobName%60,Start,End,AllocCPUS")
    if not out:
        return None
    tot = 0.0
    for line in out.splitlines():
        try:
            name, start, end, cpus = line.split("|")
            if OURS.match(name) or start in ("Unknown", "None", ""):
                continue
            a = time.mktime(time.strptime(start, fmt))
            b = time.time() if end in ("Unknown", "None", "") else time.mktime(time.strptime(end, fmt))
            tot += max(0.0, min(b, t1) - max(a, t0)) * int(cpus or 1)
        except ValueError:
            continue
    return round(tot, 1)


def our_jobs_span(t0: float, t1: float) -> dict:
    """When Slurm ran the jobs of this measurement (ours are the only ones named xbfloor*/sq_*/
    submitit/big): the last one's end, from the start of the measurement, and so how long after
    it each library had all the results. Separates Slurm's own (noisy, shared) throughput from
    the library's overhead. sacct times have a 1 s resolution."""
    fmt = "%Y-%m-%dT%H:%M:%S"
    out = sh(f"sacct -a -X -n -P -S {time.strftime(fmt, time.localtime(t0 - 1))} -E {time.strftime(fmt, time.localtime(t1 + 1))} "
             f"-o JobName%60,Submit,Start,End")
    ends, n = [], 0
    for line in out.splitlines():
        try:
            name, sub, start, end = line.split("|")
            if not OURS.match(name):
                continue
            if time.mktime(time.strptime(sub, fmt)) < t0 - 1:
                continue
            n += 1
            ends.append(time.mktime(time.strptime(end, fmt)))
        except ValueError:
            continue
    if not ends:
        return {}
    last = max(ends) - t0
    return {"slurm_jobs": n, "slurm_last_end": round(last, 1), "after_last_end": round(t1 - t0 - last, 1)}


def floor_slurm(n: int, array: bool) -> dict:
    """A bash loop of n sbatch of a trivial script (or one sbatch --array), one squeue per second."""
    name = f"xbfloor{os.getpid()}{int(time.time()) % 100000}"
    sub = (f"sbatch --parsable -p debug -n1 -t 5 -J {name} -o /dev/null -e /dev/null "
           f"{'--array=0-' + str(n - 1) + ' ' if array else ''}--wrap true >/dev/null")
    loop = sub if array else f"for i in $(seq {n}); do {sub}; done"
    script = f"{loop}\nwhile [ -n \"$(squeue -h -n {name} -o %i)\" ]; do sleep 1; done\n"
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True)
    return {"available": True, "time": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------
# scenarios: each returns {variant: thunk}; thunks run alternately
# ------------------------------------------------------------------------------------------------
def sc_local(R: Roots, o) -> dict:
    n = o.n_local
    v = {
        "floor": lambda: floor_local(n),
        "expyre": lambda: xpr(["local", "--n", str(n), "--mode", "api"], R.new(False)),
        "expyre, function by value": lambda: xpr(["local", "--n", str(n), "--mode", "api_byvalue"], R.new(False)),
        "expyre Executor": lambda: xpr(["local", "--n", str(n), "--mode", "executor"], R.new(False)),
        "submitit LocalExecutor": lambda: peer(["submitit_local", "--n", str(n), "--folder", str(R.new(True).parent / "sub")],
                                               R.new(True)),
    }
    return v


def sc_sweep(R: Roots, o) -> dict:
    v = {}
    for n in o.sweep:
        v[f"floor N={n}"] = (lambda n=n: floor_local(n))
        v[f"expyre N={n}"] = (lambda n=n: xpr(["local", "--n", str(n), "--mode", "api"], R.new(False)))
        if n <= o.sweep_submitit_max:
            v[f"submitit N={n}"] = (lambda n=n: peer(["submitit_local", "--n", str(n), "--folder",
                                                      str(R.new(True).parent / "sub")], R.new(True)))
    return v


def sc_slurm(R: Roots, o) -> dict:
    n = o.n_slurm
    v = {
        "floor (sbatch loop)": lambda: floor_slurm(n, False),
        "floor (sbatch --array)": lambda: floor_slurm(n, True),
        "expyre": lambda: xpr(["slurm", "--n", str(n), "--mode", "api"], R.new(False)),
        "original ci=1": lambda: peer(["orig_slurm", "--n", str(n), "--check-interval", "1"], R.new(True)),
        "original default (ci=30)": lambda: peer(["orig_slurm", "--n", str(n), "--check-interval", "30"], R.new(True)),
        "submitit": lambda: peer(["submitit_slurm", "--n", str(n), "--folder", str(R.new(True).parent / "sub")], R.new(True)),
    }
    if o.submitit_array:
        v["submitit map_array"] = lambda: peer(["submitit_slurm_array", "--n", str(n), "--folder",
                                                str(R.new(True).parent / "sub")], R.new(True))
    return v


def sc_executor(R: Roots, o) -> dict:
    n = o.n_slurm
    return {
        "expyre Executor packed (chunksize=50)": lambda: xpr(["slurm", "--n", str(n), "--mode", "executor", "--chunksize",
                                                              str(max(1, n // 4))], R.new(False)),
        "expyre Executor arrays": lambda: xpr(["slurm", "--n", str(n), "--mode", "array"], R.new(False)),
    }


def sc_ssh(R: Roots, o) -> dict:
    v = {}
    for n in sorted({1, o.n_ssh}):
        v[f"expyre N={n}"] = (lambda n=n: xpr(["ssh", "--n", str(n), "--system", "bench_ssh_slurm", "--log", str(R.ssh_log)],
                                              R.new(False)))
    n = o.n_ssh
    v[f"floor (sbatch loop) N={n}"] = lambda: floor_slurm(n, False)
    v[f"original ci=1 N={n}"] = lambda: peer(["orig_slurm", "--n", str(n), "--check-interval", "1", "--system",
                                               "bench_ssh_slurm", "--log", str(R.ssh_log)], R.new(True), orig_python="python3")
    return v


def sc_db(R: Roots, o) -> dict:
    v = {}
    for n in o.db_sizes:
        v[f"expyre {n}"] = (lambda n=n: xpr(["db", "--n", str(n)], R.new(False)))
        v[f"original {n}"] = (lambda n=n: peer(["orig_db", "--n", str(n)], R.new(True)))
    return v


def sc_bigarg(R: Roots, o) -> dict:
    gb = o.gb
    return {
        "floor (one cloudpickle dump)": lambda: xpr(["bigarg_floor", "--gb", str(gb), "--log",
                                                     str(R.new(False).parent / "dump.pkl")], None),
        "expyre": lambda: xpr(["bigarg", "--gb", str(gb)], R.new(False)),
        "original": lambda: peer(["orig_bigarg", "--gb", str(gb)], R.new(True)),
    }


def sc_scale(R: Roots, o) -> dict:
    """Executor.map of N packed calls on `local` against ProcessPoolExecutor and Dask, same inputs."""
    v = {}
    nproc = str(os.cpu_count() or 1)
    cs = str(o.scale_chunk)
    runs = [(n, 0) for n in o.scale_sizes] + [(o.scale_sizes[-1], o.scale_arg_kb)]
    for n, kb in runs:
        tag = f"N={n}" + (f", {kb} kB arg" if kb else "")
        a = ["--n", str(n), "--arg-kb", str(kb)]
        v[f"floor (pickle call + result) {tag}"] = (lambda a=a: xpr(["pickle_floor", *a], None))
        v[f"expyre chunksize={cs} {tag}"] = (lambda a=a: scale_expyre(R, ["scale", "--lib", "expyre", "--chunksize", cs, *a]))
        v[f"ProcessPoolExecutor chunksize={cs} {tag}"] = (lambda a=a: xpr(["scale", "--lib", "ppe", "--chunksize", cs, *a], None))
        if n <= o.scale_dask_map_max:
            v[f"dask client.map {tag}"] = (lambda a=a: peer(["dask_map", "--nproc", nproc, *a], R.new(True)))
        v[f"dask bag {tag}"] = (lambda a=a: peer(["dask_bag", "--nproc", nproc, *a], R.new(True)))
    return v


def scale_expyre(R: Roots, args: list[str]) -> dict:
    """One expyre scale run in a fresh root, removed right after (10^5 calls with a 10 kB argument
    stage about 1.5 GB)."""
    root = R.new(False)
    try:
        return xpr(args, root)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def sc_poll(R: Roots, o) -> dict:
    """One poll cycle of N live jobs: recorded-format outputs (no scheduler), and the real Slurm."""
    v = {}
    for n in o.poll_sizes:
        for kind in POLL_KINDS:
            for where in ("remote", "here"):
                v[f"{kind} {where} N={n}"] = (lambda n=n, kind=kind, where=where: xpr(
                    ["poll_replay", "--kind", kind, "--where", where, "--n", str(n)], R.new(False)))
    v[f"slurm real held jobs N<={o.poll_real}"] = lambda: poll_real_slurm(R, o.poll_real)
    return v


def sc_refresh(R: Roots, o) -> dict:
    """A refreshed status of N live jobs: ExPyRe.refresh_many / a loop of refresh(), from
    recorded-format remote Slurm outputs, and N real jobs on the local system."""
    v = {}
    for n in o.poll_sizes:
        v[f"refresh_many remote slurm N={n}"] = (lambda n=n: xpr(["refresh_replay", "--n", str(n)], R.new(False)))
    v[f"refresh_many local N={o.refresh_local}"] = lambda: xpr(["refresh_local", "--n", str(o.refresh_local)], R.new(False))
    return v


def poll_real_slurm(R: Roots, n: int) -> dict:
    name = f"xbpoll{os.getpid()}{int(time.time()) % 100000}"
    try:
        return xpr(["poll_slurm", "--n", str(n), "--name", name], R.new(False))
    finally:  # the worker cancels its jobs; this covers a worker that died
        subprocess.run(["scancel", "-n", name], capture_output=True)


def floor_ssh_slurm(n: int, host: str, per_call: bool) -> dict:
    """The sbatch loop over ssh as `host`: one ssh session running the loop of n sbatch and the
    squeue wait (the floor: the shell start-up paid once), or (per_call) one ssh per sbatch."""
    name = f"xbfloor{os.getpid()}{int(time.time()) % 100000}"
    ssh = f"ssh -p {SSH_PORT} -o BatchMode=yes {host}"
    sub = f"sbatch --parsable -p debug -n1 -t 5 -J {name} -o /dev/null -e /dev/null --wrap true >/dev/null"
    wait = f"while [ -n \"$(squeue -h -n {name} -o %i)\" ]; do sleep 1; done"
    if per_call:
        script = f"for i in $(seq {n}); do {ssh} {shlex.quote(sub)}; done\n{wait}\n"
    else:
        script = f"{ssh} {shlex.quote(f'for i in $(seq {n}); do {sub}; done; {wait}')}\n"
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], check=True, stdin=subprocess.DEVNULL)
    return {"available": True, "time": time.perf_counter() - t0}


def sc_ssh_shell(R: Roots, o) -> dict:
    """ExPyRe's README API over ssh to Slurm as an account whose ~/.bashrc sleeps 0.3 s."""
    v = {}
    for n in o.ssh_shell_sizes:
        v[f"expyre N={n}"] = (lambda n=n: xpr(["ssh_api", "--n", str(n), "--system", "bench_ssh_slow", "--log",
                                               str(R.ssh_log)], R.new(False)))
        v[f"floor (sbatch loop in one ssh) N={n}"] = (lambda n=n: floor_ssh_slurm(n, SLOW_HOST, False))
        v[f"one ssh per sbatch N={n}"] = (lambda n=n: floor_ssh_slurm(n, SLOW_HOST, True))
    return v


def sc_ship(R: Roots, o) -> dict:
    """The cost of shipping the user's own module with each call: 200 calls on `local`, one job
    per call (ExPyRe's API) and packed (Executor.map, chunksize 50)."""
    n = o.n_local
    v = {}
    for fn, label in (("installed", "installed module (math.sqrt)"), ("shipped", "own module, shipped"),
                      ("byvalue", "own module by value, not shipped")):
        v[f"api: {label}"] = (lambda fn=fn: xpr(["ship", "--n", str(n), "--mode", "api", "--fn", fn], R.new(False)))
        v[f"Executor.map chunksize={max(1, n // 4)}: {label}"] = (
            lambda fn=fn: xpr(["ship", "--n", str(n), "--mode", "executor", "--fn", fn, "--chunksize", str(max(1, n // 4))],
                              R.new(False)))
    return v


SCENARIOS = {"local": sc_local, "sweep": sc_sweep, "slurm": sc_slurm, "executor": sc_executor, "ssh": sc_ssh,
             "db": sc_db, "bigarg": sc_bigarg, "scale": sc_scale, "poll": sc_poll, "ssh-shell": sc_ssh_shell,
             "ship": sc_ship, "refresh": sc_refresh}


# ------------------------------------------------------------------------------------------------
def check_ssh(host: str = SSH_HOST) -> str | None:
    """The original runs `python3` on the remote side with its own pickled script (standard pickle,
    so only the Python stdlib is needed there), plus bash, rsync, sbatch and squeue; ours needs its
    remote venv (scripts/ci/make-remote-python.sh). Say what is missing, or None."""
    p = subprocess.run(["ssh", "-p", str(SSH_PORT), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", host,
                        f"for c in python3 rsync sbatch squeue; do command -v $c >/dev/null || echo missing $c; done; "
                        f"python3 -c 'import pickle' || echo 'missing python3 pickle'; "
                        f"test -x {REMOTE_PY} || echo 'missing {REMOTE_PY} (bash scripts/ci/make-remote-python.sh)'"],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        return f"ssh {host} -p {SSH_PORT} failed ({p.stderr.strip()[-200:]}); bring it up: bash scripts/services/up.sh sshd"
    return p.stdout.strip() or None


def clean_remote(host: str = SSH_HOST) -> None:
    subprocess.run(["ssh", "-p", str(SSH_PORT), "-o", "BatchMode=yes", host, "rm -rf expyre_bench_orig expyre_bench_rundir"],
                   capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def med(runs: list[dict], key: str = "time") -> float | None:
    vals = [r[key] for r in runs if r.get("available") and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def mn(runs: list[dict], key: str = "time") -> float | None:
    vals = [r[key] for r in runs if r.get("available") and r.get(key) is not None]
    return min(vals) if vals else None


def run_scenario(name: str, R: Roots, o) -> dict:
    variants = SCENARIOS[name](R, o)
    names = list(variants)
    runs: dict[str, list[dict]] = {k: [] for k in names}
    skip: set[str] = set()
    for rep in range(o.reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for k in order:
            if k in skip:
                continue
            q = slurm_quiet(o.quiet_wait) if name in SLURM_SCENARIOS else {}
            t_start = time.time()
            r = variants[k]()
            r.update(q, t_start=t_start, t_end=time.time(), loadavg_end=os.getloadavg()[0])
            if name in SLURM_SCENARIOS:
                r["busy_at_end"] = slurm_busy()
                r["foreign_cpu_s"] = foreign_cpu(t_start, r["t_end"])
                r.update(our_jobs_span(t_start, r["t_end"]))
            if not r.get("available") and r.get("reason"):
                skip.add(k)  # a feature that is not there is not retried (a failure is)
            runs[k].append(r)
            t = r.get("time")
            if name == "db" and r.get("available"):
                msg = (f"lookup {r['lookup_median'] * 1e3:8.2f} ms  xpr ls -s ongoing {r['xpr_ls_ongoing']:6.3f} s  "
                       f"add {r['add_per_job'] * 1e3:7.2f} ms/job")
            elif name == "poll" and r.get("available"):
                msg = (f"steady cycle {r['steady_cpu'] * 1e3:8.2f} ms CPU ({r['steady_wall'] * 1e3:.1f} ms wall), first "
                       f"{r['first_cpu'] * 1e3:.1f} ms CPU" + (f", parse alone {r['parse_cpu'] * 1e3:.1f} ms" if "parse_cpu" in r else "")
                       + f"; {r['n']} jobs")
            elif name == "refresh" and r.get("available"):
                if "loop_wall" in r:
                    msg = (f"{t * 1e3:9.2f} ms ({r['many_cpu'] * 1e3:.1f} ms CPU), "
                           f"{r['round_trips_per_refresh_many']:g} round trip(s) each; loop of refresh(): "
                           f"{r['loop_wall'] * 1e3:.1f} ms, {r['loop_round_trips']} round trip(s); {r['n']} jobs")
                else:
                    msg = (f"{t * 1e3:9.2f} ms ({r['cpu'] * 1e3:.1f} ms CPU), {r['status_queries']} status query; "
                           f"{r['started']} running, {r['submitted']} queued")
            elif name == "scale" and r.get("available"):
                msg = f"{t:9.3f} s  {r['cpu_per_call'] * 1e6:8.1f} us CPU/call"
                if r.get("t_first") is not None:
                    msg += f"  first {r['t_first']:.3f} s  RSS +{r['rss_growth_per_call']:.0f} B/call"
                if r.get("db_bytes") is not None:
                    msg += f"  db {r['db_bytes'] / 1e6:.2f} MB  stage {r['stage_bytes'] / 1e6:.2f} MB"
            elif name == "ship" and r.get("available"):
                msg = (f"{t:9.3f} s  construct {r['construct_time']:.3f} s  {r['jobs']} jobs "
                       f"({r['jobs_with_modules']} with modules), task {r['task_bytes_per_job']:.0f} B/job")
            elif t is not None:
                msg = f"{t:9.3f} s"
            else:
                msg = f"not available: {(r.get('reason') or r.get('error', ''))[-300:]}"
            if "slurm_last_end" in r:
                msg += f"  [Slurm's last job ended at {r['slurm_last_end']} s; +{r['after_last_end']} s to all results; {r['slurm_jobs']} jobs; foreign {r.get('foreign_cpu_s')} CPU-s]"
            if q.get("quiet_wait") or q.get("busy_at_start") or r.get("busy_at_end"):
                msg += f"  (waited {q['quiet_wait']} s for a quiet Slurm; busy at start: {q['busy_at_start'] or 'no'}, at end: {r['busy_at_end'] or 'no'})"
            log(f"{name:8s} rep {rep + 1}/{o.reps}  {k:40s} {msg}")
        if name == "ssh":
            clean_remote()
        if name == "ssh-shell":
            clean_remote(SLOW_HOST)
    out = {}
    for k, rs in runs.items():
        d = {"runs": rs, "median": med(rs)}
        if not any(r.get("available") for r in rs):
            d["not_available"] = (rs[0].get("reason") or rs[0].get("error")) if rs else "not run"
        out[k] = d
    return out


# ------------------------------------------------------------------------------------------------
# targets, ratios within the same run
# ------------------------------------------------------------------------------------------------
def ratio(a, b):
    return a / b if a is not None and b else None


def evaluate(res: dict) -> list[dict]:
    T = []

    def t(what, value, target, ok, note=""):
        T.append({"what": what, "value": value, "target": target, "ok": ok, "note": note})

    if "local" in res:
        L = res["local"]
        f, e, ex, s = (L[k]["median"] for k in ("floor", "expyre", "expyre Executor", "submitit LocalExecutor"))
        r = ratio(e, f)
        t("local N: expyre / spawn floor", r, "<= 2", r is not None and r <= 2)
        r2 = ratio(ex, f)
        t("local N: expyre Executor / spawn floor", r2, "<= 2", r2 is not None and r2 <= 2)
        r3 = ratio(s, e)
        t("local N: submitit LocalExecutor / expyre", r3, ">= 5", r3 is not None and r3 >= 5)
        if "expyre, function by value" in L:
            r4 = ratio(L["expyre, function by value"]["median"], f)
            t("local N: expyre, function pickled by value / spawn floor", r4, "<= 2", r4 is not None and r4 <= 2)
    if "sweep" in res:
        S = res["sweep"]
        pts = sorted((int(k.split("=")[1]), v["median"]) for k, v in S.items() if k.startswith("expyre") and v["median"])
        if len(pts) >= 3:
            (n0, t0), (n1, t1) = pts[-2], pts[-1]
            per_job_hi = (t1 - t0) / (n1 - n0)
            fl = sorted((int(k.split("=")[1]), v["median"]) for k, v in S.items() if k.startswith("floor") and v["median"])
            fper = (fl[-1][1] - fl[-2][1]) / (fl[-1][0] - fl[-2][0]) if len(fl) >= 2 else None
            t("sweep: marginal cost per job at large N (s), expyre vs floor", per_job_hi, "linear, no per-job sleep",
              fper is not None and per_job_hi <= 2 * fper, f"floor {fper:.4f} s/job" if fper else "")
    if "slurm" in res:
        S = res["slurm"]
        f = S["floor (sbatch loop)"]["median"]
        e = S["expyre"]["median"]
        t("Slurm one job per call: expyre / sbatch-loop floor", ratio(e, f), "<= 1.2", (ratio(e, f) or 99) <= 1.2)
        fb, eb = mn(S["floor (sbatch loop)"]["runs"]), mn(S["expyre"]["runs"])
        t("Slurm one job per call: expyre / sbatch-loop floor, best of the repetitions", ratio(eb, fb), "(info: <= 1.2)",
          None)
        for k in ("original ci=1", "original default (ci=30)", "submitit", "submitit map_array", "floor (sbatch --array)"):
            if k in S:
                t(f"Slurm: {k} / sbatch-loop floor", ratio(S[k]["median"], f), "(peer)", None)
        for k in ("floor (sbatch loop)", "expyre", "original ci=1", "original default (ci=30)", "submitit"):
            if k in S and med(S[k]["runs"], "slurm_last_end") is not None:
                t(f"Slurm: {k}: Slurm's last job end / all results in hand (s)",
                  f"{med(S[k]['runs'], 'slurm_last_end'):.1f} / +{med(S[k]['runs'], 'after_last_end'):.1f}", "(info)", None)
    if "executor" in res and "slurm" in res:
        # the target is for the Executor "packed or as an array": met if either is; each is
        # shown, and arrays beside their own floor (one `sbatch --array` of trivial jobs), which
        # bounds them whatever the library does
        o1 = res["slurm"]["original ci=1"]["median"]
        best = None
        for k, v in res["executor"].items():
            if v.get("not_available"):
                t(f"Slurm: original ci=1 / {k}", None, "(info)", None, "not available: " + str(v["not_available"])[:200])
                continue
            r = ratio(o1, v["median"])
            t(f"Slurm: original ci=1 / {k}", r, "(info)", None)
            if r is not None and (best is None or r > best[1]):
                best = (k, r)
        t("Slurm: original ci=1 / expyre Executor, packed or as an array (the better)", best and best[1], ">= 10",
          best is not None and best[1] >= 10, best[0] if best else "")
        fa = res["slurm"].get("floor (sbatch --array)", {}).get("median")
        ea = res["executor"].get("expyre Executor arrays", {}).get("median")
        if fa and ea:
            t("Slurm: expyre Executor arrays / floor (sbatch --array)", ratio(ea, fa), "(info)", None)
    if "ssh" in res:
        S = res["ssh"]
        fk = next(k for k in S if k.startswith("floor"))
        ek = max((k for k in S if k.startswith("expyre")), key=lambda k: int(k.split("=")[1]))
        r = ratio(S[ek]["median"], S[fk]["median"])
        t(f"ssh+Slurm: {ek} / sbatch-loop floor", r, "<= 1.3", (r or 99) <= 1.3)
        ok = next((k for k in S if k.startswith("original")), None)
        if ok:
            t(f"ssh+Slurm: {ok} / sbatch-loop floor", ratio(S[ok]["median"], S[fk]["median"]), "(peer)", None)
        for k in S:
            if k.startswith("expyre"):
                mx = max((r.get("ssh_per_poll_max", 0) for r in S[k]["runs"] if r.get("available")), default=None)
                t(f"ssh: round trips per poll cycle, max ({k})", mx, "<= 2", mx is not None and mx <= 2)
    if "db" in res:
        D = res["db"]
        for n in sorted({int(k.split()[-1]) for k in D}):
            e, o_ = D.get(f"expyre {n}"), D.get(f"original {n}")
            if not e or not o_:
                continue
            el, ol = med(e["runs"], "lookup_median"), med(o_["runs"], "lookup_median")
            es, os_ = med(e["runs"], "xpr_ls_ongoing"), med(o_["runs"], "xpr_ls_ongoing")
            ea, oa = med(e["runs"], "add_per_job"), med(o_["runs"], "add_per_job")
            if n >= 100_000:
                t(f"DB {n}: restart lookup (s)", el, "< 0.005", el is not None and el < 0.005)
                t(f"DB {n}: xpr ls -s ongoing (s)", es, "< 0.5", es is not None and es < 0.5)
            # the issue sets the ratio targets at 100k jobs; at 10k they are shown for information
            # (the original's own cost is smaller there, expyre's ~50 ms `xpr ls` is interpreter
            # start-up, imports and the same 1000 rows at either size)
            at_target = n >= 100_000
            for what, a, b in (("restart lookup", ol, el), ("xpr ls -s ongoing", os_, es)):
                r = ratio(a, b)
                t(f"DB {n}: original / expyre, {what}", r, ">= 10" if at_target else "(info: >= 10 at 100k)",
                  (r or 0) >= 10 if at_target else None)
            t(f"DB {n}: original / expyre, creation per job", ratio(oa, ea), "(info)", None)
    if "bigarg" in res:
        B = res["bigarg"]
        f, e = B["floor (one cloudpickle dump)"]["median"], B["expyre"]["median"]
        r = ratio(e, f)
        t("1 GB argument: expyre construct+stage / one dump", r, "<= 1.2", (r or 99) <= 1.2)
        p = med(B["expyre"]["runs"], "peak_over_payload")
        t("1 GB argument: expyre peak RSS / payload", p, "<= 1.3", (p or 99) <= 1.3)
        t("1 GB argument: original / one dump (time)", ratio(B["original"]["median"], f), "(peer)", None)
        t("1 GB argument: original peak RSS / payload", med(B["original"]["runs"], "peak_over_payload"), "(peer)", None)
    if "scale" in res:
        evaluate_scale(res, t)
    if "poll" in res:
        P = res["poll"]
        nmax = max(int(k.rsplit("=", 1)[1]) for k in P if " N=" in k)
        for k, v in P.items():
            if not k.endswith(f" N={nmax}") or k.startswith("slurm real"):
                continue
            c = med(v["runs"], "steady_cpu")
            t(f"poll: one cycle, {k}: driver CPU (s)", c, "< 0.1 at N=10^4" if nmax >= 10_000 else "(info: < 0.1 at N=10^4)",
              (c is not None and c < 0.1) if nmax >= 10_000 else None,
              f"first cycle (every state new) {med(v['runs'], 'first_cpu') or 0:.3f} s; parse alone {med(v['runs'], 'parse_cpu') or 0:.3f} s")
        for k, v in P.items():
            if k.startswith("slurm real"):
                c, n = med(v["runs"], "steady_cpu"), med(v["runs"], "n")
                t(f"poll: one cycle, real Slurm, {n and int(n)} held jobs: driver CPU (s)", c, "(info)", None,
                  f"wall {med(v['runs'], 'steady_wall') or 0:.3f} s (squeue included); first cycle "
                  f"{med(v['runs'], 'first_cpu') or 0:.3f} s CPU" if c is not None else str(v.get("not_available", ""))[:200])
    if "ssh-shell" in res:
        S = res["ssh-shell"]
        sizes = sorted({int(k.rsplit("=", 1)[1]) for k in S})
        for n in sizes:
            e, f, pc = S.get(f"expyre N={n}"), S.get(f"floor (sbatch loop in one ssh) N={n}"), S.get(f"one ssh per sbatch N={n}")
            if not e or not f:
                continue
            r = ratio(e["median"], f["median"])
            at_target = n == 50
            t(f"ssh-shell (0.3 s .bashrc): expyre N={n} / sbatch loop in one ssh", r,
              "<= 1.3" if at_target else "(info: <= 1.3 at N=50)", ((r or 99) <= 1.3) if at_target else None,
              f"start() median {med(e['runs'], 'start_median'):.2f} s" if med(e["runs"], "start_median") else "")
            if pc:
                t(f"ssh-shell: one ssh per sbatch N={n} / sbatch loop in one ssh", ratio(pc["median"], f["median"]), "(info)", None)
            mx = max((x.get("ssh_per_poll_max", 0) for x in e["runs"] if x.get("available")), default=None)
            t(f"ssh-shell: round trips per poll cycle, max (expyre N={n})", mx, "<= 2 (as the ssh scenario)",
              mx is not None and mx <= 2)
    return T


def evaluate_scale(res: dict, t) -> None:
    """The scale targets: CPU per call at the largest N (<= 50 us, and its ratio to the pickling
    floor), constant over N within 20 %, peak RSS growth <= 2 kB per call, wall below Dask's
    batched form, the first result before the end, staging without holding every argument."""
    S = res["scale"]

    def get(prefix, n, kb=0):
        tag = f"N={n}" + (f", {kb} kB arg" if kb else "")
        return next((v for k, v in S.items() if k.startswith(prefix) and k.endswith(tag)), None)

    plain = sorted({int(k.rsplit("N=", 1)[1]) for k in S if k.rsplit("N=", 1)[1].isdigit()})
    if not plain:
        return
    nmax = plain[-1]
    big = nmax >= 100_000
    nproc = res["machine"].get("nproc") or 1
    e = get("expyre", nmax)
    fl = get("floor", nmax)
    if e and e.get("median"):
        c = med(e["runs"], "cpu_per_call")
        f = med(fl["runs"], "cpu_per_call") if fl else None
        t(f"scale N={nmax}: expyre driver CPU per call (s)", c, "<= 50e-6 at N=10^5" if big else "(info: <= 50e-6 at 10^5)",
          (c is not None and c <= 50e-6) if big else None,
          f"{ratio(c, f):.1f}x the pickling floor ({f * 1e6:.1f} us)" if c and f else "")
        cs = [med(get("expyre", n)["runs"], "cpu_per_call") for n in plain if get("expyre", n)]
        cs = [x for x in cs if x]
        if len(cs) >= 2:
            spread = max(cs) / min(cs)
            t(f"scale: expyre CPU per call, max / min over N={plain[0]}..{nmax}", spread,
              "<= 1.2" if big else "(info: <= 1.2 from 10^3 to 10^5)", spread <= 1.2 if big else None,
              ", ".join(f"{x * 1e6:.1f}" for x in cs) + " us")
        g = med(e["runs"], "rss_growth_per_call")
        t(f"scale N={nmax}: expyre driver peak RSS growth per call (B)", g, "<= 2048" if big else "(info: <= 2048 at 10^5)",
          (g is not None and g <= 2048) if big else None)
        tf, w = med(e["runs"], "t_first"), e["median"]
        jobs = max(1, nmax // (res["options"].get("scale_chunk") or 1000))
        few = jobs <= nproc
        t(f"scale N={nmax}: expyre time to the first result / wall", ratio(tf, w), "< 0.5 (first chunk, not all N)",
          None if few else (ratio(tf, w) or 99) < 0.5,
          f"{jobs} jobs" + (" (no more jobs than cores: the first chunk ends with the last)" if few else ""))
        db, st = med(e["runs"], "db_bytes"), med(e["runs"], "stage_bytes")
        t(f"scale N={nmax}: expyre jobs DB / stage dirs on disk (MB)", f"{(db or 0) / 1e6:.2f} / {(st or 0) / 1e6:.2f}",
          "(info)", None)
        b = get("dask bag", nmax)
        if b and b.get("median"):
            r = ratio(w, b["median"])
            t(f"scale N={nmax}: expyre wall / dask bag wall", r, "< 1 at N=10^5" if big else "(info: < 1 at 10^5)",
              (r is not None and r < 1) if big else None)
        for k in ("ProcessPoolExecutor", "dask client.map"):
            p = get(k, nmax)
            if p and p.get("median"):
                pc = med(p["runs"], "cpu_per_call")
                t(f"scale N={nmax}: expyre wall / {k} wall", ratio(w, p["median"]), "(peer)", None,
                  f"{k}: {pc * 1e6:.1f} us CPU/call, RSS +{med(p['runs'], 'rss_growth_per_call'):.0f} B/call" if pc else "")
    kb = res["options"].get("scale_arg_kb")
    a = get("expyre", nmax, kb) if kb else None
    if a and a.get("median"):
        g = med(a["runs"], "rss_growth_per_call")
        t(f"scale N={nmax}, {kb} kB numpy argument: expyre peak RSS growth per call (B)", g,
          "<= 2048 (the arguments never all in memory)" if big else "(info: <= 2048 at 10^5)",
          (g is not None and g <= 2048) if big else None)
        c = med(a["runs"], "cpu_per_call")
        fa = get("floor", nmax, kb)
        f = med(fa["runs"], "cpu_per_call") if fa else None
        t(f"scale N={nmax}, {kb} kB numpy argument: expyre driver CPU per call (s)", c, "(info)", None,
          f"{ratio(c, f):.1f}x the pickling floor" if c and f else "")


def report(res: dict, targets: list[dict]) -> None:
    print("\n=== medians (s) ===")
    for sc, V in res.items():
        if sc in ("machine", "targets", "options", "machine_per_scenario"):
            continue
        floor = next((v["median"] for k, v in V.items() if k.startswith("floor") and v["median"]), None)
        for k, v in V.items():
            m = v["median"]
            if sc == "db" and not v.get("not_available"):
                rs = v["runs"]
                print(f"{sc:9s} {k:42s} lookup {med(rs, 'lookup_median') * 1e3:9.3f} ms   xpr ls -s ongoing "
                      f"{med(rs, 'xpr_ls_ongoing'):7.3f} s   add {med(rs, 'add_per_job') * 1e3:8.3f} ms/job")
            elif m is None:
                print(f"{sc:9s} {k:42s}  not available: {str(v.get('not_available'))[:150]}")
            else:
                r = f"{m / floor:6.2f}x floor" if floor and sc not in ("db", "sweep", "scale", "poll", "ssh-shell", "refresh") else ""
                print(f"{sc:9s} {k:42s} {m:10.3f} {r}")
    print("\n=== targets ===")
    for t_ in targets:
        v = t_["value"]
        vs = "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
        mark = {True: "PASS", False: "MISS", None: "    "}[t_["ok"]]
        print(f"{mark}  {t_['what']:62s} {vs:>10s}  target {t_['target']}  {t_['note']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-s", "--scenarios", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument("--quick", action="store_true", help="small N, 1 repetition: a smoke test")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--out", default=None, help="results JSON (default bench/results/results.json, quick.json with --quick)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--reevaluate", metavar="JSON", help="only recompute the targets of a results file, report and plot it")
    ap.add_argument("--update", action="store_true",
                    help="keep the other scenarios of an existing results file (re-run only those selected)")
    ap.add_argument("--no-submitit-array", dest="submitit_array", action="store_false",
                    help="skip submitit's map_array on Slurm (measured by default, except with --quick)")
    ap.add_argument("--scale-dask-map-max", type=int, default=None,
                    help="scale: the largest N for Dask's client.map (one task per call; default: every N)")
    ap.add_argument("--quiet-wait", type=float, default=None,
                    help="before each Slurm measurement wait up to this many s for an empty queue and an up node "
                         "(default 300; 30 with --quick)")
    o = ap.parse_args()
    if o.reevaluate:
        res = json.loads(Path(o.reevaluate).read_text())
        res["targets"] = evaluate(res)
        Path(o.reevaluate).write_text(json.dumps(res, indent=1, default=str))
        report(res, res["targets"])
        if not o.no_plot:
            subprocess.run([PEER_PY, str(BENCH / "plot.py"), o.reevaluate, str(Path(o.reevaluate).with_suffix(".png"))])
        return 0
    q = o.quick
    o.reps = o.reps or (1 if q else 3)
    if o.quiet_wait is None:
        o.quiet_wait = 30.0 if q else 300.0
    o.n_local = 20 if q else 200
    o.sweep = [1, 10, 50] if q else [1, 10, 100, 1000]
    o.sweep_submitit_max = 10 if q else 1000  # submitit's LocalExecutor over the whole sweep (~5 min at N=1000)
    if q:
        o.submitit_array = False
    o.n_slurm = 8 if q else 200
    o.n_ssh = 8 if q else 200
    o.db_sizes = [2000] if q else [10_000, 100_000]
    o.gb = 0.1 if q else 1.0
    o.scale_sizes = [1000, 2000] if q else [1000, 10_000, 100_000]
    o.scale_chunk = 1000
    o.scale_arg_kb = 10
    o.scale_dask_map_max = o.scale_dask_map_max if o.scale_dask_map_max is not None else o.scale_sizes[-1]
    o.poll_sizes = [10, 1000] if q else [10, 1000, 10_000]
    o.poll_real = 50 if q else 2000
    o.refresh_local = 20 if q else 100
    o.ssh_shell_sizes = [5, 10] if q else [50, 200]
    scen = [s for s in o.scenarios.split(",") if s]
    bad = set(scen) - set(ALL)
    if bad:
        ap.error(f"unknown scenario(s) {sorted(bad)}; choose from {ALL}")
    out = Path(o.out) if o.out else BENCH / "results" / ("quick.json" if q else "results.json")
    for p in (XPR_PY, PEER_PY):
        if not Path(p).exists():
            sys.exit(f"{p} missing: run bench/run.sh (it makes both environments)")
    if any(s in scen for s in ("slurm", "executor", "ssh", "bigarg", "poll", "ssh-shell")) and not shutil.which("sbatch"):
        sys.exit("no sbatch: bring Slurm up with `bash scripts/services/up.sh slurm`")
    if "ssh" in scen:
        problem = check_ssh()
        if problem:
            sys.exit(f"ssh scenario: {problem}")
    if "ssh-shell" in scen:
        problem = check_ssh(SLOW_HOST)
        if problem:
            sys.exit(f"ssh-shell scenario: {problem} (the user: bash scripts/services/make-slow-user.sh)")
    res: dict = {}
    if o.update and out.exists():
        res = json.loads(out.read_text())
        res.setdefault("machine_per_scenario", {})
    res.update({"machine": machine(), "options": {k: v for k, v in vars(o).items()}})
    res.setdefault("machine_per_scenario", {})
    res["machine"]["note"] = (f"Slurm node declares {res['machine']['slurm_node_cpus']} CPUs on a machine with "
                              f"{res['machine']['nproc']} cores (SlurmdParameters=config_overrides); other test suites may "
                              f"share the machine and the Slurm queue (see loadavg).")
    log(f"machine: {res['machine']['host']} {res['machine']['nproc']} cores, load {res['machine']['loadavg_start']}, "
        f"Slurm CPUs {res['machine']['slurm_node_cpus']}; scenarios {scen}, reps {o.reps}")
    R = Roots()
    try:
        for s in scen:
            t0 = time.perf_counter()
            la0, d0 = os.getloadavg(), dt.datetime.now().astimezone().isoformat(timespec="seconds")
            res[s] = run_scenario(s, R, o)
            res["machine_per_scenario"][s] = {"date": d0, "loadavg_start": la0, "loadavg_end": os.getloadavg(),
                                              "seconds": time.perf_counter() - t0, "reps": o.reps,
                                              "git_commit": res["machine"]["git_commit"], "git_dirty": res["machine"]["git_dirty"]}
            log(f"{s} done in {time.perf_counter() - t0:.0f} s")
            res["machine"]["loadavg_end"] = os.getloadavg()
            out.parent.mkdir(parents=True, exist_ok=True)
            res["targets"] = evaluate(res)
            out.write_text(json.dumps(res, indent=1, default=str))
    finally:
        R.cleanup()
    report(res, res["targets"])
    print(f"\nresults: {out}")
    if not o.no_plot:
        png = out.with_suffix(".png")
        p = subprocess.run([PEER_PY, str(BENCH / "plot.py"), str(out), str(png)])
        if p.returncode == 0:
            print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
