"""Shared helpers for the expyre-pbs tests.

Recorded command outputs live in ``fixtures/<family>/<name>.txt``: a header of ``# key: value``
lines (``source`` says where the format comes from, then ``argv``, ``returncode`` and one
``stderr`` line per line of stderr), a ``---`` line, then the command's stdout verbatim.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Callable

import pytest

from expyre.types import CommandResult

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"


def load_recorded(relpath: str) -> tuple[CommandResult, dict[str, str]]:
    """A recorded output as the :class:`CommandResult` the transport would have returned."""
    text = (FIXTURES / relpath).read_text()
    head, sep, stdout = text.partition("\n---\n")
    if not sep:
        raise ValueError(f"{relpath}: no '---' line after the header")
    meta: dict[str, str] = {}
    stderr: list[str] = []
    for line in head.splitlines():
        if not line.startswith("# "):
            raise ValueError(f"{relpath}: header line without '# ': {line!r}")
        key, _, value = line[2:].partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "stderr":
            stderr.append(value)
        else:
            meta[key] = value
    for required in ("source", "argv", "returncode"):
        if required not in meta:
            raise ValueError(f"{relpath}: header lacks '# {required}:'")
    result = CommandResult(
        argv=shlex.split(meta["argv"]),
        returncode=int(meta["returncode"]),
        stdout=stdout,
        stderr="\n".join(stderr) + ("\n" if stderr else ""),
    )
    return result, meta


@pytest.fixture
def recorded() -> Callable[[str], CommandResult]:
    return lambda relpath: load_recorded(relpath)[0]
