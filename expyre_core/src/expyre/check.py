"""Can a system run jobs? The probes of ``xpr config check``, through the scheduler contract only.

Three checks, in order, each one only if the one before passed: the host answers (``true``
through the system's transport), the scheduler's commands are there
(:meth:`~expyre.hookspecs.Scheduler.probe`, or else the program of its status command on ``PATH``),
and the configured partitions exist (:meth:`~expyre.hookspecs.Scheduler.list_partitions`, when the
scheduler can list them).

Example::

    from expyre import config
    from expyre.check import check_system
    loaded = config.load_config()
    for c in check_system("archer2", loaded.config.systems["archer2"], loaded.root):
        print(c.check, c.ok, c.detail)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from .jobpython import JobPythonError, check_script, parse_check

__all__ = ["Check", "check_system", "check_system_offline"]


@dataclass(frozen=True)
class Check:
    """One check: ``check`` is ``"host"``, ``"scheduler"`` or ``"partitions"``."""

    check: str
    ok: bool
    detail: str


def _one_line(exc: BaseException) -> str:
    text = " ".join(ln.strip() for ln in (str(exc).strip() or type(exc).__name__).splitlines() if ln.strip())
    return text if type(exc).__module__ == "builtins" else f"{type(exc).__name__}: {text}"


def check_system(name: str, cfg, root: Path, timeout: float = 60) -> list[Check]:
    """The checks of the system ``name`` (its ``SystemConfig`` ``cfg``, the expyre root ``root``);
    stops at the first failure that makes the rest moot. Never raises for the system's failures.

    :param timeout: seconds allowed for each command on the host.
    """
    from .system import System

    checks: list[Check] = []
    system = System(name, cfg, root)
    where = cfg.host or "this machine"
    try:
        trans = system.transport
        result = trans.run(["true"], timeout=timeout)
        if not result.ok:
            checks.append(Check("host", False, f"`true` on {where} failed: {result.describe()}"))
            return checks
        checks.append(Check("host", True, f"{where} reachable" + (f" ({cfg.transport_name})" if cfg.host else "")))
        python = system.default_python()
        result = trans.run(check_script(python, list(cfg.commands)), timeout=timeout)
        try:
            checks.append(Check("python", True, f"{python}: " + parse_check(result.stdout, result.ok, python, where,
                                                                            result.describe())))
        except JobPythonError as exc:
            checks.append(Check("python", False, str(exc)))
            return checks
        sched = system.scheduler
        try:
            found = sched.probe(trans, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - the scheduler's commands are missing or broken
            checks.append(Check("scheduler", False, f"{cfg.scheduler}: {_one_line(exc)} (on {where})"))
            return checks
        if found is None:
            found = _status_program(sched, trans, timeout)
            if found is False:
                checks.append(Check("scheduler", False, f"{cfg.scheduler}: `{_status_argv0(sched)}` not found on {where}"))
                return checks
        checks.append(Check("scheduler", True, f"{cfg.scheduler}: {found}" if found else
                            f"{cfg.scheduler}: no status command to look for"))
        configured = [p.strip() for key in system.partitions for p in key.split(",") if p.strip()]
        existing = sched.list_partitions(trans, timeout=timeout)
        if existing is None:
            checks.append(Check("partitions", True, ", ".join(configured) + f" (scheduler {cfg.scheduler!r} lists none to compare)"))
            return checks
        missing = [p for p in configured if p not in existing]
        if missing:
            checks.append(Check("partitions", False, f"not on {where}: {', '.join(missing)} (there: {', '.join(sorted(existing)) or 'none'})"))
        else:
            checks.append(Check("partitions", True, ", ".join(configured)))
    except Exception as exc:  # noqa: BLE001 - any failure is this system's failure
        what = ("host", "python", "scheduler", "partitions")[min(len(checks), 3)]
        checks.append(Check(what, False, _one_line(exc)))
    finally:
        system.close()
    return checks


def check_system_offline(name: str, cfg, root: Path) -> list[Check]:
    """What can be checked of system ``name`` without running any command on any host: its
    scheduler and transport plugins are installed, the scheduler accepts its
    ``scheduler_options`` and this configuration, and it has partitions (configured or the
    scheduler's defaults) that a job can be placed on. Never raises for the system's failures."""
    from . import plugins
    from .system import System

    checks: list[Check] = []
    system = System(name, cfg, root)
    try:
        try:
            plugins.get_transport_spec(cfg.transport_name)
            checks.append(Check("transport", True, f"{cfg.transport_name} (for {cfg.host or 'this machine'})"))
        except Exception as exc:  # noqa: BLE001
            checks.append(Check("transport", False, _one_line(exc)))
        try:
            sched = system.scheduler  # builds the backend with its options: no command is run
            checks.append(Check("scheduler", True, f"{cfg.scheduler} ({type(sched).__module__}.{type(sched).__qualname__})"))
        except Exception as exc:  # noqa: BLE001
            checks.append(Check("scheduler", False, f"{cfg.scheduler}: {_one_line(exc)}"))
            return checks
        parts = system.partitions
        if not parts:
            checks.append(Check("partitions", False, f"none configured and scheduler {cfg.scheduler!r} offers no defaults"))
        else:
            checks.append(Check("partitions", True, ", ".join(parts) + ("" if cfg.partitions else " (scheduler defaults)")
                                + "; not compared with the scheduler's (offline)"))
    finally:
        system.close()
    return checks


def _status_argv0(sched) -> str:
    try:
        return sched.status_command(["0"])[0]
    except Exception:  # noqa: BLE001 - a backend that must be set up first
        return ""


def _status_program(sched, trans, timeout: float) -> str | bool:
    """For a scheduler without a probe: where the program of its status command is ("" when it
    cannot say which program that is, False when it is not on the host)."""
    first = _status_argv0(sched)
    if not first:
        return ""
    result = trans.run(f"command -v {shlex.quote(first)}", timeout=timeout)
    if not result.ok or not result.stdout.strip():
        return False
    return result.stdout.strip().splitlines()[0]
