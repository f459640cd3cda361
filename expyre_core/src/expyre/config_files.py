"""The config files themselves, with nothing heavier than the standard library: where they are
(the search rules of ExPyRe's README), reading one as JSON with its top-level checks, and :class:`ConfigError`.

Kept apart from :mod:`expyre.config_model` (attrs/cattrs) and :mod:`expyre.config` (plugins) so that
quick commands such as ``xpr ls`` find the expyre root without importing either.
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ConfigError", "find_config_files", "read_config_file"]


class ConfigError(ValueError):
    """config.json is invalid. ``problems`` is a list of ``(key.path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


def find_config_files(cwd: Path | None = None) -> tuple[Path, list[Path]]:
    """Return (root, config files lowest-precedence first) by the rules of ExPyRe's README."""
    env_root = os.environ.get("EXPYRE_ROOT")
    if env_root:
        root = Path(env_root).expanduser()
        return root, [root / "config.json"]
    home_root = Path.home() / ".expyre"
    files = [home_root / "config.json"]
    cwd = (cwd or Path.cwd()).absolute()
    project_dirs = [d / "_expyre" for d in (cwd, *cwd.parents) if (d / "_expyre").is_dir()]
    project_dirs = [d for d in project_dirs if d.absolute() != home_root.absolute()]
    root = project_dirs[0] if project_dirs else home_root
    files += [d / "config.json" for d in reversed(project_dirs)]
    return root, files


def read_config_file(path: Path) -> dict[str, Any] | None:
    """One config.json as a dict (None if it does not exist); :class:`ConfigError` names the file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read: {exc}")]) from None
    import json  # imported here: `xpr ls` finds the root without it

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), [("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [("", f"top level must be an object with a 'systems' key, got {type(data).__name__}")])
    extra = sorted(set(data) - {"systems"})
    if extra:
        raise ConfigError(str(path), [(k, f"unknown key {k!r}; the top level has only 'systems'") for k in extra])
    systems = data.get("systems", {})
    if not isinstance(systems, dict):
        raise ConfigError(str(path), [("systems", f"expected an object of systems, got {type(systems).__name__}")])
    for name, value in systems.items():
        if value is not None and not isinstance(value, dict):
            raise ConfigError(str(path), [(f"systems.{name}", f"expected an object or null, got {type(value).__name__}")])
    return data
