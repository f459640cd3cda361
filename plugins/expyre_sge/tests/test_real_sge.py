"""Grid Engine specific tests on the real cluster (scripts/services/start-sge.sh: all.q, PE smp).

Each runs on every selected system with ``"scheduler": "sge"`` (see conftest.py); without one,
or with Grid Engine down, they skip locally with the reason and fail under CI=true. Waits are on
conditions with deadlines, never fixed sleeps.

``$EXPYRE_PYTEST_SGE_PE`` names the parallel environment that puts all slots on one host
(default ``smp``, as start-sge.sh configures it).
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import shlex
import subprocess
import sys
import time
from pathlib import Path

import logging

import pytest

from expyre import config
from expyre import testing as xt
from expyre._runner import STARTED
from expyre.func import ExPyRe, ExPyReJobDiedError
from expyre.poller import Poller
from expyre.testing import CallCounter, job_env, job_sleep, job_square, wait_for
from expyre.types import JobState

pytestmark = pytest.mark.real_scheduler

logger = logging.getLogger(__name__)
PE = os.environ.get("EXPYRE_PYTEST_SGE_PE", "smp")
TIMEOUT = 300.0
REPO = Path(__file__).resolve().parents[3]
SMALL = {"max_time": "5m", "n": (1, "tasks")}


def state_of(xpr: ExPyRe) -> JobState | None:
    st = xpr.system.status([xpr.remote_id]).get(xpr.remote_id)
    return st.state if st else None


def runner_started(xpr: ExPyRe) -> bool:
    """The job's Python is running (its started marker exists on the executing host). Waiting for
    this rather than for SGE's "r" keeps kills out of the job's login-shell startup: root's
    profile here runs `pyenv rehash`, and a SIGKILL inside it leaves a stale pyenv lock that
    delays every later job of the user by 60 s."""
    path = posixpath.join(xpr.system.remote_dir(xpr.stage_dir), STARTED)
    return xpr.system.transport.run(["test", "-e", path], timeout=60).ok


def short_grace(xpr: ExPyRe, seconds: float = 2.0) -> None:
    """Tests of *why* a job died need not sit through the default grace period (10 s); the qdel
    test keeps the default, to measure how promptly death is reported."""
    xpr.system.scheduler.vanish_grace = seconds


def qdel_outside(xpr: ExPyRe) -> None:
    """Delete the job with qdel on the cluster's host, not through expyre."""
    r = xpr.system.transport.run(["qdel", xpr.remote_id], timeout=60)
    assert r.ok, r.describe()


# -- the README's example ---------------------------------------------------------------------------


def test_readme_example_script(sge_root: Path, sge_name: str) -> None:
    """examples/readme_example.py, run as a program with only the system name changed (and the
    partition regexp, since this cluster's queue is all.q, not a *bigmem one)."""
    source = (REPO / "examples" / "readme_example.py").read_text()
    assert "system_name='local'" in source and "'partitions': '.*bigmem'" in source
    partition = next(iter(config.get_system(sge_name).partitions))
    source = source.replace("system_name='local'", f"system_name={sge_name!r}")
    source = source.replace("'partitions': '.*bigmem'", f"'partitions': {partition.replace('.', '[.]')!r}")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=TIMEOUT,
                          env={**os.environ, "EXPYRE_ROOT": str(sge_root)})
    assert proc.returncode == 0, proc.stderr
    assert "(100 values, all 50.0): OK" in proc.stdout
    rows = config.db.jobs(name="test_task")
    assert [r["status"] for r in rows] == ["processed"]
    assert rows[0]["remote_id"].isdigit()
    logger.info(f"README example on {sge_name}: {time.monotonic() - t0:.2f} s")


# -- time limit, qdel, hold/release -----------------------------------------------------------


def test_h_rt_exceeded_is_died_with_reason(sge_root: Path, sge_name: str) -> None:
    xpr = ExPyRe("overtime", job_sleep, args=[120])
    xpr.start(resources={"max_time": 5, "n": (1, "tasks")}, system_name=sge_name, partial_node=True)
    assert "#$ -l h_rt=0:00:05" in (xpr.stage_dir / "_expyre_script.sh").read_text()
    wait_for(lambda: runner_started(xpr), TIMEOUT, "the job's Python to start")
    short_grace(xpr)
    t0 = time.monotonic()
    with pytest.raises(ExPyReJobDiedError) as info:
        xpr.get_results(timeout=TIMEOUT, check_interval=1)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    assert "timeout (failed 37)" in msg, msg
    assert "qmaster enforced h_rt" in msg and "exit_status 137" in msg
    wall = int(msg.split("ru_wallclock ")[1].split("s")[0])
    assert 5 <= wall <= 8, msg  # killed at h_rt (+1 s), not at the function's 120 s
    assert config.db.get(xpr.id)["status"] == "died"
    assert elapsed < 60, f"death noticed {elapsed:.1f} s after the start"
    logger.info(f"h_rt=5: ru_wallclock {wall}s, died reported {elapsed:.1f} s after the job's Python started (grace 2 s)")


