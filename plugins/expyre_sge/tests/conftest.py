"""Test setup of expyre-sge.

* The helper module ``sge_testlib`` (next to this file) is importable.
* ``sge_name`` is parametrized over the selected systems whose scheduler is ``sge`` (from
  ``$EXPYRE_PYTEST_CONFIG``, default ``~/.expyre/config.json``, filtered by
  ``$EXPYRE_PYTEST_SYSTEMS``; see :mod:`expyre.testing`), ``sge_local_name`` over those of them that
  run on this machine (``"host": null``).
* ``sge_root`` makes a fresh expyre root holding only that system, checks that Grid Engine answers,
  and deletes whatever jobs a test leaves queued. With no such system, or Grid Engine down, the
  tests skip locally with the reason and fail under ``CI=true``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from expyre import config  # noqa: E402
from expyre import testing as xt  # noqa: E402  (not `from ... import pytest_config_path`: a conftest name
#   starting with pytest_ is taken for a hook)

logger = logging.getLogger(__name__)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, transport in (("sge_name", None), ("sge_local_name", "local")):
        if fixture in metafunc.fixturenames:
            names = sorted(xt.selected_systems("sge", transport))
            metafunc.parametrize(fixture, names or [None], ids=names or [f"no-{fixture.replace('_name', '')}-system"])


def _root(tmp_path: Path, name: str | None, monkeypatch: pytest.MonkeyPatch, what: str) -> Iterator[Path]:
    if name is None:
        xt.skip_or_fail(
            f"no {what}system with scheduler 'sge' selected from {xt.pytest_config_path()} "
            f"(EXPYRE_PYTEST_SYSTEMS={os.environ.get('EXPYRE_PYTEST_SYSTEMS', '')!r}); bring Grid Engine up with "
            "scripts/services/up.sh sge and list it in that file, e.g. "
            '{"systems": {"sge": {"scheduler": "sge", "host": null, "header": ["#$ -pe smp {tot_ncores}"], '
            '"partitions": {"all.q": {"ncores": 4, "max_time": null}}}}}'
        )
    monkeypatch.chdir(tmp_path)
    with xt.isolated_root(tmp_path / "_expyre", {name: xt.available_systems()[name]}) as root:
        system = config.get_system(name)
        try:
            system.scheduler.setup(system.transport)
            probe = system.transport.run(system.scheduler.status_command([]), timeout=60)
        except Exception as exc:  # noqa: BLE001 - any failure here means the real component is missing
            xt.skip_or_fail(f"Grid Engine of system {name!r} is not usable: {exc}")
        if not probe.ok:
            xt.skip_or_fail(f"Grid Engine of system {name!r} does not answer: {probe.describe()}")
        try:
            yield root
        finally:
            _delete_leftovers(name)


@pytest.fixture
def sge_root(tmp_path: Path, sge_name: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from _root(tmp_path, sge_name, monkeypatch, "")


@pytest.fixture
def sge_local_root(tmp_path: Path, sge_local_name: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from _root(tmp_path, sge_local_name, monkeypatch, "local (host null) ")


def _delete_leftovers(system_name: str) -> None:
    """qdel the jobs of this root that a test left queued or running (a failed test's sleepers)."""
    try:
        rows = config.db.jobs(system=system_name)
        ids = [r["remote_id"] for r in rows if r["remote_id"] and r["status"] in ("submitted", "started", "died")]
        if ids:
            system = config.get_system(system_name)
            system.transport.run(system.scheduler.control_command("cancel", ids), timeout=60)
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own result
        logger.warning("could not delete leftover jobs of %s: %s", system_name, exc)
