"""End-to-end tests through real Torque-style commands: Slurm's Torque-compatible wrappers
(slurm-wlm-torque, /opt/slurm-torque/bin) on the real Slurm of scripts/services, locally and over
ssh as xprpbs; or any PBS system the test config lists. Waits are conditions with deadlines.

Facts of the wrappers these tests rely on (real-schedulers.md §4): qsub prints a bare id; qstat
shows only Q R S C, a held job as Q (with Priority 0), no exit status; walltime has a granularity
of one minute and is enforced up to ~30 s late.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from expyre import config
from expyre.func import ExPyRe, ExPyReJobDiedError
from expyre.poller import Poller
from expyre.testing import CallCounter, wait_for
from expyre.types import JobState

pytestmark = pytest.mark.real_scheduler

SMALL = {"max_time": "5m", "n": (1, "tasks"), "partitions": "debug"}
WHOLE_NODE = {"max_time": "5m", "n": (1, "nodes"), "partitions": "debug"}
TIMEOUT = 300.0


# functions run in the jobs (module level, pickled by value: the remote host has no expyre-pbs tests)
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def square(x: int) -> int:
    return x * x


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(("EXPYRE_", "PBS_", "NCPUS"))}


def sleep_until_file(path: str, limit: float) -> str:
    deadline = time.time() + limit
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.2)
    return "released" if os.path.exists(path) else "timed out"


@pytest.fixture(autouse=True)
def _by_value():
    import sys

    import cloudpickle

    mod = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(mod)
    yield
    cloudpickle.unregister_pickle_by_value(mod)


def start(name: str, fn, args=(), resources=SMALL, system_name: str = "") -> ExPyRe:
    xpr = ExPyRe(name, fn, args=list(args))
    xpr.start(resources=resources, system_name=system_name, partial_node=True)
    return xpr


def poll_status(xpr: ExPyRe):
    """Refresh the shared poll now and return the scheduler's last word on ``xpr``."""
    poller = Poller.get(xpr.system, config.db)
    poller.refresh(max_age=0.5)
    return poller.statuses.get(xpr.remote_id)


def started(xpr: ExPyRe) -> bool:
    poll_status(xpr)
    return config.db.get(xpr.id)["status"] == "started"


def test_job_ids_and_find_by_name(pbs_root: Path, pbs_name: str):
    xpr = start("findme", square, [3], system_name=pbs_name)
    system = config.get_system(pbs_name)
    assert system.scheduler.flavor.value == "torque"
    assert "Slurm's Torque-compatible wrappers" in system.scheduler.describe()
    assert xpr.remote_id.isdigit()  # the wrappers' qsub prints a bare numeric id
    assert system.find([xpr.id]) == {xpr.id: xpr.remote_id}
    assert xpr.get_results(timeout=TIMEOUT, check_interval=2) == 9


def test_enclosing_job_variables_do_not_leak(pbs_root: Path, pbs_name: str, monkeypatch: pytest.MonkeyPatch):
    # As if expyre ran inside a Torque job: sbatch (under the wrappers) exports the whole
    # environment into the new job, so without foreign_env_prefixes these would reach it and
    # the job_env lines would report 99 cores.
    monkeypatch.setenv("PBS_NUM_PPN", "99")
    monkeypatch.setenv("PBS_NP", "99")
    monkeypatch.setenv("PBS_NUM_NODES", "7")
    monkeypatch.setenv("PBS_JOBID", "424242.enclosing")
    monkeypatch.setenv("PBS_O_WORKDIR", "/enclosing")
    env = start("env", environment, system_name=pbs_name).get_results(timeout=TIMEOUT, check_interval=2)
    assert env.get("PBS_NUM_PPN") != "99" and env.get("PBS_NP") != "99" and env.get("PBS_NUM_NODES") != "7"
    assert env.get("PBS_JOBID") != "424242.enclosing" and env.get("PBS_O_WORKDIR") != "/enclosing"
    assert env["EXPYRE_NCORES_PER_NODE"] == "1" and env["EXPYRE_NNODES"] == "1" and env["EXPYRE_TOT_NCORES"] == "1"


