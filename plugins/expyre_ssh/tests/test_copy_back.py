"""Copy back over ssh (the real test sshd, the ``local`` scheduler on the host): driver processes
sharing one root never see a half-written file, and a driver killed in the middle of a copy back
leaves nothing under a result's name; the next driver gets the value without running it again."""

from __future__ import annotations

import json
import os
import pickle
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from sshtest import require_sshd, ssh_systems

from expyre import config, files
from expyre.shell import remote_path
from expyre.testing import copy_back_value, run_copy_back_driver, run_copy_back_drivers, skip_or_fail

pytestmark = pytest.mark.real_scheduler

SUCCEEDED, STDOUT = "_expyre_job_succeeded", "_expyre_stdout"


def _local_system() -> tuple[str, dict]:
    systems = ssh_systems("local")
    if not systems:
        skip_or_fail("no ssh system with the local scheduler selected")
    name, sysd = sorted(systems.items())[0]
    require_sshd(sysd)
    return name, sysd


def _submissions(system, job_ids) -> dict[str, int]:
    """How many times the host's local queue received each job."""
    q = remote_path(f"{system.rundir}/_expyre_localq")
    out = system.transport.run(f"cat {q}/jobs/*.json {q}/done/*.json 2>/dev/null; true").stdout
    return {j: out.count(json.dumps(j)) for j in job_ids}


def _statuses(root: Path) -> dict[str, str]:
    con = sqlite3.connect(root / "jobs.db")
    try:
        return {r[0]: r[1] for r in con.execute("SELECT id, status FROM jobs")}
    finally:
        con.close()


def test_concurrent_drivers_over_ssh_never_see_half_written_files(xpr_root, tmp_path: Path) -> None:
    """4 driver processes construct, start and get the same 20 calls (200 kB results) on one
    root, through ssh: every call succeeds in every driver, each job runs once."""
    name, sysd = _local_system()
    root = xpr_root({name: sysd})
    n_procs, n_calls, size = 4, 20, 200_000
    t0 = time.monotonic()
    reports = run_copy_back_drivers(root, tmp_path, name, n_procs, n_calls, size)
    failures = [f for r in reports for f in r["failures"]]
    assert not failures, f"{len(failures)} of {n_procs * n_calls} calls failed:\n" + "\n".join(failures[:10])
    [job_ids] = {tuple(r["ids"]) for r in reports}
    assert _statuses(root) == {j: "succeeded" for j in job_ids}
    assert _submissions(config.get_system(name), job_ids) == {j: 1 for j in job_ids}
    for i, j in enumerate(job_ids):
        stage = root / f"run_{j}"
        assert pickle.loads((stage / SUCCEEDED).read_bytes()) == copy_back_value(i, size)
        assert not [n for n in os.listdir(stage) if n.startswith(".")], "temporary files left"
    assert not [n for n in os.listdir(root) if n.startswith(files.HOLDING_PREFIX)], "holding directories left"
    print(f"{n_procs} drivers x {n_calls} calls over ssh: {time.monotonic() - t0:.1f} s")


def test_kill_in_the_middle_of_the_copy_back_over_ssh(xpr_root, tmp_path: Path) -> None:
    """The driver is killed (SIGKILL) inside the copy back of a finished 4 MB result, when the
    files it fetched are partly in place: the stage directory has the job's output but no result
    marker. The next driver gets the value, with no rerun and no force_rerun."""
    name, sysd = _local_system()
    root = xpr_root({name: sysd})
    size = 4_000_000
    crashed = run_copy_back_driver(root, tmp_path, name, 1, size, env={"EXPYRE_FAULT_POINT": files.COPY_BACK_POINT})
    assert crashed.returncode == -signal.SIGKILL, f"the fault point was not reached: {crashed.stderr[-2000:]}"
    [(job_id, status)] = _statuses(root).items()
    assert status in ("submitted", "started")
    stage = root / f"run_{job_id}"
    assert (stage / STDOUT).read_text() == f"blob 0 of {size} bytes\n"
    assert not (stage / SUCCEEDED).exists(), "a result marker before the files it vouches for, or a partial one"
    assert [n for n in os.listdir(root) if n.startswith(files.HOLDING_PREFIX)], "killed inside the copy"

    again = run_copy_back_driver(root, tmp_path, name, 1, size)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout.strip().splitlines()[-1]) == {"ids": [job_id], "failures": []}
    assert _statuses(root) == {job_id: "succeeded"}
    system = config.get_system(name)
    assert _submissions(system, [job_id]) == {job_id: 1}, "run again"
    assert not any(n.startswith("_expyre_prev_") for n in os.listdir(stage)), "forced to run again"
    assert pickle.loads((stage / SUCCEEDED).read_bytes()) == copy_back_value(0, size)
    assert not [n for n in os.listdir(root) if n.startswith(files.HOLDING_PREFIX)], "the dead driver's holding dir is removed"


def test_truncated_result_is_fetched_again_over_ssh(xpr_root, tmp_path: Path) -> None:
    """A result truncated in the stage directory is fetched again from the host's run directory;
    when the host's copy is truncated too, the error names both files."""
    from expyre.errors import ExPyReResultError
    from expyre.func import ExPyRe

    name, sysd = _local_system()
    xpr_root({name: sysd})
    system = config.get_system(name)
    res = {"max_time": "5m", "n": (1, "tasks")}
    x = ExPyRe(f"trunc_ssh_{os.getpid()}_{time.time_ns()}", bytes, args=[300_000])
    x.start(resources=res, system_name=name, partial_node=True)
    assert x.get_results(timeout=120, check_interval=0.5, quiet=True) == bytes(300_000)
    local = x.stage_dir / SUCCEEDED
    good = local.read_bytes()
    local.write_bytes(good[: len(good) // 2])
    assert x.get_results(timeout=60, quiet=True) == bytes(300_000)
    assert local.read_bytes() == good
    remote = f"{system.remote_dir(x.stage_dir)}/{SUCCEEDED}"
    assert system.transport.run(f"truncate -s 1000 {remote_path(remote)}").ok
    local.write_bytes(good[:1000])
    with pytest.raises(ExPyReResultError) as info:
        x.get_results(timeout=60, quiet=True)
    assert str(local) in str(info.value) and f"{system.host}:{remote}" in str(info.value), str(info.value)
