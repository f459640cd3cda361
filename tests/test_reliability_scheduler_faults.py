"""Scheduler faults on real Slurm and Grid Engine: each ends in the documented status, with the
scheduler's reason, promptly (every wait has a deadline; no sleep-and-hope).

| fault | documented outcome | where |
|---|---|---|
| job killed from outside (``scancel``) | ``died``, reason "the scheduler reports it cancelled" / "scheduler accounting says cancelled", within vanish_grace + 60 s | ``plugins/expyre_slurm/tests/test_real_slurm.py::test_cancelled_from_outside_is_died_promptly`` |
| job killed from outside (``qdel``) | ``died`` with the accounting reason | ``plugins/expyre_sge/tests/test_real_sge.py::test_qdel_from_outside_is_died_promptly`` |
| walltime exceeded (Slurm ``--time``, slow: ~100 s) | ``died``, reason "timeout ... DUE TO TIME LIMIT" | ``test_real_slurm.py::test_walltime_exceeded_is_died_with_timeout`` |
| walltime exceeded (SGE ``h_rt``) | ``died``, reason from ``qacct`` (h_rt limit) | ``test_real_sge.py::test_h_rt_exceeded_is_died_with_reason`` |
| any contract scheduler: ``cancel()`` | ``died`` promptly | ``expyre.testing.SchedulerContract.test_cancel_reports_died`` |
| node drained (Slurm) / queue disabled (SGE) while the job is queued | stays ``submitted``, scheduler status ``queued`` with the scheduler's reason (Slurm's pending reason; SGE's scheduling info), never ``died``; runs after resume/enable | here |
| status command hanging | killed after the system's ``command_timeout``, retried; the job succeeds | here |
| status command failing transiently (more times than ``EXPYRE_RETRY`` allows) | the poll fails, is logged, the next one retries; the job ends ``succeeded``, submitted once | here |
| ``xpr sync`` while the status command fails | the error names job, system and command; non-zero exit | here |
| submit command failing transiently (ambiguous error, job not queued / queued but answer lost) | looked up by name, then resubmitted / adopted: submitted exactly once | here |

Faulty commands are wrappers that fail the first N matching calls, first on ``PATH`` (the
systems here run their commands on this machine, so the driver's ``PATH`` is the scheduler's).

The node and the queue are shared with other users' jobs: they are drained/disabled for a few
seconds only, always resumed/enabled in a ``finally``, and those tests are marked ``serial`` (run
alone, after the parallel phase of scripts/test.sh). Only this test's own jobs are cancelled.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_schedulers import require_answering  # noqa: E402

from expyre import config
from expyre.func import ExPyRe, ExPyReTimeoutError
from expyre.poller import Poller
from expyre.testing import isolated_root, job_sleep, job_square, selected_systems, skip_or_fail, wait_for

pytestmark = pytest.mark.real_scheduler

SCHEDULERS = ("slurm", "sge")
RES = {"max_time": "5m", "n": (1, "tasks")}
TIMEOUT = 300.0  # the node is shared: a job may wait behind others' for minutes


def _systems(scheduler: str | None = None) -> list[str]:
    return sorted(n for n, s in selected_systems().items()
                  if s.get("scheduler") in ((scheduler,) if scheduler else SCHEDULERS) and s.get("host") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, scheduler in (("fault_system", None), ("slurm_system", "slurm"), ("sge_system", "sge")):
        if fixture in metafunc.fixturenames:
            names = _systems(scheduler)
            metafunc.parametrize(fixture, names or [None], ids=names or [f"no-{scheduler or 'slurm-or-sge'}-system"])


def _root(tmp_path: Path, name: str | None, system_keys: dict | None = None, **scheduler_options):
    sysd = require_answering(name)
    if scheduler_options:
        sysd = {**sysd, "scheduler_options": {**sysd.get("scheduler_options", {}), **scheduler_options}}
    return isolated_root(tmp_path / "_expyre", {name: {**sysd, **(system_keys or {})}})


@pytest.fixture
def fault_root(tmp_path, fault_system, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_RETRY", "2 0.2")
    with _root(tmp_path, fault_system) as root:
        yield root


# -- the scheduler's records ---------------------------------------------------------------------
def submissions(scheduler: str, name: str) -> int:
    """Distinct scheduler jobs named ``name`` (queued, running or finished)."""
    ids: set[str] = set()
    if scheduler == "slurm":
        out = subprocess.run(["squeue", "-a", "-t", "all", "-h", "-o", "%i|%j"], capture_output=True, text=True, timeout=60).stdout
        ids |= {line.split("|")[0] for line in out.splitlines() if line.split("|", 1)[-1] == name}
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "now-1days", "-o", "JobID", f"--name={name}"],
                             capture_output=True, text=True, timeout=60).stdout
        ids |= {line.strip() for line in out.splitlines() if line.strip()}
    else:
        xml = subprocess.run(["qstat", "-xml", "-u", "*", "-s", "prsz"], capture_output=True, text=True, timeout=60).stdout
        ids |= {n for n, j in re.findall(r"<JB_job_number>(\d+)</JB_job_number>.*?<JB_name>([^<]*)</JB_name>", xml, re.S)
                if j == name}
        out = subprocess.run(["qacct", "-j", name], capture_output=True, text=True, timeout=60).stdout
        ids |= set(re.findall(r"^jobnumber\s+(\d+)", out, re.M))
    return len(ids)


# -- commands that fail the first N times --------------------------------------------------------
WRAPPER = """#!/bin/bash
# test wrapper: the first {fails} calls whose arguments match {match} fail with {message}
# ({mode}: "refuse" = nothing ran; "lose" = the real command ran, its answer is lost;
#  "hang" = it never answers)
state={state}
if [[ " $* " == *{match}* ]]; then
    n=$(( $(cat "$state.n" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$state.n"
    if (( n <= {fails} )); then
        if [[ {mode} == hang ]]; then exec sleep 600; fi
        if [[ {mode} == lose ]]; then {real} "$@" >>"$state.lost" 2>&1; fi
        echo {message} >&2
        exit 1
    fi
fi
exec {real} "$@"
"""


class FailingCommands:
    """A directory put first on ``PATH`` with wrappers of scheduler commands."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.dir = tmp_path / "failing-bin"
        self.dir.mkdir()
        monkeypatch.setenv("PATH", f"{self.dir}{os.pathsep}{os.environ['PATH']}")

    def add(self, command: str, fails: int, message: str, match: str = "", mode: str = "refuse") -> None:
        rest = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d != str(self.dir))
        real = shutil.which(command, path=rest)
        assert real, f"{command} not found on PATH"
        path = self.dir / command
        path.write_text(WRAPPER.format(fails=fails, match=shlex.quote(match), message=shlex.quote(message), mode=mode,
                                       real=shlex.quote(real), state=shlex.quote(str(self.dir / f".{command}"))))
        path.chmod(0o755)

    def calls(self, command: str) -> int:
        p = self.dir / f".{command}.n"
        return int(p.read_text()) if p.exists() else 0


@pytest.fixture
def failing(tmp_path, monkeypatch) -> FailingCommands:
    return FailingCommands(tmp_path, monkeypatch)


def _poll(xpr: ExPyRe) -> dict:
    Poller.get(xpr.system, config.db).refresh(max_age=0, force=True)
    return config.db.get(xpr.id)


# -- transient failures ----------------------------------------------------------------------------
STATUS_FAILURE = {
    "slurm": ("squeue", "", "squeue: error: slurm_receive_msg: Socket timed out on send/recv operation"),
    "sge": ("qstat", "-xml", "error: commlib error: got read error (closing \"vm/qmaster/1\")"),
}
SUBMIT_FAILURE = {
    "slurm": ("sbatch", "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"),
    "sge": ("qsub", "error: commlib error: got read error (closing \"vm/qmaster/1\")"),
}


def test_status_query_failing_transiently(fault_root, fault_system, failing, caplog):
    """The status query fails 3 times in a row: more than one poll's tries (EXPYRE_RETRY=2), so a
    whole poll fails; it is logged, the next poll works, the job ends succeeded, submitted once."""
    scheduler = config.get_system(fault_system).cfg.scheduler
    command, match, message = STATUS_FAILURE[scheduler]
    failing.add(command, fails=3, message=message, match=match)
    xpr = ExPyRe("flaky_status", job_sleep, args=[2.0])
    xpr.start(resources=RES, system_name=fault_system, partial_node=True)
    with caplog.at_level(logging.WARNING):
        assert xpr.get_results(timeout=TIMEOUT, check_interval=0.5, quiet=True) == 2.0
    assert failing.calls(command) >= 4, "the fault was injected and the command then worked"
    warnings = [r.getMessage() for r in caplog.records]
    assert any(re.search(rf"{fault_system}: poll of 1 job\(s\) failed .*{re.escape(command)}", w) for w in warnings), warnings
    assert any("polling works again" in w for w in warnings), warnings
    assert config.db.get(xpr.id)["status"] == "succeeded"
    assert submissions(scheduler, xpr.id) == 1


def test_status_outage_longer_than_the_limit_fails_clearly(fault_root, fault_system, failing, monkeypatch):
    """A status query that keeps failing: get_results gives up after EXPYRE_POLL_OUTAGE seconds
    with an error naming the system and the command; the job itself is left alone and a later
    call collects it."""
    scheduler = config.get_system(fault_system).cfg.scheduler
    command, match, message = STATUS_FAILURE[scheduler]
    failing.add(command, fails=10**6, message=message, match=match)
    monkeypatch.setenv("EXPYRE_POLL_OUTAGE", "2")
    xpr = ExPyRe("dead_status", job_square, args=[12])
    xpr.start(resources=RES, system_name=fault_system, partial_node=True)
    # the job may finish (result file) before the outage limit: only the polling is tested here
    poller = Poller.get(xpr.system, config.db)
    t0 = time.monotonic()
    with pytest.raises(Exception, match=rf"{fault_system}: polling has failed for \d+ s \(EXPYRE_POLL_OUTAGE=2\); "
                                        rf"last error: .*{re.escape(command)}.*exited 1"):
        while True:
            poller.refresh(max_age=0.2, force=True)
            assert time.monotonic() - t0 < 30, "the outage limit was not applied"
            time.sleep(0.2)
    failing.add(command, fails=0, message=message, match=match)  # the scheduler answers again
    assert xpr.get_results(timeout=TIMEOUT, check_interval=0.5, quiet=True) == 144
    assert submissions(scheduler, xpr.id) == 1


def test_hanging_status_command_is_killed_and_retried(tmp_path, fault_system, failing, monkeypatch, caplog):
    """The status command hangs (twice): the system's command_timeout (2 s here) kills it, the
    warning names the command and the timeout, the next try works, the job succeeds."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_RETRY", "3 0.2")
    with _root(tmp_path, fault_system, system_keys={"command_timeout": 2}):
        scheduler = config.get_system(fault_system).cfg.scheduler
        command, match, _ = STATUS_FAILURE[scheduler]
        failing.add(command, fails=2, message="", match=match, mode="hang")
        xpr = ExPyRe("hung_status", job_square, args=[8])
        xpr.start(resources=RES, system_name=fault_system, partial_node=True)
        with caplog.at_level(logging.WARNING):
            assert xpr.get_results(timeout=TIMEOUT, check_interval=0.5, quiet=True) == 64
        assert failing.calls(command) >= 3
        text = "\n".join(r.getMessage() for r in caplog.records)
        assert re.search(rf"{fault_system}: (status query|poll) failed \(try 1 of 3\).*`{command} .*` on this machine "
                         rf"timed out after 2 s \(command_timeout\)", text), text
        assert submissions(scheduler, xpr.id) == 1


def test_xpr_sync_reports_a_failing_status_query(fault_root, fault_system, failing):
    """``xpr sync`` does not tolerate a failed poll silently (as a waiting driver does): it names
    the job, the system and the failing command, and exits non-zero; then, with the command
    working again, it syncs the job."""
    scheduler = config.get_system(fault_system).cfg.scheduler
    command, match, message = STATUS_FAILURE[scheduler]
    xpr = ExPyRe("sync_flaky", job_sleep, args=[1.0])
    xpr.start(resources=RES, system_name=fault_system, partial_node=True)
    failing.add(command, fails=10**6, message=message, match=match)
    env = {**os.environ, "EXPYRE_ROOT": str(fault_root), "EXPYRE_PROGRESS": "0"}  # PATH has the wrapper
    argv = [sys.executable, "-m", "expyre", "sync", "-i", xpr.id]
    bad = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0, bad
    assert re.search(rf"{xpr.id}: polling {fault_system} failed: .*{re.escape(command)}.*exited 1", bad.stderr), bad.stderr
    failing.add(command, fails=0, message=message, match=match)
    wait_for(lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120).returncode == 0
             and config.db.get(xpr.id)["status"] == "succeeded", TIMEOUT, "xpr sync to collect the job")


@pytest.mark.parametrize("mode", ["refuse", "lose"])
def test_submit_failing_transiently(fault_root, fault_system, failing, caplog, mode):
    """The submit command fails once with an ambiguous error. ``refuse``: nothing was queued, so
    after looking the job up by name it is submitted again. ``lose``: the job WAS queued and only
    the answer was lost: it is found by name and adopted. Either way: submitted exactly once."""
    scheduler = config.get_system(fault_system).cfg.scheduler
    command, message = SUBMIT_FAILURE[scheduler]
    failing.add(command, fails=1, message=message, mode=mode)
    xpr = ExPyRe(f"flaky_submit_{mode}", job_square, args=[7])
    with caplog.at_level(logging.WARNING, logger="expyre.system"):
        xpr.start(resources=RES, system_name=fault_system, partial_node=True)
    assert failing.calls(command) == (2 if mode == "refuse" else 1)
    text = "\n".join(r.getMessage() for r in caplog.records)
    if mode == "refuse":
        assert re.search(rf"submitting {xpr.id} failed \(try 1 of 2\), not queued, retrying", text), text
    else:
        assert re.search(rf"submit of {xpr.id} reported .* but the job is queued as {xpr.remote_id}", text), text
    assert xpr.get_results(timeout=TIMEOUT, check_interval=0.5, quiet=True) == 49
    assert submissions(scheduler, xpr.id) == 1


# -- the node drained / the queue disabled while the job is queued --------------------------------
def _node_of(partition: str) -> str:
    out = subprocess.run(["sinfo", "-h", "-p", partition, "-o", "%N"], capture_output=True, text=True, timeout=60)
    nodes = out.stdout.split()
    if out.returncode != 0 or len(nodes) != 1 or "[" in nodes[0] or "," in nodes[0]:
        skip_or_fail(f"partition {partition!r} needs exactly one node to drain: {out.stdout or out.stderr}")
    return nodes[0]


def _node_state(node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True, timeout=60).stdout.split()[0]


def _scontrol(*args: str) -> None:
    r = subprocess.run(["scontrol", "update", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"scontrol update {' '.join(args)}: {r.stderr}"


@pytest.mark.serial  # drains/disables a shared service: run alone (scripts/test.sh)
def test_node_drained_while_queued(tmp_path, slurm_system, monkeypatch):
    """Submitted while its only node is drained: it stays submitted/queued with Slurm's reason
    (across polls, never suspected or died); after RESUME it runs and succeeds."""
    if os.geteuid() != 0:
        skip_or_fail("draining a Slurm node needs root (or a Slurm operator)")
    monkeypatch.chdir(tmp_path)
    with _root(tmp_path, slurm_system):
        system = config.get_system(slurm_system)
        partition = min(system.partitions, key=lambda p: (system.partitions[p].max_time is None, p))
        node = _node_of(partition)
        # another test may hold the node drained for a moment: wait for it to be usable
        wait_for(lambda: not re.search(r"drain|down", _node_state(node)), 60, f"node {node} to be in service")
        xpr = ExPyRe("drained", job_square, args=[5])
        drained = time.monotonic()
        try:
            _scontrol(f"NodeName={node}", "State=DRAIN", "Reason=expyre reliability test (seconds)")
            xpr.start(resources=RES, system_name=slurm_system, partial_node=True)
            row = wait_for(lambda: (r := _poll(xpr))["remote_status"] and re.search(r"ReqNodeNotAvail|DRAIN|Nodes_required",
                                                                                     r["remote_status"]) and r,
                           30, "Slurm to give the pending reason")
            assert row["status"] == "submitted" and row["remote_status"].startswith("queued"), row
            # still queued, not suspected, a few polls later; get_results times out instead of dying
            with pytest.raises(ExPyReTimeoutError, match="keeps running"):
                xpr.get_results(timeout=2.5, check_interval=0.5, quiet=True)
            row = config.db.get(xpr.id)
            assert row["status"] == "submitted" and row["suspect_since"] is None, row
            assert re.search(r"ReqNodeNotAvail|DRAIN|Nodes_required", row["remote_status"]), row
        finally:
            _scontrol(f"NodeName={node}", "State=RESUME")
        logging.getLogger(__name__).info("node %s drained for %.1f s; reason seen: %s", node,
                                         time.monotonic() - drained, row["remote_status"])
        assert xpr.get_results(timeout=TIMEOUT, check_interval=0.5, quiet=True) == 25
        assert submissions("slurm", xpr.id) == 1


def _qmod(flag: str, queue: str) -> None:
    r = subprocess.run(["qmod", flag, queue], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"qmod {flag} {queue}: {r.stdout}{r.stderr}"


@pytest.mark.serial  # drains/disables a shared service: run alone (scripts/test.sh)
def test_queue_disabled_while_queued(tmp_path, sge_system, monkeypatch):
    """Submitted while its queue is disabled: it stays submitted/queued (qw) with Grid Engine's
    scheduling info as the reason (asked every second here, every minute by default), across
    polls, never suspected or died; after the queue is enabled it runs and succeeds."""
    if os.geteuid() != 0:
        skip_or_fail("disabling a Grid Engine queue needs root (or an SGE operator)")
    monkeypatch.chdir(tmp_path)
    with _root(tmp_path, sge_system, pending_reason_interval=1):
        system = config.get_system(sge_system)
        queue = sorted(system.partitions)[0]
        xpr = ExPyRe("disabled", job_square, args=[6])
        try:
            _qmod("-d", queue)
            xpr.start(resources=RES, system_name=sge_system, partial_node=True)
            row = wait_for(lambda: "dropped because it is disabled" in ((r := _poll(xpr))["remote_status"] or "") and r,
                           30, "Grid Engine's scheduling info for the job")
            assert row["status"] == "submitted" and row["remote_status"].startswith("queued (qw) - "), row
            with pytest.raises(ExPyReTimeoutError, match="keeps running"):
                xpr.get_results(timeout=2.5, check_interval=0.5, quiet=True)
            row = config.db.get(xpr.id)
            assert row["status"] == "submitted" and row["suspect_since"] is None, row
            assert "dropped because it is disabled" in row["remote_status"], row
        finally:
            _qmod("-e", queue)
        logging.getLogger(__name__).info("queue %s disabled; reason seen: %s", queue, row["remote_status"])
        assert xpr.get_results(timeout=TIMEOUT, check_interval=0.5, quiet=True) == 36
        assert submissions("sge", xpr.id) == 1
