"""The local queue: core limit across drivers sharing a root, detached jobs, hold/cancel."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import xpr_core_jobfuncs as jobfuncs
from expyre import config
from expyre.builtin import localq
from expyre.func import ExPyRe


def test_never_more_cores_than_the_machine_across_drivers(root, tmp_path):
    log = tmp_path / "intervals.txt"
    ncores = localq.machine_ncores()
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(jobfuncs.__file__).parent)!r})
        import xpr_core_jobfuncs as jobfuncs
        from expyre.func import ExPyRe
        xs = []
        for i in range(3):
            x = ExPyRe(f"core_{{sys.argv[1]}}_{{i}}", jobfuncs.record_interval, args=[{str(log)!r}, 0.5])
            x.start(resources={{"max_time": "5m", "n": (1, "tasks")}}, system_name="local", partial_node=True)
            xs.append(x)
        assert all(x.get_results(timeout=120) for x in xs)
    """)
    env = {**os.environ, "EXPYRE_ROOT": str(root)}
    drivers = [subprocess.Popen([sys.executable, "-c", code, str(k)], env=env) for k in range(2 * ncores)]
    assert [d.wait() for d in drivers] == [0] * len(drivers)
    intervals = [tuple(map(float, line.split())) for line in log.read_text().splitlines()]
    assert len(intervals) == 6 * ncores
    events = sorted([(s, 1) for s, e in intervals] + [(e, -1) for s, e in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= ncores, f"{peak} jobs ran at once on {ncores} cores"
    assert peak >= 2 or ncores == 1


def test_cancel_queued_job(root):
    blocker = ExPyRe("block", jobfuncs.sleep, args=[2])
    blocker.start(resources={"max_time": "5m", "n": (1, "nodes")}, system_name="local")
    queued = ExPyRe("q", jobfuncs.add, args=[1, 1])
    queued.start(resources={"max_time": "5m", "n": (1, "tasks")}, system_name="local", partial_node=True)
    queued.cancel()
    import pytest
    from expyre.func import ExPyReJobDiedError

    with pytest.raises(ExPyReJobDiedError, match="cancelled"):
        queued.get_results(timeout=60)
    assert not (queued.stage_dir / "_expyre_job_started").exists()
    assert blocker.get_results(timeout=60) == 2


def test_daemon_restarts_itself_after_being_killed(root):
    x = ExPyRe("after_kill", jobfuncs.sleep, args=[1])
    q = str(root / "_expyre_localq")
    x.start(resources={"max_time": "5m", "n": (1, "tasks")}, system_name="local", partial_node=True)
    # kill every daemon of this queue, then check the job still completes
    out = subprocess.run(["pgrep", "-f", f"localq.py daemon {q}"], capture_output=True, text=True).stdout.split()
    for p in out:
        os.kill(int(p), 9)
    assert x.get_results(timeout=60) == 1
    assert config.db.get(x.id)["status"] == "succeeded"


def test_find_sees_a_job_moved_to_done_while_it_looks(tmp_path, monkeypatch):
    """``find`` lists jobs/ and done/, then reads: a job finishing in between (its request moved
    from jobs/ to done/ by the daemon) must still be found, or a lost submit would be repeated."""
    q = str(tmp_path / "q")
    for sub in ("jobs", "done"):
        os.makedirs(os.path.join(q, sub))
    jid = "abc123"
    localq._write_json(os.path.join(q, "jobs", f"{jid}.json"), {"jid": jid, "name": "job_x", "seq": 1})
    real_listdir = os.listdir
    listed = []

    def listdir_then_finish(path):
        entries = real_listdir(path)
        listed.append(path)
        if path.endswith("done"):  # the daemon finishes the job right after our last listing
            os.replace(os.path.join(q, "jobs", f"{jid}.json"), os.path.join(q, "done", f"{jid}.json"))
        return entries

    monkeypatch.setattr(localq.os, "listdir", listdir_then_finish)
    assert localq.find(q, ["job_x", "other"]) == {"job_x": jid}
    assert len(listed) == 2
