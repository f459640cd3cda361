"""The one module that touches pluggy and entry points.

Everything else asks for backends by name through :func:`get_scheduler_spec` /
:func:`get_transport_spec`, and calls hooks through the typed functions here (one per hook that
the core calls: :func:`modify_header`), never through pluggy's hook relay by name.

* Built-in plugins (the ``local`` scheduler and the ``local`` transport) are registered directly.
* Installed plugins are loaded from the ``expyre`` entry-point group. One that fails to import is
  reported by name (a warning, and ``xpr plugins``) and the others keep working.
* ``EXPYRE_DISABLE_PLUGINS=a,b`` skips those entry-point names; ``EXPYRE_TRACE_PLUGINS=1`` logs
  every hook call.
* A misspelt ``expyre_*`` hookimpl, or one with a wrong signature, is a hard error.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from typing import TYPE_CHECKING, Iterable

import pluggy
from attrs import frozen

from . import hookspecs
from ._markers import PROJECT
from .hookspecs import Scheduler, SchedulerSpec, Transport, TransportSpec
from .types import JobRequest

if TYPE_CHECKING:
    from .config_model import Partition

__all__ = [
    "PluginInfo",
    "PluginLoadError",
    "UnknownBackendError",
    "get_plugin_manager",
    "hook",
    "modify_header",
    "schedulers",
    "transports",
    "get_scheduler_spec",
    "get_transport_spec",
    "default_partitions",
    "plugin_infos",
    "failed_plugins",
    "reset",
]

logger = logging.getLogger(__name__)

DEFAULT_PLUGINS = ("expyre.builtin.local_scheduler", "expyre.builtin.local_transport")


class PluginLoadError(RuntimeError):
    """Plugins conflict (two offer the same backend name) or a hookimpl is invalid."""


class UnknownBackendError(LookupError):
    """A config names a scheduler or transport that no installed plugin provides."""


@frozen
class PluginInfo:
    """One plugin as ``xpr plugins`` shows it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    schedulers: tuple[str, ...]
    transports: tuple[str, ...]
    status: str  # "loaded", "disabled" or "failed: <reason>"


class _State:
    def __init__(self) -> None:
        self.pm: pluggy.PluginManager | None = None
        self.schedulers: dict[str, tuple[SchedulerSpec, str]] = {}
        self.transports: dict[str, tuple[TransportSpec, str]] = {}
        self.infos: list[PluginInfo] = []
        self.failed: dict[str, str] = {}


_state = _State()
_lock = threading.RLock()


def reset() -> None:
    """Forget the loaded plugins; the next call loads them again (for tests and ``sys.path`` changes)."""
    with _lock:
        _state.__init__()


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("EXPYRE_DISABLE_PLUGINS", "").split(",") if n.strip()}


def _load() -> None:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[tuple[str, str, str | None, str | None, object | None, str]] = []
    for modname in DEFAULT_PLUGINS:
        module = __import__(modname, fromlist=["_"])
        pm.register(module, name=modname)
        infos.append((modname, modname, None, None, module, "loaded"))

    disabled = _disabled()
    failed: dict[str, str] = {}
    for ep in sorted(importlib.metadata.entry_points(group=PROJECT), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        dist_version = dist.version if dist is not None else None
        if ep.name in disabled:
            infos.append((ep.name, ep.value, dist_name, dist_version, None, "disabled"))
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            reason = f"{type(exc).__name__}: {exc}"
            failed[ep.name] = reason
            logger.warning(
                "expyre plugin %r (%s) failed to load and is skipped: %s. "
                "Disable it with EXPYRE_DISABLE_PLUGINS=%s",
                ep.name,
                dist_name or ep.value,
                reason,
                ep.name,
            )
            infos.append((ep.name, ep.value, dist_name, dist_version, None, f"failed: {reason}"))
            continue
        try:
            pm.register(plugin, name=ep.name)
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"expyre plugin {ep.name!r} ({dist_name or ep.value}) is invalid: {exc}") from exc
        infos.append((ep.name, ep.value, dist_name, dist_version, plugin, "loaded"))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"an expyre plugin has a hook that does not exist (misspelt?): {exc}") from exc

    if os.environ.get("EXPYRE_TRACE_PLUGINS"):
        pm.add_hookcall_monitoring(
            lambda name, impls, kwargs: logger.info("hook %s -> %s", name, [i.plugin_name for i in impls]),
            lambda outcome, name, impls, kwargs: logger.info("hook %s done", name),
        )

    scheds: dict[str, tuple[SchedulerSpec, str]] = {}
    trans: dict[str, tuple[TransportSpec, str]] = {}
    provided: dict[str, tuple[list[str], list[str]]] = {}
    for impl in pm.hook.expyre_register_schedulers.get_hookimpls():
        for spec in _collect(impl.function(), SchedulerSpec, impl.plugin_name):
            if not (isinstance(spec.backend, type) and issubclass(spec.backend, Scheduler)):
                raise PluginLoadError(f"plugin {impl.plugin_name!r}: scheduler {spec.name!r} backend is not a Scheduler subclass")
            if spec.name in scheds:
                raise PluginLoadError(
                    f"scheduler {spec.name!r} is provided by both {scheds[spec.name][1]!r} and {impl.plugin_name!r}; "
                    f"disable one with EXPYRE_DISABLE_PLUGINS"
                )
            scheds[spec.name] = (spec, impl.plugin_name)
            provided.setdefault(impl.plugin_name, ([], []))[0].append(spec.name)
    for impl in pm.hook.expyre_register_transports.get_hookimpls():
        for spec in _collect(impl.function(), TransportSpec, impl.plugin_name):
            if not (isinstance(spec.backend, type) and issubclass(spec.backend, Transport)):
                raise PluginLoadError(f"plugin {impl.plugin_name!r}: transport {spec.name!r} backend is not a Transport subclass")
            if spec.name in trans:
                raise PluginLoadError(
                    f"transport {spec.name!r} is provided by both {trans[spec.name][1]!r} and {impl.plugin_name!r}; "
                    f"disable one with EXPYRE_DISABLE_PLUGINS"
                )
            trans[spec.name] = (spec, impl.plugin_name)
            provided.setdefault(impl.plugin_name, ([], []))[1].append(spec.name)

    _state.pm = pm
    _state.schedulers = scheds
    _state.transports = trans
    _state.failed = failed
    _state.infos = []
    for name, module, dist_name, dist_version, plugin, status in infos:
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or [])) if plugin is not None else ()
        s, t = provided.get(name, ([], []))
        _state.infos.append(PluginInfo(name, module, dist_name, dist_version, hooks, tuple(s), tuple(t), status))


