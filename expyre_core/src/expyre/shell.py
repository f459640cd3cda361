"""Shell quoting: the one place where values that reach a shell are quoted.

Public for plugins: a transport or scheduler builds its commands with :func:`quote` and
:func:`remote_path`, never with string concatenation of user-named values.
"""

from __future__ import annotations

import shlex

__all__ = ["quote", "remote_path"]


def quote(value: object) -> str:
    """Shell-quote one value (a name, a path, an environment value)."""
    return shlex.quote(str(value))


def remote_path(path: str) -> str:
    """Quote a path for a remote shell; a relative one (or ``~/...``) is relative to the remote home.

    >>> remote_path("/abs/x y")
    "'/abs/x y'"
    >>> remote_path("~/runs/a")
    '"$HOME"/runs/a'
    """
    if path.startswith("/"):
        return shlex.quote(path)
    if path.startswith("~/"):
        path = path[2:]
    return '"$HOME"/' + shlex.quote(path)
