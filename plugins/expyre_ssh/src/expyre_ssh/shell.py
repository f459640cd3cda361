"""A persistent remote shell: many commands over one ssh session, the login shell started once.

sshd runs every session's command through the user's login shell, and bash reads ``~/.bashrc``
for it (on clusters: ``conda init``, ``module load``, ``pyenv init``, often a second or more).
One session per command pays that every time. A :class:`RemoteShell` is one long-lived session
over the host's multiplexed master, running a small bash loop (:data:`SERVER`) that reads framed
commands on its stdin and answers each with a framed header and the command's stdout and stderr:

* request: the command's script (from :func:`expyre_ssh.remote.build_script`, which quotes
  everything and ends with the exit-status trailer), then a NUL byte. The command's input, when
  there is any, travels inside the script as a quoted word written to a file;
* answer: ``\\x1eEXPYRE_SHELL_ANSWER <seq>\\n``, the command's stdout, a separator, its
  stderr, an end mark (both with a random token of the shell, which no output can predict).

Each command runs in a subshell (``cd``, ``unset`` and ``exit`` stay inside it) with stdin from
``/dev/null`` (or its input) and its outputs in files of a private temporary directory on the
host, removed when the shell ends. A command that does not answer within its timeout gets the
session killed (the next command starts a new one): exactly what a session per command did, and
as then the command may still be running there.

The first request is written right after ssh starts, before the shell's start-up ends, so a
command on a new shell costs no more round trips than a session of its own.
"""

from __future__ import annotations

import logging
import os
import secrets
import select
import shlex
import subprocess
import tempfile
import time

__all__ = ["REMOTE_SHELL_COMMAND", "SERVER", "RemoteShell", "ShellLost", "ShellTimeout", "ANSWER"]

logger = logging.getLogger(__name__)

#: What ssh asks the login shell to run: read the server loop up to a NUL and run it. The
#: variable name tells these sessions apart in logs (``ps``, ssh wrappers) from one-off commands.
REMOTE_SHELL_COMMAND = """bash -c 'IFS= read -r -d "" __expyre_shell; eval "$__expyre_shell"'"""

#: Starts every answer (followed by the command's sequence number and a newline).
ANSWER = "\x1eEXPYRE_SHELL_ANSWER "

#: The loop on the host (``{token}``: random per shell, ends the two outputs). Commands come
#: NUL-terminated on stdin (bash reads a pipe byte by byte, so it never reads past one); each runs
#: in a subshell, its outputs into fresh files (a daemon a command leaves behind may write into
#: its files without touching the next answer), sent back by one ``cat`` with the separators.
SERVER = r"""
unset __expyre_shell
__expyre_d=$(mktemp -d "${{TMPDIR:-/tmp}}/expyre-shell.XXXXXXXX") || exit 97
trap 'rm -rf -- "$__expyre_d"' EXIT
trap 'exit 98' HUP PIPE TERM
printf '\036EXPYRE_SHELL_SEP_{token}\036' >"$__expyre_d/s" && printf '\036EXPYRE_SHELL_END_{token}\036' >"$__expyre_d/t" || exit 97
__expyre_n=0
while IFS= read -r -d '' __expyre_cmd; do
    __expyre_n=$((__expyre_n + 1))
    ( unset __expyre_d __expyre_n; eval "$__expyre_cmd" ) </dev/null >"$__expyre_d/$__expyre_n.o" 2>"$__expyre_d/$__expyre_n.e"
    printf '\036EXPYRE_SHELL_ANSWER %d\n' "$__expyre_n"
    cat -- "$__expyre_d/$__expyre_n.o" "$__expyre_d/s" "$__expyre_d/$__expyre_n.e" "$__expyre_d/t"
    rm -f -- "$__expyre_d/$__expyre_n.o" "$__expyre_d/$__expyre_n.e"
done
"""


