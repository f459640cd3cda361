"""Configuration checks that need a plugin besides the core (expyre-slurm, expyre-ssh)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from expyre import cli as xcli
from expyre import config, plugins
from expyre.config_model import ConfigError, SystemConfig
from expyre.system import System
from expyre.testing import isolated_root


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {}) as r:
        yield r


@pytest.fixture
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()
    config._loaded.clear()  # a config loaded with other plugins must not outlive the test


def xpr(*args: str):
    return CliRunner().invoke(xcli.cli, list(args), catch_exceptions=False)


def test_plugin_scheduler_without_partitions_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = tmp_path / "_expyre"
    r.mkdir()
    (r / "config.json").write_text(json.dumps({"systems": {"s": {"scheduler": "slurm"}}}))
    monkeypatch.setenv("EXPYRE_ROOT", str(r))
    with pytest.raises(ConfigError) as info:
        config.load_config()
    message = "systems.s.partitions: required for scheduler 'slurm': give at least one partition"
    assert message in str(info.value) and str(r / "config.json") in str(info.value), str(info.value)


def test_expyre_rsh_is_the_default_remote_shell(monkeypatch, tmp_path, fresh_plugins):
    monkeypatch.setenv("EXPYRE_RSH", "/opt/my/ssh -p 2222")
    s = System("r", SystemConfig(scheduler="local", host="me@box"), tmp_path)
    assert s.transport.remsh_cmd == "/opt/my/ssh -p 2222"
    s2 = System("r2", SystemConfig(scheduler="local", host="me@box", remsh_cmd="ssh -p 22"), tmp_path)
    assert s2.transport.remsh_cmd == "ssh -p 22"
