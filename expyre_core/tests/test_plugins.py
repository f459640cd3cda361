"""Plugin loading: built-ins, entry points from installed (fake) distributions, broken and misspelt
plugins, the disable switch, and a third-party scheduler running a real job with no core change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from expyre import plugins
from expyre.config_model import ConfigError
from expyre.testing import make_root

DATA = Path(__file__).parent / "data"
#: the example plugin expyre-shellq (examples/plugin), "installed" by the .dist-info shim in data/site
EXAMPLE_PLUGIN_SRC = Path(__file__).resolve().parents[2] / "examples" / "plugin" / "src"


@pytest.fixture
def site(monkeypatch, fresh_plugins):
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN_SRC))
    monkeypatch.syspath_prepend(str(DATA / "site"))
    plugins.reset()
    return DATA / "site"


def test_builtins_registered_through_the_contract(fresh_plugins):
    assert "local" in plugins.schedulers()
    assert "local" in plugins.transports()
    names = {i.name: i for i in plugins.plugin_infos()}
    assert names["expyre.builtin.local_scheduler"].schedulers == ("local",)
    assert "expyre_register_schedulers" in names["expyre.builtin.local_scheduler"].hooks


def test_third_party_plugin_discovered_and_broken_one_reported(site, caplog):
    assert "shellq" in plugins.schedulers()
    failed = plugins.failed_plugins()
    assert "broken" in failed and "needs a library that is not installed" in failed["broken"]
    assert any("broken" in r.message and "EXPYRE_DISABLE_PLUGINS=broken" in r.message for r in caplog.records)
    info = {i.name: i for i in plugins.plugin_infos()}
    assert info["shellq"].distribution == "expyre-shellq" and info["shellq"].version == "0.1"


def test_disable_switch(site, monkeypatch):
    monkeypatch.setenv("EXPYRE_DISABLE_PLUGINS", "shellq,broken")
    plugins.reset()
    assert "shellq" not in plugins.schedulers()
    assert plugins.failed_plugins() == {}
    with pytest.raises(plugins.UnknownBackendError, match="disabled by EXPYRE_DISABLE_PLUGINS"):
        plugins.get_scheduler_spec("shellq")


def test_misspelt_hook_fails_loudly(monkeypatch, fresh_plugins):
    monkeypatch.syspath_prepend(str(DATA / "misspelt"))
    plugins.reset()
    with pytest.raises(plugins.PluginLoadError, match="expyre_register_schedulrs"):
        plugins.schedulers()


def test_unknown_scheduler_lists_installed_and_names_distribution(fresh_plugins, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path / "r"))  # restored afterwards
    monkeypatch.setenv("EXPYRE_DISABLE_PLUGINS", "slurm,sge,pbs,ssh")
    plugins.reset()
    with pytest.raises(ConfigError) as info:
        make_root(tmp_path / "r", {"c": {"scheduler": "slrum", "partitions": {"p": {"ncores": 1}}}})
    problems = dict(info.value.problems)
    msg = problems["systems.c.scheduler"]
    assert "unknown scheduler 'slrum'" in msg and "available: local" in msg and "pip install expyre-slrum" in msg


def test_missing_transport_for_host(fresh_plugins, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path / "r"))  # restored afterwards
    monkeypatch.setenv("EXPYRE_DISABLE_PLUGINS", "ssh")
    plugins.reset()
    with pytest.raises(ConfigError) as info:
        make_root(tmp_path / "r", {"c": {"scheduler": "local", "host": "me@cluster"}})
    msg = dict(info.value.problems)["systems.c.host"]
    assert "needs the 'ssh' transport" in msg and "pip install expyre-ssh" in msg


def test_third_party_scheduler_runs_a_job_without_core_change(site, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path / "_expyre"))  # restored afterwards
    make_root(tmp_path / "_expyre", {"bg": {"scheduler": "shellq", "host": None, "partitions": {"any": {"ncores": 1}}}})
    from expyre.func import ExPyRe

    xpr = ExPyRe("third_party", max, args=[3, 9, 4])
    xpr.start(resources={"max_time": "1m", "n": (1, "tasks")}, system_name="bg")
    assert xpr.get_results(timeout=60, check_interval=1) == 9
    script = (xpr.stage_dir / "_expyre_script.sh").read_text()
    assert f"# shellq job {xpr.id}" in script


def test_xpr_plugins_json_lists_failures(site):
    env = {"PYTHONPATH": os.pathsep.join([str(DATA / "site"), str(EXAMPLE_PLUGIN_SRC)]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "expyre", "plugins", "--json"], capture_output=True, text=True,
                         env=env, check=True).stdout
    data = json.loads(out)
    status = {p["name"]: p["status"] for p in data["plugins"]}
    assert status["shellq"] == "loaded" and status["broken"].startswith("failed: ImportError")
    assert "shellq" in data["schedulers"]