def test_batched_status_one_query_per_poll(pbs_root: Path, pbs_name: str):
    n = 8
    xprs = [start(f"batch_{i}", square, [i], system_name=pbs_name) for i in range(n)]
    system = config.get_system(pbs_name)
    poller = Poller.get(system, config.db)

    def qstats(counter: CallCounter) -> list[str]:
        calls = [c if isinstance(c, str) else " ".join(c) for c in counter.calls]
        return [c for c in calls if "qstat" in c]

    # one poll of all eight tracked jobs is one qstat naming all eight ids
    with CallCounter(system) as counter:
        poller.refresh(max_age=0)
    assert len(counter.calls) == 1 and len(qstats(counter)) == 1, counter.calls
    assert set(x.remote_id for x in xprs) <= set(qstats(counter)[0].replace(";", " ").split())
    # waiting for all of them never costs more than one qstat per poll
    polls_before = poller.count
    with CallCounter(system) as counter:
        results = [x.get_results(timeout=TIMEOUT, check_interval=1) for x in xprs]
    assert results == [i * i for i in range(n)]
    assert len(qstats(counter)) <= poller.count - polls_before


def test_qdel_reports_died_with_reason(pbs_root: Path, pbs_name: str):
    xpr = start("qdel_me", sleep_for, [600], system_name=pbs_name)
    wait_for(lambda: started(xpr), TIMEOUT, "the sleeping job to start")
    t0 = time.monotonic()
    xpr.cancel()
    with pytest.raises(ExPyReJobDiedError) as info:
        xpr.get_results(timeout=TIMEOUT, check_interval=1)
    took = time.monotonic() - t0
    msg = str(info.value)
    assert "ended without a result" in msg and xpr.remote_id in msg
    assert "(C)" in msg and "exit status not reported" in msg
    assert "CANCELLED" in msg  # Slurm's own words, from the tail of the job's stderr file
    assert config.db.get(xpr.id)["status"] == "died"
    grace = config.get_system(pbs_name).scheduler.vanish_grace
    assert took < grace + 60, f"cancellation noticed after {took:.0f} s (vanish_grace {grace} s)"


def test_hold_keeps_the_job_from_running_until_released(pbs_root: Path, pbs_name: str, tmp_path: Path):
    system = config.get_system(pbs_name)
    gate = f"/tmp/expyre-pbs-gate-{os.getpid()}-{time.monotonic_ns()}"
    # 1. fill the node so that the next job must queue
    blocker = start("blocker", sleep_until_file, [gate, 240], resources=WHOLE_NODE, system_name=pbs_name)
    try:
        wait_for(lambda: started(blocker), TIMEOUT, "the whole-node blocker to start")
        # 2. queue the job, hold it while it cannot run yet
        held = start("held", square, [5], system_name=pbs_name)
        held.hold()
        st = wait_for(lambda: poll_status(held), 60, "a status for the held job")
        assert st.state is JobState.HELD, st.describe()  # the wrappers print Q; Priority 0 tells
        assert st.raw == "Q" and "Priority 0" in st.reason
    finally:
        # 3. free the node
        system.transport.run(["touch", gate], timeout=60)
    assert blocker.get_results(timeout=TIMEOUT, check_interval=1) == "released"
    # 4. a job submitted later runs to completion while the held one still does not start
    probe = start("probe", square, [6], system_name=pbs_name)
    assert probe.get_results(timeout=TIMEOUT, check_interval=1) == 36
    assert poll_status(held).state is JobState.HELD
    assert config.db.get(held.id)["status"] == "submitted", "the held job started"
    # 5. released, it runs
    held.release()
    st = wait_for(lambda: (s := poll_status(held)) is None or s.state is not JobState.HELD, 60, "the release to show")
    assert held.get_results(timeout=TIMEOUT, check_interval=1) == 25
    system.transport.run(["rm", "-f", gate], timeout=60)


@pytest.mark.slow
def test_walltime_kill_reports_died_with_reason(pbs_root_one: Path, pbs_one_name: str):
    # one system only (about 100 s each). 1 minute is the shortest limit (walltime rounds up to minutes); Slurm enforces it ~30 s late
    xpr = ExPyRe("walltime", sleep_for, args=[600])
    t0 = time.monotonic()
    xpr.start(resources={"max_time": "1m", "n": (1, "tasks"), "partitions": "debug"}, system_name=pbs_one_name, partial_node=True)
    with pytest.raises(ExPyReJobDiedError) as info:
        xpr.get_results(timeout=TIMEOUT, check_interval=2)
    took = time.monotonic() - t0
    msg = str(info.value)
    assert "ended without a result" in msg and "(C)" in msg
    assert "DUE TO TIME LIMIT" in msg  # Slurm's words in the job's stderr, quoted in the reason
    assert 60 <= took < 200, took
