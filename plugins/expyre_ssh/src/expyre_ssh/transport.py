"""The ``ssh`` transport: commands over one multiplexed OpenSSH connection per host, files by rsync.

Cost model (what the core relies on):

* every :meth:`SshTransport.run` is ONE ssh session over the host's master connection;
* :meth:`SshTransport.put` / :meth:`SshTransport.get` of N directories is ONE rsync over it (one
  per distinct parent directory; job directories share one);
* :meth:`SshTransport.get` lets rsync fill a holding directory beside the destination (unchanged
  files are hard links, not transferred), then renames each file into place, a job's result
  markers last (:func:`expyre.files.move_tree`): a driver killed at any moment leaves no partial
  file and no result marker without the files it vouches for;
* the master is opened on first use (the only full handshake, and the only password/2FA prompt)
  and closed by :meth:`SshTransport.close` (``ssh -O exit``).

Failures are :class:`~expyre.types.TransportError`; ``retry_safe`` is True only when the command
certainly did not start: the master could not be established, or the multiplexer refused the
session before it began. A connection lost while a command ran is ``retry_safe=False`` (the core
then looks a submission up by name instead of repeating it).
"""

from __future__ import annotations

import base64
import io
import logging
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Sequence

from expyre import files
from expyre.hookspecs import Transport
from expyre.shell import remote_path
from expyre.types import CommandResult, TransportError

from . import probe as _probe
from .control import ControlSocket, persist_seconds, socket_path
from .remote import REMOTE_COMMAND, build_script, encode_stdin, rsync_path, split_trailer
from .shell import REMOTE_SHELL_COMMAND, RemoteShell, ShellLost, ShellTimeout, input_prefix
from .rsync import OK_EXIT_CODES, VANISHED, files_from, get_argv, group_by_parent, put_argv

__all__ = ["SshTransport"]

logger = logging.getLogger(__name__)

#: Seconds allowed for opening the master (a human may be typing a 2FA code).
MASTER_TIMEOUT = 300.0
#: Environment variable: how many persistent shells one process may keep per host (0: none, every
#: command in an ssh session of its own). More threads than that at once use sessions of their own.
SHELLS_ENV = "EXPYRE_SSH_SHELLS"
DEFAULT_SHELLS = 4


#: Environment variable: the most bytes one :meth:`SshTransport.put` sends through a persistent
#: shell (as a tar archive) instead of rsync; 0: always rsync.
INLINE_PUT_ENV = "EXPYRE_SSH_INLINE_PUT"
DEFAULT_INLINE_PUT = 4 << 20


def inline_put_limit() -> int:
    raw = os.environ.get(INLINE_PUT_ENV)
    if raw is None or raw == "":
        return DEFAULT_INLINE_PUT
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise ValueError(f"{INLINE_PUT_ENV}={raw!r} is invalid: give a number of bytes (>= 0; 0 = always rsync), "
                         f"e.g. {DEFAULT_INLINE_PUT}") from None


def max_shells() -> int:
    raw = os.environ.get(SHELLS_ENV)
    if raw is None or raw == "":
        return DEFAULT_SHELLS
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
        return value
    except ValueError:
        raise ValueError(f"{SHELLS_ENV}={raw!r} is invalid: give a number of shells per host (>= 0; 0 = one ssh "
                         f"session per command), e.g. {DEFAULT_SHELLS}") from None

# What ssh prints when a multiplexed session could not even begin, so nothing ran on the host.
# When the master is gone, ssh falls back to a connection of its own, which ProxyCommand=false
# ends before the key exchange ("kex_exchange_identification: Connection closed by remote host",
# "Connection closed by UNKNOWN port 65535"); a stale socket adds "Control socket connect(...):
# Connection refused". A master that is alive but whose server refuses the session says
# "mux_client_request_session: session request failed". (Recorded from OpenSSH 9.2p1.)
_NOT_STARTED_MARKERS = (
    "Control socket connect(",
    "mux_client_request_session: session request failed",
    "mux_client_hello_exchange",
    "kex_exchange_identification:",
    "banner exchange:",
    "Connection closed by UNKNOWN port 65535",
    "ssh: connect to host ",
)


def _not_started(stderr: str) -> bool:
    return any(m in stderr for m in _NOT_STARTED_MARKERS)


