"""Fixtures for the tests that run on a real Slurm cluster.

``slurm_name`` is parametrized over the selected systems whose scheduler is ``slurm`` (see
expyre.testing: ``$EXPYRE_PYTEST_CONFIG``, ``$EXPYRE_PYTEST_SYSTEMS``); ``slurm_root`` makes a fresh
expyre root holding only that system and cancels whatever jobs a test leaves behind.
``local_slurm_name`` and ``local_slurm_root`` do the same for the systems whose Slurm commands run
on this machine (``"host": null``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from expyre import (
    config,
    testing,  # not `from ... import pytest_config_path`: pytest would take it for a hook
)
from expyre.testing import available_systems, isolated_root, selected_systems, skip_or_fail

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "slurm_name" in metafunc.fixturenames:
        names = sorted(selected_systems("slurm"))
        metafunc.parametrize("slurm_name", names or [None], ids=names or ["no-slurm-system"])
    if "local_slurm_name" in metafunc.fixturenames:
        names = sorted(selected_systems("slurm", transport="local"))
        metafunc.parametrize("local_slurm_name", names or [None], ids=names or ["no-local-slurm-system"])


@pytest.fixture
def slurm_root(tmp_path: Path, slurm_name: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with _root(tmp_path, slurm_name, monkeypatch, "") as root:
        yield root


@pytest.fixture
def local_slurm_root(tmp_path: Path, local_slurm_name: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with _root(tmp_path, local_slurm_name, monkeypatch, ' and "host": null') as root:
        yield root


@contextmanager
def _root(tmp_path: Path, slurm_name: str | None, monkeypatch: pytest.MonkeyPatch, which: str) -> Iterator[Path]:
    if slurm_name is None:
        skip_or_fail(
            f"no system with scheduler 'slurm'{which} selected from {testing.pytest_config_path()} "
            f"(EXPYRE_PYTEST_SYSTEMS={os.environ.get('EXPYRE_PYTEST_SYSTEMS', '')!r}); "
            "bring Slurm up with scripts/services/up.sh slurm and list it in that file"
        )
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {slurm_name: available_systems()[slurm_name]}) as root:
        system = config.get_system(slurm_name)
        probe = system.transport.run(["sinfo", "-h", "-o", "%P %a"], timeout=60)
        if not probe.ok:
            skip_or_fail(f"Slurm on system {slurm_name!r} does not answer: {probe.describe()}")
        yield root  # (isolated_root cancels the jobs a test leaves queued or running)
