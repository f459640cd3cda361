"""The library API over ssh, end to end, on every selected ssh system (the ``local`` scheduler on
the remote host, and Slurm, SGE and Torque-style PBS where their plugins are installed): the
README's example, input/output files, hostile names, the first-use probe, and the cost of a poll."""

from __future__ import annotations

import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sshjobs
from sshtest import NETNS_HOST, REMOTE_PYTHON, TEST_USER, port_open, require_scheduler, require_sshd, ssh_systems

from expyre import config, plugins
from expyre.func import ExPyRe
from expyre.poller import Poller
from expyre_ssh import RemoteEnvironmentError

pytestmark = pytest.mark.real_scheduler

# the schedulers tried over ssh: those installed (expyre-ssh alone: the built-in local one; in the
# workspace, Slurm, SGE and PBS too)
SCHEDULERS = [s for s in ("local", "slurm", "sge", "pbs") if s in plugins.schedulers()]
SMALL = {"max_time": "5m", "n": (1, "tasks")}


def _system(scheduler: str) -> tuple[str, dict[str, Any]]:
    systems = ssh_systems(scheduler)
    if not systems:
        from expyre.testing import skip_or_fail

        skip_or_fail(f"no ssh system with scheduler {scheduler!r} selected")
    require_scheduler(scheduler)
    name, sysd = sorted(systems.items())[0]
    require_sshd(sysd)
    return name, sysd


def _readme_resources(system) -> dict[str, Any]:
    """The README's resources where a partition matches '.*bigmem', else the same on the system's
    partitions with a time limit every test partition allows."""
    import re

    if any(re.fullmatch(".*bigmem", p) for p in system.partitions):
        return {"max_time": "1h", "n": (1, "nodes"), "partitions": ".*bigmem"}
    return {"max_time": "5m", "n": (1, "nodes")}


def _remote_user(sysd: dict[str, Any]) -> str:
    return sysd["host"].split("@", 1)[0] if "@" in sysd["host"] else TEST_USER


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_readme_example_over_ssh(scheduler: str, xpr_root) -> None:
    name, sysd = _system(scheduler)
    xpr_root({name: sysd})
    system = config.get_system(name)

    # the README's example, with system_name set to the ssh system
    array_to_sum = np.ones((100, 50))
    res = _readme_resources(system)
    xpr = ExPyRe("test_task", np.sum, args=[array_to_sum], kwargs={"axis": 1})
    xpr.start(resources=res, system_name=name)
    array_sum = xpr.get_results(timeout=300, check_interval=2, quiet=True)
    assert np.max(np.abs(array_sum - [50.0] * 100)) == 0.0
    xpr.mark_processed()
    assert config.db.get(xpr.id)["status"] == "processed"

    # and it really ran on the remote side, as the remote user, in the remote rundir
    where = ExPyRe("whoami", sshjobs.whoami)
    where.start(resources=res, system_name=name)
    user, _, cwd = where.get_results(timeout=300, check_interval=2, quiet=True)
    home = system.transport.run('printf %s "$HOME"').stdout
    assert user == _remote_user(sysd)
    assert cwd == f"{home}/{sysd.get('rundir', 'expyre_rundir')}/{where.stage_dir.name}"
    t = system.transport
    assert t.stats["master"] == 1, "one login for the whole run"


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_input_and_output_files_round_trip(scheduler: str, xpr_root, tmp_path: Path) -> None:
    name, sysd = _system(scheduler)
    xpr_root({name: sysd})
    (tmp_path / "in put 'x'.txt").write_text("hello input\n")
    (tmp_path / "data dir").mkdir()
    (tmp_path / "data dir" / "nested $(x).txt").write_text("nested")
    xpr = ExPyRe(
        "files", sshjobs.transform_files,
        args=["in put 'x'.txt", "out put $(x).txt", "out dir 'y'"],
        input_files=["in put 'x'.txt", "data dir"],
        output_files=["out put $(x).txt", "out dir*"],
    )
    xpr.start(resources=SMALL, system_name=name, partial_node=True)
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    import os

    os.chdir(out_dir)  # output files land in the current directory
    assert xpr.get_results(timeout=300, check_interval=2, quiet=True) == "hello input\n"
    assert (out_dir / "out put $(x).txt").read_text() == "HELLO INPUT\n"
    assert (out_dir / "out dir 'y'" / "inner out.txt").read_text() == "inner"
    # the input directory travelled too
    rd = config.get_system(name).remote_dir(xpr.stage_dir)
    from expyre.shell import remote_path

    r = config.get_system(name).transport.run(f"cat -- {remote_path(rd)}/'data dir'/'nested $(x).txt'")
    assert r.stdout == "nested"


