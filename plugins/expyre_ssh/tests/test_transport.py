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
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    for _ in range(10):
        assert transport.run(["true"]).ok
    transport.put([tmp_path / "d"], remote_tmp)
    transport.get([f"{remote_tmp}/d"], tmp_path / "back")
    assert transport.stats["master"] == 1
    assert transport.stats["run"] == 11  # 10 + the mkdir of remote_tmp
    assert transport.stats["rsync"] == 2
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


def test_put_and_get_hostile_names(transport: SshTransport, remote_tmp: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, name in enumerate(HOSTILE_NAMES):
        d = src / f"dir {name}"
        (d / name).mkdir(parents=True)
        (d / name / name).write_text(f"content {i} {name}")
        (d / ".hidden").write_text("h")
    dirs = sorted(src.iterdir())
    parent = f"{remote_tmp}/parent 'q' $(x)"
    transport.put(dirs, parent)
    assert transport.stats["rsync"] == 1, "N directories = one rsync"
    listing = transport.run(["find", ".", "-type", "f", "-printf", "%P\\0"], cwd=parent).stdout.split("\0")[:-1]
    assert sorted(listing) == sorted([f"dir {n}/{n}/{n}" for n in HOSTILE_NAMES] + [f"dir {n}/.hidden" for n in HOSTILE_NAMES])
    mode = transport.run(["stat", "-c", "%a", parent]).stdout.strip()
    assert mode == "700"
    # change a file remotely and bring everything back in one rsync
    transport.run(["bash", "-c", 'echo changed > "$1"', "x", f"{parent}/dir it's/it's/it's"])
    back = tmp_path / "back"
    transport.get([f"{parent}/{d.name}" for d in dirs], back)
    assert transport.stats["rsync"] == 2
    for i, name in enumerate(HOSTILE_NAMES):
        expected = "changed\n" if name == "it's" else f"content {i} {name}"
        assert (back / f"dir {name}" / name / name).read_text() == expected
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    assert "PWNED" not in transport.run(["find", ".", "-maxdepth", "3", "-name", "PWNED"]).stdout


def test_put_of_many_dirs_is_one_rsync(transport: SshTransport, remote_tmp: str, tmp_path: Path) -> None:
    dirs = []
    for i in range(50):
        d = tmp_path / f"run_{i}"
        d.mkdir()
        (d / "_expyre_task.pkl").write_bytes(os.urandom(1000))
        dirs.append(d)
    t0 = time.monotonic()
    transport.put(dirs, remote_tmp)
    assert transport.stats["rsync"] == 1
    n = transport.run(f"ls {shlex.quote(remote_tmp)} | wc -l").stdout.strip()
    assert n == "50"
    transport.get([f"{remote_tmp}/run_{i}" for i in range(50)], tmp_path / "back")
    assert transport.stats["rsync"] == 2
    assert len(list((tmp_path / "back").iterdir())) == 50
    assert time.monotonic() - t0 < 30


def test_get_missing_dir_is_an_error(transport: SshTransport, remote_tmp: str, tmp_path: Path) -> None:
    transport.run(["mkdir", remote_tmp])
    with pytest.raises(TransportError, match="rsync from .* failed with exit 23"):
        transport.get([f"{remote_tmp}/nope"], tmp_path)


def test_put_recreates_a_removed_parent(transport: SshTransport, remote_tmp: str, tmp_path: Path) -> None:
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
