"""Test helpers for expyre and its plugins (needs pytest): the plugin author's contract kit.

* :class:`OfflineSchedulerContract`: a scheduler backend's contract checked from *recorded* command
  outputs, with no cluster: state codes, unknown codes, batched control commands, array element
  ids, golden headers. Every scheduler plugin runs it in its ordinary test run.
* :class:`TransportContract`: a transport backend's round trips (run, put, get), hostile names and
  errors; the built-in ``local`` transport and the ssh plugin run it.
* :class:`SchedulerContract`: the end-to-end contract, real jobs on each selected system using the
  scheduler::

    # tests/test_contract.py of expyre-mysched
    from expyre.testing import SchedulerContract

    class TestContract(SchedulerContract):
        scheduler = "mysched"

  The suite runs once per *selected* system whose ``scheduler`` is ``"mysched"``. Systems come from
  the config file ``$EXPYRE_PYTEST_CONFIG`` (default ``$HOME/.expyre/config.json``, as ExPyRe's
  README says) filtered by the regexp ``$EXPYRE_PYTEST_SYSTEMS`` (default: all); the embedded
  ``local`` system is always available. So a user points the project's tests at their own cluster
  exactly as CI points them at the clusters it brings up. With no matching system a test is
  skipped with the reason, except under ``CI=true``, where it fails (:func:`skip_or_fail`).

Helpers: :func:`isolated_root` (a fresh expyre root for a block or fixture, ``EXPYRE_ROOT``
restored afterwards), :func:`run_copy_back_drivers` (driver processes sharing one root, for the
copy-back tests of a system with a run directory), :func:`check_golden` / :func:`golden_header` (golden files, regenerated with
``EXPYRE_UPDATE_GOLDEN=1``), :func:`load_recorded` (a recorded command output file),
:class:`RecordingTransport` (canned results, commands recorded), :func:`wait_for`,
:class:`CallCounter`.
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
from .func import ExPyRe, ExPyReJobDiedError, ExPyReRemoteTraceback
from .layout import STARTED
from .poller import Poller
from .resources import Resources
from .system import close_all

__all__ = [
    "SchedulerContract",
    "OfflineSchedulerContract",
    "TransportContract",
    "RecordingTransport",
    "check_golden",
    "golden_header",
    "golden_job",
    "system_from_dict",
    "load_recorded",
    "test_config_path",
    "available_systems",
    "selected_systems",
    "system_transport",
    "skip_or_fail",
    "make_root",
    "isolated_root",
    "wait_for",
    "CallCounter",
    "queued_job_resources",
    "job_wait_for_file",
    "release_flag",
    "COPY_BACK_DRIVER",
    "copy_back_value",
    "run_copy_back_driver",
    "run_copy_back_drivers",
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


def system_transport(sysd: dict[str, Any]) -> str:
    """The transport a config.json system dict uses: its ``transport``, else ``local`` for
    ``"host": null`` and ``ssh`` otherwise."""
    return sysd.get("transport") or ("local" if sysd.get("host") is None else "ssh")


def selected_systems(scheduler: str | None = None, transport: str | None = None) -> dict[str, dict[str, Any]]:
    """Systems matching ``$EXPYRE_PYTEST_SYSTEMS`` (a regexp searched in the name; default all),
    optionally only those using ``scheduler`` / ``transport`` ("local" or "ssh").

    Systems whose scheduler or transport plugin is not installed are left out (logged): a plugin's
    tests, run with only the core and that plugin installed, use the systems it can reach alone
    (Slurm on this machine; the ``local`` scheduler over ssh); the combinations (Slurm behind ssh)
    are tested where both plugins are installed."""
    from . import plugins

    rx = re.compile(os.environ.get("EXPYRE_PYTEST_SYSTEMS") or ".*")
    installed = set(plugins.transports())
    schedulers = set(plugins.schedulers())
    out = {}
    for name, sysd in available_systems().items():
        if not rx.search(name):
            continue
        if scheduler is not None and sysd.get("scheduler") != scheduler:
            continue
        t = system_transport(sysd)
        if transport is not None and t != transport:
            continue
        if t not in installed or sysd.get("scheduler", "local") not in schedulers:
            import logging

            logging.getLogger(__name__).info("test system %r left out: its scheduler %r or transport %r is not installed",
                                             name, sysd.get("scheduler"), t)
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


# -- copy back: driver processes sharing one root -------------------------------------------------
#: A driver script: ``python script <system> <n calls> <size> <go file> <check interval>``. It waits
#: for the go file (so that all drivers start together; ``-``: no waiting), then constructs and starts the calls
#: ``copyback_<i>`` (the same in every driver) and gets their results: ``size`` bytes made from
#: ``i`` (:func:`copy_back_value`), which the job also announces on its stdout. Every failure
#: (an exception, a wrong value, a missing stdout) is caught and reported. The function is defined
#: here, in ``__main__``, so it travels by value (a remote Python needs only cloudpickle). Prints
#: one JSON line: ``{"ids": [...], "failures": [...]}``.
COPY_BACK_DRIVER = """
import json, os, sys, time, traceback
from expyre.func import ExPyRe