def test_qdel_from_outside_is_died_promptly(sge_root: Path, sge_name: str) -> None:
    xpr = ExPyRe("killed_outside", job_sleep, args=[600])
    xpr.start(resources=SMALL, system_name=sge_name, partial_node=True)
    wait_for(lambda: runner_started(xpr), TIMEOUT, "the job's Python to start")
    t0 = time.monotonic()
    qdel_outside(xpr)
    with pytest.raises(ExPyReJobDiedError) as info:
        xpr.get_results(timeout=TIMEOUT, check_interval=1)
    elapsed = time.monotonic() - t0
    msg = str(info.value)
    assert "cancelled (failed 100)" in msg and "assumedly after job" in msg, msg
    assert elapsed < 45, f"died only {elapsed:.1f} s after qdel"
    logger.info(f"qdel -> died in {elapsed:.1f} s")


def test_hold_and_release_of_a_queued_job(sge_root: Path, sge_name: str) -> None:
    # a deferred start time (qsub -a) keeps the job queued (qw) however free the cluster is
    later = (dt.datetime.now() + dt.timedelta(hours=1)).strftime("%Y%m%d%H%M.%S")
    xpr = ExPyRe("deferred", job_square, args=[5])
    xpr.start(resources=SMALL, system_name=sge_name, partial_node=True, header_extra=[f"#$ -a {later}"])
    assert state_of(xpr) is JobState.QUEUED
    xpr.hold()
    wait_for(lambda: state_of(xpr) is JobState.HELD, 60, "the job to be held (hqw)")
    xpr.hold()  # holding a held job again is fine
    xpr.release()
    wait_for(lambda: state_of(xpr) is JobState.QUEUED, 60, "the job to be queued again (qw)")
    xpr.cancel()
    wait_for(lambda: state_of(xpr) is None, 60, "the cancelled job to leave the queue")


def test_submitted_on_hold_runs_after_release(sge_root: Path, sge_name: str) -> None:
    xpr = ExPyRe("held_at_submit", job_square, args=[7])
    xpr.start(resources=SMALL, system_name=sge_name, partial_node=True, header_extra=["#$ -h"])
    assert state_of(xpr) is JobState.HELD
    st = xpr.system.status([xpr.remote_id])[xpr.remote_id]
    assert st.raw == "hqw", st
    xpr.release()
    assert xpr.get_results(timeout=TIMEOUT, check_interval=1) == 49


def test_error_state_job_dies_with_error_reason(sge_root: Path, sge_name: str) -> None:
    xpr = ExPyRe("eqw", job_square, args=[3])
    xpr.start(resources=SMALL, system_name=sge_name, partial_node=True,
              header_extra=["#$ -e /nonexistent_dir_of_expyre_tests/x.err"])
    short_grace(xpr)
    try:
        with pytest.raises(ExPyReJobDiedError) as info:
            xpr.get_results(timeout=TIMEOUT, check_interval=1)
        msg = str(info.value)
        assert "node_fail (Eqw)" in msg and f"qstat -j {xpr.remote_id}" in msg, msg
        if xpr.system.transport.is_local or _core_explains_remote_polls():
            assert "error reason: " in msg and "can't open output file \"/nonexistent_dir_of_expyre_tests/x.err\"" in msg, msg
        # else: over ssh the core parses the poll itself (System.poll) and never calls
        # SgeScheduler.status/explain, so the reason stays "`qstat -j N` says why" (README: core change)
    finally:
        qdel_outside(xpr)  # Grid Engine keeps a job in error state until it is deleted


def _core_explains_remote_polls() -> bool:
    """Whether the core lets schedulers add detail to a remote poll (the proposed core change:
    ``Scheduler.explain`` in the contract, called by ``System.poll`` on both paths)."""
    from expyre.hookspecs import Scheduler

    return "explain" in vars(Scheduler)


