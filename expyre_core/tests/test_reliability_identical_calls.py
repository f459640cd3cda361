"""Identical calls from several processes at once: every process gets the value, the call runs
once and is submitted once. A process that lost the submission claim waits for the winner's job;
when the winner is killed (-9) after claiming, one of the others takes the claim over and the job
still runs exactly once (looked up by name first, so a job the winner had queued is adopted).

Real processes on one expyre root, on the zero-config local system and on a local system with
its own ``rundir`` (the stage directories are copied there before submission: a wider window).
Executions are counted by the job itself (it appends a line to a file); submissions by the local
queue's request files.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import xpr_core_jobfuncs as jobfuncs

HERE = str(Path(jobfuncs.__file__).parent)
N_PROCS = 6

DRIVER = textwrap.dedent(f"""
    import json, os, sys, time
    sys.path.insert(0, {HERE!r})
    import xpr_core_jobfuncs as jobfuncs
    from expyre import _faults
    from expyre.func import ExPyRe

    system, go, log, started = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    hold = os.environ.get("TEST_HOLD_AT")  # this process pauses at that point until TEST_DIE exists, then dies
    if hold:
        real_point = _faults.point
        def point(name):
            real_point(name)
            if name == hold:
                open(os.environ["TEST_HELD"], "w").close()
                while not os.path.exists(os.environ["TEST_DIE"]):
                    time.sleep(0.01)
                os.kill(os.getpid(), 9)
        _faults.point = point
    while not os.path.exists(go):  # every process makes the call at the same moment
        time.sleep(0.002)
    res = {{"max_time": "5m", "n": (1, "tasks")}}
    if os.environ.get("TEST_EXECUTOR"):
        from expyre import Executor
        with Executor(system_name=system, resources=res, partial_node=True, mark_processed=False, progress=False) as ex:
            fut = ex.submit(jobfuncs.record_interval, log, 0.2)
            open(started + str(os.getpid()), "w").close()
            print(json.dumps({{"id": fut.job_id, "value": fut.result(timeout=300)}}))
        sys.exit(0)
    x = ExPyRe("same_call", jobfuncs.record_interval, args=[log, 0.2])
    x.start(resources=res, system_name=system, partial_node=True)
    open(started + str(os.getpid()), "w").close()
    print(json.dumps({{"id": x.id, "value": x.get_results(timeout=300, check_interval=0.5, quiet=True)}}))