def test_hostile_names_do_not_execute(xpr_root, tmp_path: Path) -> None:
    name, sysd = _system("local")
    tag = uuid.uuid4().hex[:8]
    rundir = f"expyre rundir {tag} 'q' \"dq\" $(touch PWNED_rd) `touch PWNED_bt` ;x"
    xpr_root({name: {**sysd, "rundir": rundir}})
    system = config.get_system(name)
    hostile_file = "in $(touch PWNED_in) `touch PWNED_bt2` ;touch PWNED_semi; 'q' \"d\".txt"
    (tmp_path / hostile_file).write_text("payload\n")
    job_name = "job; touch PWNED_name $(touch PWNED_name2) `x` 'q' \"d\" *"
    try:
        xpr = ExPyRe(job_name, sshjobs.transform_files, args=[hostile_file, "out $(touch PWNED_out).txt", "d $(x)"],
                     input_files=[hostile_file], output_files=["out $(touch PWNED_out).txt"])
        xpr.start(resources=SMALL, system_name=name, partial_node=True)
        assert xpr.get_results(timeout=300, check_interval=2, quiet=True) == "payload\n"
        assert (tmp_path / "out $(touch PWNED_out).txt").read_text() == "PAYLOAD\n"
        listing = system.transport.run(["find", ".", "-maxdepth", "4", "-name", "PWNED*"]).stdout
        assert listing == "", listing
        assert not [p for p in tmp_path.rglob("PWNED*")]
        assert not list(Path.cwd().glob("PWNED*"))
        assert system.transport.run(["test", "-d", f"{rundir}/{xpr.stage_dir.name}"]).ok
    finally:
        system.transport.run(["rm", "-rf", "--", rundir])


