"""Test helpers for expyre and its plugins (needs pytest).

A scheduler plugin (including a third party's) runs the shared contract suite against its backend::

    # tests/test_contract.py of expyre-mysched
    from expyre.testing import SchedulerContract

    class TestContract(SchedulerContract):
        scheduler = "mysched"

The suite runs once per *selected* system whose ``scheduler`` is ``"mysched"``. Systems come from
the config file ``$EXPYRE_PYTEST_CONFIG`` (default ``$HOME/.expyre/config.json``, as the seed
says) filtered by the regexp ``$EXPYRE_PYTEST_SYSTEMS`` (default: all); the embedded ``local``
system is always available. So a user points the project's tests at their own cluster exactly as
CI points them at the clusters it brings up.

With no matching system a test is skipped with the reason, except under ``CI=true``, where it fails
(:func:`skip_or_fail`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

import cloudpickle
import pytest

from . import config as _config

__all__ = [
    "SchedulerContract",
    "test_config_path",
    "available_systems",
    "selected_systems",
    "skip_or_fail",
    "make_root",
    "isolated_root",
    "wait_for",
    "CallCounter",
    "queued_job_resources",
    "job_wait_for_file",
    "release_flag",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip the current test, or fail it under ``CI=true`` (CI must run every real-component test)."""
    if in_ci():
        pytest.fail(f"CI=true and a real-component test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def test_config_path() -> Path:
    return Path(os.environ.get("EXPYRE_PYTEST_CONFIG") or Path.home() / ".expyre" / "config.json")


def available_systems() -> dict[str, dict[str, Any]]:
    """Raw system dicts from the test config file, plus the embedded ``local`` system."""
    systems: dict[str, dict[str, Any]] = {"local": _config.default_local_system()}
    path = test_config_path()
    if path.exists():
        data = json.loads(path.read_text())
        for name, value in (data.get("systems") or {}).items():
            if value is None:
                systems.pop(name, None)
            else:
                systems[name] = value
    return systems


def selected_systems(scheduler: str | None = None, transport: str | None = None) -> dict[str, dict[str, Any]]:
    """Systems matching ``$EXPYRE_PYTEST_SYSTEMS`` (a regexp searched in the name; default all),
    optionally only those using ``scheduler`` / ``transport`` ("local" or "ssh")."""
    rx = re.compile(os.environ.get("EXPYRE_PYTEST_SYSTEMS") or ".*")
    out = {}
    for name, sysd in available_systems().items():
        if not rx.search(name):
            continue
        if scheduler is not None and sysd.get("scheduler") != scheduler:
            continue
        if transport is not None:
            t = sysd.get("transport") or ("local" if sysd.get("host") is None else "ssh")
            if t != transport:
                continue
        out[name] = sysd
    return out


def make_root(root: Path, systems: dict[str, dict[str, Any] | None]) -> Path:
    """Make ``root`` an expyre root with these systems in its config.json and load it."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    (root / "config.json").write_text(json.dumps({"systems": systems}, indent=2))
    os.environ["EXPYRE_ROOT"] = str(root)
    _config.init()
    return root


@contextlib.contextmanager
def isolated_root(root: Path, systems: dict[str, dict[str, Any] | None]) -> Iterator[Path]:
    """A fresh expyre root (see :func:`make_root`) for the duration of the block; afterwards the
    jobs it left queued or running are cancelled (a failed test's sleepers must not hold the
    cluster), connections are closed and ``EXPYRE_ROOT`` is restored."""
    old = os.environ.get("EXPYRE_ROOT")
    try:
        yield make_root(root, systems)
    finally:
        from .system import close_all

        try:
            _cancel_leftovers()
        finally:
            close_all()
            if old is None:
                os.environ.pop("EXPYRE_ROOT", None)
            else:
                os.environ["EXPYRE_ROOT"] = old


def _cancel_leftovers() -> None:
    import logging

    try:
        rows = _config.db.jobs(status=["submitted", "started"])
    except Exception:  # noqa: BLE001 - the root may be gone
        return
    by_system: dict[str, list[str]] = {}
    for r in rows:
        if r["remote_id"] and r["system"]:
            by_system.setdefault(r["system"], []).append(r["remote_id"])
    for name, ids in by_system.items():
        try:
            _config.get_system(name).control("cancel", ids)
        except Exception as exc:  # noqa: BLE001 - cleanup must not hide the test's own result
            logging.getLogger(__name__).warning("could not cancel leftover jobs %s on %s: %s", ids, name, exc)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)


class CallCounter:
    """Counts the commands a system's transport runs (``with CallCounter(system) as c: ...``);
    ``c.calls`` lists them, ``c.count(pred)`` counts those matching."""

    def __init__(self, system: Any) -> None:
        self.system = system
        self.calls: list[Any] = []

    def __enter__(self) -> "CallCounter":
        transport = self.system.transport
        original = transport.run
        self._original = original

        def run(command, **kw):
            self.calls.append(command)
            return original(command, **kw)

        transport.run = run  # type: ignore[method-assign]
        self._transport = transport
        return self

    def __exit__(self, *exc: Any) -> None:
        self._transport.run = self._original  # type: ignore[method-assign]

    def count(self, predicate: Callable[[Any], bool]) -> int:
        return sum(1 for c in self.calls if predicate(c))


def queued_job_resources() -> list[dict[str, Any]] | None:
    """``$EXPYRE_PYTEST_QUEUED_JOB_RESOURCES``: JSON (or a file of JSON) with two resource dicts,
    a small job and one large enough to stay queued behind it."""
    raw = os.environ.get("EXPYRE_PYTEST_QUEUED_JOB_RESOURCES")
    if not raw:
        return None
    text = Path(raw).read_text() if Path(raw).exists() else raw
    value = json.loads(text)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, dict) for v in value)):
        raise ValueError("EXPYRE_PYTEST_QUEUED_JOB_RESOURCES must be a JSON array of two resource dicts")
    for v in value:
        if isinstance(v.get("n"), list):
            v["n"] = tuple(v["n"])
    return value


# ---------------------------------------------------------------------------------------------
# functions the contract suite runs in jobs (pickled by value: the remote Python needs no expyre)
# ---------------------------------------------------------------------------------------------


def job_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("EXPYRE_")}


def job_raise(message: str) -> None:
    raise ValueError(message)


def job_print(text: str) -> int:
    import sys

    print(text)
    print("to stderr: " + text, file=sys.stderr)
    return len(text)


def job_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def job_wait_for_file(flag: str, value: Any = None, limit: float = 600.0) -> Any:
    """Return ``value`` once ``flag`` (a path relative to the job's directory) exists: a job that
    holds its cores exactly as long as the test needs (see :func:`release_flag`)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(flag):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flag} never appeared (waited {limit:g} s)")
        time.sleep(0.05)
    return value


def release_flag(system_name: str, flag: str) -> None:
    """Create ``<rundir>/<flag>`` on the host that runs the system's jobs: jobs waiting in
    :func:`job_wait_for_file` for ``../<flag>`` return."""
    from .shell import remote_path

    system = _config.get_system(system_name)
    result = system.transport.run(f"touch -- {remote_path(system.rundir)}/{flag}")
    assert result.ok, result.describe()


def job_square(x: int) -> int:
    return x * x


import sys as _sys  # noqa: E402

cloudpickle.register_pickle_by_value(_sys.modules[__name__])


class SchedulerContract:
    """The contract every scheduler backend must pass, on each selected system using it.

    Subclass with ``scheduler = "<name>"``. Override :attr:`resources` for sites whose partitions
    need other limits; :attr:`timeout` bounds every wait.
    """

    scheduler: ClassVar[str] = ""
    #: restrict to systems using this transport ("local", "ssh"...); None: any
    transport: ClassVar[str | None] = None
    resources: ClassVar[dict[str, Any]] = {"max_time": "5m", "n": (1, "tasks")}
    timeout: ClassVar[float] = 300.0
    many: ClassVar[int] = 10
    #: header lines (with header keys) that make a whole-node job really hold its node's cores, for
    #: schedulers whose default header asks for none (Slurm gives such a job one CPU unless the
    #: system's config.json header asks for tasks): the queued-job test's jobs use them
    whole_node_header: ClassVar[tuple[str, ...]] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "system_name" in metafunc.fixturenames:
            names = sorted(selected_systems(self.scheduler or None, self.transport))
            metafunc.parametrize("system_name", names or [None], ids=names or ["no-system"])

    @pytest.fixture
    def expyre_root(self, tmp_path: Path, system_name: str | None) -> Iterator[Path]:
        if system_name is None:
            skip_or_fail(
                f"no system with scheduler {self.scheduler!r} (transport {self.transport or 'any'}) selected from {test_config_path()} "
                f"(EXPYRE_PYTEST_SYSTEMS={os.environ.get('EXPYRE_PYTEST_SYSTEMS', '')!r})"
            )
        with isolated_root(tmp_path / "_expyre", {system_name: available_systems()[system_name]}) as root:
            yield root

    def _start(self, name: str, fn: Callable, system_name: str, args=(), **kw: Any):
        from .func import ExPyRe

        xpr = ExPyRe(name, fn, args=list(args), **kw)
        xpr.start(resources=self.resources, system_name=system_name, partial_node=True)
        return xpr

    def test_seed_example(self, expyre_root: Path, system_name: str) -> None:
        np = pytest.importorskip("numpy")
        from .func import ExPyRe

        xpr = ExPyRe("test_task", np.sum, args=[np.ones((100, 50))], kwargs={"axis": 1})
        xpr.start(resources={**self.resources}, system_name=system_name, partial_node=True)
        result = xpr.get_results(timeout=self.timeout, check_interval=2)
        assert np.max(np.abs(result - [50.0] * 100)) == 0.0
        assert _config.db.get(xpr.id)["status"] == "succeeded"
        xpr.mark_processed()
        assert _config.db.get(xpr.id)["status"] == "processed"

    def test_remote_exception(self, expyre_root: Path, system_name: str) -> None:
        from .func import ExPyReRemoteTraceback

        xpr = self._start("raiser", job_raise, system_name, args=["boom from the job"])
        with pytest.raises(ValueError, match="boom from the job") as info:
            xpr.get_results(timeout=self.timeout, check_interval=2)
        assert isinstance(info.value.__cause__, ExPyReRemoteTraceback)
        assert "job_raise" in info.value.__cause__.tb
        assert _config.db.get(xpr.id)["status"] == "failed"

    def test_output_captured(self, expyre_root: Path, system_name: str) -> None:
        xpr = self._start("printer", job_print, system_name, args=["hello from the job"])
        assert xpr.get_results(timeout=self.timeout, check_interval=2) == len("hello from the job")
        assert "hello from the job" in xpr.stdout
        assert "to stderr: hello from the job" in xpr.stderr

    def test_expyre_env(self, expyre_root: Path, system_name: str) -> None:
        from .func import ExPyRe

        system = _config.get_system(system_name)
        xpr = ExPyRe("env", job_env)
        xpr.start(resources=self.resources, system_name=system_name, partial_node=True)
        env = xpr.get_results(timeout=self.timeout, check_interval=2)
        from .resources import Resources

        _, alloc = Resources.from_any(self.resources).find_nodes(system.partitions, partial_node=True)
        assert env["EXPYRE_NNODES"] == str(alloc.nnodes)
        assert env["EXPYRE_TOT_NCORES"] == str(alloc.tot_ncores)
        assert env["EXPYRE_TOT_NTASKS"] == str(alloc.tot_ntasks)
        assert env["EXPYRE_NCORES_PER_TASK"] == str(alloc.ncores_per_task)
        assert env["EXPYRE_NCORES_PER_NODE"] == str(alloc.ncores_per_node)

    def test_cancel_reports_died(self, expyre_root: Path, system_name: str) -> None:
        from .func import ExPyReJobDiedError

        xpr = self._start("sleeper", job_sleep, system_name, args=[600])
        wait_for(lambda: _started(xpr), self.timeout, "the sleeping job to start")
        t0 = time.monotonic()
        xpr.cancel()
        with pytest.raises(ExPyReJobDiedError, match="without a result"):
            xpr.get_results(timeout=self.timeout, check_interval=2)
        assert _config.db.get(xpr.id)["status"] == "died"
        assert time.monotonic() - t0 < 120, "cancellation must be noticed promptly"

    def test_restart_reuses_job(self, expyre_root: Path, system_name: str) -> None:
        from .func import ExPyRe

        first = self._start("square", job_square, system_name, args=[7])
        again = ExPyRe("square", job_square, args=[7])
        assert again.id == first.id and again.recreated
        again.start(resources=self.resources, system_name=system_name, partial_node=True)
        assert _config.db.get(first.id)["remote_id"] == first.remote_id  # not submitted twice
        assert again.get_results(timeout=self.timeout, check_interval=2) == 49
        again.mark_processed()
        fresh = ExPyRe("square", job_square, args=[7])
        assert fresh.id != first.id and not fresh.recreated

    def test_queued_job_reported_queued(self, expyre_root: Path, system_name: str) -> None:
        """``$EXPYRE_PYTEST_QUEUED_JOB_RESOURCES`` (default: two whole-node jobs) gives a small job
        and a large one that must stay queued behind it."""
        from .func import ExPyRe, ExPyReJobDiedError

        small_res, large_res = queued_job_resources() or [{"max_time": "5m", "n": (1, "nodes")}] * 2
        # the small job holds its cores until the test releases it (a flag file, never a duration:
        # under load any sleep can end before the large job is seen queued)
        flag = f"release_{os.getpid()}_{time.time_ns()}"
        small = ExPyRe("small", job_wait_for_file, args=[f"../{flag}", 4])
        small.start(resources=small_res, system_name=system_name, header_extra=self.whole_node_header)
        wait_for(lambda: _started(small), self.timeout, "the small job to start")
        large = ExPyRe("large", job_square, args=[3])
        large.start(resources=large_res, system_name=system_name, header_extra=self.whole_node_header)
        row = wait_for(lambda: (r := _poll(large))["remote_status"] not in (None, "submitted") and r, self.timeout,
                       "the scheduler to report the large job")
        assert row["status"] == "submitted", row
        assert row["remote_status"].startswith(("queued", "held")), row
        release_flag(system_name, flag)
        large.cancel()
        with pytest.raises(ExPyReJobDiedError):
            large.get_results(timeout=self.timeout, check_interval=2)
        assert small.get_results(timeout=self.timeout, check_interval=2) == 4

    def test_many_jobs_batched_status(self, expyre_root: Path, system_name: str) -> None:
        system = _config.get_system(system_name)
        xprs = [self._start(f"many_{i}", job_square, system_name, args=[i]) for i in range(self.many)]
        status_argv = system.scheduler.status_command(["x"])
        polls_before = _poll_count(system)
        with CallCounter(system) as counter:
            results = [x.get_results(timeout=self.timeout, check_interval=2) for x in xprs]
        assert results == [i * i for i in range(self.many)]
        polls = _poll_count(system) - polls_before
        # (a backend's occasional detail query, e.g. SGE's `qstat -j` of long-waiting jobs, is no status query)
        explain = getattr(system.scheduler, "explain_command", None)
        exclude = [" ".join(explain(["1"])[:-1])] if explain else []
        status_calls = counter.count(lambda c: _is_status_call(c, status_argv, exclude))
        # every status query covered all jobs: never one query per job
        assert status_calls <= polls, (status_calls, polls)


def _is_status_call(command: Any, status_argv: list[str], exclude: Sequence[str] = ()) -> bool:
    text = command if isinstance(command, str) else " ".join(command)
    return status_argv[0] in text and "submit" not in text and not any(e in text for e in exclude)


def _poll_count(system: Any) -> int:
    from .func import _Poller

    return _Poller.get(system, _config.db).count


def _poll(xpr: Any) -> dict:
    from .func import _Poller

    _Poller.get(xpr.system, _config.db).refresh(max_age=0, force=True)
    return _config.db.get(xpr.id)


def _started(xpr: Any) -> bool:
    """The job's own runner has begun (not just the scheduler saying "running")."""
    row = _poll(xpr)
    if row["status"] != "started":
        return False
    return not xpr.system.shares_stage_dirs or (xpr.stage_dir / "_expyre_job_started").exists()



#: the original name (kept for callers; do not import it by this name into a conftest: pytest
#: takes ``pytest_*`` names there for hooks)
pytest_config_path = test_config_path
