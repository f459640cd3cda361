"""Runtime state layer: a job handle: one job's jobs-database row and its stage directory.

The services (:mod:`expyre.submit`, :mod:`expyre.poller`, :mod:`expyre.results`...) work on job
handles; :class:`~expyre.func.ExPyRe` is one (it adds the call's arguments and the API), and a
command that only looks at existing jobs (``xpr sync``) makes plain ones from database rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from . import config
from .layout import STAGE_DIR_PREFIX
from .names import JOB_ID_RE
from .system import System

__all__ = ["JobHandle"]


class JobHandle:
    """One job: ``id``, ``name``, ``stage_dir``, ``status``, ``remote_id``, ``system_name``,
    ``hash`` and ``reason`` from its row of the jobs database, re-read by :meth:`reload`; the
    outcome readers add ``stdout``, ``stderr`` and ``remote_traceback``.

    :raises ValueError: the row's id is invalid or its stage directory is not the job's own
        (``<root>/run_<id>``): results are only ever unpickled from there.
    """

    stdout: str | None = None
    stderr: str | None = None
    remote_traceback: str | None = None

    def __init__(self, row: Mapping[str, Any]) -> None:
        self._load_row(row)

    def _load_row(self, row: Mapping[str, Any]) -> None:
        self.id: str = row["id"]
        self.name: str = row["name"]
        self.stage_dir = Path(row["from_dir"])
        self.status: str = row["status"]
        self.remote_id: str | None = row.get("remote_id")
        self.system_name: str | None = row.get("system")
        self.hash: str | None = row.get("hash")
        self.reason: str | None = row.get("reason")
        if not JOB_ID_RE.match(self.id):
            raise ValueError(f"jobs database row has an invalid job id {self.id!r}")
        own = Path(config.root) / f"{STAGE_DIR_PREFIX}{self.id}"
        if self.stage_dir != own:  # results are only ever unpickled from the job's own directory
            raise ValueError(f"jobs database row {self.id}: {self.stage_dir} is not its own stage directory {own}; refusing it")

    def reload(self) -> dict:
        """Re-read this job's row from the jobs database (status, remote id, ...); return it."""
        row = config.db.get(self.id)
        if row is None:
            raise RuntimeError(f"job {self.id} is no longer in the jobs database {config.db.path}")
        self._load_row(row)
        return row

    _refresh_row = reload  # the former private name (of ExPyRe)

    @property
    def system(self) -> System:
        """The :class:`~expyre.system.System` the job was started on."""
        return config.get_system(self.system_name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, status={self.status!r}, system={self.system_name!r})"
