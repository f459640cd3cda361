"""The remote side of one command: the bash script that runs it, and how its result comes back.

Nothing a caller passes ever reaches a shell unquoted, and the remote command line itself is a
constant (:data:`REMOTE_COMMAND`): the script travels on the session's stdin, ended by a NUL byte,
followed by the command's own input. So neither the user's login shell (bash, zsh, tcsh...) nor
the length limit of one argument (128 KiB on Linux) matters, and job or file names never appear
on a command line that a shell parses.

The script ends by printing :data:`TRAILER` and the exit status on stdout. Seeing it proves the
command ran to its end and gives its real exit status, even when it is 255 (which ssh also uses
for its own failures).
"""

from __future__ import annotations

import re
import shlex
from typing import Sequence

from expyre.shell import remote_path

__all__ = ["REMOTE_COMMAND", "TRAILER", "build_script", "encode_stdin", "split_trailer", "rsync_path"]

#: What ssh asks the remote login shell to run: read the script up to a NUL, then run it.
#: Single-quoted, no newline: valid in sh, bash, zsh, ksh, csh/tcsh and fish.
REMOTE_COMMAND = """bash -c 'IFS= read -r -d "" __expyre_script; eval "$__expyre_script"'"""

#: Printed after the command, followed by its exit status and a newline.
TRAILER = "\x1eEXPYRE_SSH_RC="
_TRAILER_PRINTF = "\\036EXPYRE_SSH_RC="  # the same, as a printf format (octal escape)
_TRAILER_RE = re.compile(re.escape(TRAILER) + r"(\d+)\n?\Z")


def build_script(
    command: Sequence[str] | str,
    *,
    cwd: str | None = None,
    unset_env_prefixes: Sequence[str] = (),
) -> str:
    """The bash script that runs ``command`` on the remote host.

    :param command: an argv list (joined with :func:`shlex.join`, so each element is one literal
        word) or a bash script (run with ``bash -c``, so an ``exit`` in it ends only itself).
    :param cwd: directory to run in; relative paths are relative to the remote home.
    :param unset_env_prefixes: exported variables whose names start with one of these are unset.
    """
    if isinstance(command, str):
        body = "bash -c " + shlex.quote(command)
    else:
        argv = [str(a) for a in command]
        if not argv:
            raise ValueError("empty command")
        body = shlex.join(argv)
    lines = []
    if unset_env_prefixes:
        patterns = "|".join(shlex.quote(p) + "*" for p in unset_env_prefixes)
        lines.append(
            f'for __expyre_v in $(compgen -e); do case "$__expyre_v" in {patterns}) unset "$__expyre_v";; esac; done'
        )
    if cwd is not None:
        body = f"cd -- {remote_path(cwd)} && {body}"
    lines += [
        "unset __expyre_script",
        body,
        "__expyre_rc=$?",
        f"printf '{_TRAILER_PRINTF}%d\\n' \"$__expyre_rc\"",
        'exit "$__expyre_rc"',
    ]
    return "\n".join(lines) + "\n"


def encode_stdin(script: str, input: str | None) -> bytes:
    """What ssh sends on stdin: the script, a NUL, then the command's input (if any)."""
    if "\0" in script:
        raise ValueError("a remote script cannot contain a NUL byte")
    data = script.encode() + b"\0"
    if input is not None:
        data += input.encode()
    return data


def split_trailer(stdout: str) -> tuple[str, int | None]:
    """``(stdout without the trailer, exit status)``, or ``(stdout, None)`` if the trailer is
    missing (the command did not run to its end, or the connection broke)."""
    m = _TRAILER_RE.search(stdout)
    if not m:
        return stdout, None
    return stdout[: m.start()], int(m.group(1))


def rsync_path(path: str) -> str:
    """A remote path as rsync's receiver/sender resolves it: relative paths stay relative (rsync
    runs in the remote home); ``~/x`` becomes ``x`` (no shell expands ``~`` with ``-s``)."""
    if path == "~":
        return "."
    if path.startswith("~/"):
        return path[2:] or "."
    return path