""")


def submissions(queue: Path) -> collections.Counter:
    names: collections.Counter = collections.Counter()
    for sub in ("jobs", "done"):
        d = queue / sub
        for f in d.glob("*.json") if d.exists() else []:
            names[json.loads(f.read_text())["name"]] += 1
    return names


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(params=["local", "rundir"])
def setup(request, tmp_path, monkeypatch):
    """(root, system name, the local queue's directory) of an expyre root with both systems."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = tmp_path / "_expyre"
    root.mkdir(mode=0o700)
    rundir = tmp_path / "rundir"
    (root / "config.json").write_text(json.dumps({"systems": {"rundir": {
        "host": None, "scheduler": "local", "rundir": str(rundir),
        "partitions": {"p": {"ncores": 2, "max_mem": "1GB", "max_time": "1h"}}}}}))
    queue = (root if request.param == "local" else rundir) / "_expyre_localq"
    return root, request.param, queue


def spawn(root: Path, tmp_path: Path, system: str, **env_extra: str) -> subprocess.Popen:
    script = tmp_path / "driver.py"
    if not script.exists():
        script.write_text(DRIVER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPYRE_FAULT", "TEST_"))}
    env.update(EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0", **env_extra)
    return subprocess.Popen([sys.executable, str(script), system, str(tmp_path / "go"), str(tmp_path / "ran.log"),
                             str(tmp_path / "started_")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def collect(procs: list[subprocess.Popen], stderrs: list[str] | None = None) -> list[dict]:
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        assert p.returncode == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
        if stderrs is not None:
            stderrs.append(stderr)
    return outs


def check_once(outs: list[dict], tmp_path: Path, queue: Path) -> None:
    assert [o["value"] for o in outs] == [True] * len(outs), outs
    ids = {o["id"] for o in outs}
    assert len(ids) == 1, f"identical calls made several jobs: {ids}"
    assert len((tmp_path / "ran.log").read_text().splitlines()) == 1, "the call ran more than once"
    assert submissions(queue) == collections.Counter({ids.pop(): 1})


def test_identical_calls_at_once(setup, tmp_path):
    """6 processes make the same call at the same moment: one job, one execution, one
    submission, and every process gets the value (none is told to call start() first)."""
    root, system, queue = setup
    procs = [spawn(root, tmp_path, system) for _ in range(N_PROCS)]
    (tmp_path / "go").touch()
    check_once(collect(procs), tmp_path, queue)


@pytest.mark.parametrize("point", ["start_claimed", "start_submitted"])
def test_winner_killed_after_claiming(setup, tmp_path, point):
    """The process that claimed the submission stops there while the others wait for its job, then
    is killed -9: one of the others takes the claim over (after ``start_claimed``: nothing was
    queued, it submits; after ``start_submitted``: the queue has the job, it is found by name and
    adopted) and every other process gets the value; the call runs once."""
    root, system, queue = setup
    held, die = tmp_path / "held", tmp_path / "die"
    (tmp_path / "go").touch()
    winner = spawn(root, tmp_path, system, TEST_HOLD_AT=point, TEST_HELD=str(held), TEST_DIE=str(die))
    wait_for(held.exists, 120, f"the first process to reach {point}")
    others = [spawn(root, tmp_path, system) for _ in range(N_PROCS - 1)]
    # every other process has returned from start() (the claim is taken) and waits in get_results()
    wait_for(lambda: len(list(tmp_path.glob("started_*"))) == N_PROCS - 1, 300, "the other processes' start()")
    die.touch()
    assert winner.wait(timeout=120) == -signal.SIGKILL
    winner.communicate()
    stderrs: list[str] = []
    outs = collect(others, stderrs)
    check_once(outs, tmp_path, queue)
    assert sum("taking its submission over" in e for e in stderrs) == 1, stderrs
    if point == "start_submitted":  # the scheduler had it: found by name and adopted, not submitted again
        assert sum("adopting it" in e for e in stderrs) == 1, stderrs


def test_executor_winner_killed_after_claiming(tmp_path):
    """The same through ``Executor.submit``: the processes whose batch found the submission claimed
    wait for the job, and when the claiming process is killed -9 one of them submits it; the
    call runs once and every future gets the value."""
    root = tmp_path / "_expyre"
    root.mkdir(mode=0o700)
    queue = root / "_expyre_localq"
    held, die, log = tmp_path / "held", tmp_path / "die", tmp_path / "points.log"
    (tmp_path / "go").touch()
    winner = spawn(root, tmp_path, "local", TEST_EXECUTOR="1", TEST_HOLD_AT="start_claimed", TEST_HELD=str(held),
                   TEST_DIE=str(die))
    wait_for(held.exists, 120, "the first process to claim the submission")
    others = [spawn(root, tmp_path, "local", TEST_EXECUTOR="1", EXPYRE_FAULT_LOG=str(log)) for _ in range(3)]

    def tried() -> int:  # processes that wrote the job script: their claim attempt comes next
        lines = log.read_text().splitlines() if log.exists() else []
        return len({ln.split()[0] for ln in lines if ln.endswith(" start_script_written")})

    wait_for(lambda: tried() == 3, 300, "the other processes' attempts to claim")
    die.touch()
    assert winner.wait(timeout=120) == -signal.SIGKILL
    winner.communicate()
    stderrs: list[str] = []
    check_once(collect(others, stderrs), tmp_path, queue)
    assert sum("taking its submission over" in e for e in stderrs) == 1, stderrs