# -- EXPYRE_* from the allocation -----------------------------------------------------------------


@pytest.mark.parametrize("pe_line, expected", [("#$ -pe {pe} {{tot_ncores}}", 2), ("#$ -pe {pe} 3", 3)], ids=["pe2", "pe3-override"])
def test_pe_job_sees_allocation(sge_root: Path, sge_name: str, pe_line: str, expected: int) -> None:
    """A 2-slot request; the second case asks SGE for 3 slots in header_extra (the later -pe wins),
    so the values must come from NSLOTS/NHOSTS, not from the request."""
    xpr = ExPyRe(f"pe_env_{expected}", job_env)
    xpr.start(resources={"max_time": "5m", "n": (2, "tasks")}, system_name=sge_name, partial_node=True,
              header_extra=[pe_line.format(pe=PE)])
    env = xpr.get_results(timeout=TIMEOUT, check_interval=1)
    assert env["EXPYRE_TOT_NCORES"] == str(expected)
    assert env["EXPYRE_NNODES"] == "1"
    assert env["EXPYRE_NCORES_PER_NODE"] == str(expected)
    assert env["EXPYRE_TOT_NTASKS"] == str(expected)
    assert env["EXPYRE_NCORES_PER_TASK"] == "1"
    assert env["EXPYRE_NTASKS_PER_NODE"] == str(expected)


# -- many jobs, one status query per poll ---------------------------------------------------------


def test_30_jobs_batched_status(sge_root: Path, sge_name: str) -> None:
    n = 30
    system = config.get_system(sge_name)
    t0 = time.monotonic()
    xprs = [ExPyRe(f"many_{i}", job_square, args=[i]) for i in range(n)]
    for x in xprs:
        x.start(resources=SMALL, system_name=sge_name, partial_node=True)
    t_submit = time.monotonic() - t0
    polls_before = Poller.get(system, config.db).count

    def text(c: object) -> str:
        return c if isinstance(c, str) else " ".join(map(str, c))

    with CallCounter(system) as counter:
        results = [x.get_results(timeout=TIMEOUT, check_interval=1) for x in xprs]
    t_all = time.monotonic() - t0
    assert results == [i * i for i in range(n)]
    polls = Poller.get(system, config.db).count - polls_before
    status_calls = counter.count(lambda c: "qstat -xml" in text(c))
    # why long-waiting jobs wait (scheduling info): one `qstat -j` at most per pending_reason_interval
    why_calls = counter.count(lambda c: "qstat -j" in text(c))
    other_qstat = counter.count(lambda c: "qstat" in text(c) and "qstat -xml" not in text(c)) - why_calls
    qacct_calls = counter.count(lambda c: "qacct" in text(c))
    # one query per poll, the same for any number of jobs (no ids in it), and nothing else while waiting
    assert status_calls == polls, (status_calls, polls)
    # (over ssh each poll is one bash script: the status query plus the listing of result markers)
    status_text = shlex.join(system.scheduler.status_command([]))
    assert all(text(c).count("qstat") == 1 and status_text in text(c) for c in counter.calls if "qstat -j" not in text(c)), counter.calls
    assert other_qstat == 0 and qacct_calls == 0
    assert why_calls <= 1 + t_all / system.scheduler._options.pending_reason_interval, why_calls
    logger.info(f"{n} jobs on {sge_name}: submitted in {t_submit:.2f} s, all results after {t_all:.2f} s, "
          f"{polls} polls = {status_calls} qstat -xml calls, {len(counter.calls)} commands in all")


# -- names, find, env hygiene ---------------------------------------------------------------------


def test_find_by_name_with_sanitised_id(sge_root: Path, sge_name: str) -> None:
    xpr = ExPyRe("wëird/name:with@chars*? and 9 spaces", job_square, args=[4])
    xpr.start(resources=SMALL, system_name=sge_name, partial_node=True)
    assert xpr.system.find([xpr.id, "no_such_job_name"]) == {xpr.id: xpr.remote_id}
    assert xpr.get_results(timeout=TIMEOUT, check_interval=1) == 16
    # finished jobs are still found (qstat -s z), so an interrupted submit is never repeated
    assert xpr.system.find([xpr.id]) == {xpr.id: xpr.remote_id}


