"""Runtime state layer: the loaded configuration of this process: where the expyre root is, which
systems exist, and the jobs database.

Module attributes (loaded lazily on first access, reloaded by :func:`init`):

``root``
    :class:`pathlib.Path` of the expyre root (jobs database and stage directories).
``systems``
    ``dict`` of system name -> :class:`expyre.system.System`.
``db``
    the :class:`expyre.jobsdb.JobsDB`.
``sources``
    the config files that were read, lowest precedence first.

How the files are found and merged: :mod:`expyre.config_load`.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from .config_files import ConfigError, ensure_root, find_config_files
from .config_load import LoadedConfig, default_local_system, load_config
from .jobsdb import JobsDB
from .machine import LOCAL_PARTITION, machine_mem_kb, machine_ncores
from .system import System, close_all

__all__ = ["init", "load_config", "find_config_files", "default_local_system", "LoadedConfig", "ConfigError",
           "get_system", "LOCAL_PARTITION", "machine_ncores", "machine_mem_kb"]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# module-level state, loaded lazily
# ---------------------------------------------------------------------------------------------

_lock = threading.RLock()
_loaded: dict[str, Any] = {}


def init(root_dir: str | os.PathLike | None = None, verbose: bool = False) -> None:
    """(Re)load the configuration and open the jobs database.

    :param root_dir: use this as the expyre root (like ``EXPYRE_ROOT``) instead of searching.
    """
    with _lock:
        close_all()
        old_env = os.environ.get("EXPYRE_ROOT")
        if root_dir is not None:
            os.environ["EXPYRE_ROOT"] = str(root_dir)
        try:
            loaded = load_config()
        finally:
            if root_dir is not None:
                if old_env is None:
                    os.environ.pop("EXPYRE_ROOT", None)
                else:
                    os.environ["EXPYRE_ROOT"] = old_env
        root = ensure_root(loaded.root)  # created private; an existing one checked (owner, mode)
        _loaded.clear()
        _loaded["root"] = root
        _loaded["loaded"] = loaded
        _loaded["sources"] = loaded.sources
        _loaded["systems"] = {name: System(name, cfg, root) for name, cfg in loaded.config.systems.items()}
        _loaded["db"] = JobsDB(root / "jobs.db", root=root)  # a missing or empty one is rebuilt from the stage dirs
        if verbose:
            logger.info("expyre root %s, systems %s", root, list(_loaded["systems"]))


def _get(name: str) -> Any:
    with _lock:
        if not _loaded:
            init()
        return _loaded[name]


def __getattr__(name: str) -> Any:
    if name in ("root", "systems", "db", "sources", "loaded"):
        return _get(name)
    if name == "local_stage_dir":  # the original's name for the root
        return _get("root")
    raise AttributeError(f"module 'expyre.config' has no attribute {name!r}")


def get_system(name: str | None) -> System:
    """The :class:`~expyre.system.System` called ``name`` (default ``$EXPYRE_SYS``, else ``local``)."""
    systems = _get("systems")
    if name is None:
        name = os.environ.get("EXPYRE_SYS") or "local"
        origin = "EXPYRE_SYS" if os.environ.get("EXPYRE_SYS") else "default system"
    else:
        origin = "system_name"
    try:
        return systems[name]
    except KeyError:
        srcs = ", ".join(map(str, _get("sources"))) or "no config.json found"
        raise KeyError(
            f"unknown system {name!r} (from {origin}); configured systems: {', '.join(sorted(systems)) or 'none'} "
            f"(config files: {srcs})"
        ) from None
