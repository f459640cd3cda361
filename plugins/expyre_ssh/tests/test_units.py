"""Unit tests without sshd: the remote script (also executed here with a local bash, exactly as the
remote login shell would run it), the rsync command lines, the probe's parsing, error
classification and the control socket directory."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from expyre.testing import check_golden
from expyre.types import CommandResult, TransportError
from expyre_ssh import RemoteEnvironmentError, SshTransport
from expyre_ssh import control, probe, remote, rsync
from expyre_ssh.transport import _not_started

GOLDEN = Path(__file__).parent / "golden"
HOSTILE = ["a b", "it's", '"dq"', "$(touch PWNED)", "`touch PWNED`", ";touch PWNED", "*", "-rf", "new\nline", "back\\slash", ""]


def run_locally(command, *, cwd=None, input=None, unset=(), env=None) -> subprocess.CompletedProcess:
    """Run the remote side as sshd would: the login shell gets REMOTE_COMMAND, stdin the script."""
    script = remote.build_script(command, cwd=cwd, unset_env_prefixes=unset)
    return subprocess.run(["sh", "-c", remote.REMOTE_COMMAND], input=remote.encode_stdin(script, input),
                          capture_output=True, env=env)


def test_script_golden() -> None:
    # golden file: the exact bash text sent for an argv with hostile elements, a cwd and prefixes
    script = remote.build_script(["printf", "%s\\n", *HOSTILE], cwd="expyre rundir/run_x", unset_env_prefixes=["SLURM_", "PBS_"])
    check_golden(GOLDEN / "remote_script_argv.txt", script)
    script = remote.build_script("squeue -h --me; printf '\\n__SEP %d\\n' $?", cwd=None)
    check_golden(GOLDEN / "remote_script_bash.txt", script)


def test_argv_elements_arrive_verbatim(tmp_path: Path) -> None:
    proc = run_locally(["printf", "%s\\0", *HOSTILE], cwd=str(tmp_path))
    out, rc = remote.split_trailer(proc.stdout.decode())
    assert rc == 0, proc.stderr
    assert out.split("\0")[:-1] == HOSTILE
    assert not list(tmp_path.iterdir()) and not Path("PWNED").exists()


def test_exit_status_and_output_without_newline() -> None:
    for code in (0, 1, 7, 255):
        proc = run_locally(f"printf 'no newline'; exit {code}")
        assert remote.split_trailer(proc.stdout.decode()) == ("no newline", code)
    # an `exit` inside a script ends only the script: the trailer still comes
    proc = run_locally("exit 3\necho never")
    assert remote.split_trailer(proc.stdout.decode()) == ("", 3)


def test_cwd_relative_to_home_and_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "run dir 'x'").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home)}
    proc = run_locally(["pwd"], cwd="run dir 'x'", env=env)
    assert remote.split_trailer(proc.stdout.decode()) == (f"{home}/run dir 'x'\n", 0)
    proc = run_locally(["pwd"], cwd="~/run dir 'x'", env=env)
    assert remote.split_trailer(proc.stdout.decode())[0] == f"{home}/run dir 'x'\n"
    proc = run_locally(["pwd"], cwd="missing", env=env)
    out, rc = remote.split_trailer(proc.stdout.decode())
    assert rc == 1 and out == "" and "No such file or directory" in proc.stderr.decode()


def test_input_reaches_the_command_after_the_script() -> None:
    data = "line 1\n\\no escapes\0 and a NUL\n" * 1000
    proc = run_locally(["cat"], input=data)
    assert remote.split_trailer(proc.stdout.decode()) == (data, 0)
    proc = run_locally(["cat"])  # no input: the command sees end of file at once
    assert remote.split_trailer(proc.stdout.decode()) == ("", 0)


def test_large_script_is_not_limited_by_argument_length() -> None:
    ids = [f"id{i:06d}" for i in range(30000)]  # ~330 KB of arguments, beyond Linux's 128 KiB per argument
    proc = run_locally(["bash", "-c", 'echo "$#"', "count", *ids])
    assert remote.split_trailer(proc.stdout.decode()) == ("30000\n", 0)


def test_unset_env_prefixes() -> None:
    env = {**os.environ, "SLURM_JOB_ID": "12", "SLURM_X": "y", "PBS_O_HOME": "/h", "KEEP_ME": "1"}
    proc = run_locally("env", unset=["SLURM_", "PBS_"], env=env)
    out, rc = remote.split_trailer(proc.stdout.decode())
    names = {line.split("=", 1)[0] for line in out.splitlines()}
    assert rc == 0 and "KEEP_ME" in names and not {"SLURM_JOB_ID", "SLURM_X", "PBS_O_HOME"} & names


def test_split_trailer_edge_cases() -> None:
    t = remote.TRAILER
    assert remote.split_trailer("") == ("", None)
    assert remote.split_trailer("out\n") == ("out\n", None)
    assert remote.split_trailer(f"a{t}5\nb{t}0\n") == (f"a{t}5\nb", 0)  # the last one counts
    assert remote.split_trailer(f"x{t}12") == ("x", 12)
    assert remote.split_trailer(f"{t}1\nmore") == (f"{t}1\nmore", None)  # not at the end: not ours


def test_empty_argv_and_nul_are_refused() -> None:
    with pytest.raises(ValueError):
        remote.build_script([])
    with pytest.raises(ValueError):
        remote.encode_stdin("echo \0", None)


def test_remote_command_is_one_word_safe_line() -> None:
    # constant, no newline: what the login shell sees never depends on the caller's data
    assert "\n" not in remote.REMOTE_COMMAND
    for shell in ("sh", "bash"):
        proc = subprocess.run([shell, "-c", remote.REMOTE_COMMAND], input=b"echo ok\0", capture_output=True)
        assert proc.stdout == b"ok\n"


# -- rsync command lines ---------------------------------------------------------------------------


def test_group_by_parent() -> None:
    assert rsync.group_by_parent(["rd/run_a", "rd/run_b/", "rd/run_a", "/abs/x/run_c", "run_d"], remote=True) == {
        "rd": ["run_a", "run_b"], "/abs/x": ["run_c"], ".": ["run_d"]}
    assert rsync.group_by_parent(["/l/a", "/l/b", "/m/c"], remote=False) == {"/l": ["a", "b"], "/m": ["c"]}
    with pytest.raises(ValueError):
        rsync.group_by_parent(["/"], remote=False)


def test_rsync_argv_and_files_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rsync.RSYNC_ENV, raising=False)
    ssh = ["ssh", "-p", "2222", "-o", "ControlPath=/tmp/expyre-ssh-0/1-abc", "-o", "ControlMaster=no"]
    argv = rsync.put_argv(ssh, Path("/stage dir"), "me@host", "expyre rundir")
    assert argv == ["rsync", "-rlpt", "-s", "--from0", "--files-from=-", "-e", shlex.join(ssh), "--",
                    "/stage dir/", "me@host:expyre rundir/"]
    argv = rsync.get_argv(ssh, "me@host", "/abs/rd", Path("/stage"))
    assert argv[-2:] == ["me@host:/abs/rd/", "/stage/"]
    assert rsync.files_from(["run_a", "new\nline", "-rf"]) == b"run_a\0new\nline\0-rf\0"
    monkeypatch.setenv(rsync.RSYNC_ENV, "/opt/rsync --bwlimit=1000")
    assert rsync.rsync_program() == ["/opt/rsync", "--bwlimit=1000"]


def test_rsync_path() -> None:
    assert remote.rsync_path("~/x/y") == "x/y"
    assert remote.rsync_path("~") == "."
    assert remote.rsync_path("/abs") == "/abs"
    assert remote.rsync_path("rel dir") == "rel dir"


@pytest.mark.parametrize("code, ok", [(0, True), (24, True), (23, False), (12, False), (255, False)])
def test_rsync_exit_codes(tmp_path: Path, code: int, ok: bool) -> None:
    # rsync(1) EXIT VALUES: 24 "Partial transfer due to vanished source files" is tolerated,
    # 23 "Partial transfer due to error", 12 "Error in rsync protocol data stream" are not.
    fake = tmp_path / "fake-rsync"
    fake.write_text(f"#!/bin/sh\ncat >/dev/null\necho 'file has vanished: \"x\"' >&2\nexit {code}\n")
    fake.chmod(0o755)
    t = SshTransport("me@nowhere.invalid", "ssh")
    if ok:
        t._rsync([str(fake)], ["run_a"], "test")
    else:
        with pytest.raises(TransportError, match=f"exit {code}"):
            t._rsync([str(fake)], ["run_a"], "test")
    assert t.stats["rsync"] == 1


# -- error classification ----------------------------------------------------------------------------


def test_not_started_classification() -> None:
    # recorded from OpenSSH 9.2p1 (this machine): the master's socket is gone and the fallback
    # connection is blocked by ProxyCommand=false -> nothing ran
    gone = ("Control socket connect(/tmp/expyre-ssh-0/1-abc): No such file or directory\n"
            "kex_exchange_identification: Connection closed by remote host\n"
            "Connection closed by UNKNOWN port 65535\n")
    assert _not_started(gone)
    # recorded: the master process was killed and its socket file is still there (ENOENT/ECONNREFUSED
    # are debug-level messages; only the blocked fallback speaks)
    stale = "kex_exchange_identification: Connection closed by remote host\nConnection closed by UNKNOWN port 65535\n"
    assert _not_started(stale)
    assert _not_started("mux_client_request_session: session request failed: Session open refused by peer\n")
    # the connection broke while the command ran -> may have run
    assert not _not_started("Connection to 127.0.0.1 closed by remote host.\n")
    assert not _not_started("client_loop: send disconnect: Broken pipe\n")
    assert not _not_started("")


def test_transport_needs_a_host() -> None:
    with pytest.raises(ValueError, match="needs a host"):
        SshTransport(None, "ssh")


def test_remsh_split_and_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPYRE_RSH", "/usr/bin/ssh -o 'IdentityFile=/my keys/id'")
    assert SshTransport("h", None).remsh == ["/usr/bin/ssh", "-o", "IdentityFile=/my keys/id"]
    assert SshTransport("h", "ssh -p 2222").remsh == ["ssh", "-p", "2222"]
    monkeypatch.delenv("EXPYRE_RSH")
    assert SshTransport("h", None).remsh == ["ssh"]


def test_control_argv_keeps_user_options_first() -> None:
    ctl = control.ControlSocket(["ssh", "-p", "2222", "-o", "ConnectTimeout=5"], "me@h", Path("/tmp/s"))
    m = ctl.master_argv(60)
    assert m[:5] == ["ssh", "-p", "2222", "-o", "ConnectTimeout=5"]  # ssh keeps the first value it sees
    assert m[-3:] == ["-N", "-f", "me@h"] and "ControlMaster=yes" in m and "ControlPersist=60" in m
    assert "ControlMaster=no" in ctl.client_argv() and "ProxyCommand=false" in ctl.client_argv()
    assert ctl.check_argv()[-3:] == ["-O", "check", "me@h"]
    assert ctl.exit_argv()[-3:] == ["-O", "exit", "me@h"]


def test_persist_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(control.PERSIST_ENV, raising=False)
    assert control.persist_seconds() == control.DEFAULT_PERSIST
    monkeypatch.setenv(control.PERSIST_ENV, "60")
    assert control.persist_seconds() == 60
    monkeypatch.setenv(control.PERSIST_ENV, "soon")
    with pytest.raises(ValueError, match=control.PERSIST_ENV):
        control.persist_seconds()


# -- control socket directory --------------------------------------------------------------------------


@pytest.fixture
def short_tmp():
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="xs", dir="/tmp"))  # socket paths must stay short
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_control_dir_private(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = short_tmp / "xdg"
    xdg.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    d = control.control_dir()
    assert d == xdg / "expyre-ssh"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    p = control.socket_path("me@h", ["ssh", "-p", "2222"], pid=123)
    assert p.parent == d and p.name.startswith("123-") and len(str(p)) < 90
    assert p != control.socket_path("me@h", ["ssh", "-p", "2223"], pid=123)
    assert p != control.socket_path("me@h", ["ssh", "-p", "2222"], pid=124)


def test_control_dir_too_long_for_a_socket_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = tmp_path / ("x" * 80)
    xdg.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    assert control.control_dir() == Path(f"/tmp/expyre-ssh-{os.getuid()}")


def test_control_dir_refuses_open_dir(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = short_tmp / "xdg"
    (xdg / "expyre-ssh").mkdir(parents=True)
    (xdg / "expyre-ssh").chmod(0o777)  # someone else could plant sockets there: not used
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    monkeypatch.setattr(control.tempfile, "gettempdir", lambda: str(short_tmp / "tmp"))
    (short_tmp / "tmp").mkdir()
    assert control.control_dir() == short_tmp / "tmp" / f"expyre-ssh-{os.getuid()}"
    (short_tmp / "tmp" / f"expyre-ssh-{os.getuid()}").chmod(0o755)
    assert control.control_dir() == Path(f"/tmp/expyre-ssh-{os.getuid()}")


# -- probe --------------------------------------------------------------------------------------------


def test_probe_script_runs_commands_first() -> None:
    s = probe.probe_script("/opt/py/bin/python -X utf8", ["module load python", "source 'my env'"])
    lines = s.splitlines()
    assert lines[0].startswith('printf "expyre-probe rsync=')
    assert lines[1:5] == ["{", "module load python", "source 'my env'", "} >&2 </dev/null"]
    assert lines[5].startswith("/opt/py/bin/python -X utf8 -c 'import sys, cloudpickle;")


def test_probe_parse() -> None:
    import cloudpickle

    ok = CommandResult("probe", 0, f"expyre-probe rsync=/usr/bin/rsync\nexpyre-probe python=3.11 cloudpickle={cloudpickle.__version__}\n")
    report = probe.parse_probe(ok, "me@h", "python3")
    assert report.rsync == "/usr/bin/rsync" and report.python == (3, 11) and report.cloudpickle == cloudpickle.__version__

    # recorded: `/usr/bin/python3 -c 'import sys, cloudpickle; ...'` on this machine's Debian python3
    nocp = CommandResult("probe", 1, "expyre-probe rsync=/usr/bin/rsync\n",
                         'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
                         "ModuleNotFoundError: No module named 'cloudpickle'\n")
    with pytest.raises(RemoteEnvironmentError) as info:
        probe.parse_probe(nocp, "me@h", "/usr/bin/python3")
    msg = str(info.value)
    assert "me@h" in msg and "`/usr/bin/python3 -c 'import cloudpickle'` exited 1" in msg
    assert "No module named 'cloudpickle'" in msg and "python_cmd" in msg

    nopy = CommandResult("probe", 127, "expyre-probe rsync=/usr/bin/rsync\n", "bash: line 2: /opt/nope/python: No such file or directory\n")
    with pytest.raises(RemoteEnvironmentError, match="/opt/nope/python.*exited 127.*No such file"):
        probe.parse_probe(nopy, "me@h", "/opt/nope/python")

    norsync = CommandResult("probe", 0, "expyre-probe rsync=\nexpyre-probe python=3.11 cloudpickle=3.1.3\n")
    with pytest.raises(RemoteEnvironmentError, match="me@h: rsync is not installed"):
        probe.parse_probe(norsync, "me@h", "python3")


def test_probe_mismatches() -> None:
    import sys

    import cloudpickle

    same = probe.ProbeReport("/usr/bin/rsync", sys.version_info[:2], cloudpickle.__version__)
    assert probe.mismatches(same) == []
    other = probe.ProbeReport("/usr/bin/rsync", (3, 8), "0.0.1")
    problems = probe.mismatches(other)
    assert len(problems) == 2 and "3.8" in problems[0] and "0.0.1" in problems[1]