def _collect(result: Iterable | None, kind: type, plugin_name: str) -> list:
    items = list(result or [])
    for item in items:
        if not isinstance(item, kind):
            raise PluginLoadError(f"plugin {plugin_name!r} returned {item!r} where a {kind.__name__} was expected")
    return items


def _ensure() -> _State:
    with _lock:
        if _state.pm is None:
            _load()
        return _state


def get_plugin_manager() -> pluggy.PluginManager:
    pm = _ensure().pm
    assert pm is not None
    return pm


def hook() -> pluggy.HookRelay:
    """pluggy's hook relay (for introspection and tests; the core calls the typed functions below)."""
    return get_plugin_manager().hook


def modify_header(system_name: str, job: JobRequest, header: list[str]) -> None:
    """Call every :func:`~expyre.hookspecs.expyre_modify_header` hook: each may edit ``header``
    (the job script's header lines) in place for the job ``job`` on system ``system_name``."""
    get_plugin_manager().hook.expyre_modify_header(system_name=system_name, job=job, header=header)


def schedulers() -> dict[str, SchedulerSpec]:
    return {name: spec for name, (spec, _) in sorted(_ensure().schedulers.items())}


def transports() -> dict[str, TransportSpec]:
    return {name: spec for name, (spec, _) in sorted(_ensure().transports.items())}


def failed_plugins() -> dict[str, str]:
    return dict(_ensure().failed)


def plugin_infos() -> list[PluginInfo]:
    return list(_ensure().infos)


def _unknown(kind: str, name: str, available: Iterable[str]) -> UnknownBackendError:
    import difflib

    state = _ensure()
    names = sorted(available)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    msg = f"unknown {kind} {name!r}"
    if close:
        msg += f"; did you mean {close[0]!r}? available: {', '.join(names)}"
    else:
        msg += (f"; available: {', '.join(names) or 'none'}; a {kind} of another name needs its plugin: "
                f"pip install expyre-{name}")
    if name in state.failed:
        msg += f" (plugin {name!r} is installed but failed to load: {state.failed[name]})"
    elif name in _disabled():
        msg += f" (plugin {name!r} is disabled by EXPYRE_DISABLE_PLUGINS)"
    return UnknownBackendError(msg)


def get_scheduler_spec(name: str) -> SchedulerSpec:
    state = _ensure()
    try:
        return state.schedulers[name][0]
    except KeyError:
        raise _unknown("scheduler", name, state.schedulers) from None


def get_transport_spec(name: str) -> TransportSpec:
    state = _ensure()
    try:
        return state.transports[name][0]
    except KeyError:
        raise _unknown("transport", name, state.transports) from None


def default_partitions(scheduler: str) -> "dict[str, Partition] | None":
    """The partitions the scheduler backend named ``scheduler`` offers to a system that lists none
    (:meth:`Scheduler.default_partitions`), or None when it has no defaults.

    :raises UnknownBackendError: no installed plugin provides that scheduler.
    """
    return get_scheduler_spec(scheduler).backend.default_partitions()
