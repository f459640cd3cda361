"""xpr config check with the scheduler and transport plugins installed (the workspace's tests; the
core's own tests run without them): a Slurm system's probe and partition listing, and an offline
check of an ssh system that runs no command."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from expyre import cli as xcli
from expyre import config, plugins
from expyre.testing import isolated_root


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {}) as r:
        yield r


def xpr(*args: str):
    return CliRunner().invoke(xcli.cli, list(args), catch_exceptions=False)


def test_config_check_scheduler_and_partitions(root, monkeypatch):
    """A slurm system on this machine: squeue looked up, partitions compared with sinfo's."""
    (root / "config.json").write_text(json.dumps({"systems": {"cl": {"host": None, "scheduler": "slurm", "partitions": {
        "debug,long": {"ncores": 4}, "gpu": {"ncores": 8}}}}}))
    from expyre.builtin.local_transport import LocalTransport
    from expyre.types import CommandResult

    seen = []

    def fake_run(self, cmd, **kw):
        seen.append(cmd)
        if cmd == ["true"]:
            return CommandResult(cmd, 0)
        if isinstance(cmd, str) and "expyre-python" in cmd:  # the job Python's check
            return CommandResult(cmd, 0, "expyre-python 3.11.7 cloudpickle=3.1.1\n")
        if isinstance(cmd, str) and cmd.startswith("command -v"):
            return CommandResult(cmd, 0, "/usr/bin/squeue\n")
        if cmd[0] == "sinfo":
            return CommandResult(cmd, 0, "debug*\nlong\n")
        raise AssertionError(cmd)

    monkeypatch.setattr(LocalTransport, "run", fake_run)
    r = xpr("config", "check", "-S", "cl")
    assert r.exit_code == 1
    assert "command -v squeue" in seen[2]
    assert "not on this machine: gpu" in r.stdout and "cl: FAIL" in r.stdout



def test_config_check_offline_runs_no_command(root, monkeypatch):
    cfg = {"systems": {"far": {"host": "nobody@192.0.2.1", "scheduler": "local"}}}
    (root / "config.json").write_text(json.dumps(cfg))
    config.init()
    runs = []
    for spec in plugins.transports().values():
        for method in ("run", "put", "get", "probe"):
            monkeypatch.setattr(spec.backend, method, lambda self, *a, _m=method, **kw: runs.append(_m) or 1 / 0,
                                raising=False)
    r = xpr("config", "check", "--offline", "--json")
    assert r.exit_code == 0, r.stdout
    data = json.loads(r.stdout)
    assert runs == []
    assert data["systems"]["far"]["ok"] and data["systems"]["local"]["ok"]
    assert [c["check"] for c in data["systems"]["far"]["checks"]] == ["transport", "scheduler", "partitions"]
    # a scheduler option the plugin rejects fails offline too
    cfg["systems"]["far"]["scheduler_options"] = {"no_such_option": 1}
    (root / "config.json").write_text(json.dumps(cfg))
    r = xpr("config", "check", "--offline")
    assert r.exit_code != 0 and "no_such_option" in (r.stdout + r.stderr)
    assert runs == []
