"""Slurm-specific tests on a real cluster (the contract suite is in test_contract.py).

They run on every selected system with ``"scheduler": "slurm"`` that has a partition with a time
limit and a partition allowing longer jobs (CI: ``debug`` MaxTime=10 min and ``long``, from
scripts/services/start-slurm.sh). Without such a system they skip locally and fail under CI=true.
Waits are on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from expyre import config
from expyre.func import ExPyRe, ExPyReJobDiedError
from expyre.poller import Poller
from expyre.hookspecs import JobState
from expyre.resources import Resources
from expyre.system import System
from expyre.testing import CallCounter, skip_or_fail, wait_for
from expyre.types import SchedulerCommandError, SubmitError

pytestmark = pytest.mark.real_scheduler
logger = logging.getLogger(__name__)

# the job functions below live in this test module, which jobs cannot import (nor expyre itself, on
# a remote host whose Python has only cloudpickle): pickle them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SMALL = {"max_time": "5m", "n": (1, "tasks")}
TIMEOUT = 300.0


def job_square(x: int) -> int:
    return x * x


def job_sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def job_slurm_env() -> dict[str, str]:
    """The job's EXPYRE_* and SLURM_* variables."""
    import os

    return {k: v for k, v in os.environ.items() if k.startswith(("EXPYRE_", "SLURM_"))}


# -- helpers -----------------------------------------------------------------------------------

def _start(name: str, fn: Any, system_name: str, args=(), resources=SMALL, **kw: Any) -> ExPyRe:
    xpr = ExPyRe(name, fn, args=list(args))
    xpr.start(resources=resources, system_name=system_name, partial_node=True, **kw)
    return xpr


def _statuses(system: System) -> dict:
    poller = Poller.get(system, config.db)
    poller.refresh(max_age=0.5)
    return poller.statuses


def _state(xpr: ExPyRe) -> JobState | None:
    st = _statuses(xpr.system).get(xpr.remote_id)
    return st.state if st else None


def _started(xpr: ExPyRe) -> bool:
    _statuses(xpr.system)
    return config.db.get(xpr.id)["status"] == "started"


def _short_and_long(system: System) -> tuple[str, str]:
    """A partition with a time limit, and one that allows longer jobs."""
    parts = system.partitions
    limited = {n: p for n, p in parts.items() if p.max_time is not None}
    if limited:
        short = min(limited, key=lambda n: limited[n].max_time)  # type: ignore[arg-type, return-value]
        longer = [n for n, p in parts.items()
                  if n != short and (p.max_time is None or p.max_time > limited[short].max_time)]  # type: ignore[operator]
        if longer:
            return short, longer[0]
    skip_or_fail(f"system {system.name!r} needs a partition with a max_time and one allowing longer jobs; has {dict(parts)}")
    raise AssertionError("unreachable")


def _died_reason(xpr: ExPyRe) -> str:
    with pytest.raises(ExPyReJobDiedError) as died:
        xpr.get_results(timeout=TIMEOUT, check_interval=2, quiet=True)
    return str(died.value)


def _header(xpr: ExPyRe) -> list[str]:
    return [line for line in (xpr.stage_dir / "_expyre_script.sh").read_text().splitlines() if line.startswith("#SBATCH")]


# -- partitions, header, environment -----------------------------------------------------------

def test_partition_chosen_by_regexp_and_by_max_time(slurm_root: Path, slurm_name: str) -> None:
    system = config.get_system(slurm_name)
    short, long = _short_and_long(system)
    limit = system.partitions[short].max_time.seconds  # type: ignore[union-attr]
    rx = re.escape(long[0]) + ".*"
    if re.fullmatch(rx, short):
        rx = re.escape(long)
    cases = {
        # the regexp rules out the short partition although the job would fit it
        "by_regexp": ({"max_time": "2m", "n": (1, "tasks"), "partitions": rx}, long),
        # longer than the short partition allows (EnforcePartLimits would refuse it there)
        "by_max_time": ({"max_time": limit + 60, "n": (1, "tasks")}, long),
        "fits_short": ({"max_time": "2m", "n": (1, "tasks"), "partitions": re.escape(short)}, short),
    }
    xprs = {}
    for case, (res, expected) in cases.items():
        chosen, _ = Resources.from_any(res).find_nodes(system.partitions, partial_node=True)
        assert chosen == expected, case
        xprs[case] = _start(f"part_{case}", job_slurm_env, slurm_name, resources=res)
    for case, xpr in xprs.items():
        res, expected = cases[case]
        env = xpr.get_results(timeout=TIMEOUT, check_interval=1, quiet=True)
        assert env["SLURM_JOB_PARTITION"] == expected, case
        assert f"#SBATCH --partition={expected}" in _header(xpr)
        hms = Resources.from_any(res).max_time.hms()
        assert f"#SBATCH --time={hms}" in _header(xpr)


