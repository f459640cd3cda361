"""The config files themselves, with nothing heavier than the standard library: where they are
(the search rules of ExPyRe's README), reading one as JSON with its top-level checks, and :class:`ConfigError`.

Kept apart from :mod:`expyre.config_model` (attrs/cattrs) and :mod:`expyre.config` (plugins) so that
quick commands such as ``xpr ls`` find the expyre root without importing either.

Ownership, as git's ``safe.directory``: a ``_expyre`` directory or ``config.json`` is used only
when it is owned by the current user (or root) and not writable by group or others. One found by
the upward search that fails this is skipped with a warning (someone else could have planted it,
e.g. in ``/tmp`` or a group-writable project directory, and its ``commands`` would run in our
jobs); an existing expyre root that fails it is refused with :class:`UnsafePathError`.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ConfigError", "UnsafePathError", "find_config_files", "read_config_file", "unsafe_reason", "check_root",
           "ensure_root", "check_environment", "poll_outage_limit"]

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """config.json is invalid. ``problems`` is a list of ``(key.path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class UnsafePathError(ConfigError):
    """A directory or file expyre would trust is owned by someone else or writable by others."""

    def __init__(self, path: Path | str, reason: str, fix: str):
        self.path = Path(path)
        super().__init__(str(path), [("", f"{reason}; refusing to use it: {fix}")])


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def unsafe_reason(path: Path) -> str | None:
    """Why ``path`` must not be trusted (None if it may): it, or the symlink that leads to it, is
    owned by another user than the current one or root, or it is writable by group or others."""
    me = os.geteuid()
    for st in (os.lstat(path), os.stat(path)):
        if st.st_uid not in (me, 0):
            return (f"{path} is owned by {_user(st.st_uid)}, not by you ({_user(me)}) or root "
                    f"(mode {stat.S_IMODE(st.st_mode):04o})")
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022:
            return (f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}, "
                    f"owner {_user(st.st_uid)})")
    return None


def _fix(path: Path, directory: bool) -> str:
    return (f"if it is yours and you trust it, run `chmod go-w {path}` (and `chown` it to yourself); "
            f"otherwise remove it" + (" or set EXPYRE_ROOT to a directory of your own" if directory else ""))


def _trusted(path: Path, what: str) -> bool:
    """For the upward search: False (with a warning) for an existing path that is not safe."""
    try:
        reason = unsafe_reason(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        logger.warning("skipping %s %s: cannot check its owner: %s", what, path, exc)
        return False
    if reason:
        logger.warning("skipping %s: %s; expyre uses only what you (or root) own and only you may write. To use it: %s",
                       what, reason, _fix(path, what.endswith("directory")))
        return False
    return True


def check_root(root: Path) -> None:
    """Refuse an existing expyre root that is not a directory owned by the current user (or root)
    and private to it for writing (:class:`UnsafePathError` with owner, mode and fix)."""
    try:
        reason = unsafe_reason(root)
    except FileNotFoundError:
        return
    if reason is None and not root.is_dir():
        reason = f"{root} is not a directory"
    if reason:
        raise UnsafePathError(root, f"expyre root {reason}", _fix(root, True).replace("chmod go-w", "chmod 700"))


def ensure_root(root: Path) -> Path:
    """The expyre root, created private (0700, with missing parents) if it does not exist; an
    existing one is checked by :func:`check_root`."""
    root = Path(root).absolute()
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            root.mkdir(mode=0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(root, 0o700)  # whatever the umask
    check_root(root)
    return root


def find_config_files(cwd: Path | None = None) -> tuple[Path, list[Path]]:
    """Return (root, config files lowest-precedence first) by ExPyRe's README's rules. A
    ``_expyre`` directory or config.json that is not safe (see the module docs) is skipped with a
    warning; an existing root that is not safe raises :class:`UnsafePathError`. The environment
    variables read later are checked here too (:func:`check_environment`)."""
    check_environment()
    env_root = os.environ.get("EXPYRE_ROOT")
    if env_root:
        root = Path(env_root).expanduser()
        check_root(root)
        return root, [f for f in [root / "config.json"] if _trusted(f, "config file")]
    home_root = Path.home() / ".expyre"
    files = [home_root / "config.json"]
    cwd = (cwd or Path.cwd()).absolute()
    project_dirs = [d / "_expyre" for d in (cwd, *cwd.parents) if (d / "_expyre").is_dir()]
    project_dirs = [d for d in project_dirs if d.absolute() != home_root.absolute()]
    project_dirs = [d for d in project_dirs if _trusted(d, "expyre directory")]
    root = project_dirs[0] if project_dirs else home_root
    check_root(root)
    files += [d / "config.json" for d in reversed(project_dirs)]
    return root, [f for f in files if _trusted(f, "config file")]


def poll_outage_limit() -> float:
    """``EXPYRE_POLL_OUTAGE``: seconds of consecutive failed polls of a system (each already
    retried ``EXPYRE_RETRY`` times) tolerated while waiting, default 600; 0 fails at once.
    :class:`ValueError` names the variable and what is valid."""
    raw = os.environ.get("EXPYRE_POLL_OUTAGE", "600")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"EXPYRE_POLL_OUTAGE={raw!r} is invalid: give seconds >= 0, e.g. 600 (the default)")
    return value


def check_environment() -> None:
    """Check the ``EXPYRE_*`` variables read later (``EXPYRE_POLL_OUTAGE``, ``EXPYRE_LOCAL_NCORES``)
    when the library starts, rather than when first used (a poll that fails, a local job):
    :class:`ValueError` names the variable and the valid values."""
    poll_outage_limit()
    if os.environ.get("EXPYRE_LOCAL_NCORES", "").strip():
        from .builtin.localq import capacity

        capacity()


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
