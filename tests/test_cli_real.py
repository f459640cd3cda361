"""The xpr command line against the real schedulers the services scripts bring up (one system per
scheduler, on this machine): config check probes them, ls/sync/cancel see and act on real jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from expyre import config
from expyre.func import ExPyRe
from expyre.testing import available_systems, isolated_root, selected_systems, skip_or_fail, wait_for

SCHEDULERS = ("slurm", "sge", "pbs")


def _system_for(scheduler: str) -> str | None:
    names = sorted(selected_systems(scheduler, "local"))
    return names[0] if names else None


@pytest.fixture(params=SCHEDULERS)
def real_root(request, tmp_path, monkeypatch):
    name = _system_for(request.param)
    if name is None:
        skip_or_fail(f"no {request.param} system on this machine selected")
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}) as root:
        yield root, name


def xpr(root: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "EXPYRE_ROOT": str(root), "EXPYRE_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "expyre", *args], env=env, capture_output=True, text=True,
                          input=input, timeout=300)


def test_config_check_probes_real_scheduler(real_root):
    root, name = real_root
    r = xpr(root, "config", "check", "-S", name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert name in r.stdout and "pass" in r.stdout.lower()


def test_config_check_fails_for_a_missing_partition(real_root):
    root, name = real_root
    cfg = json.loads((root / "config.json").read_text())
    parts = cfg["systems"][name]["partitions"]
    parts["no_such_partition"] = {"ncores": 1}
    (root / "config.json").write_text(json.dumps(cfg))
    r = xpr(root, "config", "check", "-S", name)
    assert r.returncode != 0 and "no_such_partition" in (r.stdout + r.stderr)


def test_ls_sync_and_cancel_real_jobs(real_root):
    root, name = real_root
    quick = ExPyRe("cli_quick", max, args=[3, 8])
    quick.start(resources={"max_time": "5m", "n": (1, "tasks")}, system_name=name, partial_node=True)
    slow = ExPyRe("cli_slow", __import__("time").sleep, args=[600])
    slow.start(resources={"max_time": "5m", "n": (1, "tasks")}, system_name=name, partial_node=True)

    listed = json.loads(xpr(root, "ls", "-s", "ongoing", "--json").stdout)
    assert {j["id"] for j in listed} >= {quick.id, slow.id}

    def synced():
        r = xpr(root, "sync", "-n", "cli_quick")
        assert r.returncode == 0, r.stderr
        return config.db.get(quick.id)["status"] == "succeeded"

    wait_for(synced, 240, "xpr sync to record the finished job", interval=1)

    r = xpr(root, "cancel", "-n", "cli_slow", "-y")
    assert r.returncode == 0, r.stdout + r.stderr

    def died():
        xpr(root, "sync", "-n", "cli_slow")
        return config.db.get(slow.id)["status"] == "died"

    wait_for(died, 240, "the cancelled job to be recorded died", interval=2)
    assert "without a result" in config.db.get(slow.id)["reason"]
