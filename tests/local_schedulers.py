"""Shared by the root tests that drive Slurm or Grid Engine on this machine directly (drain,
qmod, sacct/qacct counts): the selected system's settings, once its scheduler answers."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from expyre.testing import available_systems, skip_or_fail

_PROBES = {"slurm": ["sinfo", "-h"], "sge": ["qstat", "-help"]}


def require_answering(name: str | None) -> dict[str, Any]:
    """The settings of system ``name`` (a Slurm or SGE system with ``"host": null``); skips
    (fails under CI=true) when none was selected or its scheduler does not answer."""
    if name is None:
        skip_or_fail("no Slurm or Grid Engine system on this machine (\"host\": null) selected "
                     f"(EXPYRE_PYTEST_SYSTEMS={os.environ.get('EXPYRE_PYTEST_SYSTEMS', '')!r})")
    sysd = available_systems()[name]
    probe = _PROBES[sysd["scheduler"]]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        skip_or_fail(f"{sysd['scheduler']} of system {name!r} does not answer `{' '.join(probe)}`")
    return sysd