def test_header_keys_and_expyre_env_match_the_request(slurm_root: Path, slurm_name: str) -> None:
    system = config.get_system(slurm_name)
    res = {"max_time": "5m", "n": (2, "tasks"), "ncores_per_task": 2}
    partition, alloc = Resources.from_any(res).find_nodes(system.partitions, partial_node=True)
    if alloc.nnodes != 1:
        skip_or_fail(f"system {slurm_name!r}: needs a partition with >= 4 cores per node for this test")
    extra = ["#SBATCH --nodes={nnodes}", "#SBATCH --ntasks={tot_ntasks}", "#SBATCH --ntasks-per-node={ntasks_per_node}",
             "#SBATCH --cpus-per-task={ncores_per_task}", "#SBATCH --comment=expyre-{id}-{tot_ncores}-{max_time_HMS}"]
    xpr = _start("hdr", job_slurm_env, slurm_name, resources=res, header_extra=extra)
    env = xpr.get_results(timeout=TIMEOUT, check_interval=1, quiet=True)

    assert _header(xpr)[5:] == [
        f"#SBATCH --nodes={alloc.nnodes}", f"#SBATCH --ntasks={alloc.tot_ntasks}",
        f"#SBATCH --ntasks-per-node={alloc.ntasks_per_node}", f"#SBATCH --cpus-per-task={alloc.ncores_per_task}",
        f"#SBATCH --comment=expyre-{xpr.id}-{alloc.tot_ncores}-0:05:00",
    ]
    # Slurm made the allocation the header asked for...
    assert env["SLURM_JOB_NAME"] == xpr.id
    assert env["SLURM_JOB_ID"] == xpr.remote_id
    assert env["SLURM_JOB_PARTITION"] == partition
    assert env["SLURM_NTASKS"] == str(alloc.tot_ntasks) and env["SLURM_CPUS_PER_TASK"] == str(alloc.ncores_per_task)
    # ...and EXPYRE_* inside the job say the same as the request
    assert env["EXPYRE_NNODES"] == str(alloc.nnodes)
    assert env["EXPYRE_TOT_NCORES"] == str(alloc.tot_ncores)
    assert env["EXPYRE_TOT_NTASKS"] == str(alloc.tot_ntasks)
    assert env["EXPYRE_NCORES_PER_NODE"] == str(alloc.ncores_per_node)
    assert env["EXPYRE_NTASKS_PER_NODE"] == str(alloc.ntasks_per_node)
    assert env["EXPYRE_NCORES_PER_TASK"] == str(alloc.ncores_per_task)
    assert env["EXPYRE_JOB_ID"] == xpr.id and env["EXPYRE_SYS"] == slurm_name


def test_enclosing_job_slurm_env_does_not_leak(slurm_root: Path, slurm_name: str, monkeypatch) -> None:
    # as if this driver ran inside a Slurm job step: what Slurm set there must not reach the nested
    # job, while the client's own settings (here SLURM_TIME_FORMAT) must reach sbatch
    for k, v in {"SLURM_JOB_ID": "4242424", "SLURM_CPUS_PER_TASK": "3", "SLURM_MEM_PER_NODE": "100",
                 "SLURM_STEP_NUM_TASKS": "7", "SLURM_NTASKS_HET_GROUP_1": "5", "SLURM_TIME_FORMAT": "standard"}.items():
        monkeypatch.setenv(k, v)
    xpr = _start("nested", job_slurm_env, slurm_name)
    env = xpr.get_results(timeout=TIMEOUT, check_interval=1, quiet=True)
    assert env["SLURM_JOB_ID"] == xpr.remote_id
    assert "SLURM_STEP_NUM_TASKS" not in env and "SLURM_NTASKS_HET_GROUP_1" not in env
    assert env.get("SLURM_MEM_PER_NODE") != "100"
    assert env["EXPYRE_NCORES_PER_TASK"] == "1"
    if xpr.system.transport.is_local:  # over ssh the login's environment is the remote host's
        assert env.get("SLURM_TIME_FORMAT") == "standard"


