"""Configuration: where the expyre root is, which systems exist, and the jobs database.

Module attributes (loaded lazily on first access, reloaded by :func:`init`):

``root``
    :class:`pathlib.Path` of the expyre root (jobs database and stage directories).
``systems``
    ``dict`` of system name -> :class:`expyre.system.System`.
``db``
    the :class:`expyre.jobsdb.JobsDB`.
``sources``
    the config files that were read, lowest precedence first.

Search and merge rules (the seed's):

* ``EXPYRE_ROOT`` set: it is the root, and ``$EXPYRE_ROOT/config.json`` the only file read.
* Otherwise ``$HOME/.expyre/config.json`` is read first, then every ``<dir>/_expyre/config.json``
  from the top of the file system down to ``$CWD`` (closer directories win); the root is the
  ``_expyre`` directory closest to ``$CWD``, or ``$HOME/.expyre`` if there is none.
* Merging is per system: ``dict.update`` of the system's keys; a new name adds a system; ``null``
  removes one.
* Beneath all of these lies the embedded zero-config system ``local`` (this machine, the ``local``
  scheduler, one partition with all of its cores and memory), so jobs run with no file at all.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from .config_files import ConfigError, find_config_files, read_config_file
from .config_model import Config, SystemConfig, structure_config

__all__ = ["init", "load_config", "find_config_files", "default_local_system", "LoadedConfig", "ConfigError"]

logger = logging.getLogger(__name__)

LOCAL_PARTITION = "local_bigmem"


def machine_ncores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_mem_kb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def default_local_system() -> dict[str, Any]:
    """The embedded zero-config ``local`` system, as a config.json dict.

    Its single partition is named ``local_bigmem``: all of this machine's memory is available to it,
    and the name lets the seed's example (``'partitions': '.*bigmem'``) run unchanged.
    """
    partition: dict[str, Any] = {"ncores": machine_ncores(), "max_time": None}
    mem = machine_mem_kb()
    if mem:
        partition["max_mem"] = mem
    return {"host": None, "scheduler": "local", "partitions": {LOCAL_PARTITION: partition}}


class LoadedConfig:
    """The result of reading and merging the config files."""

    def __init__(self, root: Path, config: Config, sources: list[Path], origins: dict[str, list[Path]]):
        self.root = root
        self.config = config
        self.sources = sources
        #: system name -> the files that defined or modified it (empty list: the embedded default)
        self.origins = origins


def load_config(cwd: Path | None = None) -> LoadedConfig:
    """Find, read, merge and validate the configuration."""
    root, files = find_config_files(cwd)
    merged: dict[str, dict[str, Any]] = {"local": default_local_system()}
    origins: dict[str, list[Path]] = {"local": []}
    key_origin: dict[tuple[str, str], Path] = {}
    sources = []
    for path in files:
        data = read_config_file(path)
        if data is None:
            continue
        sources.append(path)
        for name, value in data.get("systems", {}).items():
            if value is None:
                merged.pop(name, None)
                origins.pop(name, None)
                continue
            if name in merged:
                merged[name] = {**merged[name], **value}
                origins[name].append(path)
            else:
                merged[name] = dict(value)
                origins[name] = [path]
            for key in value:
                key_origin[(name, key)] = path
    try:
        cfg = structure_config({"systems": merged}, " + ".join(map(str, sources)) or "<embedded default>")
    except ConfigError as exc:
        raise _attribute_problems(exc, origins, key_origin) from None
    _check_backends(cfg, origins)
    return LoadedConfig(root, cfg, sources, origins)


def _attribute_problems(exc: ConfigError, origins, key_origin) -> ConfigError:
    """Say which file each problem comes from."""
    by_file: dict[str, list[tuple[str, str]]] = {}
    for path, msg in exc.problems:
        parts = path.split(".")
        src = None
        if len(parts) >= 2 and parts[0] == "systems":
            src = key_origin.get((parts[1], parts[2])) if len(parts) >= 3 else None
            if src is None and origins.get(parts[1]):
                src = origins[parts[1]][-1]
        by_file.setdefault(str(src) if src else exc.source, []).append((path, msg))
    if len(by_file) == 1:
        ((source, problems),) = by_file.items()
        return ConfigError(source, problems)
    return ConfigError(
        " and ".join(by_file), [(p, f"{m} (in {src})") for src, probs in by_file.items() for p, m in probs]
    )


def _check_backends(cfg: Config, origins: dict[str, list[Path]]) -> None:
    from . import plugins

    problems: dict[str, list[tuple[str, str]]] = {}
    for name, system in cfg.systems.items():
        src = str(origins[name][-1]) if origins.get(name) else "<embedded default>"
        try:
            spec = plugins.get_scheduler_spec(system.scheduler)
        except plugins.UnknownBackendError as exc:
            problems.setdefault(src, []).append((f"systems.{name}.scheduler", str(exc)))
            continue
        if not system.partitions and spec.backend.default_partitions() is None:
            problems.setdefault(src, []).append(
                (f"systems.{name}.partitions", f"required for scheduler {system.scheduler!r}: give at least one partition")
            )
        if spec.backend.Options is not None:
            from .config_model import converter, iter_problems

            try:
                converter.structure(system.scheduler_options, spec.backend.Options)
            except Exception as exc:  # noqa: BLE001 - reported with the key path
                for p, m in iter_problems(exc, ("systems", name, "scheduler_options")):
                    problems.setdefault(src, []).append((p, m))
        try:
            plugins.get_transport_spec(system.transport_name)
        except plugins.UnknownBackendError as exc:
            why = f"host {system.host!r} needs the {system.transport_name!r} transport: " if system.host else ""
            problems.setdefault(src, []).append((f"systems.{name}.host" if system.host and not system.transport else f"systems.{name}.transport", why + str(exc)))
    if problems:
        raise ConfigError(" and ".join(problems), [p for probs in problems.values() for p in probs])


# ---------------------------------------------------------------------------------------------
# module-level state, loaded lazily
# ---------------------------------------------------------------------------------------------

_lock = threading.RLock()
_loaded: dict[str, Any] = {}


def init(root_dir: str | os.PathLike | None = None, verbose: bool = False) -> None:
    """(Re)load the configuration and open the jobs database.

    :param root_dir: use this as the expyre root (like ``EXPYRE_ROOT``) instead of searching.
    """
    from .jobsdb import JobsDB
    from .system import System, close_all

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
        root = loaded.root.absolute()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _loaded.clear()
        _loaded["root"] = root
        _loaded["loaded"] = loaded
        _loaded["sources"] = loaded.sources
        _loaded["systems"] = {name: System(name, cfg, root) for name, cfg in loaded.config.systems.items()}
        _loaded["db"] = JobsDB(root / "jobs.db")
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


def get_system(name: str | None) -> "Any":
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
