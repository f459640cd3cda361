"""Ownership, as git's safe.directory: a config.json, ``_expyre`` directory, expyre root or local
queue directory that another user owns or can write is never used. The other user is a real
account, created here (as the services scripts create theirs) when the tests run as root."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

import xpr_trust_jobfuncs as jf
from expyre import config
from expyre.builtin import localq
from expyre.config_files import UnsafePathError, find_config_files
from expyre.func import ExPyRe
from expyre.testing import skip_or_fail, wait_for
from expyre.types import SubmitError

OTHER = "xprother"
RES = {"max_time": "5m", "n": (1, "tasks")}


@pytest.fixture(scope="session")
def other_user() -> tuple[str, int]:
    """A second real user (created if missing; needs root)."""
    if os.geteuid() != 0:
        skip_or_fail("ownership tests need root, to create a second user and act as it")
    with open("/tmp/.expyre-test-useradd.lock", "w") as lock:  # xdist workers may race
        fcntl.flock(lock, fcntl.LOCK_EX)
        if subprocess.run(["id", "-u", OTHER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", OTHER], check=True)
    uid = int(subprocess.run(["id", "-u", OTHER], capture_output=True, text=True, check=True).stdout)
    return OTHER, uid


def as_other(script: str) -> None:
    """Run ``script`` (sh) as the other user."""
    subprocess.run(["runuser", "-u", OTHER, "--", "sh", "-c", script], check=True)


@pytest.fixture
def shared_tmp(other_user):
    """A world-writable sticky directory like /tmp that both users reach."""
    base = Path(tempfile.mkdtemp(prefix="expyre-shared-", dir="/tmp"))
    os.chmod(base, 0o755)
    shared = base / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    yield shared
    shutil.rmtree(base, ignore_errors=True)


def test_config_planted_by_another_user_in_a_shared_parent_is_skipped(shared_tmp, monkeypatch, caplog, tmp_path):
    # the other user plants <shared>/_expyre/config.json whose commands would run in our jobs
    marker = shared_tmp / "planted-command-ran"
    cfg = {"systems": {"local": {"commands": [f"touch {marker}"]}}}
    as_other(f"mkdir -m 755 {shared_tmp}/_expyre && printf '%s' '{json.dumps(cfg)}' > {shared_tmp}/_expyre/config.json")
    project = shared_tmp / "project"
    project.mkdir(mode=0o700)
    monkeypatch.chdir(project)
    monkeypatch.delenv("EXPYRE_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with caplog.at_level(logging.WARNING, logger="expyre.config_files"):
        root, files = find_config_files()
    assert root == tmp_path / "home" / ".expyre"  # the planted directory is not the root either
    assert shared_tmp / "_expyre" / "config.json" not in files
    text = caplog.text
    assert f"{shared_tmp}/_expyre" in text and OTHER in text and "chmod go-w" in text


def test_group_or_world_writable_config_is_skipped_and_own_safe_one_used(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("EXPYRE_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    outer = tmp_path / "outer"
    (outer / "_expyre").mkdir(parents=True)
    (outer / "_expyre" / "config.json").write_text('{"systems": {}}')
    inner = outer / "inner"
    (inner / "_expyre").mkdir(parents=True)
    (inner / "_expyre" / "config.json").write_text('{"systems": {}}')
    os.chmod(outer / "_expyre" / "config.json", 0o666)
    monkeypatch.chdir(inner)
    with caplog.at_level(logging.WARNING, logger="expyre.config_files"):
        root, files = find_config_files()
    assert root == inner / "_expyre"
    assert inner / "_expyre" / "config.json" in files
    assert outer / "_expyre" / "config.json" not in files
    assert "mode 0666" in caplog.text and str(outer / "_expyre" / "config.json") in caplog.text
    # a group-writable _expyre directory is skipped as a whole (config and root)
    os.chmod(inner / "_expyre", 0o775)
    root, files = find_config_files()
    assert root == outer / "_expyre" and inner / "_expyre" / "config.json" not in files


def test_world_writable_root_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "open-root"
    root.mkdir()
    os.chmod(root, 0o777)
    monkeypatch.setenv("EXPYRE_ROOT", str(root))
    with pytest.raises(UnsafePathError) as info:
        config.init()
    msg = str(info.value)
    assert str(root) in msg and "0777" in msg and "chmod 700" in msg
    config._loaded.clear()


def test_root_owned_by_another_user_is_refused(shared_tmp, monkeypatch, other_user):
    as_other(f"mkdir -m 700 {shared_tmp}/theirs")
    monkeypatch.setenv("EXPYRE_ROOT", str(shared_tmp / "theirs"))
    with pytest.raises(UnsafePathError, match=f"owned by {OTHER}"):
        find_config_files()


def test_new_root_is_created_private(tmp_path, monkeypatch):
    from expyre.config_files import ensure_root

    old = os.umask(0)
    try:
        root = ensure_root(tmp_path / "a" / "new-root")
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_world_writable_queue_dir_is_refused(root):
    q = root / "_expyre_localq"
    q.mkdir()
    os.chmod(q, 0o777)
    xpr = ExPyRe("q777", jf.square, args=[3])
    with pytest.raises(SubmitError) as info:
        xpr.start(resources=RES, system_name="local", partial_node=True)
    msg = str(info.value)
    assert str(q) in msg and "0777" in msg and "chmod 700" in msg


def test_queue_dir_owned_by_another_user_is_refused(root, other_user):
    q = root / "_expyre_localq"
    q.mkdir(mode=0o700)
    os.chown(q, other_user[1], -1)
    with pytest.raises(localq.UnsafeQueueError, match=f"owned by {OTHER}"):
        localq.submit(str(q), directory=str(root), script="x.sh", stdout="o", stderr="e", ncores=1,
                      max_time=None, name="x")


def test_job_request_not_written_by_this_user_is_not_run(root, tmp_path, other_user):
    q = root / "_expyre_localq"
    ran = tmp_path / "planted-job-ran"
    job_dir = tmp_path / "planted"
    job_dir.mkdir()
    (job_dir / "job.sh").write_text(f"touch {ran}\n")
    localq._mkdirs(str(q))
    req = {"jid": "planted1", "name": "planted", "dir": str(job_dir), "script": "job.sh", "stdout": "o",
           "stderr": "e", "ncores": 1, "max_time": None, "seq": 1}
    (q / "env" / "planted1.json").write_text("{}")
    os.chown(q / "env" / "planted1.json", other_user[1], -1)
    path = q / "jobs" / "planted1.json"
    path.write_text(json.dumps(req))
    os.chown(path, other_user[1], -1)
    # a real job of ours goes through the same daemon: once it is done, the planted one was seen
    xpr = ExPyRe("ours", jf.square, args=[4])
    xpr.start(resources=RES, system_name="local", partial_node=True)
    assert xpr.get_results(timeout=120, check_interval=0.5) == 16
    wait_for(lambda: "ignoring job request" in (q / "daemon.log").read_text(), 60, "the daemon to log the planted request")
    assert not ran.exists()
    assert localq.status(str(q), ["planted1"])["planted1"]["state"] == "queued"  # never run
