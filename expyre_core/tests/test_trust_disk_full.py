"""Disk full: with the file system of the stage directory (and of the local queue) full, a job
ends failed or died at the next poll with a reason saying no space is left and where; temporary
files are removed; the queue daemon does not crash (one daemon, which records the state once
space is back). A small tmpfs is mounted for each test (needs root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import xpr_trust_jobfuncs as jf
from expyre import config
from expyre.builtin import localq
from expyre.builtin.local_scheduler import QUEUE_DIR
from expyre.func import ExPyRe, ExPyReJobDiedError
from expyre.testing import isolated_root, skip_or_fail, wait_for

RES = {"max_time": "5m", "n": (1, "tasks")}


@pytest.fixture
def full_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An expyre root on a 4 MB tmpfs; its jobs database lives on the ordinary disk (a symlink)
    so that the driver's bookkeeping is not what runs out of space."""
    if os.geteuid() != 0:
        skip_or_fail("the disk-full tests mount a tmpfs: they need root")
    mnt = tmp_path / "small"
    mnt.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)], check=True)
    try:
        (mnt / "jobs.db").symlink_to(tmp_path / "jobs.db")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        monkeypatch.chdir(tmp_path)
        with isolated_root(mnt, {}) as root:
            yield root
    finally:
        _stop_daemon(mnt / QUEUE_DIR)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _stop_daemon(q: Path) -> None:
    """End the queue daemon this test started (found by its command line naming this queue)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daemon" in cmd and str(q).encode() in cmd:
            try:
                os.kill(int(pid), 15)
            except ProcessLookupError:
                pass


def _daemon_starts(q: Path) -> int:
    try:
        return (q / "daemon.log").read_text().count("daemon start")
    except FileNotFoundError:
        return 0


def test_result_too_big_for_the_disk_is_a_clear_failure(full_root):
    xpr = ExPyRe("big", jf.big_result, args=[5_000_000])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    with pytest.raises(OSError) as info:
        xpr.get_results(timeout=120, check_interval=0.5)
    msg = str(info.value)
    assert "no space left on device" in msg.lower()
    assert str(xpr.stage_dir) in msg  # where
    assert config.db.get(xpr.id)["status"] == "failed"
    assert [p.name for p in xpr.stage_dir.iterdir() if ".tmp" in p.name] == []  # the 5 MB temporary file is gone
    q = full_root / "_expyre_localq"
    assert _daemon_starts(q) == 1 and localq.daemon_alive(str(q))


def test_disk_filled_by_the_job_ends_it_with_the_reason(full_root):
    q = full_root / "_expyre_localq"
    xpr = ExPyRe("filler", jf.fill_disk_then_return, args=["filler"])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    with pytest.raises(ExPyReJobDiedError) as info:
        xpr.get_results(timeout=120, check_interval=0.5)
    reason = str(info.value)
    assert "no space left on device" in reason.lower(), reason
    assert str(q) in reason or str(xpr.stage_dir) in reason, reason
    assert [p.name for p in xpr.stage_dir.iterdir() if ".tmp" in p.name] == []
    assert localq.daemon_alive(str(q))  # it did not crash
    # space back: the same daemon records the job's real end (the runner said why by its exit status)
    (xpr.stage_dir / "filler").unlink()
    state = q / "state" / f"{xpr.remote_id}.json"
    wait_for(lambda: '"failed"' in state.read_text(), 60, "the daemon to record the job's state")
    assert "exit code 28" in state.read_text() and "no space left" in state.read_text()
    assert _daemon_starts(q) == 1
