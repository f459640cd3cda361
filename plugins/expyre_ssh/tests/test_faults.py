"""Transport faults: a connection lost after a submission started; the real sshd stopped mid-run
and restarted; a remote command that hangs (the system's ``command_timeout`` fires: retried, or a
clear error naming host and command); rsync killed mid-transfer both ways (retried; a partial file
never becomes a result). The run completes or fails clearly, and no job is submitted twice."""

from __future__ import annotations

import os
import re
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
    from expyre.shell import remote_path

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
@pytest.mark.serial
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


# -- a remote command that hangs: the transport's command_timeout ---------------------------------
# A remote shell that hangs the next command session (not the master, not rsync) while the file
# $EXPYRE_SSH_TEST_HANG exists. Its content says how: "before" = the command never runs (a dead
# link); "after" = it runs, but its answer never comes back; "always" = every session, before.
HANG_WRAPPER = r"""#!/bin/bash
hang="${EXPYRE_SSH_TEST_HANG:-}"
if [[ -n "$hang" && -e "$hang" ]]; then
    case " $* " in
        *" ControlMaster=no "*)
            case " $* " in *" rsync --server"*) ;; *)
                mode=$(cat -- "$hang")
                [[ "$mode" == always ]] || rm -f -- "$hang"
                echo "$mode" >>"$hang.log"
                if [[ "$mode" == after ]]; then ssh "$@" >/dev/null 2>&1; fi
                exec sleep 600 ;;
            esac ;;
    esac
fi
exec ssh "$@"
"""

TIMEOUT_S = 2


@pytest.fixture
def hanging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xpr_root):
    """``(system name, hang file)``: the ssh local system with the hanging remote shell and
    ``command_timeout`` of 2 s, in a fresh root."""
    name, sysd = _local_system()
    wrapper = tmp_path / "bin" / "hanging-ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(HANG_WRAPPER)
    wrapper.chmod(0o755)
    hang = tmp_path / "hang-next-session"
    monkeypatch.setenv("EXPYRE_SSH_TEST_HANG", str(hang))
    # the wrapper hangs "the next command session": one ssh session per command (the persistent
    # shells' own timeout is tested in test_transport.py)
    monkeypatch.setenv("EXPYRE_SSH_SHELLS", "0")
    monkeypatch.setenv("EXPYRE_RETRY", "3 0.2")
    remsh = shlex.join([str(wrapper), *shlex.split(sysd.get("remsh_cmd") or "ssh")[1:]])
    xpr_root({name: {**sysd, "remsh_cmd": remsh, "command_timeout": TIMEOUT_S}})
    return name, hang


def test_command_timeout_is_configured(hanging) -> None:
    """Every command the core runs without a timeout of its own gets the system's command_timeout
    (and a default when config.json gives none)."""
    from expyre.system import DEFAULT_COMMAND_TIMEOUT, System
    from expyre.config_model import SystemConfig

    name, _ = hanging
    assert config.get_system(name).transport.command_timeout == TIMEOUT_S
    assert System("x", SystemConfig(scheduler="local"), Path("/tmp")).command_timeout == DEFAULT_COMMAND_TIMEOUT


def test_hanging_status_query_times_out_and_is_retried(hanging, caplog) -> None:
    """The poll's ssh session hangs: after command_timeout it is killed, the failure names the
    host and the command, the (idempotent) poll is retried and the job's result comes back."""
    name, hang = hanging
    system = config.get_system(name)
    xpr = ExPyRe(f"hang_status_{uuid.uuid4().hex[:6]}", sshjobs.square, args=[4])
    xpr.start(resources=SMALL, system_name=name, partial_node=True)
    hang.write_text("before")  # the next command session is get_results' first poll
    t0 = time.monotonic()
    with caplog.at_level("WARNING", logger="expyre.system"):
        assert xpr.get_results(timeout=60, check_interval=0.5, quiet=True) == 16
    assert not hang.exists(), "the fault was injected"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert re.search(rf"{name}: poll failed \(try 1 of 3\).*ssh to {re.escape(system.host)}: bash script `.*localq\.py status"
                     rf".*` timed out after {TIMEOUT_S} s \(command_timeout\); it may still be running there", text), text
    assert time.monotonic() - t0 < TIMEOUT_S + 20
    assert _submissions(system, xpr.id) == 1


