"""Where the multiplexing sockets live, and the OpenSSH command lines that manage a master.

One master connection per (process, host, remote shell command): the first command to a host
authenticates once (a 2FA prompt appears once, on the terminal), every later command and rsync
runs as a multiplexed session over it (``ControlMaster``/``ControlPath``), and
:meth:`ControlSocket.exit` closes it (``ssh -O exit``).

Sockets are private to the process (the pid is in the name), so closing one at exit never cuts off
another driver process of the same user. They live in a directory only the user can enter:
``$XDG_RUNTIME_DIR/expyre-ssh`` if that is usable, else ``/tmp/expyre-ssh-<uid>`` (mode 0700,
checked to belong to the user).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Sequence

from expyre.types import TransportError

__all__ = ["control_dir", "socket_path", "ControlSocket", "PERSIST_ENV", "DEFAULT_PERSIST"]

#: Environment variable: seconds an idle master stays up after its last session (ControlPersist).
PERSIST_ENV = "EXPYRE_SSH_CONTROL_PERSIST"
#: Long enough that a driver waiting between polls or between calls keeps its one login (a 2FA
#: prompt once per session), short enough that a master left by a killed driver goes away.
DEFAULT_PERSIST = 1800

# sun_path is 108 bytes; ssh appends ".XXXXXXXXXXXXXXXX" (17 bytes) while it creates the socket.
_MAX_SOCKET_PATH = 90


def _usable_private_dir(d: Path) -> bool:
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not (st.st_mode & 0o077)


def control_dir() -> Path:
    """The private directory for control sockets (created 0700 if needed).

    :raises TransportError: no private directory could be had (e.g. ``/tmp/expyre-ssh-<uid>``
        exists but belongs to someone else or is group/world accessible).
    """
    candidates = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK | os.X_OK):
        candidates.append(Path(xdg) / "expyre-ssh")
    candidates.append(Path(tempfile.gettempdir()) / f"expyre-ssh-{os.getuid()}")
    if str(candidates[-1]) != f"/tmp/expyre-ssh-{os.getuid()}":
        candidates.append(Path(f"/tmp/expyre-ssh-{os.getuid()}"))
    for d in candidates:
        if len(str(d)) + 32 <= _MAX_SOCKET_PATH and _usable_private_dir(d):
            return d
    raise TransportError(
        f"no private directory for ssh control sockets: tried {', '.join(map(str, candidates))} "
        f"(each must be a directory owned by uid {os.getuid()} with mode 0700, and short)",
        retry_safe=True,
    )


def socket_path(host: str, remsh: Sequence[str], pid: int | None = None) -> Path:
    """The control socket of this process for ``host`` reached with ``remsh``."""
    digest = hashlib.sha256("\0".join([host, *remsh]).encode()).hexdigest()[:12]
    return control_dir() / f"{pid if pid is not None else os.getpid()}-{digest}"


class ControlSocket:
    """The OpenSSH command lines around one control socket.

    :param remsh: the remote shell command, split (``["ssh", "-p", "2222"]``). Options in it come
        first on every command line, so they win over ours (ssh keeps the first value it sees).
    :param host: ``[user@]machine``.
    :param path: the socket path.
    """

    def __init__(self, remsh: Sequence[str], host: str, path: Path) -> None:
        self.remsh = list(remsh)
        self.host = host
        self.path = path

    def _opt(self, *pairs: str) -> list[str]:
        out: list[str] = []
        for p in pairs:
            out += ["-o", p]
        return out

    def client_argv(self) -> list[str]:
        """The ssh command (without host) of a session multiplexed over the master.

        ``ProxyCommand=false`` makes the fallback that ssh attempts when the master is gone fail
        before it reaches the host, so a command never starts over a second, unannounced login
        (which would prompt for 2FA again and blur whether the command started).
        """
        return [*self.remsh, *self._opt(f"ControlPath={self.path}", "ControlMaster=no", "ProxyCommand=false")]

    def master_argv(self, persist: int) -> list[str]:
        """Start the master in the background once it is authenticated (``-N -f``)."""
        return [
            *self.remsh,
            *self._opt(
                f"ControlPath={self.path}",
                "ControlMaster=yes",
                f"ControlPersist={persist}",
                "ConnectTimeout=30",
                "ServerAliveInterval=15",
                "ServerAliveCountMax=4",
            ),
            "-N",
            "-f",
            self.host,
        ]

    def check_argv(self) -> list[str]:
        """``ssh -O check``: exit 0 when the master is alive (local only, no round trip)."""
        return [*self.remsh, *self._opt(f"ControlPath={self.path}"), "-O", "check", self.host]

    def exit_argv(self) -> list[str]:
        """``ssh -O exit``: close the master."""
        return [*self.remsh, *self._opt(f"ControlPath={self.path}"), "-O", "exit", self.host]


def persist_seconds() -> int:
    raw = os.environ.get(PERSIST_ENV)
    if not raw:
        return DEFAULT_PERSIST
    try:
        value = int(raw)
        if value < 1:
            raise ValueError
        return value
    except ValueError:
        raise ValueError(f"{PERSIST_ENV}={raw!r} is invalid: give idle seconds (>= 1), e.g. {DEFAULT_PERSIST}") from None