#: submits a job from inside the Slurm job step it runs in, and prints both environments
_NESTED_DRIVER = """
import json, os, sys
from expyre.func import ExPyRe

def job_env():
    import os
    return {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "EXPYRE_"))}

xpr = ExPyRe("nested_in_step", job_env)
xpr.start(resources={"max_time": "5m", "n": (1, "tasks")}, system_name=sys.argv[1], partial_node=True)
nested = xpr.get_results(timeout=float(sys.argv[2]), check_interval=1, quiet=True)
outer = {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}
print(json.dumps({"outer": outer, "nested": nested, "nested_id": xpr.remote_id}))
"""

#: variables of an srun step that a batch job never gets
_STEP_ONLY = ("SLURM_STEP_ID", "SLURM_STEPID", "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NUM_NODES",
              "SLURM_STEP_TASKS_PER_NODE", "SLURM_STEP_LAUNCHER_PORT", "SLURM_SRUN_COMM_HOST", "SLURM_SRUN_COMM_PORT",
              "SLURM_LAUNCH_NODE_IPADDR")


def test_submission_from_inside_a_running_job_gets_its_own_allocation(
    local_slurm_root: Path, local_slurm_name: str, tmp_path: Path
) -> None:
    """A driver running in a real Slurm job (sbatch -c 2 --mem-per-cpu=77, then srun) submits a
    job: the nested job has its own allocation, none of the enclosing job's or step's, and the
    driver's client settings."""
    system = config.get_system(local_slurm_name)
    short, _ = _short_and_long(system)
    outer_name = f"expyre-outer-{tmp_path.name}"[:60]
    driver = tmp_path / "driver.py"
    driver.write_text(_NESTED_DRIVER)
    out = tmp_path / "outer.out"
    env = {**os.environ, "EXPYRE_PROGRESS": "0", "SLURM_TIME_FORMAT": "standard"}
    argv = ["sbatch", "--wait", "--parsable", f"--job-name={outer_name}", f"--partition={short}", "--time=8",
            "--nodes=1", "--ntasks=1", "--cpus-per-task=2", "--mem-per-cpu=77", f"--chdir={tmp_path}",
            f"--output={out}", f"--error={tmp_path / 'outer.err'}",
            "--wrap", shlex.join(["srun", sys.executable, str(driver), local_slurm_name, str(TIMEOUT)])]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TIMEOUT + 180)
    finally:  # a driver that hangs must not hold its allocation after the test
        subprocess.run(["scancel", f"--name={outer_name}"], capture_output=True, timeout=60)
    err = (tmp_path / "outer.err").read_text() if (tmp_path / "outer.err").exists() else ""
    assert proc.returncode == 0, f"sbatch --wait exited {proc.returncode}: {proc.stderr[-2000:]} {err[-3000:]}"
    got = json.loads(out.read_text().strip().splitlines()[-1])
    outer, nested = got["outer"], got["nested"]

    # the driver really ran in a job step with that allocation...
    assert outer["SLURM_CPUS_PER_TASK"] == "2" and outer["SLURM_MEM_PER_CPU"] == "77", outer
    step_vars = [k for k in _STEP_ONLY if k in outer]
    assert {"SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS", "SLURM_SRUN_COMM_PORT"} <= set(step_vars), outer
    # ...and the nested job (one core) has its own, not those
    assert nested["SLURM_JOB_ID"] == got["nested_id"] != outer["SLURM_JOB_ID"]
    assert nested["SLURM_JOB_NAME"] != outer["SLURM_JOB_NAME"]
    assert nested.get("SLURM_MEM_PER_CPU") != "77" and nested.get("SLURM_CPUS_PER_TASK") != "2"
    assert [k for k in step_vars if k in nested] == []
    assert nested["EXPYRE_NCORES_PER_TASK"] == "1" and nested["EXPYRE_TOT_NCORES"] == "1"
    # while the client's configuration went with the submission
    assert nested.get("SLURM_TIME_FORMAT") == "standard"
    assert nested.get("SLURM_CONF") == outer.get("SLURM_CONF")


# -- submission --------------------------------------------------------------------------------

def test_refused_submit_says_why_and_leaves_nothing(slurm_root: Path, slurm_name: str) -> None:
    system = config.get_system(slurm_name)
    xpr = ExPyRe("refused", job_square, args=[5])
    with pytest.raises(SubmitError, match="Invalid partition name specified"):
        xpr.start(resources=SMALL, system_name=slurm_name, partial_node=True,
                  header_extra=["#SBATCH --partition=expyre_no_such_partition"])
    row = config.db.get(xpr.id)
    assert row["status"] == "created" and row["remote_id"] is None and not row["submit_owner"]
    assert system.find([xpr.id]) == {}
    # nothing half-made: the same job starts cleanly once the request is fixed
    xpr.start(resources=SMALL, system_name=slurm_name, partial_node=True)
    assert xpr.get_results(timeout=TIMEOUT, check_interval=1, quiet=True) == 25