@pytest.mark.parametrize("mode", ["before", "after"])
def test_hanging_submit_is_never_duplicated(hanging, caplog, mode) -> None:
    """The submit's ssh session hangs, before the command ran (``before``) or after it queued
    the job (``after``, its answer lost). After the timeout the job is looked up by name: then
    submitted again, or adopted. Either way it reaches the queue exactly once."""
    name, hang = hanging
    system = config.get_system(name)
    warm = ExPyRe("warm", sshjobs.square, args=[2])  # probe, queue helper, rundir: done
    warm.start(resources=SMALL, system_name=name, partial_node=True)
    xpr = ExPyRe(f"hang_submit_{mode}_{uuid.uuid4().hex[:6]}", sshjobs.square, args=[9])
    hang.write_text(mode)  # the next command session (after staging by rsync) is the submit
    with caplog.at_level("WARNING", logger="expyre.system"):
        xpr.start(resources=SMALL, system_name=name, partial_node=True)
    assert not hang.exists(), "the fault was injected"
    text = "\n".join(r.getMessage() for r in caplog.records)
    if mode == "after":
        assert re.search(rf"submit of {xpr.id} reported .*timed out after {TIMEOUT_S} s.*but the job is queued as "
                         rf"{re.escape(xpr.remote_id)}; using it", text), text
    else:
        assert re.search(rf"submitting {xpr.id} failed \(try 1 of 3\), not queued, retrying: .*timed out", text), text
    assert xpr.get_results(timeout=60, check_interval=0.5, quiet=True) == 81
    assert _submissions(system, xpr.id) == 1
    assert warm.get_results(timeout=60, quiet=True) == 4


def test_command_that_always_hangs_fails_clearly(hanging, monkeypatch) -> None:
    """Every session hangs: get_results fails (once EXPYRE_POLL_OUTAGE is spent, here at once)
    with an error naming the system, the host, the command and the timeout, within the bounded
    retries; the job is left alone, and collected once the link works again."""
    from expyre.types import TransportError

    name, hang = hanging
    system = config.get_system(name)
    monkeypatch.setenv("EXPYRE_RETRY", "2 0.1")
    monkeypatch.setenv("EXPYRE_POLL_OUTAGE", "0")
    xpr = ExPyRe(f"hang_always_{uuid.uuid4().hex[:6]}", sshjobs.square, args=[5])
    xpr.start(resources=SMALL, system_name=name, partial_node=True)
    hang.write_text("always")
    t0 = time.monotonic()
    with pytest.raises(TransportError, match=rf"{name}: polling has failed for \d+ s \(EXPYRE_POLL_OUTAGE=0\); last error: "
                                             rf"ssh to {re.escape(system.host)}: bash script `.*localq\.py status.*` "
                                             rf"timed out after {TIMEOUT_S} s"):
        xpr.get_results(timeout=60, check_interval=0.5, quiet=True)
    assert time.monotonic() - t0 < 2 * TIMEOUT_S + 10  # 2 tries of 2 s, not for ever
    assert config.db.get(xpr.id)["status"] in ("submitted", "started")
    hang.unlink()
    assert xpr.get_results(timeout=60, check_interval=0.5, quiet=True) == 25
    assert _submissions(system, xpr.id) == 1


# -- rsync interrupted mid-transfer --------------------------------------------------------------
# An rsync that, while the counter file $EXPYRE_TEST_RSYNC_CUT holds "<direction> <n>" with n > 0,
# kills (SIGKILL) the next copy in that direction ("get": from the host, "put": to it) as soon
# as a file is half-way: it throttles the copy, waits for rsync's temporary file of the large
# file to appear, lists the destination, and kills it.
RSYNC_WRAPPER = r"""#!/bin/bash
cut="${EXPYRE_TEST_RSYNC_CUT:?}"
read -r direction n <"$cut" || true  # (no newline at the end: read fails but assigns)
n=${n:-0}
src="${@: -2:1}"
dest="${@: -1}"
remsh="" prev=""
for a in "$@"; do [[ "$prev" == -e ]] && remsh="$a"; prev="$a"; done  # rsync's -e: ssh over our master
remote_ls="ls -a -- ${dest#*:}*/ 2>/dev/null"
if [[ "$direction" == get && "$src" == *:* ]] || [[ "$direction" == put && "$dest" == *:* ]]; then
    if (( n > 0 )); then
        echo "$direction $((n - 1))" >"$cut"
        rsync --bwlimit=500 "$@" <&0 &
        pid=$!
        for _ in $(seq 400); do
            if [[ "$direction" == get ]]; then
                compgen -G "$dest*/._expyre_job_succeeded.*" >/dev/null && break
            else
                eval "$remsh \"\${dest%%:*}\" \"\$remote_ls\"" </dev/null | grep -qF ._expyre_task.pkl. && break
            fi
            sleep 0.05
        done
        kill -9 "$pid"  # rsync alone, as the OOM killer would: its ssh child lives on for a while
        wait "$pid"
        date +%s.%N >"$cut.killed"
        if [[ "$direction" == get ]]; then ls -a "$dest"*/ >>"$cut.listing"; fi
        exit 137
    fi
fi
[[ -e "$cut.killed" && ! -e "$cut.next" ]] && date +%s.%N >"$cut.next"  # the copy after a kill starts
exec rsync "$@"
"""


