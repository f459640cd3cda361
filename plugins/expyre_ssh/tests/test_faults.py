"""Faults: a connection lost after a submission started, and the real sshd stopped mid-run and
restarted. In both, the run completes and no job is submitted twice."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import sshjobs
from sshtest import REPO, SSH_HOST, SSH_PORT, SSHD_PIDFILE, port_open, require_sshd, ssh_systems

from expyre import config
from expyre.func import ExPyRe
from expyre.testing import skip_or_fail

pytestmark = pytest.mark.real_scheduler

SMALL = {"max_time": "5m", "n": (1, "tasks")}


def _local_system() -> tuple[str, dict]:
    systems = ssh_systems("local")
    if not systems:
        skip_or_fail("no ssh system with the local scheduler selected")
    name, sysd = sorted(systems.items())[0]
    require_sshd(sysd)
    return name, sysd


def _submissions(system, job_id: str) -> int:
    """How many times the remote local queue received a job named ``job_id``."""
    q = f"{system.rundir}/_expyre_localq"
    from expyre.system import remote_path

    needle = shlex.quote(f'"name": "{job_id}"')
    r = system.transport.run(f"cat {remote_path(q)}/jobs/*.json {remote_path(q)}/done/*.json 2>/dev/null "
                             f"| grep -o -F -- {needle} | wc -l")
    return int(r.stdout.strip())


def test_lost_connection_during_submit_is_reconciled(xpr_root, counting_remsh, monkeypatch, caplog) -> None:
    """The submit command runs on the host, then the connection drops before its answer arrives:
    the transport says 'may or may not have run' (retry_safe=False), the core looks the job up by
    name and adopts it instead of submitting again."""
    name, sysd = _local_system()
    remsh, log, drop = counting_remsh
    monkeypatch.setenv("EXPYRE_RETRY", "3 0.2")
    xpr_root({name: {**sysd, "remsh_cmd": remsh}})
    system = config.get_system(name)
    warm = ExPyRe("warm", sshjobs.square, args=[2])  # probe, queue helper setup, rundir: done
    warm.start(resources=SMALL, system_name=name, partial_node=True)

    xpr = ExPyRe(f"lost_{uuid.uuid4().hex[:6]}", sshjobs.square, args=[9])
    drop.touch()  # the next command session (after staging by rsync) is the submit
    with caplog.at_level("WARNING", logger="expyre.system"):
        xpr.start(resources=SMALL, system_name=name, partial_node=True)
    assert not drop.exists(), "the fault was injected"
    if not any("but the job is queued as" in r.getMessage() for r in caplog.records):
        pytest.fail(f"the submitted job was not adopted; the remote queue received it "
                    f"{_submissions(system, xpr.id)} time(s):\n{caplog.text}")
    assert xpr.get_results(timeout=120, check_interval=1, quiet=True) == 81
    assert _submissions(system, xpr.id) == 1
    assert warm.get_results(timeout=120, quiet=True) == 4


def _sshd_pid() -> int | None:
    try:
        pid = int(SSHD_PIDFILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm == "sshd" else None


def _stop_sshd() -> None:
    """Stop the test sshd by its pid file (never by name); wait until the port is closed."""
    pid = _sshd_pid()
    if pid is None:
        skip_or_fail(f"no live sshd in {SSHD_PIDFILE}")
    os.kill(pid, 15)
    deadline = time.monotonic() + 20
    while port_open(SSH_HOST, SSH_PORT, timeout=0.5):
        if time.monotonic() > deadline:
            pytest.fail(f"sshd (pid {pid}) still listens 20 s after SIGTERM")
        time.sleep(0.05)


def _start_sshd() -> None:
    """Start it again the supported way (scripts/services/start-sshd.sh), idempotent."""
    if port_open(SSH_HOST, SSH_PORT):
        return
    proc = subprocess.run(["bash", str(REPO / "scripts" / "services" / "start-sshd.sh")],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 or not port_open(SSH_HOST, SSH_PORT):
        pytest.fail(f"could not restart sshd: {proc.stderr[-2000:]}")


@pytest.mark.slow
def test_sshd_stopped_mid_run_and_restarted(xpr_root, monkeypatch) -> None:
    """sshd goes away (and our connection with it) while a job runs and another is being
    submitted; it comes back; both jobs finish, each submitted exactly once."""
    if os.geteuid() != 0:
        skip_or_fail("stopping the test sshd needs root")
    name, sysd = _local_system()
    if _sshd_pid() is None:
        skip_or_fail(f"no live sshd in {SSHD_PIDFILE}")
    monkeypatch.setenv("EXPYRE_RETRY", "60 0.5")  # up to 30 s of tries
    xpr_root({name: sysd})
    system = config.get_system(name)
    transport = system.transport
    gate = f"/tmp/expyre-ssh-gate-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex[:6]

    running = ExPyRe(f"outage_running_{tag}", sshjobs.gated_square, args=[gate, 5])
    running.start(resources=SMALL, system_name=name, partial_node=True)
    logins_before = transport.stats["master"]
    master = transport.master_pid()
    assert master is not None

    restarted = threading.Event()
    errors: list[BaseException] = []

    def restart_after_failures() -> None:
        try:
            # the driver has tried (and failed) to log in again twice: bring sshd back
            deadline = time.monotonic() + 60
            while transport.stats["master"] < logins_before + 2:
                if time.monotonic() > deadline:
                    raise AssertionError("the driver never tried to reconnect")
                time.sleep(0.05)
            _start_sshd()
            restarted.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    try:
        _stop_sshd()
        os.kill(master, 9)  # our own master: the established connection is lost too
        th = threading.Thread(target=restart_after_failures, daemon=True)
        th.start()
        # submitting during the outage: staging and submit fail before reaching the host
        # (retry_safe) and are retried until sshd is back
        t0 = time.monotonic()
        submitted = ExPyRe(f"outage_submitted_{tag}", sshjobs.gated_square, args=[gate, 6])
        submitted.start(resources=SMALL, system_name=name, partial_node=True)
        outage = time.monotonic() - t0
        th.join(timeout=120)
        assert not errors, errors
        assert restarted.is_set()
        transport.run(["touch", gate])
        assert running.get_results(timeout=120, check_interval=1, quiet=True) == 25
        assert submitted.get_results(timeout=120, check_interval=1, quiet=True) == 36
        assert _submissions(system, running.id) == 1
        assert _submissions(system, submitted.id) == 1
        assert transport.stats["master"] >= logins_before + 3  # failed tries, then the new login
        print(f"\nsubmit across the sshd outage took {outage:.1f} s; logins tried: "
              f"{transport.stats['master'] - logins_before}")
    finally:
        _start_sshd()
        try:
            transport.run(["rm", "-f", gate])
        except Exception:  # noqa: BLE001 - cleanup only
            pass