def test_ambiguous_submit_adopts_the_queued_job(slurm_root: Path, slurm_name: str, monkeypatch) -> None:
    """sbatch ran but its answer was lost: the core finds the job by name instead of submitting it twice."""
    system = config.get_system(slurm_name)
    sched = system.scheduler
    real_parse = sched.parse_submit
    answers = []

    def lost_answer(result, job):
        answers.append(result)
        if len(answers) == 1:
            raise SchedulerCommandError("simulated: the connection dropped after sbatch ran", result)
        return real_parse(result, job)

    monkeypatch.setattr(sched, "parse_submit", lost_answer)
    xpr = ExPyRe("ambiguous", job_square, args=[9])
    with CallCounter(system) as counter:
        xpr.start(resources=SMALL, system_name=slurm_name, partial_node=True)
    sbatch_calls = counter.count(lambda c: not isinstance(c, str) and c[0] == "sbatch")
    assert sbatch_calls == 1, counter.calls
    assert xpr.remote_id == answers[0].stdout.strip()
    assert xpr.get_results(timeout=TIMEOUT, check_interval=1, quiet=True) == 81
    assert system.find([xpr.id]) == {xpr.id: xpr.remote_id}


# -- states ------------------------------------------------------------------------------------

def test_held_job_is_held_and_runs_after_release(slurm_root: Path, slurm_name: str) -> None:
    xpr = _start("held", job_square, slurm_name, args=[6], header_extra=["#SBATCH --hold"])
    wait_for(lambda: _state(xpr) is JobState.HELD, 60, "the job submitted with --hold to be reported held")
    assert config.db.get(xpr.id)["remote_status"].startswith("held")
    assert config.db.get(xpr.id)["status"] == "submitted"
    xpr.release()
    assert xpr.get_results(timeout=TIMEOUT, check_interval=1, quiet=True) == 36


def test_hold_release_cancel_several_jobs_at_once(slurm_root: Path, slurm_name: str) -> None:
    system = config.get_system(slurm_name)
    # pending on their begin time, so they cannot start while the test holds them
    xprs = [_start(f"later_{i}", job_square, slurm_name, args=[i], header_extra=["#SBATCH --begin=now+3600"])
            for i in range(2)]
    ids = [x.remote_id for x in xprs]

    def states() -> list[JobState | None]:
        st = _statuses(system)
        return [st[i].state if i in st else None for i in ids]

    wait_for(lambda: states() == [JobState.QUEUED] * 2, 60, "both jobs to be queued")
    with CallCounter(system) as counter:
        system.control("hold", ids)
        wait_for(lambda: states() == [JobState.HELD] * 2, 60, "both jobs to be held")
        system.control("release", ids)
        wait_for(lambda: states() == [JobState.QUEUED] * 2, 60, "both jobs to be released")
        system.control("cancel", ids)
        wait_for(lambda: states() == [JobState.CANCELLED] * 2, 60, "both jobs to be cancelled")
    controls = [c for c in counter.calls if not isinstance(c, str) and c[0] in ("scontrol", "scancel")]
    assert controls == [["scontrol", "hold", ",".join(ids)], ["scontrol", "release", ",".join(ids)], ["scancel", *ids]]


def test_cancelled_from_outside_is_died_promptly(slurm_root: Path, slurm_name: str, monkeypatch) -> None:
    """Two sleepers scancel'ed by someone else. A stays listed (CANCELLED); B is made to vanish from
    squeue as after MinJobAge, so its end can only come from accounting (sacct) or the grace period."""
    system = config.get_system(slurm_name)
    a = _start("outside_a", job_sleep, slurm_name, args=[600])
    b = _start("outside_b", job_sleep, slurm_name, args=[600])
    wait_for(lambda: _started(a) and _started(b), TIMEOUT, "both sleepers to start")

    sched = system.scheduler
    real_parse = sched.parse_status
    monkeypatch.setattr(sched, "parse_status",
                        lambda result, ids: {k: v for k, v in real_parse(result, ids).items() if k != b.remote_id})
    result = system.transport.run(["scancel", a.remote_id, b.remote_id])
    assert result.ok, result.describe()
    t0 = time.monotonic()
    # wait on both at once (the core runs a job's grace period only while someone waits on it)
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(_died_reason, x) for x in (a, b)]
        reason_a, reason_b = (f.result() for f in futures)
    elapsed = time.monotonic() - t0
    logger.info("cancelled from outside: both reported died %.1f s after scancel (vanish_grace %.0f s)",
                elapsed, sched.vanish_grace)
    logger.info("cancelled from outside: %s | %s", reason_a, reason_b)
    assert "the scheduler reports it cancelled" in reason_a
    if sched.accounting_command([b.remote_id]) is not None:
        assert "scheduler accounting says cancelled" in reason_b
    else:
        assert "vanished from the queue" in reason_b
    assert elapsed < sched.vanish_grace + 60
    assert config.db.get(a.id)["status"] == config.db.get(b.id)["status"] == "died"


