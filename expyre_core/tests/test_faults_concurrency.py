"""Several processes calling start() on the same jobs at the same moment: every call returns, each
job is submitted once. (Found by the 8-process reliability test: start() wrote the job script
through one fixed temporary name, so a concurrent start() of the same job lost its file and raised
FileNotFoundError.) The larger multi-process suite is test_reliability_concurrency.py."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import xpr_core_jobfuncs as jobfuncs
from expyre import config

DRIVER = textwrap.dedent(f"""
    import os, sys, time
    sys.path.insert(0, {str(Path(jobfuncs.__file__).parent)!r})
    import xpr_core_jobfuncs as jobfuncs
    from expyre.func import ExPyRe
    xprs = [ExPyRe(f"same_{{i}}", jobfuncs.add, args=[i, 1]) for i in range(12)]
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.002)
    for x in xprs:
        x.start(resources={{"max_time": "5m", "n": (1, "tasks")}}, system_name="local", partial_node=True)
    print(" ".join(x.id for x in xprs))
""")


def test_concurrent_start_of_the_same_jobs(root, tmp_path):
    script = tmp_path / "d.py"
    script.write_text(DRIVER)
    go = tmp_path / "go"
    env = {**os.environ, "EXPYRE_ROOT": str(root)}
    for round_ in range(2):
        go.unlink(missing_ok=True)
        procs = [subprocess.Popen([sys.executable, str(script), str(go)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(6)]
        time.sleep(0.8)
        go.touch()
        ids = set()
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
            ids.add(out.strip())
        assert len(ids) == 1  # identical calls: one job each, in every process
        job_ids = ids.pop().split()
        for j in job_ids:
            config.db.update(j, status="processed")  # next round: new jobs
    subs = collections.Counter()
    for sub in ("jobs", "done"):
        for f in (root / "_expyre_localq" / sub).glob("*.json"):
            subs[json.loads(f.read_text())["name"]] += 1
    assert len(subs) == 24 and set(subs.values()) == {1}, subs
    assert not list(root.glob("run_*/._expyre_script.sh.tmp*"))
