"""``xpr logs`` of jobs running on a remote host over the real sshd: the output is read where the
job runs, in ONE transport command per read, and ``-f`` follows it to the job's end."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from expyre import cli as xcli
from expyre import config
from expyre.func import ExPyRe
from expyre.logs import JobLogs
from expyre.shell import remote_path
from expyre.show import describe
from expyre.testing import CallCounter, available_systems, isolated_root, selected_systems, skip_or_fail, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))
import logs_ssh_funcs as funcs  # noqa: E402

pytestmark = pytest.mark.real_scheduler

RES = {"max_time": "5m", "n": (1, "tasks")}
TIMEOUT = 600  # a busy shared queue can hold the job a while before it starts


def xpr(*args: str):
    return CliRunner().invoke(xcli.cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("scheduler", ["local", "slurm"])
def test_logs_over_ssh_one_command_per_read_and_follow(scheduler, tmp_path, monkeypatch):
    names = sorted(selected_systems(scheduler, "ssh"))
    if not names:
        skip_or_fail(f"no {scheduler} system over ssh selected")
    name = names[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        x = ExPyRe("talker", funcs.print_then_wait, args=["hello over ssh", "go_flag"])
        x.start(resources=RES, system_name=name, partial_node=True)
        system = config.get_system(name)
        logs = JobLogs(x.id)
        seen = []

        def first_line():
            seen.extend(t for _, t in logs.read().chunks)
            return "hello over ssh" in "".join(seen)

        wait_for(first_line, TIMEOUT, "the job's first line on the remote host")
        assert not (x.stage_dir / "_expyre_stdout").exists()  # read where it runs, not copied back
        with CallCounter(system) as c:
            r = logs.read()
        assert len(c.calls) == 1 and r.chunks == [] and not r.finished  # nothing new: an empty read
        with CallCounter(system) as c:
            r = JobLogs(x.id, "stderr").read(tail_lines=5)
        assert len(c.calls) == 1 and "err hello over ssh" in "".join(t for _, t in r.chunks)
        with CallCounter(system) as c:
            out = xpr("logs", x.id)
        assert out.exit_code == 0 and "hello over ssh" in out.stdout and len(c.calls) == 1

        info = describe(x.id)  # xpr show of the running job: its remote dir, the scheduler's view
        assert info["remote_dir"] == f"{system.host}:{system.remote_dir(x.stage_dir)}"
        assert info["scheduler"]["state"] == "running" and info["failure"] is None
        assert info["partition"] in system.partitions

        r = system.transport.run(f"touch -- {remote_path(system.remote_dir(x.stage_dir))}/go_flag")
        assert r.ok, r.describe()
        with CallCounter(system) as c:
            out = xpr("logs", x.id, "-f", "--interval", "0.3")
        assert out.exit_code == 0, out.stderr
        assert out.stdout.count("hello over ssh") == 1 and "the end" in out.stdout
        assert c.calls and all("_expyre_stdout" in str(cmd) for cmd in c.calls)  # only reads of the files
        assert x.get_results(timeout=TIMEOUT, check_interval=1) is True


@pytest.mark.parametrize("scheduler", ["local", "slurm"])
def test_tail_and_refresh_over_ssh(scheduler, tmp_path, monkeypatch):
    """From Python: ``tail``/``stdout`` of a job on a remote host are ONE transport command each;
    ``refresh`` moves the status to ``started`` with one shared poll (one round trip); the
    runner's usage record comes back with the results."""
    names = sorted(selected_systems(scheduler, "ssh"))
    if not names:
        skip_or_fail(f"no {scheduler} system over ssh selected")
    name = names[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EXPYRE_PROGRESS", "0")
    with isolated_root(tmp_path / "_expyre", {name: available_systems()[name]}):
        x = ExPyRe("tailer", funcs.print_then_wait, args=["hello tail", "go_flag"])
        x.start(resources=RES, system_name=name, partial_node=True)
        system = config.get_system(name)
        wait_for(lambda: x.refresh() == "started", TIMEOUT, "the job to be seen running")
        wait_for(lambda: "hello tail" in x.tail(3), TIMEOUT, "the job's first line on the remote host")
        with CallCounter(system) as c:
            assert x.tail(1) == "hello tail\n" and x.tail(1, stderr=True) == "err hello tail\n"
        assert len(c.calls) == 2
        with CallCounter(system) as c:
            assert x.stdout == "hello tail\n"
        assert len(c.calls) == 1
        with CallCounter(system) as c:
            assert x.refresh(max_age=0) == "started"
        assert len(c.calls) <= 1  # one poll round trip (none if the shared poll is younger than min_poll_interval)
        r = system.transport.run(f"touch -- {remote_path(system.remote_dir(x.stage_dir))}/go_flag")
        assert r.ok, r.describe()
        assert x.get_results(timeout=TIMEOUT, check_interval=1) is True
        assert x.stdout.startswith("hello tail\n")
        assert x.usage(scheduler=False)["runner"]["wall_time"] > 0