def _describe(command: Sequence[str] | str) -> str:
    if isinstance(command, str):
        first = command.strip().splitlines()[0] if command.strip() else ""
        return f"bash script `{first[:120]}{' ...' if len(command.strip().splitlines()) > 1 or len(first) > 120 else ''}`"
    return f"`{shlex.join(map(str, command))[:300]}`"


class SshTransport(Transport):
    """Runs commands and copies directories on ``host`` through OpenSSH and rsync.

    :param host: ``[user@]machine`` (anything ssh accepts, including a ``Host`` alias).
    :param remsh_cmd: the remote shell command, which may carry options (``"ssh -p 2222"``); split
        with :func:`shlex.split`. Default ``$EXPYRE_RSH``, else ``ssh``.

    :attr:`stats` counts what went over the wire: ``"run"`` (commands: one round trip each),
    ``"shell"`` (persistent shells started), ``"session"`` (commands in an ssh session of their
    own), ``"rsync"``, ``"inline_put"`` (copies through a shell, also counted in ``"run"``), ``"master"`` (full logins), ``"check"`` (local ``-O check`` calls, no
    round trip).
    """

    is_local = False

    def __init__(self, host: str | None, remsh_cmd: str | None = None) -> None:
        if not host:
            raise ValueError("the ssh transport needs a host (\"host\": \"user@machine\" in config.json)")
        super().__init__(host, remsh_cmd)
        self.host: str = host
        self.remsh: list[str] = shlex.split(remsh_cmd or os.environ.get("EXPYRE_RSH") or "ssh")
        if not self.remsh:
            raise ValueError(f"remote shell command {remsh_cmd!r} is empty")
        self.stats: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._pid = -1
        self._socket: ControlSocket | None = None
        self._master_started = False
        self._made_dirs: set[str] = set()
        self._probed: dict[tuple[str, tuple[str, ...]], _probe.ProbeReport] = {}
        self._shells_pid = -1
        self._inline_unavailable = False
        self._idle: list[RemoteShell] = []
        self._lent: set[RemoteShell] = set()

    def __repr__(self) -> str:
        return f"SshTransport({self.host!r}, remsh={shlex.join(self.remsh)!r})"

    # -- the master connection -------------------------------------------------------------------
    @property
    def control(self) -> ControlSocket:
        """This process's control socket for the host (a forked child gets its own)."""
        with self._lock:
            if self._socket is None or self._pid != os.getpid():
                self._pid = os.getpid()
                self._socket = ControlSocket(self.remsh, self.host, socket_path(self.host, self.remsh))
                self._master_started = False
                self._made_dirs = set()
            return self._socket

    def master_alive(self) -> bool:
        """Whether the master answers ``ssh -O check`` (local, no round trip)."""
        ctl = self.control
        if not ctl.path.exists():
            return False
        self.stats["check"] += 1
        try:
            proc = subprocess.run(ctl.check_argv(), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return proc.returncode == 0

    def master_pid(self) -> int | None:
        """The pid of this process's master ssh (from ``ssh -O check``), or None."""
        ctl = self.control
        try:
            proc = subprocess.run(ctl.check_argv(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        out = proc.stdout + proc.stderr
        if proc.returncode == 0 and "pid=" in out:
            try:
                return int(out.split("pid=", 1)[1].split(")", 1)[0])
            except ValueError:
                return None
        return None

    def connect(self, *, verify: bool = False) -> None:
        """Make sure the master connection is up, opening it if needed.

        A master this process opened is trusted without asking (``ssh -O check`` costs a process)
        unless ``verify``: if it died meanwhile, the next session fails before it starts, and
        :meth:`run` then reconnects and tries once more.

        :raises TransportError: (``retry_safe=True``) it could not be opened; nothing ran.
        """
        with self._lock:
            ctl = self.control
            if self._master_started and not verify:
                return
            if self.master_alive():
                self._master_started = True
                return
            self._master_started = False
            try:
                ctl.path.unlink()  # a socket left by a dead master would make ssh refuse to bind
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise TransportError(f"cannot remove stale control socket {ctl.path}: {exc}", retry_safe=True) from exc
            argv = ctl.master_argv(persist_seconds())
            t0 = time.monotonic()
            self.stats["master"] += 1
            # stderr to a file, not a pipe: the backgrounded master must not hold our pipe open.
            with tempfile.TemporaryFile() as err:
                try:
                    # stdin is not a terminal: passwords and 2FA codes are read from /dev/tty by ssh.
                    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                          timeout=MASTER_TIMEOUT)
                except FileNotFoundError as exc:
                    raise TransportError(f"ssh to {self.host}: remote shell command {self.remsh[0]!r} not found",
                                         retry_safe=True) from exc
                except subprocess.TimeoutExpired as exc:
                    raise TransportError(f"ssh to {self.host}: no connection after {MASTER_TIMEOUT:.0f} s "
                                         f"(`{shlex.join(argv)}`)", retry_safe=True) from exc
                err.seek(0)
                stderr = err.read().decode(errors="replace").strip()
            if proc.returncode != 0 or not self.master_alive():
                raise TransportError(
                    f"ssh to {self.host}: cannot connect: `{shlex.join(argv)}` exited {proc.returncode}"
                    + (f": {stderr[-1500:]}" if stderr else ""),
                    retry_safe=True,
                    result=CommandResult(argv, proc.returncode, "", stderr),
                )
            self._master_started = True
            logger.info("ssh master connection to %s open in %.3f s (%s)", self.host, time.monotonic() - t0, ctl.path)

    def close(self) -> None:
        """Close this process's shells and master connection (``ssh -O exit``); safe to call twice."""
        self.close_shells()
        with self._lock:
            if self._socket is None or self._pid != os.getpid():
                return
            ctl = self._socket
            if ctl.path.exists():
                try:
                    subprocess.run(ctl.exit_argv(), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    logger.debug("ssh -O exit for %s: %s", self.host, exc)
                try:
                    ctl.path.unlink()
                except OSError:
                    pass
            self._master_started = False
            self._made_dirs = set()
            self._socket = None

    # -- commands -------------------------------------------------------------------------------
    def run(self, command, *, cwd=None, input=None, timeout=None, unset_env_prefixes=()):
        """Run ``command`` on the host (see :meth:`Transport.run`): through one of this process's
        persistent shells on the host (the login shell's start-up paid once per shell, see
        :mod:`expyre_ssh.shell`), or in an ssh session of its own when they are off
        (``EXPYRE_SSH_SHELLS=0``) or all busy."""
        script = build_script(command, cwd=cwd, unset_env_prefixes=unset_env_prefixes)
        timeout = timeout if timeout is not None else self.command_timeout
        self._forget_orphaned_shells()
        self.connect()
        try:
            return self._run_once(command, script, input, timeout)
        except TransportError as exc:
            if not exc.retry_safe:
                raise
            # the session never started (the master went away): reconnect and try once more
            logger.info("ssh to %s: %s; reconnecting", self.host, exc)
            self.connect(verify=True)
            return self._run_once(command, script, input, timeout)

    def _run_once(self, command, script: str, input: str | None, timeout: float | None) -> CommandResult:
        shell = None if input is not None and "\0" in input else self._take_shell()
        if shell is None:
            return self._run_session(command, script, input, timeout)
        self.stats["run"] += 1
        t0 = time.monotonic()
        try:
            out_b, err_b = shell.run(input_prefix(input) + script, timeout)
        except ShellTimeout as exc:
            self._drop_shell(shell)
            raise TransportError(
                f"ssh to {self.host}: {_describe(command)} timed out after {timeout:g} s (command_timeout); "
                f"it may still be running there",
                retry_safe=False,
            ) from exc
        except ShellLost as exc:
            self._drop_shell(shell)
            result = CommandResult(command, exc.returncode if exc.returncode is not None else 255, "", exc.stderr)
            if not exc.sent or (shell.answered == 0 and _not_started(exc.stderr)):
                raise TransportError(
                    f"ssh to {self.host}: the session for {_describe(command)} could not start: "
                    f"{(exc.stderr.strip() or str(exc))[-1000:]}",
                    retry_safe=True, result=result,
                ) from exc
            raise TransportError(
                f"ssh to {self.host}: connection failed during {_describe(command)} ({exc}); "
                f"it may or may not have run there" + (f": {exc.stderr.strip()[-1000:]}" if exc.stderr.strip() else ""),
                retry_safe=False, result=result,
            ) from exc
        except BaseException:
            self._drop_shell(shell)  # interrupted mid-answer: its stream is out of step
            raise
        self._give_back(shell)
        stdout = out_b.decode(errors="replace")
        stderr = err_b.decode(errors="replace")
        out, rc = split_trailer(stdout)
        logger.debug("ssh %s (shell) %s -> %s in %.3f s", self.host, _describe(command), rc, time.monotonic() - t0)
        if rc is None:
            raise TransportError(
                f"ssh to {self.host}: {_describe(command)} ended before its end (no exit status came back); "
                f"it may or may not have run there" + (f": {stderr.strip()[-1000:]}" if stderr.strip() else ""),
                retry_safe=False, result=CommandResult(command, 255, out, stderr),
            )
        return CommandResult(command, rc, out, stderr)

    # -- the persistent shells ------------------------------------------------------------------
    def _shells_state(self) -> tuple[list[RemoteShell], set[RemoteShell]]:
        """(idle, lent) shells of this process (a forked child starts with none)."""
        with self._lock:
            if self._shells_pid != os.getpid():
                self._shells_pid = os.getpid()
                self._idle, self._lent = [], set()  # the parent's: never touched here
            return self._idle, self._lent

    def _take_shell(self) -> RemoteShell | None:
        """An idle shell, or a new one; None when shells are off or all ``max_shells()`` are busy."""
        limit = max_shells()
        if limit == 0:
            return None
        with self._lock:
            idle, lent = self._shells_state()
            while idle:
                shell = idle.pop()
                if shell.alive:
                    lent.add(shell)
                    return shell
                shell.kill()
            if len(lent) >= limit:
                return None
            argv = [*self.control.client_argv(), self.host, REMOTE_SHELL_COMMAND]
            try:
                shell = RemoteShell(argv)
            except FileNotFoundError as exc:
                raise TransportError(f"ssh to {self.host}: remote shell command {self.remsh[0]!r} not found",
                                     retry_safe=True) from exc
            self.stats["shell"] += 1
            lent.add(shell)
            return shell

    def _forget_orphaned_shells(self) -> None:
        """Idle shells whose master's socket is gone (closed by ``ssh -O exit``, maybe by another
        transport object of this process to the same host) are ending: never hand a command to one,
        and open the master anew."""
        with self._lock:
            idle, _ = self._shells_state()
            if not idle or self.control.path.exists():
                return
            orphans = idle[:]
            idle.clear()
            self._master_started = False
        for shell in orphans:
            shell.kill()

    def _give_back(self, shell: RemoteShell) -> None:
        with self._lock:
            idle, lent = self._shells_state()
            if shell in lent:
                lent.discard(shell)
                idle.append(shell)

    def _drop_shell(self, shell: RemoteShell) -> None:
        with self._lock:
            _, lent = self._shells_state()
            lent.discard(shell)
        shell.kill()

    def close_shells(self) -> None:
        """End this process's persistent shells on the host (the next command starts one anew)."""
        with self._lock:
            idle, lent = self._shells_state()
            shells = idle + list(lent)
            idle.clear()
            lent.clear()
        for shell in shells:
            shell.close()

    def _run_session(self, command, script: str, input: str | None, timeout: float | None) -> CommandResult:
        argv = [*self.control.client_argv(), self.host, REMOTE_COMMAND]
        t0 = time.monotonic()
        self.stats["run"] += 1
        self.stats["session"] += 1
        try:
            proc = subprocess.run(argv, input=encode_stdin(script, input), capture_output=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise TransportError(f"ssh to {self.host}: remote shell command {self.remsh[0]!r} not found",
                                 retry_safe=True) from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(
                f"ssh to {self.host}: {_describe(command)} timed out after {timeout:g} s (command_timeout); "
                f"it may still be running there",
                retry_safe=False,
            ) from exc
        stdout = proc.stdout.decode(errors="replace")
        stderr = proc.stderr.decode(errors="replace")
        out, rc = split_trailer(stdout)
        logger.debug("ssh %s %s -> %s in %.3f s", self.host, _describe(command), rc if rc is not None else f"ssh {proc.returncode}",
                     time.monotonic() - t0)
        if rc is not None:
            return CommandResult(command, rc, out, stderr)
        # No trailer: the command did not run to its end under our wrapper.
        result = CommandResult(command, proc.returncode, out, stderr)
        if proc.returncode == 255 and _not_started(stderr):
            raise TransportError(
                f"ssh to {self.host}: the session for {_describe(command)} could not start: {stderr.strip()[-1000:]}",
                retry_safe=True, result=result,
            )
        raise TransportError(
            f"ssh to {self.host}: connection failed during {_describe(command)} (ssh exit {proc.returncode}); "
            f"it may or may not have run there" + (f": {stderr.strip()[-1000:]}" if stderr.strip() else ""),
            retry_safe=False, result=result,
        )

    # -- files ----------------------------------------------------------------------------------
    def _rsync(self, argv: list[str], names: Sequence[str], what: str) -> None:
        self.stats["rsync"] += 1
        t0 = time.monotonic()
        # output to files, not pipes: if rsync is killed (OOM killer, a signal), its ssh child may
        # live on for a while and would hold pipes open, keeping us from seeing rsync's end
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run(argv, input=files_from(names), stdout=out, stderr=err)
            except FileNotFoundError as exc:
                raise TransportError(f"rsync not found here ({argv[0]!r}); install rsync", retry_safe=True) from exc
            out.seek(0)
            err.seek(0)
            stdout_b, stderr_b = out.read(), err.read()
        stderr = stderr_b.decode(errors="replace")
        logger.debug("rsync %s (%d dirs) -> %d in %.3f s", what, len(names), proc.returncode, time.monotonic() - t0)
        if proc.returncode == VANISHED:
            logger.debug("rsync %s: some files vanished while copying (exit 24), ignored: %s", what, stderr.strip()[-500:])
        if proc.returncode not in OK_EXIT_CODES:
            self._master_started = False  # the next attempt asks whether the master still lives
            raise TransportError(
                f"rsync {what} ({len(names)} dir(s)) failed with exit {proc.returncode}"
                + (f": {stderr.strip()[-1500:]}" if stderr.strip() else ""),
                retry_safe=False,
                result=CommandResult(argv, proc.returncode, stdout_b.decode(errors="replace"), stderr),
            )

    def _make_remote_dir(self, remote_parent: str) -> None:
        if remote_parent in self._made_dirs:
            return
        result = self.run(f"umask 077 && mkdir -p -- {remote_path(remote_parent)}")
        if not result.ok:
            raise TransportError(f"ssh to {self.host}: cannot create {remote_parent!r}: {result.describe()}",
                                 retry_safe=False, result=result)
        self._made_dirs.add(remote_parent)

    def put(self, local_dirs: Sequence[Path], remote_parent: str) -> None:
        """Copy the directories into ``remote_parent`` on the host: one round trip for all of
        them. Up to ``EXPYRE_SSH_INLINE_PUT`` bytes (job directories are small) travel as a tar
        archive through a persistent shell, so the copy pays no login shell start-up of its own;
        more, or without shells, one rsync."""
        if not local_dirs:
            return
        self.connect()
        archive = self._inline_archive(local_dirs)
        if archive is not None:
            if self._put_inline(archive, remote_parent, len(local_dirs)):
                return
        self._make_remote_dir(remote_parent)
        ssh = self.control.client_argv()
        try:
            for parent, names in group_by_parent(map(str, local_dirs), remote=False).items():
                self._rsync(put_argv(ssh, Path(parent), self.host, rsync_path(remote_parent), self.command_timeout), names,
                            f"to {self.host}:{remote_parent}")
        except TransportError:
            self._made_dirs.discard(remote_parent)  # recreate it on the retry, in case it was removed
            raise

    def _inline_archive(self, local_dirs: Sequence[Path]) -> bytes | None:
        """The directories as one tar archive (names relative to their parent, symlinks as
        symlinks, modes and times kept, no owners), or None when they should go by rsync: shells
        off, more than :func:`inline_put_limit` bytes, not all in one parent, or a tool missing
        on the host (found out once)."""
        limit = inline_put_limit()
        if limit == 0 or max_shells() == 0 or self._inline_unavailable:
            return None
        groups = group_by_parent(map(str, local_dirs), remote=False)
        if len(groups) != 1:
            return None
        (parent, names), = groups.items()
        total = 0
        for name in names:
            for dirpath, dirnames, files in os.walk(os.path.join(parent, name)):
                for f in files + dirnames:
                    try:
                        total += os.lstat(os.path.join(dirpath, f)).st_size + 512
                    except OSError:
                        pass
                if total > limit:
                    return None

        def anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            return info

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in names:
                tar.add(os.path.join(parent, name), arcname=name, recursive=True, filter=anonymous)
        data = buf.getvalue()
        return data if len(data) <= limit + 65536 else None

    def _put_inline(self, archive: bytes, remote_parent: str, n: int) -> bool:
        """Unpack ``archive`` into ``remote_parent`` (made 0700 if missing) through a shell; False
        when the host lacks ``base64`` or ``tar`` (then rsync, from now on)."""
        script = (f"umask 077 && mkdir -p -- {remote_path(remote_parent)} && cd -- {remote_path(remote_parent)} && "
                  "base64 -d | tar -x -p --no-same-owner -f -")
        self.stats["inline_put"] += 1
        result = self.run(script, input=base64.b64encode(archive).decode("ascii"))
        if result.ok:
            self._made_dirs.add(remote_parent)
            return True
        if result.returncode == 127 or "not found" in result.stderr:
            logger.info("ssh host %s: no base64/tar for copies through the shell (%s); using rsync",
                        self.host, result.describe())
            self._inline_unavailable = True
            return False
        self._made_dirs.discard(remote_parent)
        raise TransportError(f"copy of {n} dir(s) to {self.host}:{remote_parent} through the shell failed: "
                             f"{result.describe()}", retry_safe=False, result=result)

    def get(self, remote_dirs: Sequence[str], local_parent: Path) -> None:
        """Copy the directories back into ``local_parent``: one rsync for all of them, into a
        holding directory of ``local_parent`` (files equal to those already here are hard links
        to them, not transferred), then every file renamed into place, result markers last."""
        if not remote_dirs:
            return
        self.connect()
        local_parent = Path(local_parent)
        local_parent.mkdir(parents=True, exist_ok=True)
        ssh = self.control.client_argv()
        for parent, names in group_by_parent(remote_dirs, remote=True).items():
            hold = files.holding_dir(local_parent)
            try:
                # --link-dest is relative to the destination: ".." is local_parent itself
                self._rsync(get_argv(ssh, self.host, rsync_path(parent), hold, self.command_timeout, link_dest=".."),
                            names, f"from {self.host}:{parent}")
                for name in names:
                    if (hold / name).is_dir() and not (hold / name).is_symlink():
                        files.move_tree(hold / name, local_parent / name, fault=files.COPY_BACK_POINT)
                    elif os.path.lexists(hold / name):
                        os.replace(hold / name, local_parent / name)
            finally:
                shutil.rmtree(hold, ignore_errors=True)

    # -- first-use check --------------------------------------------------------------------------
    def probe(self, python_cmd: str, commands: Sequence[str] = ()) -> None:
        """Check once per process that the host has rsync and that ``python_cmd`` (after the
        system's ``commands``) imports cloudpickle; one round trip.

        :raises RemoteEnvironmentError: something is missing (names the host and the command).
        :raises TransportError: the host could not be reached.
        """
        key = (python_cmd, tuple(commands))
        if key in self._probed or os.environ.get(_probe.PROBE_ENV, "1") == "0":
            return
        result = self.run(_probe.probe_script(python_cmd, commands), timeout=120)
        report = _probe.parse_probe(result, self.host, python_cmd)
        for problem in _probe.mismatches(report):
            logger.warning("ssh host %s (python %s): %s", self.host, python_cmd, problem)
        self._probed[key] = report
        logger.info("ssh host %s: rsync %s, python %s, cloudpickle %s", self.host, report.rsync,
                    ".".join(map(str, report.python or ())), report.cloudpickle)

    def python_version(self, python_cmd: str, commands: Sequence[str] = ()) -> tuple[int, int] | None:
        """The version the first-use probe found for ``python_cmd`` (one more round trip only
        for a Python the probe did not check, e.g. ``start(python_cmd=...)``). None with
        ``EXPYRE_SSH_PROBE=0``: a login shell may not find the jobs' Python as the jobs do."""
        if os.environ.get(_probe.PROBE_ENV, "1") == "0":
            return None
        report = self._probed.get((python_cmd, tuple(commands)))
        if report is not None and report.python is not None:
            return report.python
        return super().python_version(python_cmd, commands)