@pytest.fixture
def cut_rsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    wrapper = tmp_path / "bin" / "cutting-rsync"
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(RSYNC_WRAPPER)
    wrapper.chmod(0o755)
    cut = tmp_path / "rsync-cut"
    cut.write_text("none 0")
    monkeypatch.setenv("EXPYRE_SSH_RSYNC", str(wrapper))
    monkeypatch.setenv("EXPYRE_TEST_RSYNC_CUT", str(cut))
    monkeypatch.setenv("EXPYRE_RETRY", "3 0.2")
    return cut


BIG = 8_000_000


def test_rsync_of_results_interrupted_is_retried(xpr_root, cut_rsync, caplog) -> None:
    """The copy of a finished job's 8 MB result back from the host is killed half-way: the
    partial file never appears under the result's name (rsync's temporary file), the copy is
    retried, and the whole, correct result comes back."""
    name, sysd = _local_system()
    xpr_root({name: sysd})
    system = config.get_system(name)
    xpr = ExPyRe(f"cut_get_{uuid.uuid4().hex[:6]}", bytes, args=[BIG])
    xpr.start(resources=SMALL, system_name=name, partial_node=True)
    cut_rsync.write_text("get 1")
    with caplog.at_level("WARNING", logger="expyre.system"):
        value = xpr.get_results(timeout=120, check_interval=0.5, quiet=True)
    assert value == bytes(BIG)
    assert cut_rsync.read_text().split() == ["get", "0"], "the fault was injected"
    listing = (cut_rsync.parent / "rsync-cut.listing").read_text().split()
    assert any(f.startswith("._expyre_job_succeeded.") for f in listing), listing  # killed mid-file
    assert "_expyre_job_succeeded" not in listing, listing  # the partial file is no result
    assert re.search(rf"{name}: copying 1 job dir\(s\) back failed \(try 1 of 3\).*rsync from "
                     rf"{re.escape(system.host)}:.* failed with exit 137", caplog.text), caplog.text
    # the killed rsync's orphaned ssh did not hold the copy up: the retry came at once (0.2 s wait)
    gap = float((cut_rsync.parent / "rsync-cut.next").read_text()) - float((cut_rsync.parent / "rsync-cut.killed").read_text())
    assert 0 < gap < 10, gap
    assert _submissions(system, xpr.id) == 1


def test_rsync_of_results_always_interrupted_fails_clearly(xpr_root, cut_rsync, monkeypatch) -> None:
    """Every copy back is killed: get_results fails with the rsync error naming the host; the job
    is not marked succeeded and no result file exists; once copies work, the result comes back."""
    from expyre.types import TransportError

    name, sysd = _local_system()
    monkeypatch.setenv("EXPYRE_RETRY", "2 0.1")
    monkeypatch.setenv("EXPYRE_POLL_OUTAGE", "0")
    xpr_root({name: sysd})
    system = config.get_system(name)
    xpr = ExPyRe(f"cut_always_{uuid.uuid4().hex[:6]}", bytes, args=[BIG])
    xpr.start(resources=SMALL, system_name=name, partial_node=True)
    cut_rsync.write_text("get 1000")
    with pytest.raises(TransportError, match=rf"{name}: polling has failed .*rsync from {re.escape(system.host)}:"
                                             rf".* failed with exit 137"):
        xpr.get_results(timeout=120, check_interval=0.5, quiet=True)
    assert config.db.get(xpr.id)["status"] in ("submitted", "started")
    assert not (xpr.stage_dir / "_expyre_job_succeeded").exists()
    cut_rsync.write_text("none 0")
    assert xpr.get_results(timeout=120, check_interval=0.5, quiet=True) == bytes(BIG)


def test_rsync_of_job_dir_interrupted_is_retried_then_submitted_once(xpr_root, cut_rsync) -> None:
    """Staging a job with an 8 MB argument is killed half-way: the copy is retried before the
    job is submitted, which then happens exactly once, and the job sees its whole argument."""
    name, sysd = _local_system()
    xpr_root({name: sysd})
    system = config.get_system(name)
    warm = ExPyRe("warm", sshjobs.square, args=[3])  # probe and rundir exist: the next put is the job's
    warm.start(resources=SMALL, system_name=name, partial_node=True)
    xpr = ExPyRe(f"cut_put_{uuid.uuid4().hex[:6]}", len, args=[bytes(BIG)])
    cut_rsync.write_text("put 1")
    xpr.start(resources=SMALL, system_name=name, partial_node=True)
    assert cut_rsync.read_text().split() == ["put", "0"], "the fault was injected"
    assert xpr.get_results(timeout=120, check_interval=0.5, quiet=True) == BIG
    assert _submissions(system, xpr.id) == 1
    assert warm.get_results(timeout=60, quiet=True) == 9