@pytest.mark.slow
def test_walltime_exceeded_is_died_with_timeout(slurm_root: Path, slurm_name: str) -> None:
    # Slurm's --time has 1-minute granularity and is enforced up to ~30 s late: ~100 s of wall time
    xpr = _start("overtime", job_sleep, slurm_name, args=[900], resources={"max_time": 60, "n": (1, "tasks")})
    assert "#SBATCH --time=0:01:00" in _header(xpr)
    wait_for(lambda: _started(xpr), TIMEOUT, "the job to start")
    t0 = time.monotonic()
    with pytest.raises(ExPyReJobDiedError) as died:
        xpr.get_results(timeout=400, check_interval=5, quiet=True)
    logger.info("walltime: died reported %.1f s after the job started", time.monotonic() - t0)
    msg = str(died.value)
    logger.info("walltime: %s", msg)
    assert re.search(r"\btimeout\b", msg), msg
    assert "TimeLimit" in msg or "TIMEOUT" in msg, msg
    assert "DUE TO TIME LIMIT" in msg  # slurmstepd's line, from the end of the job's stderr


# -- many jobs ---------------------------------------------------------------------------------

def test_fifty_jobs_batched_status(slurm_root: Path, slurm_name: str, record_property) -> None:
    system = config.get_system(slurm_name)
    poller = Poller.get(system, config.db)
    n = 50
    t0 = time.monotonic()
    with CallCounter(system) as counter:
        xprs = [_start(f"fifty_{i}", job_square, slurm_name, args=[i]) for i in range(n)]
        t_submitted = time.monotonic()
        polls_before = poller.count
        results = [x.get_results(timeout=600, check_interval=2, quiet=True) for x in xprs]
        polls = poller.count - polls_before
    wall = time.monotonic() - t0
    assert results == [i * i for i in range(n)]

    def kind(c: Any) -> str:
        return (shlex.split(c) if isinstance(c, str) else list(c))[0]

    kinds: dict[str, int] = {}
    for c in counter.calls:
        kinds[kind(c)] = kinds.get(kind(c), 0) + 1
    status_argv = system.scheduler.status_command(["x"])
    # on this machine the status query runs as argv; over ssh inside the poll's one bash script
    status_calls = counter.count(lambda c: shlex.join(status_argv) in c if isinstance(c, str) else list(c) == status_argv)
    numbers = {"jobs": n, "wall_s": round(wall, 1), "submit_s": round(t_submitted - t0, 1), "polls": polls,
               "squeue_status_calls": status_calls, "calls_by_command": kinds}
    record_property("fifty_jobs", numbers)
    logger.info("50 jobs on %s: %s", slurm_name, numbers)
    assert kinds.get("sbatch") == n
    # one squeue per poll for all jobs (never one per job), at most one a second (min_status_interval)
    assert status_calls <= polls
    assert status_calls <= wall / max(system.scheduler.options.min_status_interval, 1.0) + 2
    assert not {"sacct", "scontrol", "scancel"} & set(kinds), kinds  # no per-job queries


# -- usage --------------------------------------------------------------------------------------

def test_usage_of_a_200_mib_job(slurm_root: Path, slurm_name: str) -> None:
    """The runner's record (copied back with the results on a remote host) and sacct's: elapsed
    and MaxRSS. ``--acctg-freq=task=1``: the cluster samples memory every 30 s, longer than the job."""
    from expyre.testing import check_job_usage, job_hold_memory

    xpr = _start("usage200", job_hold_memory, slurm_name, args=[200, 3], header_extra=["#SBATCH --acctg-freq=task=1"])
    assert xpr.get_results(timeout=TIMEOUT, check_interval=1, quiet=True) == 200 * 1024 * 1024
    u = check_job_usage(xpr, 200, scheduler=True)
    assert u["scheduler"]["source"] == "sacct" and u["scheduler"]["elapsed"] >= 3
    assert u["scheduler"]["max_rss_kib"] is not None
