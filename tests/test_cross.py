"""Cross-distribution checks: need every plugin of the workspace installed."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest

from expyre import plugins
from expyre.testing import selected_systems, skip_or_fail


def test_every_workspace_plugin_is_discovered():
    plugins.reset()
    assert {"local", "slurm", "pbs", "sge"} <= set(plugins.schedulers())
    assert {"local", "ssh"} <= set(plugins.transports())
    infos = {i.name: i for i in plugins.plugin_infos()}
    for name in ("slurm", "pbs", "sge", "ssh"):
        assert infos[name].distribution == f"expyre-{name}" and infos[name].status == "loaded"
        assert infos[name].module == f"expyre_{name}"


def test_disable_switch_across_plugins(monkeypatch):
    out = subprocess.run([sys.executable, "-m", "expyre", "plugins", "--json"], capture_output=True, text=True,
                         env={**os.environ, "EXPYRE_DISABLE_PLUGINS": "pbs,sge"}, check=True).stdout
    import json

    data = json.loads(out)
    assert "pbs" not in data["schedulers"] and "sge" not in data["schedulers"] and "slurm" in data["schedulers"]


def test_same_library_api_on_every_backend():
    """Every scheduler backend implements the same contract (nothing backend-specific leaks into
    the API: ExPyRe never looks at the backend's type)."""
    from expyre.hookspecs import Scheduler

    for name, spec in plugins.schedulers().items():
        assert issubclass(spec.backend, Scheduler)
        missing = [m for m in Scheduler.__abstractmethods__ if getattr(spec.backend, m) is getattr(Scheduler, m)]
        assert not missing, (name, missing)


def test_expyre_pytest_ssh_reaches_every_ssh_system():
    """ExPyRe's README's EXPYRE_PYTEST_SSH: the ssh binary used to reach the hosts (default /usr/bin/ssh)."""
    systems = selected_systems(transport="ssh")
    if not systems:
        skip_or_fail("no ssh system selected")
    ssh = os.environ.get("EXPYRE_PYTEST_SSH", "/usr/bin/ssh")
    for name, sysd in systems.items():
        opts = shlex.split(sysd.get("remsh_cmd") or "ssh")[1:]
        r = subprocess.run([ssh, *opts, "-o", "BatchMode=yes", sysd["host"], "echo", "reached"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "reached", (name, r.stderr)


def test_start_many_stages_all_jobs_in_one_copy_over_ssh(tmp_path, monkeypatch):
    """Submitting many jobs batches their staging: ExPyRe.start_many makes ONE transport.put of
    every stage dir (the ssh transport sends N dirs in one rsync, see plugins/expyre_ssh/tests)."""
    from expyre import config
    from expyre.func import ExPyRe
    from expyre.testing import available_systems, isolated_root, job_square

    systems = selected_systems("local", "ssh")
    if not systems:
        skip_or_fail("no ssh system with the local scheduler selected")
    name = sorted(systems)[0]
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        system = config.get_system(name)
        puts = []
        original = system.transport.put

        def counting_put(dirs, parent):
            puts.append(list(dirs))
            return original(dirs, parent)

        monkeypatch.setattr(system.transport, "put", counting_put)
        xprs = [ExPyRe(f"batch_{i}", job_square, args=[i]) for i in range(20)]
        errors = ExPyRe.start_many(xprs, {"max_time": "5m", "n": (1, "tasks")}, system_name=name, partial_node=True)
        assert errors == {}
        assert len(puts) == 1 and len(puts[0]) == 20
        assert [x.get_results(timeout=300, check_interval=1) for x in xprs] == [i * i for i in range(20)]
