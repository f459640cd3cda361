"""Helpers of the concurrency tests (here and in the repository's cross-distribution tests): several
driver processes create, start and collect jobs against ONE expyre root at once."""

from __future__ import annotations

import collections
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

DRIVER = textwrap.dedent("""
    import json, operator, os, sys, time
    from expyre.func import ExPyRe

    me, n_jobs, n_shared, system, go = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    res = json.loads(sys.argv[6])
    while not os.path.exists(go):  # all processes start together: maximum contention
        time.sleep(0.005)
    # the first n_shared calls are identical in every process, the others are this process's own
    calls = [("shared", i, 1000) for i in range(n_shared)] + [(f"own{me}", i, me * 10000) for i in range(n_jobs - n_shared)]
    xprs = [ExPyRe(f"conc_{tag}_{i}", operator.add, args=[i, off]) for tag, i, off in calls]
    for x in xprs:
        x.start(resources=res, system_name=system, partial_node=True)
    out = {x.id: x.get_results(timeout=600, check_interval=1, quiet=True) for x in xprs}
    print(json.dumps({"ids": [x.id for x in xprs], "results": [out[x.id] for x in xprs]}))
""")


def run_drivers(root: Path, tmp_path: Path, n_procs: int, n_jobs: int, n_shared: int, system: str, res: dict) -> list[dict]:
    script = tmp_path / "conc_driver.py"
    script.write_text(DRIVER)
    go = tmp_path / "go"
    env = {**os.environ, "EXPYRE_ROOT": str(root), "EXPYRE_PROGRESS": "0"}
    procs = [subprocess.Popen([sys.executable, str(script), str(p), str(n_jobs), str(n_shared), system, str(go), json.dumps(res)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(n_procs)]
    time.sleep(0.5)
    go.touch()
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        assert "database is locked" not in stderr
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    return outs


def check_outcome(root: Path, outs: list[dict], n_jobs: int, n_shared: int, submissions: collections.Counter) -> None:
    n_procs = len(outs)
    for me, out in enumerate(outs):
        expected = [i + 1000 for i in range(n_shared)] + [i + me * 10000 for i in range(n_jobs - n_shared)]
        assert out["results"] == expected, f"process {me} got wrong results"
    # identical calls -> one job, the same id in every process
    shared_ids = {tuple(o["ids"][:n_shared]) for o in outs}
    assert len(shared_ids) == 1, "identical calls made different jobs in different processes"
    all_ids = {i for o in outs for i in o["ids"]}
    assert len(all_ids) == n_shared + n_procs * (n_jobs - n_shared)
    con = sqlite3.connect(root / "jobs.db")
    rows = {r[0]: r[1] for r in con.execute("SELECT id, status FROM jobs")}
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    assert set(rows) == all_ids, "the jobs database has jobs no process knows (or lost some)"
    assert set(rows.values()) == {"succeeded"}, collections.Counter(rows.values())  # no lost update
    assert submissions == collections.Counter({i: 1 for i in all_ids}), \
        f"submitted twice: {[k for k, v in submissions.items() if v > 1]}; never: {all_ids - set(submissions)}"


