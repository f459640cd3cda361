"""Built-in transport ``local``: commands and files on this machine, no ssh."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from .. import files
from .._markers import hookimpl
from ..jobpython import check_script, found_version, parse_check
from ..hookspecs import Transport, TransportSpec
from ..types import CommandResult, TransportError


#: (python_cmd, commands) checked by :meth:`LocalTransport.probe` in this process -> its version
_probed: dict[tuple[str, tuple[str, ...]], tuple[int, int] | None] = {}


def clean_env(unset_prefixes: Sequence[str]) -> dict[str, str] | None:
    if not unset_prefixes:
        return None
    return {k: v for k, v in os.environ.items() if not k.startswith(tuple(unset_prefixes))}


class LocalTransport(Transport):
    """Runs commands with :mod:`subprocess` on this machine; copies files with
    :func:`expyre.files.copy_tree` (each file under a temporary name renamed into place, result
    markers last)."""

    is_local = True

    def run(self, command, *, cwd=None, input=None, timeout=None, unset_env_prefixes=()):
        argv = ["bash", "-c", command] if isinstance(command, str) else list(command)
        timeout = timeout if timeout is not None else self.command_timeout
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=clean_env(unset_env_prefixes),
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise TransportError(f"command not found: {argv[0]!r} ({exc})", retry_safe=True) from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"`{shlex.join(argv)[:300]}` on this machine timed out after {timeout:g} s "
                                 f"(command_timeout); it may have done part of its work", retry_safe=False) from exc
        return CommandResult(command, proc.returncode, proc.stdout, proc.stderr)

    def probe(self, python_cmd: str, commands: Sequence[str] = ()) -> None:
        """Before the first job of a system whose job Python is not this Python (``python_cmd``
        or ``commands`` in config.json): check that it exists and imports cloudpickle (one process
        start), so that a wrong ``python_cmd`` fails here, naming it, not in every job (exit 127)."""
        if python_cmd == shlex.quote(sys.executable) and not commands:
            return
        key = (python_cmd, tuple(commands))
        if key in _probed:
            return
        result = self.run(check_script(python_cmd, commands))
        parse_check(result.stdout, result.ok, python_cmd, "this machine", result.describe())
        _probed[key] = found_version(result.stdout)

    def python_version(self, python_cmd: str, commands: Sequence[str] = ()) -> tuple[int, int] | None:
        """What :meth:`probe` found (no second process start), else the default's one command."""
        known = _probed.get((python_cmd, tuple(commands)))
        return known if known is not None else super().python_version(python_cmd, commands)

    def put(self, local_dirs: Sequence[Path], remote_parent: str) -> None:
        dest = Path(remote_parent).expanduser()
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in local_dirs:
            target = dest / Path(d).name
            if Path(d).resolve() != target.resolve():
                files.copy_tree(Path(d), target)
                os.chmod(target, 0o700)

    def get(self, remote_dirs: Sequence[str], local_parent: Path) -> None:
        for d in remote_dirs:
            src = Path(d).expanduser()
            target = Path(local_parent) / src.name
            if src.resolve() != target.resolve():
                if not src.is_dir():
                    raise TransportError(f"cannot copy back {src}: no such directory", retry_safe=True)
                files.remove_stale_temps(target)
                files.copy_tree(src, target, fault=files.COPY_BACK_POINT)


@hookimpl
def expyre_register_transports():
    yield TransportSpec(name="local", backend=LocalTransport, description="this machine, no ssh")