def test_own_module_is_shipped_to_the_remote_host(xpr_root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A function of a module next to the script (not installed anywhere, not on the remote
    host) runs there, alone and packed by the Executor: its file travels in the stage directory."""
    import importlib
    import sys

    from expyre import Executor

    name, sysd = _system("local")
    xpr_root({name: sysd})
    tag = uuid.uuid4().hex[:8]
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / f"sshtools_{tag}.py").write_text("def triple(x):\n    return 3 * x\n")
    (proj / f"sshmod_{tag}.py").write_text(
        f"import socket\nimport sshtools_{tag}\n\n\ndef f(x):\n    return sshtools_{tag}.triple(x), socket.gethostname()\n")
    monkeypatch.syspath_prepend(str(proj))
    mod = importlib.import_module(f"sshmod_{tag}")
    try:
        xpr = ExPyRe("shipped", mod.f, args=[5])
        xpr.start(resources=SMALL, system_name=name, partial_node=True)
        value, _host = xpr.get_results(timeout=300, check_interval=2, quiet=True)
        assert value == 15
        t = config.get_system(name).transport
        listing = t.run(["ls", f"{config.get_system(name).remote_dir(xpr.stage_dir)}/_expyre_modules"]).stdout.split()
        assert sorted(n for n in listing if n != "__pycache__") == sorted([f"sshmod_{tag}.py", f"sshtools_{tag}.py"])
        with Executor(name, SMALL, partial_node=True, chunksize=3, progress=False) as ex:
            assert [v for v, _ in ex.map(mod.f, range(6))] == [3 * i for i in range(6)]
        off = ExPyRe("unshipped", mod.f, args=[6], ship_modules=False)  # the remote host cannot import it
        off.start(resources=SMALL, system_name=name, partial_node=True)
        with pytest.raises(ModuleNotFoundError, match=f"needs module 'sshmod_{tag}'.*ship_modules=False"):
            off.get_results(timeout=300, check_interval=2, quiet=True)
    finally:
        sys.modules.pop(f"sshmod_{tag}", None)
        sys.modules.pop(f"sshtools_{tag}", None)


def test_missing_remote_python_is_reported_at_first_use(xpr_root) -> None:
    name, sysd = _system("local")
    xpr_root({name: {**sysd, "python_cmd": "/usr/bin/python3"}})  # Debian's python3: no cloudpickle
    xpr = ExPyRe("noenv", sshjobs.square, args=[3])
    with pytest.raises(RemoteEnvironmentError) as info:
        xpr.start(resources=SMALL, system_name=name, partial_node=True)
    msg = str(info.value)
    assert sysd["host"] in msg and "/usr/bin/python3 -c 'import cloudpickle'" in msg
    assert "No module named 'cloudpickle'" in msg
    assert config.db.get(xpr.id)["status"] == "created"  # nothing was submitted
    t = config.get_system(name).transport
    assert t.stats["rsync"] == 0, "nothing was staged"


@pytest.mark.slow
@pytest.mark.parametrize("shells", ["4", "0"])
@pytest.mark.parametrize("njobs", [1, 50])
def test_round_trips_per_poll_do_not_grow_with_jobs(njobs: int, shells: str, xpr_root, counting_remsh, record_property,
                                                    monkeypatch) -> None:
    """A poll = ONE round trip (status + markers); bringing N finished jobs back = ONE rsync. With
    persistent shells (the default) the round trip goes over a shell already open, so no new ssh
    session at all; without (``EXPYRE_SSH_SHELLS=0``) it is one ssh session."""
    name, sysd = _system("local")
    remsh, log, _ = counting_remsh
    monkeypatch.setenv("EXPYRE_SSH_SHELLS", shells)
    xpr_root({name: {**sysd, "remsh_cmd": remsh}})
    system = config.get_system(name)
    gate = f"/tmp/expyre-ssh-gate-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex[:6]
    xprs = []
    for i in range(njobs):
        x = ExPyRe(f"rt_{tag}_{i}", sshjobs.gated_square, args=[gate, i])
        x.start(resources=SMALL, system_name=name, partial_node=True)
        xprs.append(x)
    poller = Poller.get(system, config.db)
    stats = system.transport.stats
    new_session = {} if shells != "0" else {"run": 1}
    try:
        # jobs are queued or blocked on the gate: a poll is one round trip, nothing to copy
        m, runs = log.mark(), stats["run"]
        poller.refresh(max_age=0)
        gated = log.count(m)
        assert stats["run"] - runs == 1, "one round trip"
        assert gated == new_session, gated  # (no login, no copy; local `-O check` calls are not counted)
        system.transport.run(["touch", gate])
        _wait_all_finished(system, xprs, timeout=240)
        m, runs = log.mark(), stats["run"]
        poller.refresh(max_age=0)
        finished = log.count(m)
        assert stats["run"] - runs == 1, "one round trip"
        assert finished == {**new_session, "rsync": 1}, finished
        m, runs = log.mark(), stats["run"]
        results = [x.get_results(timeout=60, quiet=True) for x in xprs]
        assert results == [i * i for i in range(njobs)]
        after = log.count(m)
        assert after == {} and stats["run"] == runs, f"results were already here, yet: {after}"
        logins = log.count(0).get("login", 0)
        assert logins == 1
        if shells != "0":
            assert log.count(0).get("run", 0) == 0, "every command went through a persistent shell"
            assert 1 <= log.count(0).get("shell", 0) <= int(shells)
    finally:
        system.transport.run(["rm", "-f", gate])
    record_property(f"ssh_sessions_per_poll_n{njobs}_shells{shells}", gated.get("run", 0))
    record_property(f"ssh_round_trips_per_poll_with_results_n{njobs}_shells{shells}", 1 + finished.get("rsync", 0))
    print(f"\nN={njobs}, shells={shells}: new sessions in a poll = {gated}; in a poll that brings results back = "
          f"{finished}; logins = {logins}")


def _wait_all_finished(system, xprs, timeout: float) -> None:
    """Wait (not counted) until every job has a result marker on the remote host."""
    from expyre.shell import remote_path

    deadline = time.monotonic() + timeout
    dirs = " ".join(remote_path(system.remote_dir(x.stage_dir)) for x in xprs)
    script = f"n=0; for d in {dirs}; do [ -e \"$d/_expyre_job_succeeded\" ] && n=$((n+1)); done; echo $n"
    while True:
        n = int(system.transport.run(script).stdout.strip() or 0)
        if n == len(xprs):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"only {n} of {len(xprs)} jobs finished within {timeout} s")
        time.sleep(0.2)


def test_netns_remote_host(xpr_root) -> None:
    """The README's function on the distinct 'remote host' (network namespace xpr-remote), if up."""
    if not port_open("10.250.0.2", 22):
        pytest.skip("the optional network-namespace host xpr-remote is not up (EXPYRE_NETNS=1 scripts/services/up.sh)")
    # its own rundir: /home is shared with this machine, and the loopback host's local queue
    # daemon would otherwise run the job (on this machine)
    sysd = {"host": f"{TEST_USER}@{NETNS_HOST}", "remsh_cmd": "ssh", "scheduler": "local",
            "rundir": "expyre_rundir_netns", "python_cmd": REMOTE_PYTHON}
    require_sshd(sysd)
    xpr_root({"netns_local": sysd})
    xpr = ExPyRe("test_task", np.sum, args=[np.ones((100, 50))], kwargs={"axis": 1})
    xpr.start(resources={"max_time": "1h", "n": (1, "nodes"), "partitions": ".*bigmem"}, system_name="netns_local")
    assert np.all(xpr.get_results(timeout=120, check_interval=2, quiet=True) == 50.0)
    where = ExPyRe("whoami", sshjobs.whoami)
    where.start(resources=SMALL, system_name="netns_local", partial_node=True)
    assert where.get_results(timeout=120, check_interval=2, quiet=True)[1] == NETNS_HOST


def test_shlex_quoting_helper_is_used_for_remote_paths() -> None:
    # the core's quoting of remote paths, which the transport shares for cwd
    from expyre.shell import remote_path

    assert remote_path("a b/'c'") == "\"$HOME\"/" + shlex.quote("a b/'c'")
    assert remote_path("/abs/x y") == shlex.quote("/abs/x y")