class ShellLost(Exception):
    """The session ended (or never began) before the answer came: ``sent`` tells whether the
    command had been handed to it."""

    def __init__(self, message: str, sent: bool, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.sent = sent
        self.stderr = stderr
        self.returncode = returncode


class ShellTimeout(Exception):
    """No answer within the timeout; the session has been killed."""


def input_prefix(input: str | None) -> str:
    """Bash lines that put ``input`` where the command reads its stdin (nothing when None)."""
    if input is None:
        return ""
    return ("__expyre_in=$(mktemp) || exit 97\n"
            f"printf %s {shlex.quote(input)} >\"$__expyre_in\"\n"
            'exec <"$__expyre_in"\nrm -f -- "$__expyre_in"\n')


class RemoteShell:
    """One persistent session: ``argv`` is the ssh command line (with host and
    :data:`REMOTE_SHELL_COMMAND`). Not thread-safe by itself: the transport lends each shell to
    one thread at a time."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.seq = 0
        #: commands answered so far (0: a fresh session, which may not have started at all)
        self.answered = 0
        self._buf = bytearray()
        self._err = tempfile.TemporaryFile()
        self.started = time.monotonic()
        try:
            # stderr to a file: ssh's and the login shell's messages must never fill a pipe
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                         start_new_session=True)
        except BaseException:
            self._err.close()
            raise
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        token = secrets.token_hex(16)
        self._sep = f"\x1eEXPYRE_SHELL_SEP_{token}\x1e".encode()
        self._end = f"\x1eEXPYRE_SHELL_END_{token}\x1e".encode()
        self._pending = SERVER.format(token=token).encode() + b"\0"  # sent with the first command

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self) -> str:
        try:
            self._err.seek(0)
            return self._err.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def _write(self, data: bytes, deadline: float | None) -> None:
        """Write all of ``data``, reading (and keeping) what comes back meanwhile, until ``deadline``."""
        view = memoryview(data)
        while view:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise ShellTimeout()
            _, writable, _ = select.select([], [self._in], [], wait)
            if writable:
                try:
                    n = os.write(self._in, view)
                except BlockingIOError:
                    continue
                view = view[n:]

    def _fill(self, deadline: float | None) -> None:
        """Read what is available into the buffer, waiting until ``deadline`` for it."""
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise ShellTimeout()
            ready, _, _ = select.select([self._out], [], [], wait)
            if ready:
                break
        chunk = os.read(self._out, 1 << 20)
        if not chunk:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            raise ShellLost("the ssh session ended", sent=True, stderr=self.stderr_text(), returncode=self.proc.returncode)
        self._buf += chunk

    def _line_after(self, marker: bytes, deadline: float | None) -> bytes:
        """The rest of the line that starts with ``marker`` (what came before it is dropped: what a
        login shell's start-up files print on stdout)."""
        start = 0
        while True:
            i = self._buf.find(marker, start)
            if i >= 0:
                j = self._buf.find(b"\n", i)
                if j >= 0:
                    line = bytes(self._buf[i + len(marker):j])
                    if i:
                        logger.debug("remote shell printed before its answer: %r", bytes(self._buf[:i][-300:]))
                    del self._buf[:j + 1]
                    return line
            else:
                start = max(0, len(self._buf) - len(marker))
            self._fill(deadline)

    def _until(self, marker: bytes, deadline: float | None) -> bytes:
        """What comes before ``marker`` (which is consumed)."""
        start = 0
        while True:
            i = self._buf.find(marker, start)
            if i >= 0:
                out = bytes(self._buf[:i])
                del self._buf[:i + len(marker)]
                return out
            start = max(0, len(self._buf) - len(marker))
            self._fill(deadline)

    # -- the one operation ------------------------------------------------------------------------
    def run(self, script: str, timeout: float | None) -> tuple[bytes, bytes]:
        """Run ``script`` (bash, no NUL) and return its stdout and stderr.

        :raises ShellLost: the session ended before the answer (``sent``: whether the command
            was handed over; if not, it certainly did not run).
        :raises ShellTimeout: no answer in ``timeout`` seconds; the session is killed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.alive:
            raise ShellLost("the ssh session had ended", sent=False, stderr=self.stderr_text(),
                            returncode=self.proc.returncode)
        data, self._pending = self._pending + script.encode() + b"\0", b""
        try:
            self._write(data, deadline)
        except ShellTimeout:
            self.kill()
            raise
        except OSError as exc:  # EPIPE: the session is gone, the command was not handed over
            self.kill()
            raise ShellLost(f"the ssh session had ended ({exc})", sent=False, stderr=self.stderr_text(),
                            returncode=self.proc.returncode) from exc
        self.seq += 1
        try:
            header = self._line_after(ANSWER.encode(), deadline).strip()
            if header != str(self.seq).encode():
                raise ShellLost(f"the remote shell answered out of step ({header!r} for command {self.seq})",
                                sent=True, stderr=self.stderr_text())
            out = self._until(self._sep, deadline)
            err = self._until(self._end, deadline)
        except (ShellTimeout, ShellLost):
            self.kill()
            raise
        self.answered += 1
        return out, err

    def kill(self) -> None:
        """End the session now (the command it ran, if any, may go on on the host)."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                self.proc.kill()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            logger.debug("ssh shell %d did not end after SIGKILL", self.proc.pid)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._err.close()

    def close(self) -> None:
        """End the session politely: end of input ends the loop on the host."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self.kill()
