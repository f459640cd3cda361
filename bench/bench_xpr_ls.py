"""Benchmark: `xpr ls -s ongoing` (and friends) on a jobs database with 100k jobs.

    uv run --no-sync python bench/bench_xpr_ls.py [--rows 100000] [--ongoing 1000] [--repeat 5]

Builds a fresh expyre root in a temporary directory (rows inserted with one executemany in one
transaction), then times the real `xpr` entry point in a subprocess with output piped (what a
script sees), best of --repeat runs. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build(root: Path, rows: int, ongoing: int) -> None:
    from expyre.jobsdb import JobsDB

    db = JobsDB(root / "jobs.db")
    rnd = random.Random(1)
    now = time.time()
    finals = ["processed"] * 6 + ["succeeded", "failed", "died", "cleaned"]
    ongoing_ids = set(rnd.sample(range(rows), ongoing))
    data = []
    for i in range(rows):
        status = rnd.choice(["submitted", "started", "created"]) if i in ongoing_ids else rnd.choice(finals)
        t = now - (rows - i) * 10.0
        jid = f"job_{i:07d}_abcdefghij"
        data.append((jid, f"task_{i % 500}", f"{i:064x}", status, rnd.choice(["local", "archer2", "cl"]),
                     str(100000 + i), status, None, str(root / f"run_{jid}"), "/home/me", t, t + 5))
    with db._tx() as con:
        con.executemany("INSERT INTO jobs (id, name, hash, status, system, remote_id, remote_status, reason, from_dir, "
                        "cwd, creation_time, status_time) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", data)
    db.close()


def timed(root: Path, args: list[str], repeat: int) -> tuple[float, int]:
    env = dict(os.environ, EXPYRE_ROOT=str(root))
    best, lines = float("inf"), 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "expyre", *args], env=env, capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - t0)
        lines = out.stdout.count("\n")
    return best, lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--ongoing", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "_expyre"
        root.mkdir(mode=0o700)
        t0 = time.perf_counter()
        build(root, a.rows, a.ongoing)
        print(f"built {a.rows} rows ({a.ongoing} ongoing) in {time.perf_counter() - t0:.2f} s")
        base, _ = timed(root, ["--version"], a.repeat)
        print(f"{'xpr --version (interpreter + imports)':<44} {base:6.3f} s")
        for args in (["ls", "-s", "ongoing"], ["ls", "-s", "ongoing", "--json"], ["ls", "-s", "ongoing", "-l"],
                     ["ls", "-s", "ongoing", "-S", "archer2", "-n", "task_1.*"], ["ls", "-s", "failed|died"],
                     ["ls", "-n", "task_7"], ["ls"], ["ls", "--json"]):
            t, n = timed(root, args, a.repeat)
            print(f"xpr {' '.join(args):<40} {t:6.3f} s  ({n} lines)")


if __name__ == "__main__":
    main()
