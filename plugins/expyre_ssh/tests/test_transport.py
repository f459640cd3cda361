"""SshTransport against the real loopback sshd (scripts/services/start-sshd.sh): commands, files,
the one login per host, closing, and which failures are safe to retry."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sshtest import REMOTE_PYTHON, REMSH, SSH_HOST, TEST_USER, port_open

from expyre.testing import skip_or_fail
from expyre.types import TransportError
from expyre_ssh import RemoteEnvironmentError, SshTransport

pytestmark = [pytest.mark.real_scheduler, pytest.mark.usefixtures("sshd")]

HOST = f"{TEST_USER}@{SSH_HOST}"
HOSTILE_NAMES = ["a b", "it's", '"dq"', "$(touch PWNED)", "`touch PWNED`", ";touch PWNED;", "*", "-rf", "new\nline",
                 "back\\slash", "ünïcode"]


@pytest.fixture
def transport():
    t = SshTransport(HOST, REMSH)
    yield t
    t.close()


@pytest.fixture
def remote_tmp(transport: SshTransport):
    """A fresh directory in the remote home, removed afterwards."""
    name = f"expyre-ssh-test-{uuid.uuid4().hex[:8]} with space"
    yield name
    transport.run(["rm", "-rf", "--", name])


def test_argv_is_passed_verbatim(transport: SshTransport, remote_tmp: str) -> None:
    transport.run(["mkdir", remote_tmp])
    r = transport.run(["printf", "%s\\0", *HOSTILE_NAMES], cwd=remote_tmp)
    assert r.ok and r.stdout.split("\0")[:-1] == HOSTILE_NAMES
    assert transport.run(["ls", "-A"], cwd=remote_tmp).stdout == ""  # nothing was executed


def test_exit_codes_output_and_stderr(transport: SshTransport) -> None:
    r = transport.run("echo out; echo err >&2; exit 255")
    assert (r.returncode, r.stdout, r.stderr) == (255, "out\n", "err\n")  # the command's own 255
    assert transport.run(["false"]).returncode == 1
    r = transport.run(["no-such-command-xyz"])
    assert r.returncode == 127 and "no-such-command-xyz" in r.stderr


def test_cwd_home_relative_and_absolute(transport: SshTransport, remote_tmp: str) -> None:
    home = transport.run('printf %s "$HOME"').stdout
    assert home == f"/home/{TEST_USER}"
    transport.run(["mkdir", "-p", f"{remote_tmp}/sub 'q'"])
    assert transport.run(["pwd"], cwd=f"{remote_tmp}/sub 'q'").stdout == f"{home}/{remote_tmp}/sub 'q'\n"
    assert transport.run(["pwd"], cwd=f"~/{remote_tmp}").stdout == f"{home}/{remote_tmp}\n"
    assert transport.run(["pwd"], cwd="/tmp").stdout == "/tmp\n"
    r = transport.run(["pwd"], cwd=f"{remote_tmp}/missing")
    assert r.returncode == 1 and "No such file or directory" in r.stderr


def test_input(transport: SshTransport) -> None:
    data = "".join(f"line {i} with 'quotes' and $(no expansion)\n" for i in range(5000))
    assert transport.run(["cat"], input=data).stdout == data
    assert transport.run(["wc", "-c"]).stdout.strip() == "0"  # no input: end of file at once


def test_unset_env_prefixes() -> None:
    # LC_* is what the test sshd accepts from clients (AcceptEnv LC_*): a variable set remotely
    t = SshTransport(HOST, f"{REMSH} -o SetEnv=LC_EXPYRE_FOREIGN=1")
    try:
        assert "LC_EXPYRE_FOREIGN=1" in t.run(["env"]).stdout
        r = t.run(["env"], unset_env_prefixes=["LC_EXPYRE_"])
        assert r.ok and "LC_EXPYRE_FOREIGN" not in r.stdout and "HOME=" in r.stdout
    finally:
        t.close()


def test_timeout_is_not_retry_safe(transport: SshTransport) -> None:
    t0 = time.monotonic()
    with pytest.raises(TransportError, match="timed out") as info:
        transport.run(["sleep", "30"], timeout=1)
    assert not info.value.retry_safe and time.monotonic() - t0 < 10


def test_one_login_for_many_operations(transport: SshTransport, remote_tmp: str, tmp_path: Path) -> None:
    # (the put of this small directory goes through the persistent shell: one command, no rsync)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    for _ in range(10):
        assert transport.run(["true"]).ok
    transport.put([tmp_path / "d"], remote_tmp)
    transport.get([f"{remote_tmp}/d"], tmp_path / "back")
    assert transport.stats["master"] == 1
    assert transport.stats["run"] == 11  # 10 + the copy to remote_tmp (which makes it)
    assert transport.stats["rsync"] == 1 and transport.stats["inline_put"] == 1
    assert transport.stats["shell"] == 1 and transport.stats["session"] == 0
    pid = transport.master_pid()
    assert pid is not None and Path(f"/proc/{pid}").exists()


def test_close_ends_the_master(transport: SshTransport) -> None:
    assert transport.run(["true"]).ok
    pid = transport.master_pid()
    sock = transport.control.path
    assert sock.exists() and pid
    transport.close()
    assert not sock.exists()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and _state(pid) not in ("Z", "X") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or _state(pid) in ("Z", "X")
    transport.close()  # twice is fine
    assert transport.run(["true"]).ok  # and it reconnects on the next use
    assert transport.stats["master"] == 2


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def test_socket_is_private_to_the_process(transport: SshTransport) -> None:
    transport.run(["true"])
    d = transport.control.path.parent
    assert (d.stat().st_mode & 0o777) == 0o700 and d.stat().st_uid == os.getuid()
    assert transport.control.path.name.startswith(f"{os.getpid()}-")


def test_unreachable_host_is_retry_safe(tmp_path: Path) -> None:
    port = 1  # nothing listens there
    assert not port_open(SSH_HOST, port)
    t = SshTransport(HOST, f"ssh -p {port} -o ConnectTimeout=5")
    try:
        for op in (lambda: t.run(["touch", str(tmp_path / "never")]),
                   lambda: t.put([tmp_path], "x"),
                   lambda: t.get(["x"], tmp_path)):
            with pytest.raises(TransportError, match="cannot connect") as info:
                op()
            assert info.value.retry_safe, "the command certainly did not start"
    finally:
        t.close()


def test_connection_lost_after_start_is_not_retry_safe(transport: SshTransport, remote_tmp: str) -> None:
    """Kill our own master while a command runs: the command had started, so not retry-safe."""
    transport.run(["mkdir", remote_tmp])
    pid = transport.master_pid()
    assert pid
    import threading

    def kill_when_started() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if transport_check.run(["test", "-e", f"{remote_tmp}/started"]).ok:
                os.kill(pid, 9)  # our own ssh master process
                return
            time.sleep(0.05)

    transport_check = SshTransport(HOST, REMSH)  # a second connection to watch the first
    try:
        th = threading.Thread(target=kill_when_started)
        th.start()
        with pytest.raises(TransportError, match="may or may not have run") as info:
            transport.run(f"touch {shlex.quote(remote_tmp)}/started; sleep 20")
        th.join()
        assert not info.value.retry_safe
        # the next call opens a new master and works
        assert transport.run(["true"]).ok and transport.stats["master"] == 2
    finally:
        transport_check.close()


@pytest.fixture(params=["inline", "rsync"])
def copy_by(request, monkeypatch: pytest.MonkeyPatch) -> str:
    """Puts through the persistent shell (small copies, the default) or by rsync."""
    if request.param == "rsync":
        monkeypatch.setenv("EXPYRE_SSH_INLINE_PUT", "0")
    return request.param


def _copies(transport: SshTransport) -> int:
    return transport.stats["rsync"] + transport.stats["inline_put"]


def test_put_and_get_hostile_names(transport: SshTransport, remote_tmp: str, tmp_path: Path, copy_by: str) -> None:
    src = tmp_path / "src"
    for i, name in enumerate(HOSTILE_NAMES):
        d = src / f"dir {name}"
        (d / name).mkdir(parents=True)
        (d / name / name).write_text(f"content {i} {name}")
        (d / ".hidden").write_text("h")
    dirs = sorted(src.iterdir())
    parent = f"{remote_tmp}/parent 'q' $(x)"
    transport.put(dirs, parent)
    assert _copies(transport) == 1 and transport.stats[copy_by if copy_by == "rsync" else "inline_put"] == 1, \
        "N directories = one copy"
    listing = transport.run(["find", ".", "-type", "f", "-printf", "%P\\0"], cwd=parent).stdout.split("\0")[:-1]
    assert sorted(listing) == sorted([f"dir {n}/{n}/{n}" for n in HOSTILE_NAMES] + [f"dir {n}/.hidden" for n in HOSTILE_NAMES])
    mode = transport.run(["stat", "-c", "%a", parent]).stdout.strip()
    assert mode == "700"
    # change a file remotely and bring everything back in one rsync
    transport.run(["bash", "-c", 'echo changed > "$1"', "x", f"{parent}/dir it's/it's/it's"])
    back = tmp_path / "back"
    transport.get([f"{parent}/{d.name}" for d in dirs], back)
    assert _copies(transport) == 2
    for i, name in enumerate(HOSTILE_NAMES):
        expected = "changed\n" if name == "it's" else f"content {i} {name}"
        assert (back / f"dir {name}" / name / name).read_text() == expected
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    assert "PWNED" not in transport.run(["find", ".", "-maxdepth", "3", "-name", "PWNED"]).stdout


def test_put_of_many_dirs_is_one_copy(transport: SshTransport, remote_tmp: str, tmp_path: Path, copy_by: str) -> None:
    dirs = []
    for i in range(50):
        d = tmp_path / f"run_{i}"
        d.mkdir()
        (d / "_expyre_task.pkl").write_bytes(os.urandom(1000))
        dirs.append(d)
    t0 = time.monotonic()
    transport.put(dirs, remote_tmp)
    assert _copies(transport) == 1
    n = transport.run(f"ls {shlex.quote(remote_tmp)} | wc -l").stdout.strip()
    assert n == "50"
    transport.get([f"{remote_tmp}/run_{i}" for i in range(50)], tmp_path / "back")
    assert _copies(transport) == 2
    assert len(list((tmp_path / "back").iterdir())) == 50
    assert time.monotonic() - t0 < 30


def test_get_missing_dir_is_an_error(transport: SshTransport, remote_tmp: str, tmp_path: Path) -> None:
    transport.run(["mkdir", remote_tmp])
    with pytest.raises(TransportError, match="rsync from .* failed with exit 23"):
        transport.get([f"{remote_tmp}/nope"], tmp_path)


def test_put_recreates_a_removed_parent(transport: SshTransport, remote_tmp: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPYRE_SSH_INLINE_PUT", "0")  # rsync's way (a copy through the shell makes the parent each time)
    (tmp_path / "d").mkdir()
    parent = f"{remote_tmp}/a/b"
    transport.put([tmp_path / "d"], parent)
    transport.run(["rm", "-rf", remote_tmp])
    with pytest.raises(TransportError):
        transport.put([tmp_path / "d"], parent)  # rsync makes only the last level; the mkdir is cached...
    transport.put([tmp_path / "d"], parent)  # ...and forgotten after the failure, so the core's retry works
    assert transport.run(["test", "-d", f"{parent}/d"]).ok


def test_probe_ok_and_once(transport: SshTransport) -> None:
    transport.probe(REMOTE_PYTHON)
    runs = transport.stats["run"]
    transport.probe(REMOTE_PYTHON)
    assert transport.stats["run"] == runs


def test_probe_reports_missing_cloudpickle_and_python(transport: SshTransport) -> None:
    # Debian's /usr/bin/python3 on the test host has no cloudpickle
    with pytest.raises(RemoteEnvironmentError) as info:
        transport.probe("/usr/bin/python3")
    msg = str(info.value)
    assert HOST in msg and "`/usr/bin/python3 -c 'import cloudpickle'` exited 1" in msg
    assert "No module named 'cloudpickle'" in msg
    with pytest.raises(RemoteEnvironmentError, match=r"/opt/no such/python.*exited 127"):
        transport.probe(shlex.quote("/opt/no such/python"))


def test_probe_runs_the_system_commands_first(transport: SshTransport) -> None:
    # the Python is found only after the system's `commands` put it on the PATH
    venv_bin = str(Path(REMOTE_PYTHON).parent)
    with pytest.raises(RemoteEnvironmentError):
        transport.probe("python")
    transport.probe("python", [f"export PATH={shlex.quote(venv_bin)}:$PATH"])


def test_python_version_from_the_probe_without_another_round_trip(transport: SshTransport) -> None:
    transport.probe(REMOTE_PYTHON)
    runs = transport.stats["run"]
    version = transport.python_version(REMOTE_PYTHON)
    assert version is not None and version >= (3, 8)
    assert transport.stats["run"] == runs  # the probe's answer
    # a Python the probe did not check (start(python_cmd=...)): asked once, in one command
    assert transport.python_version("/usr/bin/python3") == version_of_debian_python(transport)
    assert transport.stats["run"] == runs + 2


def test_python_version_not_asked_when_the_probe_is_off(transport: SshTransport,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPYRE_SSH_PROBE", "0")
    runs = transport.stats["run"]
    assert transport.python_version("/usr/bin/python3") is None
    assert transport.stats["run"] == runs


def version_of_debian_python(transport: SshTransport) -> tuple[int, int]:
    out = transport.run(["/usr/bin/python3", "-c", "import sys; print('%d %d' % sys.version_info[:2])"]).stdout.split()
    return int(out[0]), int(out[1])


def test_probe_can_be_disabled(transport: SshTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPYRE_SSH_PROBE", "0")
    transport.probe("/usr/bin/python3")  # would fail


def test_expyre_rsh_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPYRE_RSH", REMSH)
    t = SshTransport(HOST, None)
    try:
        assert t.run(["whoami"]).stdout == f"{TEST_USER}\n"
    finally:
        t.close()


def test_fork_gets_its_own_master(transport: SshTransport) -> None:
    assert transport.run(["true"]).ok
    parent_sock = transport.control.path
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: use the inherited transport, then close it
        code = 1
        try:
            ok = transport.run(["true"]).ok and transport.control.path != parent_sock
            transport.close()
            code = 0 if ok else 2
        finally:
            os.write(w, bytes([code]))
            os._exit(0)
    os.close(w)
    code = os.read(r, 1)
    os.waitpid(pid, 0)
    assert code == b"\0"
    assert parent_sock.exists() and transport.run(["true"]).ok  # the child did not close ours


def test_handshake_vs_multiplexed_latency(transport: SshTransport, record_property) -> None:
    """Measured: a full ssh login vs a command over the master (median of 10)."""
    plain = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([*shlex.split(REMSH), "-o", "ControlPath=none", "-o", "ControlMaster=no", HOST, "true"],
                       check=True, stdin=subprocess.DEVNULL, capture_output=True)
        plain.append(time.perf_counter() - t0)
    transport.run(["true"])
    mux = []
    for _ in range(10):
        t0 = time.perf_counter()
        assert transport.run(["true"]).ok
        mux.append(time.perf_counter() - t0)
    p, m = sorted(plain)[5], sorted(mux)[5]
    record_property("ssh_handshake_median_s", round(p, 4))
    record_property("ssh_multiplexed_median_s", round(m, 4))
    print(f"\nssh handshake median {p * 1000:.1f} ms, multiplexed run() median {m * 1000:.1f} ms ({p / m:.1f}x)")
    assert m < p / 3, (p, m)


def test_get_puts_files_in_place_markers_last_and_transfers_only_changes(transport: SshTransport, remote_tmp: str,
                                                                         tmp_path: Path, monkeypatch) -> None:
    """get: rsync fills a holding directory (unchanged files are hard links to those already
    here, not copies), then every file is renamed into place, the result marker last."""
    src = tmp_path / "src" / "run_a"
    src.mkdir(parents=True)
    (src / "_expyre_job_succeeded").write_bytes(os.urandom(2_000_000))
    (src / "_expyre_stdout").write_text("out")
    transport.put([src], remote_tmp)
    back = tmp_path / "back"
    transport.get([f"{remote_tmp}/run_a"], back)
    marker_inode = os.stat(back / "run_a" / "_expyre_job_succeeded").st_ino
    assert sorted(os.listdir(back / "run_a")) == ["_expyre_job_succeeded", "_expyre_stdout"]
    moved: list[str] = []
    real_replace = os.replace

    def replace(a, b):
        moved.append(Path(b).name)
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    transport.run(["bash", "-c", 'echo more >> "$1"', "x", f"{remote_tmp}/run_a/_expyre_stdout"])
    transport.get([f"{remote_tmp}/run_a"], back)
    assert moved == ["_expyre_stdout"], "only the changed file is put in place again"
    assert os.stat(back / "run_a" / "_expyre_job_succeeded").st_ino == marker_inode
    assert (back / "run_a" / "_expyre_stdout").read_text() == "outmore\n"
    transport.run(["bash", "-c", 'echo x >> "$1"; echo again >> "$2"', "x", f"{remote_tmp}/run_a/_expyre_job_succeeded",
                   f"{remote_tmp}/run_a/_expyre_stdout"])
    moved.clear()
    transport.get([f"{remote_tmp}/run_a"], back)
    assert moved == ["_expyre_stdout", "_expyre_job_succeeded"], "the result marker last"
    assert not [n for n in os.listdir(back) if n.startswith(".")], "the holding directory is removed"


# -- the persistent shells: the login shell's start-up once per shell, not per command -----------
SLOW_USER = "xprslow"  # scripts/services/make-slow-user.sh: its ~/.bashrc sleeps 0.3 s


def _slow_transport(log_name: str | None = None) -> SshTransport:
    """A transport to the slow user; with ``log_name``, its ~/.bashrc appends a line to that file
    (in its home) at every start-up (LC_EXPYRE_BASHRC_LOG, accepted by the test sshd)."""
    extra = f" -o SetEnv=LC_EXPYRE_BASHRC_LOG={log_name}" if log_name else ""
    return SshTransport(f"{SLOW_USER}@{SSH_HOST}", REMSH + extra)


@pytest.fixture
def bashrc_log():
    """``(name, count)``: a fresh start-up log of the slow user, and a function counting its lines
    (read over a connection that does not log)."""
    name = f"expyre-bashrc-{uuid.uuid4().hex[:8]}.log"
    reader = _slow_transport()
    try:
        probe = reader.run(["grep", "-c", "LC_EXPYRE_BASHRC_LOG", ".bashrc"])
    except TransportError as exc:
        reader.close()
        skip_or_fail(f"no test user {SLOW_USER} on the test sshd (scripts/services/make-slow-user.sh): {exc}")
    if probe.stdout.strip() in ("", "0"):
        reader.close()
        skip_or_fail(f"~{SLOW_USER}/.bashrc does not count its start-ups: re-run scripts/services/make-slow-user.sh")

    def count() -> int:
        r = reader.run(f"cat -- {shlex.quote(name)} 2>/dev/null || true")
        return len(r.stdout.splitlines())

    yield name, count
    reader.run(["rm", "-f", "--", name])
    reader.close()


@pytest.mark.parametrize("shells", ["1", "4"])
def test_slow_bashrc_is_paid_once_per_shell(bashrc_log, monkeypatch: pytest.MonkeyPatch, shells: str) -> None:
    """Ten commands one after the other pay the ~/.bashrc of ONE shell start (one persistent
    shell); after close_shells the next command starts one more; over one ssh session per command
    (EXPYRE_SSH_SHELLS=0) every command pays it.

    One start reads ~/.bashrc once or twice, depending on bash: the login shell reads it, and the
    ``bash -c`` it execs reads it again when bash takes it as run by sshd (Debian's bash does),
    exactly as the commands' own sessions did: ``per_start`` is measured, not assumed."""
    name, startups = bashrc_log
    monkeypatch.setenv("EXPYRE_SSH_SHELLS", shells)
    t = _slow_transport(name)
    try:
        assert t.run(["true"]).ok
        per_start = startups()
        assert per_start in (1, 2)
        for i in range(10):
            r = t.run(f"echo {i}; echo e{i} >&2; exit {i}")
            assert (r.returncode, r.stdout, r.stderr) == (i, f"{i}\n", f"e{i}\n")
        assert t.stats["run"] == 11 and t.stats["shell"] == 1 and t.stats["session"] == 0
        assert startups() == per_start
        t.close_shells()
        assert t.run(["true"]).ok
        assert startups() == 2 * per_start and t.stats["shell"] == 2
    finally:
        t.close()
    monkeypatch.setenv("EXPYRE_SSH_SHELLS", "0")
    t = _slow_transport(name)
    try:
        for _ in range(3):
            assert t.run(["true"]).ok
        assert startups() == (2 + 3) * per_start and t.stats["shell"] == 0 and t.stats["session"] == 3
    finally:
        t.close()


def test_threads_share_at_most_the_allowed_shells(bashrc_log, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands from 6 threads at once, 2 shells allowed: every answer is its own command's; no
    more than 2 shells start (the others' commands take sessions of their own)."""
    import threading

    name, startups = bashrc_log
    monkeypatch.setenv("EXPYRE_SSH_SHELLS", "2")
    t = _slow_transport(name)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(5):
                r = t.run(["printf", "%s-%s", str(k), str(i)], input=None if i % 2 else f"in {k} {i}")
                assert r.ok and r.stdout == f"{k}-{i}", r
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        assert not errors, errors
        assert t.stats["run"] == 30 and 1 <= t.stats["shell"] <= 2
        # start-ups: one per shell, one per command that found both shells busy (each reads
        # ~/.bashrc once or twice, see above)
        assert startups() in {k * (t.stats["shell"] + t.stats["session"]) for k in (1, 2)}
        assert t.stats["session"] < 30
    finally:
        t.close()


def test_shell_survives_output_input_and_a_lost_session(transport: SshTransport) -> None:
    """Large outputs on both streams, input with every byte value a str carries, a command that
    leaves a background process writing: answers stay in step; a shell killed between commands is
    replaced without the command being lost (it had not been handed over)."""
    big = transport.run("head -c 3000000 /dev/zero | tr '\\0' a; head -c 1000000 /dev/zero | tr '\\0' b >&2")
    assert big.ok and big.stdout == "a" * 3_000_000 and big.stderr == "b" * 1_000_000
    data = "".join(chr(c) for c in range(1, 128)) + "ünï\n" * 3
    assert transport.run(["cat"], input=data).stdout == data
    r = transport.run("(sleep 1; echo late) & echo now")
    assert r.stdout == "now\n"
    assert transport.run(["echo", "next"]).stdout == "next\n"  # "late" never shows up here
    shells_before = transport.stats["shell"]
    idle = list(transport._idle)
    assert idle, "the shell went back to the pool"
    for sh in idle:
        os.killpg(sh.proc.pid, 9)
        sh.proc.wait(10)
    assert transport.run(["echo", "again"]).stdout == "again\n"
    assert transport.stats["shell"] == shells_before + 1


def test_inline_put_keeps_modes_links_and_makes_a_private_parent(transport: SshTransport, remote_tmp: str,
                                                                 tmp_path: Path) -> None:
    """A copy through the shell: contents, modes, symlinks (as links) and times as rsync -rlpt
    keeps them; the parent is made 0700; a removed parent is made again; big copies take rsync."""
    d = tmp_path / "run_x"
    d.mkdir()
    (d / "data.pkl").write_bytes(bytes(range(256)) * 40)
    (d / "script.sh").write_text("#!/bin/sh\n")
    (d / "script.sh").chmod(0o750)
    os.utime(d / "data.pkl", (1_600_000_000, 1_600_000_000))
    (d / "link").symlink_to("data.pkl")
    parent = f"{remote_tmp}/p q"
    transport.put([d], parent)
    assert transport.stats["inline_put"] == 1 and transport.stats["rsync"] == 0
    r = transport.run(["stat", "-c", "%n %a %Y %F", "run_x/data.pkl", "run_x/script.sh", "run_x/link", "."], cwd=parent)
    lines = r.stdout.splitlines()
    assert lines[0].split()[1:3] == [format((d / "data.pkl").stat().st_mode & 0o777, "o"), "1600000000"]
    assert lines[1].split()[1] == "750" and "symbolic link" in lines[2] and lines[3].split()[1] == "700"
    assert transport.run(["md5sum", "run_x/data.pkl"], cwd=parent).stdout.split()[0] == \
        __import__("hashlib").md5((d / "data.pkl").read_bytes()).hexdigest()
    transport.run(["rm", "-rf", remote_tmp])
    transport.put([d], parent)  # the parent is made again
    assert transport.run(["test", "-f", "run_x/data.pkl"], cwd=parent).ok
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(os.urandom(5 << 20))
    transport.put([big], parent)
    assert transport.stats["rsync"] == 1 and transport.stats["inline_put"] == 2


def test_shells_after_another_transport_closed_the_shared_master(transport: SshTransport) -> None:
    """Two transports of one process to the same host share the master's socket: when one closes
    it, the other's idle shell is never handed a command (which could not be told from one lost
    mid-run); the master is opened anew and the command runs."""
    assert transport.run(["true"]).ok
    other = SshTransport(HOST, REMSH)
    assert other.control.path == transport.control.path
    other.close()  # ssh -O exit: the shared master and the first transport's shell end
    assert transport.run(["echo", "ok"]).stdout == "ok\n"
    assert transport.stats["master"] == 2 and transport.stats["shell"] == 2
