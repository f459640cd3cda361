"""rsync command lines for copying many job directories in ONE invocation each way.

Directories are named in a NUL-separated ``--files-from`` list on stdin, relative to their common
parent, so N directories cost one rsync (one multiplexed session) whatever N is, no name is ever
seen by a shell (``--protect-args``/``-s`` for the remote side), and names may hold spaces,
quotes, newlines or a leading dash.
"""

from __future__ import annotations

import os
import posixpath
import shlex
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["RSYNC_ENV", "OK_EXIT_CODES", "VANISHED", "rsync_program", "put_argv", "get_argv", "group_by_parent", "files_from"]

#: Environment variable naming the local rsync program (default ``rsync``); may carry options.
RSYNC_ENV = "EXPYRE_SSH_RSYNC"
#: "Partial transfer due to vanished source files": a file went away between listing and
#: copying (e.g. a runner's temporary file renamed into place). Not an error for us.
VANISHED = 24
OK_EXIT_CODES = frozenset({0, VANISHED})

# -r -l -p -t: recurse, symlinks as symlinks, permissions, times. No -o/-g: copies belong to the
# user who receives them. -s: file names are passed to the remote rsync verbatim, not via a shell.
_COMMON = ["-rlpt", "-s", "--from0", "--files-from=-"]


def rsync_program() -> list[str]:
    return shlex.split(os.environ.get(RSYNC_ENV) or "rsync")


def _remote_shell(ssh_argv: Sequence[str]) -> str:
    # rsync splits -e itself on spaces, honouring single and double quotes (as shlex.join writes).
    return shlex.join(ssh_argv)


def _io_timeout(seconds: float | None) -> list[str]:
    # rsync's own I/O timeout: a copy with no progress for this long fails (exit 30) instead of
    # hanging; a slow but moving copy of a large file is never cut off
    return [f"--timeout={max(1, int(seconds))}"] if seconds else []


def put_argv(ssh_argv: Sequence[str], local_parent: Path, host: str, remote_parent: str,
             io_timeout: float | None = None) -> list[str]:
    """Copy the listed entries of ``local_parent`` into ``host:remote_parent``."""
    return [*rsync_program(), *_COMMON, *_io_timeout(io_timeout), "-e", _remote_shell(ssh_argv), "--",
            f"{os.fspath(local_parent).rstrip('/') or '/'}/", f"{host}:{_slash(remote_parent)}"]


def get_argv(ssh_argv: Sequence[str], host: str, remote_parent: str, local_parent: Path,
             io_timeout: float | None = None, link_dest: str | None = None) -> list[str]:
    """Copy the listed entries of ``host:remote_parent`` into ``local_parent``.

    rsync writes each file under a temporary name and renames it into place when it is complete
    (never ``--inplace``, ``--append`` or ``--partial``), so an interrupted copy never leaves a
    partial file under its final name. ``link_dest`` (relative to ``local_parent``): files equal
    to those there are hard-linked from it instead of transferred."""
    link = [f"--link-dest={link_dest}"] if link_dest else []
    return [*rsync_program(), *_COMMON, *link, *_io_timeout(io_timeout), "-e", _remote_shell(ssh_argv), "--",
            f"{host}:{_slash(remote_parent)}", f"{os.fspath(local_parent).rstrip('/') or '/'}/"]


def _slash(path: str) -> str:
    return path.rstrip("/") + "/" if path.rstrip("/") else ("/" if path.startswith("/") else "./")


def group_by_parent(paths: Iterable[str], *, remote: bool) -> dict[str, list[str]]:
    """``{parent: [names]}`` in first-seen order (one rsync per parent; normally there is one)."""
    groups: dict[str, list[str]] = {}
    for p in paths:
        p = str(p)
        if remote:
            stripped = p.rstrip("/") or p
            parent, name = posixpath.split(stripped)
            parent = parent or "."
        else:
            ap = Path(p).absolute()
            parent, name = str(ap.parent), ap.name
        if not name or name in (".", ".."):
            raise ValueError(f"cannot copy {p!r}: it names no directory entry")
        names = groups.setdefault(parent, [])
        if name not in names:
            names.append(name)
    return groups


def files_from(names: Sequence[str]) -> bytes:
    """The NUL-separated list for ``--from0 --files-from=-``."""
    for n in names:
        if "\0" in n:
            raise ValueError(f"file name {n!r} contains a NUL byte")
    return b"\0".join(os.fsencode(n) for n in names) + b"\0"
