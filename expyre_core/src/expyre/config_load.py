"""Config loading layer: finding, reading, merging and validating the configuration (no state).

Search and merge rules (those of ExPyRe's README):

* ``EXPYRE_ROOT`` set: it is the root, and ``$EXPYRE_ROOT/config.json`` the only file read.
* Otherwise ``$HOME/.expyre/config.json`` is read first, then every ``<dir>/_expyre/config.json``
  from the top of the file system down to ``$CWD`` (closer directories win); the root is the
  ``_expyre`` directory closest to ``$CWD``, or ``$HOME/.expyre`` if there is none.
* Merging is per system: ``dict.update`` of the system's keys; a new name adds a system; ``null``
  removes one.
* Beneath all of these lies the embedded zero-config system ``local`` (this machine, the ``local``
  scheduler, one partition with all of its cores and memory), so jobs run with no file at all.

:mod:`expyre.config` holds the loaded state (root, systems, jobs database).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import plugins
from .config_files import ConfigError, find_config_files, read_config_file
from .config_model import Config, structure_config, structure_scheduler_options
from .machine import LOCAL_PARTITION, machine_mem_kb, machine_ncores

__all__ = ["load_config", "default_local_system", "LoadedConfig"]


def default_local_system() -> dict[str, Any]:
    """The embedded zero-config ``local`` system, as a config.json dict.

    Its single partition is named ``local_bigmem``: all of this machine's memory is available to it,
    and the name lets the example of ExPyRe's README (``'partitions': '.*bigmem'``) run unchanged.
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
        try:
            structure_scheduler_options(spec.backend.Options, system.scheduler_options, name)
        except ConfigError as exc:
            problems.setdefault(src, []).extend(exc.problems)
        try:
            plugins.get_transport_spec(system.transport_name)
        except plugins.UnknownBackendError as exc:
            why = f"host {system.host!r} needs the {system.transport_name!r} transport: " if system.host else ""
            problems.setdefault(src, []).append((f"systems.{name}.host" if system.host and not system.transport else f"systems.{name}.transport", why + str(exc)))
    if problems:
        raise ConfigError(" and ".join(problems), [p for probs in problems.values() for p in probs])
