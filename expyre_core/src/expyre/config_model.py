"""config.json as frozen attrs classes, one cattrs converter, and errors that carry the key path.

Per-value parsing happens in structure hooks (so an error is attached to the exact key); the
error walker turns cattrs' exception groups into ``(key.path, message)`` pairs, and
:class:`ConfigError` names the file(s) they came from.
"""

from __future__ import annotations

import difflib
import string
from typing import Any, Mapping

import attrs
from attrs import field, frozen
from cattrs import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError
from cattrs.preconf.json import make_converter

from .config_files import ConfigError
from .types import ConfigValue
from .units import Duration, Memory

__all__ = ["Partition", "SystemConfig", "Config", "ConfigError", "converter", "structure_config", "HEADER_KEYS",
           "structure_scheduler_options"]

#: the keys that header lines may use with str.format (the list of ExPyRe's README)
HEADER_KEYS = (
    "nnodes",
    "ncores_per_node",
    "tot_ncores",
    "tot_ntasks",
    "ncores_per_task",
    "ntasks_per_node",
    "id",
    "partition",
    "max_time_HMS",
)


def _check_header_lines(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for i, line in enumerate(value):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(line) if f is not None]
        except ValueError as exc:
            raise ValueError(f"{attribute.name}[{i}] {line!r}: {exc} (write literal braces as {{{{ and }}}})") from None
        for f in fields:
            key = f.split(".")[0].split("[")[0]
            if key not in HEADER_KEYS:
                hint = difflib.get_close_matches(key, HEADER_KEYS, n=1)
                raise ValueError(
                    f"{attribute.name}[{i}] {line!r}: unknown key {{{key}}}"
                    + (f" (did you mean {{{hint[0]}}}?)" if hint else "")
                    + f"; available: {', '.join(HEADER_KEYS)}"
                )


@frozen
class Partition:
    """One partition/queue/node type (the key may be a comma list in the scheduler's own syntax)."""

    ncores: int = field(validator=attrs.validators.gt(0))
    max_time: Duration | None = field(default=None, validator=lambda i, a, v: _positive_duration(i, a, v))
    max_mem: Memory | None = None
    #: extra header lines used only for jobs on this partition (an expyre extension)
    header: tuple[str, ...] = field(default=(), validator=_check_header_lines)


def _positive_duration(instance: Any, attribute: attrs.Attribute, value: Duration | None) -> None:
    if value is not None and value.seconds <= 0:
        raise ValueError(f"{attribute.name}: must be at least 1 second, got {value.seconds}")


@frozen
class SystemConfig:
    """One system of config.json (the keys of ExPyRe's README plus ``transport``, ``python_cmd`` and
    ``scheduler_options``)."""

    scheduler: str
    host: str | None = None
    commands: tuple[str, ...] = ()
    header: tuple[str, ...] = field(default=(), validator=_check_header_lines)
    partitions: dict[str, Partition] = field(factory=dict)
    remsh_cmd: str | None = None
    no_default_header: bool = False
    rundir: str | None = None
    #: transport backend name; default "local" when host is null, else "ssh"
    transport: str | None = None
    #: default python command for jobs on this system (``start(python_cmd=...)`` overrides)
    python_cmd: str | None = None
    #: options for the scheduler backend (structured into its ``Options`` class if it has one)
    scheduler_options: dict[str, Any] = field(factory=dict)
    #: seconds (or a duration string) a command on the host may take before it is killed and
    #: counted as failed (status queries are then retried; a submit is looked up by name first);
    #: also the copies' I/O inactivity limit. Default: ``expyre.system.DEFAULT_COMMAND_TIMEOUT``
    command_timeout: Duration | None = field(default=None, validator=_positive_duration)

    @property
    def transport_name(self) -> str:
        return self.transport or ("local" if self.host is None else "ssh")


@frozen
class Config:
    """The whole of config.json: its systems by name."""

    systems: dict[str, SystemConfig] = field(factory=dict)


# ---------------------------------------------------------------------------------------------
# the converter: every rule in one place
# ---------------------------------------------------------------------------------------------

converter = make_converter(forbid_extra_keys=True)


def _strict(kind: type, label: str):
    def hook(value: Any, _: type) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {label}, got {value!r}")
        if not isinstance(value, kind):
            raise TypeError(f"expected {label}, got {type(value).__name__} {value!r}")
        return value

    return hook


converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(bool, _strict(bool, "true or false"))
converter.register_structure_hook(Duration, lambda v, _: Duration.parse(v))
converter.register_structure_hook(Memory, lambda v, _: Memory.parse(v))
converter.register_unstructure_hook(Duration, lambda d: d.seconds)
converter.register_unstructure_hook(Memory, lambda m: m.kb)


# a plugin's own value types (in its ``Scheduler.Options``) parse themselves (see ConfigValue)
converter.register_structure_hook(ConfigValue, lambda v, t: t.from_config(v))


def _structure_str_tuple(value: Any, _: type) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of strings, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise TypeError(f"expected a list of strings, item {i} is {item!r}")
    return tuple(value)


converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_str_tuple)


def _structure_free_dict(value: Any, _: type) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return dict(value)


converter.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_free_dict)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = [a.name for a in attrs.fields(exc.cl)]
        msgs = []
        for key in sorted(exc.extra_fields):
            hint = difflib.get_close_matches(key, valid, n=1)
            msgs.append(f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else f"; valid keys: {', '.join(valid)}"))
        return "; ".join(msgs)
    if isinstance(exc, KeyError):
        return "required key is missing"
    return str(exc)


def iter_problems(exc: BaseException, path: tuple[str, ...] = ()):
    """Walk cattrs' exception groups into ``(key.path, message)`` pairs."""
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            key = getattr(note, "name", None)
            if key is None:
                key = getattr(note, "index", "?")
            yield from iter_problems(sub, (*path, str(key)))
        for sub in without:
            yield from iter_problems(sub, path)
    elif isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from iter_problems(sub, path)
    else:
        yield ".".join(path), _describe(exc)


def structure_config(raw: Mapping[str, Any], source: str) -> Config:
    """Structure a merged config dict; raise :class:`ConfigError` listing every problem found."""
    if not isinstance(raw, Mapping):
        raise ConfigError(source, [("", f"top level must be an object with a 'systems' key, got {type(raw).__name__}")])
    try:
        return converter.structure(dict(raw), Config)
    except (ClassValidationError, IterableValidationError) as exc:
        raise ConfigError(source, list(iter_problems(exc))) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, [("", str(exc))]) from None


def structure_scheduler_options(options_class: type | None, raw: Mapping[str, Any] | None, system_name: str) -> Any:
    """The one place where a system's ``scheduler_options`` are structured: into the scheduler
    backend's ``Options`` class (also from ``{}``: a backend that declares the class always gets
    an instance), with this module's converter. None if the backend declares no class.

    :raises ConfigError: every problem, each with its key path ``systems.<name>.scheduler_options.<key>``.
    """
    if options_class is None:
        return None
    try:
        return converter.structure(dict(raw or {}), options_class)
    except Exception as exc:  # noqa: BLE001 - every problem is reported with its key path
        path = ("systems", system_name, "scheduler_options")
        raise ConfigError(f"systems.{system_name}.scheduler_options", list(iter_problems(exc, path))) from None


def unstructure_config(cfg: Config) -> dict[str, Any]:
    return converter.unstructure(cfg)