def copyback_blob(i, size):
    print(f"blob {i} of {size} bytes", flush=True)
    return (i.to_bytes(4, "big") * (size // 4 + 1))[:size]


system, n_calls, size, go, check = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
if go != "-":
    open(f"{go}.ready.{os.getpid()}", "w").close()
while go != "-" and not os.path.exists(go):
    time.sleep(0.005)
res = {"max_time": "10m", "n": (1, "tasks")}
failures, xprs = [], []
for i in range(n_calls):
    try:
        x = ExPyRe(f"copyback_{i}", copyback_blob, args=[i, size])
        x.start(resources=res, system_name=system, partial_node=True)
        xprs.append((i, x))
    except Exception as exc:
        failures.append(f"call {i} (construct/start): {type(exc).__name__}: {exc}")
for i, x in xprs:
    try:
        value = x.get_results(timeout=900, check_interval=check, quiet=True)
        want = (i.to_bytes(4, "big") * (size // 4 + 1))[:size]
        if value != want:
            failures.append(f"call {i} ({x.id}): wrong value of {len(value)} bytes")
        elif x.stdout != f"blob {i} of {size} bytes\\n":
            failures.append(f"call {i} ({x.id}): stdout {x.stdout!r} (a result without the output it vouches for)")
    except Exception as exc:
        failures.append(f"call {i} ({x.id}) get_results: {type(exc).__name__}: {exc}\\n{traceback.format_exc()[-1500:]}")
print(json.dumps({"ids": [x.id for _, x in xprs], "failures": failures}))
"""


def copy_back_value(i: int, size: int) -> bytes:
    """The value the ``copyback_<i>`` call of :data:`COPY_BACK_DRIVER` returns."""
    return (i.to_bytes(4, "big") * (size // 4 + 1))[:size]


def _copy_back_cmd(script: Path, system: str, n_calls: int, size: int, go: str, check: float) -> list[str]:
    import sys

    return [sys.executable, str(script), system, str(n_calls), str(size), go, str(check)]


def _copy_back_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRE_FAULT")}
    env.update(EXPYRE_ROOT=str(root), EXPYRE_PROGRESS="0", **(extra or {}))
    return env


def run_copy_back_driver(root: Path, workdir: Path, system: str, n_calls: int, size: int,
                         env: dict[str, str] | None = None, timeout: float = 900) -> Any:
    """Run :data:`COPY_BACK_DRIVER` once on ``root`` (``env`` added, e.g. ``EXPYRE_FAULT_POINT``);
    returns the :class:`subprocess.CompletedProcess`."""
    import subprocess

    script = workdir / "copy_back_driver.py"
    script.write_text(COPY_BACK_DRIVER)
    return subprocess.run(_copy_back_cmd(script, system, n_calls, size, "-", 0.2), env=_copy_back_env(root, env),
                          cwd=workdir, capture_output=True, text=True, timeout=timeout)


def run_copy_back_drivers(root: Path, workdir: Path, system: str, n_procs: int, n_calls: int, size: int,
                          timeout: float = 900) -> list[dict[str, Any]]:
    """Start ``n_procs`` :data:`COPY_BACK_DRIVER` processes on ``root`` at once (the same
    ``n_calls`` calls each); returns their JSON reports, after checking that each exited 0."""
    import subprocess

    script = workdir / "copy_back_driver.py"
    script.write_text(COPY_BACK_DRIVER)
    go = workdir / "copy_back_go"
    procs = [subprocess.Popen(_copy_back_cmd(script, system, n_calls, size, str(go), 0.1), env=_copy_back_env(root),
                              cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n_procs)]
    reports = []
    try:
        wait_for(lambda: len(list(workdir.glob(f"{go.name}.ready.*"))) >= n_procs or any(p.poll() is not None for p in procs),
                 300, "the drivers to be ready")
        go.touch()
        for p in procs:
            stdout, stderr = p.communicate(timeout=timeout)
            assert p.returncode == 0, f"driver exited {p.returncode}: {stderr[-3000:]}"
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return reports


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


def job_hold_memory(mib: int, seconds: float = 0.0) -> int:
    """Allocate ``mib`` MiB, touch every page (so that it is resident), hold it ``seconds``;
    return its size in bytes. For usage tests: the job's peak RSS is at least ``mib`` MiB."""
    buf = bytearray(mib * 1024 * 1024)
    for i in range(0, len(buf), 4096):
        buf[i] = 1
    time.sleep(seconds)
    return len(buf)


def check_job_usage(xpr: Any, mib: int, scheduler: bool, timeout: float = 120.0) -> dict:
    """Assert what a finished :func:`job_hold_memory` job of ``mib`` MiB recorded: the runner's
    peak RSS at least ``mib`` MiB and below 2 GiB, wall and elapsed times > 0; with
    ``scheduler``, also the scheduler's accounting (asked until its record is final, within
    ``timeout`` s; its peak memory checked the same way where it has one). Returns the usage."""
    import pytest

    u = xpr.usage(scheduler=False) or {}
    r = u.get("runner") or {}
    assert mib * 1024 <= r.get("peak_rss_kib", 0) < 2 * 1024 * 1024, u
    assert r["wall_time"] > 0 and r["end_time"] >= r["start_time"] > 0, u
    if not scheduler:
        return u
    deadline = time.monotonic() + timeout
    while "scheduler" not in u:
        if time.monotonic() > deadline:
            pytest.fail(f"job {xpr.id}: no scheduler usage after {timeout:g} s: {u}")
        time.sleep(1.0)
        u = xpr.usage() or {}
    s = u["scheduler"]
    assert s.get("elapsed", 0) > 0, u
    assert s.get("max_rss_kib") is not None or s.get("max_vmem_kib") is not None, u
    if s.get("max_rss_kib") is not None:
        assert mib * 1024 <= s["max_rss_kib"] < 2 * 1024 * 1024, u
    return u


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


def job_wait_for_flag(flag: str, timeout: float) -> str:
    """Return ``flag`` once that file (relative to the job's directory) exists; raise
    :class:`TimeoutError` after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while not os.path.exists(flag):
        if time.time() > deadline:
            raise TimeoutError(f"{flag} never appeared in {os.getcwd()}")
        time.sleep(0.1)
    return flag


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
        xpr = ExPyRe(name, fn, args=list(args), **kw)
        xpr.start(resources=self.resources, system_name=system_name, partial_node=True)
        return xpr

    def test_readme_example(self, expyre_root: Path, system_name: str) -> None:
        """ExPyRe's README example: a numpy sum in a job, its value, then marked processed."""
        np = pytest.importorskip("numpy")
        xpr = ExPyRe("test_task", np.sum, args=[np.ones((100, 50))], kwargs={"axis": 1})
        xpr.start(resources={**self.resources}, system_name=system_name, partial_node=True)
        result = xpr.get_results(timeout=self.timeout, check_interval=2)
        assert np.max(np.abs(result - [50.0] * 100)) == 0.0
        assert _config.db.get(xpr.id)["status"] == "succeeded"
        xpr.mark_processed()
        assert _config.db.get(xpr.id)["status"] == "processed"

    def test_remote_exception(self, expyre_root: Path, system_name: str) -> None:
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
        system = _config.get_system(system_name)
        xpr = ExPyRe("env", job_env)
        xpr.start(resources=self.resources, system_name=system_name, partial_node=True)
        env = xpr.get_results(timeout=self.timeout, check_interval=2)
        _, alloc = Resources.from_any(self.resources).find_nodes(system.partitions, partial_node=True)
        assert env["EXPYRE_NNODES"] == str(alloc.nnodes)
        assert env["EXPYRE_TOT_NCORES"] == str(alloc.tot_ncores)
        assert env["EXPYRE_TOT_NTASKS"] == str(alloc.tot_ntasks)
        assert env["EXPYRE_NCORES_PER_TASK"] == str(alloc.ncores_per_task)
        assert env["EXPYRE_NCORES_PER_NODE"] == str(alloc.ncores_per_node)

    def test_cancel_reports_died(self, expyre_root: Path, system_name: str) -> None:
        xpr = self._start("sleeper", job_sleep, system_name, args=[600])
        wait_for(lambda: _started(xpr), self.timeout, "the sleeping job to start")
        t0 = time.monotonic()
        xpr.cancel()
        with pytest.raises(ExPyReJobDiedError, match="without a result"):
            xpr.get_results(timeout=self.timeout, check_interval=2)
        assert _config.db.get(xpr.id)["status"] == "died"
        assert time.monotonic() - t0 < 120, "cancellation must be noticed promptly"

    def test_restart_reuses_job(self, expyre_root: Path, system_name: str) -> None:
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
        small_res, large_res = queued_job_resources() or [{"max_time": "5m", "n": (1, "nodes")}] * 2
        # the small job holds its resources until told to end (a fixed sleep may end before the
        # large job is even submitted, over a slow ssh connection)
        flag = "contract_test_go"
        small = ExPyRe("small", job_wait_for_flag, args=[flag, 4 * self.timeout])  # the test's waits, and more
        small.start(resources=small_res, system_name=system_name, header_extra=self.whole_node_header)
        system = _config.get_system(system_name)
        try:
            wait_for(lambda: _started(small), self.timeout, "the small job to start")
            large = ExPyRe("large", job_square, args=[3])
            large.start(resources=large_res, system_name=system_name, header_extra=self.whole_node_header)
            row = wait_for(lambda: (r := _poll(large))["remote_status"] not in (None, "submitted") and r,
                           self.timeout, "the scheduler to report the large job")
            assert row["status"] == "submitted", row
            assert row["remote_status"].startswith(("queued", "held")), row
            large.cancel()
            with pytest.raises(ExPyReJobDiedError):
                large.get_results(timeout=self.timeout, check_interval=2)
        finally:
            touched = system.transport.run(["touch", flag], cwd=system.remote_dir(small.stage_dir), timeout=60)
        assert touched.ok, touched.describe()
        assert small.get_results(timeout=self.timeout, check_interval=2) == flag

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
        explain = system.scheduler.explain_command(["1"])
        exclude = [" ".join(explain[:-1])] if explain else []
        status_calls = counter.count(lambda c: _is_status_call(c, status_argv, exclude))
        # every status query covered all jobs: never one query per job
        assert status_calls <= polls, (status_calls, polls)


def _is_status_call(command: Any, status_argv: list[str], exclude: Sequence[str] = ()) -> bool:
    text = command if isinstance(command, str) else " ".join(command)
    return status_argv[0] in text and "submit" not in text and not any(e in text for e in exclude)


def _poll_count(system: Any) -> int:
    return Poller.get(system, _config.db).count


def _poll(xpr: Any) -> dict:
    Poller.get(xpr.system, _config.db).refresh(max_age=0, force=True)
    return _config.db.get(xpr.id)


def _started(xpr: Any) -> bool:
    """The job's own runner has begun (not just the scheduler saying "running")."""
    row = _poll(xpr)
    if row["status"] != "started":
        return False
    return not xpr.system.shares_stage_dirs or (xpr.stage_dir / STARTED).exists()



#: the original name (kept for callers; do not import it by this name into a conftest: pytest
#: takes ``pytest_*`` names there for hooks)
pytest_config_path = test_config_path


# ---------------------------------------------------------------------------------------------
# the offline contract kit: recorded outputs, golden files, a recording transport
# ---------------------------------------------------------------------------------------------


def load_recorded(path: str | os.PathLike) -> "CommandResult":
    """A recorded command output file as the :class:`~expyre.types.CommandResult` a transport
    would have returned.

    Format: ``# key: value`` header lines (``argv`` and ``returncode`` are required; ``source`` should
    say where the output comes from: the scheduler version and the command; one ``stderr`` line per
    line of stderr), a line ``---``, then the command's stdout verbatim.
    """
    import shlex

    from .types import CommandResult

    path = Path(path)
    head, sep, stdout = path.read_text().partition("\n---\n")
    if not sep:
        raise ValueError(f"{path}: no '---' line between the '# key: value' header and the recorded stdout")
    meta: dict[str, str] = {}
    stderr: list[str] = []
    for line in head.splitlines():
        if not line.startswith("# "):
            raise ValueError(f"{path}: header line without '# ': {line!r}")
        key, _, value = line[2:].partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "stderr":
            stderr.append(value)
        else:
            meta[key] = value
    for required in ("argv", "returncode"):
        if required not in meta:
            raise ValueError(f"{path}: header lacks '# {required}: ...' (have: {', '.join(meta) or 'nothing'})")
    return CommandResult(shlex.split(meta["argv"]), int(meta["returncode"]), stdout,
                         "\n".join(stderr) + ("\n" if stderr else ""))


def check_golden(path: str | os.PathLike, text: str) -> None:
    """Assert that ``text`` equals the golden file ``path``; with ``EXPYRE_UPDATE_GOLDEN=1`` write it
    first (then review the diff). The one helper every golden header and script test goes through."""
    path = Path(path)
    if os.environ.get("EXPYRE_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} missing: run the test with EXPYRE_UPDATE_GOLDEN=1 and review it"
    expected = path.read_text()
    assert text == expected, (
        f"{path.name} differs from the golden file {path} (EXPYRE_UPDATE_GOLDEN=1 regenerates it; review the diff):\n"
        + "".join(__import__("difflib").unified_diff(expected.splitlines(True), text.splitlines(True), "golden", "now"))
    )


def system_from_dict(system: dict[str, Any], rundir: str | os.PathLike, name: str = "cluster") -> Any:
    """A :class:`~expyre.system.System` named ``name`` from a config.json system dict, without an
    expyre root (for offline tests: headers, scripts, requests)."""
    from .config_model import SystemConfig, converter
    from .system import System

    return System(name, converter.structure(dict(system), SystemConfig), Path(rundir))


def golden_job(system: Any, resources: dict[str, Any], *, job_id: str = "fit_ab12cd34", **find_kw: Any) -> "JobRequest":
    """The :class:`~expyre.types.JobRequest` the core would make for ``resources`` on ``system`` (a
    :class:`~expyre.system.System`), with fixed names so that golden files are stable."""
    from .resources import Resources
    from .script import JOB_STDERR, JOB_STDOUT, SCRIPT
    from .types import JobRequest

    res = Resources.from_any(resources)
    partition, alloc = res.find_nodes(system.partitions, **find_kw)
    return JobRequest(
        id=job_id, remote_dir=f"/scratch/me/_expyre/run_{job_id}", script=SCRIPT, stdout=JOB_STDOUT,
        stderr=JOB_STDERR, partition=partition, max_time=res.max_time, nodes=alloc,
        partial_node=bool(find_kw.get("partial_node")), system_name=system.name,
    )


def golden_header(system: dict[str, Any], resources: dict[str, Any], rundir: str | os.PathLike, *,
                  header_extra: Sequence[str] = (), **find_kw: Any) -> str:
    """The header of the job script the core writes for ``resources`` on a system configured by the
    config.json dict ``system`` (default lines, the system's, the partition's and ``header_extra``
    lines, then the ``expyre_modify_header`` hooks), one line each: what golden header files hold."""
    from .script import build_header

    sysobj = system_from_dict(system, rundir)
    return "\n".join(build_header(sysobj, golden_job(sysobj, resources, **find_kw), header_extra)) + "\n"


class RecordingTransport:
    """A stand-in transport for offline tests: records every command it is asked to run and answers
    with ``results`` (a function of the command, a list consumed in order, or one result for all;
    default: exit 0, no output)."""

    is_local = True
    command_timeout = None

    def __init__(self, results: Any = None) -> None:
        self.results = results
        self.calls: list[Any] = []
        self.host = None
        self.remsh_cmd = None

    def run(self, command: Any, **kw: Any) -> "CommandResult":
        from .types import CommandResult

        self.calls.append(command)
        r = self.results
        if callable(r):
            return r(command)
        if isinstance(r, list):
            if not r:
                raise AssertionError(f"RecordingTransport: no recorded result left for {command!r}")
            return r.pop(0)
        return r if r is not None else CommandResult(command, 0)

    def put(self, local_dirs: Sequence[Path], remote_parent: str) -> None:
        self.calls.append(("put", [str(d) for d in local_dirs], remote_parent))

    def get(self, remote_dirs: Sequence[str], local_parent: Path) -> None:
        self.calls.append(("get", list(remote_dirs), str(local_parent)))

    def probe(self, python_cmd: str, commands: Sequence[str] = ()) -> None:
        pass

    def python_version(self, python_cmd: str, commands: Sequence[str] = ()) -> tuple[int, int] | None:
        return None

    def close(self) -> None:
        pass


def _command_text(command: Any) -> str:
    return command if isinstance(command, str) else " ".join(str(c) for c in command)


class OfflineSchedulerContract:
    """A scheduler backend's contract, checked from recorded outputs of its commands: no cluster
    needed, so it runs in every test run of the plugin (and of a third party's plugin).

    Subclass it in the plugin's tests and fill in what the backend's scheduler prints::

        class TestOfflineContract(OfflineSchedulerContract):
            backend = MySched
            state_codes = {"Q": JobState.QUEUED, "R": JobState.RUNNING, ...}   # every documented code

            def status_output(self, job_id, code):
                return load_recorded(HERE / "recorded" / "status.txt") with the code put in

            def submit_output(self):
                return load_recorded(HERE / "recorded" / "submit.txt"), "4242"

    It checks that every documented state code maps to its :class:`~expyre.types.JobState`, that an
    unknown code maps to ``UNKNOWN`` and never raises, that ids the scheduler does not list are left
    out, that the recorded submit output gives its id (and a recorded failure raises
    :class:`~expyre.types.SubmitError` quoting the scheduler), that cancel, hold and release of many
    ids are ONE command, that array element ids are distinct, stable and accepted by the control and
    status commands, and that the headers for :attr:`golden_headers` match their golden files
    (:func:`check_golden`).
    """

    #: the :class:`~expyre.hookspecs.Scheduler` subclass under test
    backend: ClassVar[type]
    #: the system's ``scheduler_options`` (structured into ``backend.Options`` when it has one)
    scheduler_options: ClassVar[dict[str, Any]] = {}
    #: every state code the scheduler documents -> the state it means
    state_codes: ClassVar[dict[str, Any]] = {}
    #: a state code the scheduler does not document (must map to ``UNKNOWN``)
    unknown_state_code: ClassVar[str] = "XQZ"
    #: a job id as the scheduler prints it, used with :meth:`status_output`
    job_id: ClassVar[str] = "4242"
    #: how many ids the batched control commands are checked with
    many: ClassVar[int] = 50
    #: what the submission of an array prints as its id (needed when the backend supports arrays)
    array_id: ClassVar[str | None] = None
    #: the number of elements of that array
    array_size: ClassVar[int] = 5
    #: golden header files: file name (in :attr:`golden_dir`) -> (config.json system dict, resources)
    golden_headers: ClassVar[dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {}
    golden_dir: ClassVar[Path | None] = None

    # -- what the author supplies ---------------------------------------------------------------
    def status_output(self, job_id: str, code: str) -> "CommandResult":
        """A recorded output of the status command that lists ``job_id`` in the state ``code``."""
        raise NotImplementedError(f"{type(self).__name__} must define status_output(job_id, code) from a recorded output")

    def submit_output(self) -> "tuple[CommandResult, str]":
        """A recorded output of a successful submit command and the job id it announces."""
        raise NotImplementedError(f"{type(self).__name__} must define submit_output() from a recorded output")

    def submit_failure_output(self) -> "CommandResult | None":
        """A recorded output of a refused submission (None: not checked)."""
        return None

    def array_status_output(self, element_ids: Sequence[str]) -> "CommandResult | None":
        """A recorded status output listing these array elements (None: not checked)."""
        return None

    def job_ids(self, n: int) -> list[str]:
        """``n`` distinct job ids as the scheduler prints them."""
        return [str(4200 + i) for i in range(n)]

    # -- machinery ------------------------------------------------------------------------------
    def scheduler(self) -> Any:
        from .types import SchedulerContext

        options: Any = dict(self.scheduler_options)
        if getattr(self.backend, "Options", None) is not None:
            from .config_model import converter

            options = converter.structure(options, self.backend.Options)
        return self.backend(SchedulerContext(system_name="cluster", rundir="expyre_rundir", host=None, options=options))

    def _request(self) -> "JobRequest":
        from .layout import JOB_STDERR, JOB_STDOUT, SCRIPT
        from .types import JobRequest, NodeAllocation
        from .units import Duration

        alloc = NodeAllocation(nnodes=1, ncores_per_node=1, tot_ncores=1, tot_ntasks=1, ncores_per_task=1, ntasks_per_node=1)
        return JobRequest(id="contract_ab12cd34", remote_dir="expyre_rundir/run_contract_ab12cd34",
                          script=SCRIPT, stdout=JOB_STDOUT, stderr=JOB_STDERR,
                          partition="debug", max_time=Duration.parse("10m"), nodes=alloc, system_name="cluster")

    # -- the contract ---------------------------------------------------------------------------
    def test_every_documented_state_code_maps(self) -> None:
        assert self.state_codes, f"{type(self).__name__}.state_codes must list every state code the scheduler documents"
        sched = self.scheduler()
        wrong = {}
        for code, expected in self.state_codes.items():
            got = sched.parse_status(self.status_output(self.job_id, code), [self.job_id])
            state = got[self.job_id].state if self.job_id in got else "<not reported>"
            if state != expected:
                wrong[code] = (state, expected)
        assert not wrong, f"state codes mapped wrongly (got, expected): {wrong}"

    def test_unknown_state_code_is_unknown(self) -> None:
        from .types import JobState

        assert self.unknown_state_code not in self.state_codes
        got = self.scheduler().parse_status(self.status_output(self.job_id, self.unknown_state_code), [self.job_id])
        assert got[self.job_id].state == JobState.UNKNOWN, got

    def test_ids_not_listed_are_left_out(self) -> None:
        code = next(iter(self.state_codes), self.unknown_state_code)
        other = next(i for i in self.job_ids(3) if i != self.job_id)
        got = self.scheduler().parse_status(self.status_output(self.job_id, code), [self.job_id, other])
        assert self.job_id in got and other not in got, got

    def test_recorded_submit(self) -> None:
        from .types import SubmitError

        sched = self.scheduler()
        result, expected_id = self.submit_output()
        assert sched.parse_submit(result, self._request()) == expected_id
        failure = self.submit_failure_output()
        if failure is not None:
            with pytest.raises(SubmitError) as info:
                sched.parse_submit(failure, self._request())
            said = (failure.stderr.strip() or failure.stdout.strip()).splitlines()
            assert said and said[-1] in str(info.value), f"the error must quote the scheduler: {info.value}"

    @pytest.mark.parametrize("op", ["cancel", "hold", "release"])
    def test_control_of_many_ids_is_one_command(self, op: str) -> None:
        sched = self.scheduler()
        ids = self.job_ids(self.many)
        assert len(set(ids)) == len(ids)
        transport = RecordingTransport()
        sched.control(transport, op, ids)
        assert len(transport.calls) == 1, f"{op} of {len(ids)} jobs ran {len(transport.calls)} commands"
        text = _command_text(transport.calls[0])
        missing = [i for i in ids if i not in text]
        assert not missing, f"{op} command lacks ids {missing[:5]}: {text[:300]}"
        transport = RecordingTransport()
        sched.control(transport, op, [])
        assert transport.calls == [], "no ids: no command"

    def test_status_of_many_ids_is_one_command(self) -> None:
        sched = self.scheduler()
        ids = self.job_ids(self.many)
        text = _command_text(sched.status_command(ids))
        missing = [i for i in ids if i not in text]
        assert not missing or all(i not in text for i in ids), f"status command lists some ids but not {missing[:5]}"

    def test_array_element_ids(self) -> None:
        sched = self.scheduler()
        if not sched.arrays_supported():
            with pytest.raises(NotImplementedError):
                sched.array_element_id("1", 0)
            return
        assert self.array_id is not None, f"{type(self).__name__}.array_id: what the submission of an array prints"
        n = self.array_size
        ids = [sched.array_element_id(self.array_id, i) for i in range(n)]
        assert len(set(ids)) == n, f"element ids are not distinct: {ids}"
        assert ids == [sched.array_element_id(self.array_id, i) for i in range(n)], "element ids must be stable"
        assert sched.array_header(self._request(), n), "array_header must give directive lines"
        transport = RecordingTransport()
        sched.control(transport, "cancel", ids)
        assert len(transport.calls) == 1 and all(i in _command_text(transport.calls[0]) for i in ids), transport.calls
        recorded = self.array_status_output(ids)
        if recorded is not None:
            got = sched.parse_status(recorded, ids)
            assert set(got) == set(ids), f"status of the elements {ids} reported as {sorted(got)}"

    def test_golden_headers(self, tmp_path: Path) -> None:
        if not self.golden_headers:
            return
        assert self.golden_dir is not None, f"{type(self).__name__}.golden_dir: where the golden header files are"
        for name, (system, resources) in self.golden_headers.items():
            check_golden(Path(self.golden_dir) / name, golden_header(system, resources, tmp_path, partial_node=True))


# ---------------------------------------------------------------------------------------------
# the transport contract
# ---------------------------------------------------------------------------------------------

#: file names a transport must carry unharmed (spaces, quotes, shell syntax, globs, a leading dash,
#: non-ASCII)
HOSTILE_NAMES = ["with space", "quote'single", 'quote"double', "$(touch PWNED)", "`touch PWNED`", ";touch PWNED;",
                 "dollar$HOME", "glob*?[x]", "-leading-dash", "ünïcødé", "new\nline", "back\\slash", "amp&pipe|"]


class TransportContract:
    """A transport backend's contract: commands and files make round trips unharmed, hostile names
    included, and failures surface as :class:`~expyre.types.TransportError`.

    Subclass it and provide two fixtures: ``transport`` (a ready instance of the backend) and
    ``remote_dir`` (a fresh, empty directory on its host, as a path the transport accepts:
    absolute, or relative to the remote home)::

        class TestLocalTransportContract(TransportContract):
            @pytest.fixture
            def transport(self):
                return LocalTransport(None)

            @pytest.fixture
            def remote_dir(self, tmp_path):
                return str(tmp_path / "remote")
    """

    hostile_names: ClassVar[list[str]] = HOSTILE_NAMES
    #: a command timeout the contract may wait for (seconds)
    short_timeout: ClassVar[float] = 2.0

    def test_run_argv_is_not_interpreted(self, transport: Any) -> None:
        for name in self.hostile_names:
            r = transport.run(["printf", "%s\\n", name], timeout=60)
            assert r.ok and r.stdout == name + "\n", (name, r)

    def test_run_script_exit_code_and_streams(self, transport: Any) -> None:
        r = transport.run("echo out; echo err >&2; exit 3", timeout=60)
        assert r.returncode == 3 and not r.ok
        assert r.stdout == "out\n" and r.stderr.strip().endswith("err"), r

    def test_run_input_and_cwd(self, transport: Any, remote_dir: str) -> None:
        assert transport.run(["mkdir", "-p", remote_dir], timeout=60).ok
        r = transport.run(["cat"], input="to stdin\nline 2\n", timeout=60)
        assert r.stdout == "to stdin\nline 2\n", r
        r = transport.run(["bash", "-c", "pwd"], cwd=remote_dir, timeout=60)
        assert r.ok and r.stdout.strip().endswith(remote_dir.rstrip("/").split("/")[-1]), r

    def test_put_get_round_trip_with_hostile_names(self, transport: Any, remote_dir: str, tmp_path: Path) -> None:
        out = tmp_path / "out"
        back = tmp_path / "back"
        out.mkdir()
        back.mkdir()
        dirs = []
        for i, name in enumerate(self.hostile_names):
            d = out / f"d{i} {name}"
            d.mkdir()
            (d / name).write_text(f"content {i} of {name}\n")
            (d / "sub").mkdir()
            (d / "sub" / "nested.txt").write_text("nested\n")
            dirs.append(d)
        transport.put(dirs, remote_dir)
        for d in dirs:
            remote_file = f"{remote_dir}/{d.name}/{self.hostile_names[dirs.index(d)]}"
            r = transport.run(["cat", remote_file], timeout=60)
            assert r.ok and r.stdout == (d / self.hostile_names[dirs.index(d)]).read_text(), (remote_file, r)
            # the job writes into its directory; get brings that back
            assert transport.run(["bash", "-c", 'echo result > "$1/result.txt"', "_", f"{remote_dir}/{d.name}"],
                                 timeout=60).ok
        transport.get([f"{remote_dir}/{d.name}" for d in dirs], back)
        for d in dirs:
            name = self.hostile_names[dirs.index(d)]
            assert (back / d.name / name).read_text() == (d / name).read_text()
            assert (back / d.name / "sub" / "nested.txt").read_text() == "nested\n"
            assert (back / d.name / "result.txt").read_text() == "result\n"

    def test_hostile_names_are_never_executed(self, transport: Any, remote_dir: str) -> None:
        assert transport.run(["mkdir", "-p", remote_dir], timeout=60).ok
        r = transport.run(["touch", "--", *self.hostile_names], cwd=remote_dir, timeout=60)
        assert r.ok, r
        listed = transport.run(["ls", "-A"], cwd=remote_dir, timeout=60).stdout.splitlines()
        assert "PWNED" not in listed, "a name was executed by a shell"
        assert len(listed) >= len(self.hostile_names), listed

    def test_timeout_is_a_transport_error(self, transport: Any) -> None:
        from .types import TransportError

        t0 = time.monotonic()
        with pytest.raises(TransportError):
            transport.run(["sleep", "600"], timeout=self.short_timeout)
        assert time.monotonic() - t0 < 300, "the command must be given up on at its timeout"

    def test_missing_command_is_a_result_or_transport_error(self, transport: Any) -> None:
        from .types import TransportError

        try:
            r = transport.run(["expyre-contract-no-such-command"], timeout=60)
        except TransportError as exc:
            assert "expyre-contract-no-such-command" in str(exc)
        else:
            assert r.returncode == 127, r