def test_find_finished_job_from_accounting(sge_root: Path, sge_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished job that ``qstat -s z`` no longer lists (it keeps only the cluster's last 100)
    is still found by name, in ``qacct``: an interrupted submission is never repeated."""
    xpr = ExPyRe("rolled_out", job_square, args=[5])
    xpr.start(resources=SMALL, system_name=sge_name, partial_node=True)
    assert xpr.get_results(timeout=TIMEOUT, check_interval=1) == 25
    sched = xpr.system.scheduler
    monkeypatch.setattr(sched, "parse_find", lambda result, names: {})  # as if rolled out of qstat -s z
    wait_for(lambda: xpr.system.find([xpr.id, "no_such_job_name"]) == {xpr.id: xpr.remote_id}, 60,
             "qacct to list the finished job")


ENCLOSING_JOB = {
    "JOB_ID": "4242",
    "JOB_NAME": "enclosing",
    "NSLOTS": "99",
    "NHOSTS": "7",
    "PE": "enclosing_pe",
    "PE_HOSTFILE": "/enclosing/pe_hostfile",
    "QUEUE": "enclosing.q",
    "REQUEST": "enclosing",
    "ENVIRONMENT": "BATCH",
    "SGE_TASK_ID": "5",
    "SGE_O_WORKDIR": "/enclosing/workdir",
    "SGE_CKPT_DIR": "/enclosing/ckpt",
    "SGE_STDOUT_PATH": "/enclosing/out",
}


def test_enclosing_job_env_does_not_leak(sge_local_root: Path, sge_local_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver running inside an SGE job submits a nested job with ``#$ -V`` (qsub copies its
    environment into the job). The enclosing job's variables must not arrive; a control qsub
    without expyre shows that they would."""
    # the nested job has no parallel environment (else SGE sets PE and PE_HOSTFILE itself)
    sysd = dict(xt.available_systems()[sge_local_name])
    sysd["header"] = [line for line in sysd.get("header", []) if "-pe" not in line]
    xt.make_root(sge_local_root, {sge_local_name: sysd})
    for k, v in ENCLOSING_JOB.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EXPYRE_TEST_MARKER", "copied-by-V")
    xpr = ExPyRe("nested", subprocess.check_output, args=[["env"]], kwargs={"text": True})
    xpr.start(resources=SMALL, system_name=sge_local_name, partial_node=True, header_extra=["#$ -V"])
    env = dict(line.split("=", 1) for line in xpr.get_results(timeout=TIMEOUT, check_interval=1).splitlines() if "=" in line)
    assert env["EXPYRE_TEST_MARKER"] == "copied-by-V"  # -V did copy the submit environment
    for k in ("PE", "PE_HOSTFILE", "SGE_CKPT_DIR"):  # SGE sets these only for PE/ckpt jobs: would leak
        assert k not in env, (k, env.get(k))
    assert env["JOB_ID"] == xpr.remote_id and env["NSLOTS"] == "1" and env["QUEUE"] != "enclosing.q"
    assert env["SGE_O_WORKDIR"] != "/enclosing/workdir" and env["SGE_TASK_ID"] == "undefined"

    # control: plain qsub -V with the same environment does carry them into the job
    out = Path("control.out")
    proc = subprocess.run(["qsub", "-sync", "y", "-V", "-cwd", "-S", "/bin/bash", "-N", "control_leak", "-o", str(out),
                           "-j", "y", "-b", "y", "env"], capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    control = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert control.get("PE_HOSTFILE") == "/enclosing/pe_hostfile" and control.get("SGE_CKPT_DIR") == "/enclosing/ckpt"


# -- usage ------------------------------------------------------------------------------------------

def test_usage_of_a_200_mib_job(sge_root: Path, sge_name: str) -> None:
    """The runner's record (copied back with the results on a remote host) and qacct's:
    ru_wallclock, ru_maxrss and maxvmem."""
    from expyre.testing import check_job_usage, job_hold_memory

    xpr = ExPyRe("usage200", job_hold_memory, args=[200, 2])
    xpr.start(resources=SMALL, system_name=sge_name, partial_node=True)
    assert xpr.get_results(timeout=300, check_interval=1, quiet=True) == 200 * 1024 * 1024
    u = check_job_usage(xpr, 200, scheduler=True)
    assert u["scheduler"]["source"] == "qacct" and u["scheduler"]["elapsed"] >= 2
    assert u["scheduler"]["max_rss_kib"] >= 200 * 1024 and u["scheduler"]["max_vmem_kib"] >= 200 * 1024
