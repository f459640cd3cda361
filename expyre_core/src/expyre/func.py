"""ExPyRe: evaluate a Python function as a batch job and bring its return value back.

Life of a job (the statuses of the jobs database)::

    created --start()--> submitted --runner begins--> started --> succeeded | failed | died
                                                                       |
                                              mark_processed() --> processed --clean()--> cleaned

The stage directory ``<root>/run_<id>`` (mode 0700) is the truth: the pickled call, the job script,
and the runner's marker files (created by atomic rename). The jobs database indexes them.

Restart: the constructor hashes the function (its identity *and* its code), the arguments (except
``hash_ignore``) and the input files (names and contents); with ``try_restart_from_prev`` an
identical call finds the existing job in any status that can still give results (created,
submitted, started, succeeded), and ``start()``/``get_results()`` pick up where it was. The
arguments are pickled exactly once, streamed to the stage directory through the hash.

:class:`ExPyRe` is a facade (see docs/architecture.md): it checks its arguments and holds a job's
state; the work is done by the services :mod:`expyre.digest` and :mod:`expyre.staging` (creating
the job), :mod:`expyre.submit` (starting it), :mod:`expyre.poller` and :mod:`expyre.results`
(waiting for it and reading its outcome). The exceptions live in :mod:`expyre.errors`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from . import _faults, config, control, poller, results, shipping, staging, submit, usage as _usage
from .errors import (  # re-exported: their documented home is expyre.func
    ExPyReJobDied,  # noqa: F401 - the original's name
    ExPyReJobDiedError,
    ExPyReRemoteTraceback,
    ExPyReResultError,
    ExPyReTimeoutError,
    RemoteBaseException,
    RemoteError,
)
from .job import JobHandle
from .jobsdb import STATUS_GROUPS
from .layout import STAGE_DIR_PREFIX, TASK
from .names import make_job_id
from .poller import Poller
from .progress import Waiting
from .resources import Resources, parse_env_vars
from .stage_records import record_status
from .units import Duration

if TYPE_CHECKING:
    from .hookspecs import ControlOp

__all__ = [
    "ExPyRe",
    "ExPyReJobDiedError",
    "ExPyReTimeoutError",
    "ExPyReResultError",
    "ExPyReRemoteTraceback",
    "RemoteError",
]

logger = logging.getLogger(__name__)
timing = logging.getLogger("expyre.timing")
if os.environ.get("EXPYRE_TIMING_VERBOSE"):
    _h = logging.StreamHandler(sys.stderr)
    _h.setFormatter(logging.Formatter("expyre timing %(created).3f %(message)s"))
    timing.addHandler(_h)
    timing.setLevel(logging.DEBUG)


#: seconds within which :meth:`ExPyRe.refresh` reuses the last shared poll of a system (default)
REFRESH_MAX_AGE = 1.0

#: the former private name of :class:`expyre.poller.Poller`, for callers not yet moved to it
_Poller = Poller


class ExPyRe(JobHandle):
    """A function call to evaluate as a batch job.

    :param name: job name (any text; the job id and file names derive a safe form of it).
    :param function: the callable (also accepted as the second positional argument).
    :param args: positional arguments.
    :param kwargs: keyword arguments.
    :param input_files: files/directories (globs allowed) copied into the job's directory; relative
        paths keep their relative path (no ``..``), absolute ones land at its top.
    :param output_files: files (globs, relative) copied back to the current directory with the results.
    :param env_vars: ``"NAME=value"`` or ``"NAME"`` (value taken from this environment now).
    :param pre_run_commands: shell lines run before the function (after the system's ``commands``).
    :param post_run_commands: shell lines run after it.
    :param try_restart_from_prev: reuse an identical previous job (see module docs).
    :param hash_ignore: positions (int) or keyword names (str) of arguments left out of the hash.
    :param ship_modules: copy the user's own modules the call needs (not installed: e.g. a module
        next to the script) into the job's directory, where the job imports them
        (:mod:`expyre.shipping`); default ``$EXPYRE_SHIP_MODULES`` (``0`` turns it off), else True.
    """

    def __init__(
        self,
        name: str,
        function: Callable[..., Any] | None = None,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        input_files: Iterable[str | os.PathLike[str]] = (),
        output_files: Iterable[str] = (),
        env_vars: Iterable[str] = (),
        pre_run_commands: Iterable[str] = (),
        post_run_commands: Iterable[str] = (),
        try_restart_from_prev: bool = True,
        hash_ignore: Iterable[int | str] = (),
        ship_modules: bool | None = None,
        _from_db_info: Mapping[str, Any] | None = None,
    ) -> None:
        self._stdout: str | None = None
        self._stderr: str | None = None
        self.recreated = False
        if _from_db_info is not None:
            self._load_row(_from_db_info)
            self.recreated = True
            return
        t0 = time.monotonic()
        if not isinstance(name, str) or not name:
            raise ValueError(f"job name must be a non-empty string, got {name!r}")
        if function is None or not callable(function):
            raise TypeError(f"ExPyRe({name!r}): function must be callable, got {function!r}")
        args = list(args)
        kwargs = dict(kwargs or {})
        hash_ignore = list(hash_ignore)
        for h in hash_ignore:
            if isinstance(h, bool) or not isinstance(h, (int, str)):
                raise TypeError(f"hash_ignore entries are argument positions (int) or keyword names (str), got {h!r}")
        output_files = [str(f) for f in output_files]
        for f in output_files:
            if f.startswith("/") or ".." in Path(f).parts:
                raise ValueError(f"output file {f!r}: must be a relative path without '..'")
        env = parse_env_vars(env_vars)
        inputs = staging.expand_inputs(input_files)
        meta = {
            "name": name,
            "env_vars": env,
            "pre_run_commands": list(pre_run_commands),
            "post_run_commands": list(post_run_commands),
            "output_files": output_files,
            "input_files": [str(rel) for _, rel in inputs],
            "cwd": str(Path.cwd()),
        }

        ship = shipping.ship_enabled(ship_modules)
        staged = staging.stage_call(config.root, name, function, args, kwargs, hash_ignore, inputs, meta,
                                    ship_modules=ship)

        def place() -> tuple[str, Path]:
            job_id = make_job_id(name)
            stage = config.root / f"{STAGE_DIR_PREFIX}{job_id}"
            os.rename(staged.tmp, stage)
            _faults.point("create_renamed")
            return job_id, stage

        row, reused = config.db.create_or_reuse(name, staged.digest, meta["cwd"], try_restart_from_prev, place)
        _faults.point("create_recorded")
        if reused:
            stage = Path(row["from_dir"])
            if not (stage / TASK).exists() and row["status"] == "created":
                # a previous run died between staging and recording: repair with our identical copy
                staging.replace_incomplete(staged, stage)
            else:
                staged.discard()
            self.recreated = True
            logger.info("job %r: reusing %s (status %s)", name, row["id"], row["status"])
        self._load_row(row)
        timing.debug("%s: constructor done in %.3f s", name, time.monotonic() - t0)

    # -- state (see JobHandle: reload(), system) --------------------------------------------
    @staticmethod
    def from_jobsdb(db_jobs: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list["ExPyRe"]:
        """ExPyRe objects for rows returned by ``expyre.config.db.jobs(...)``."""
        if isinstance(db_jobs, Mapping):
            db_jobs = [db_jobs]
        return [ExPyRe(j["name"], _from_db_info=j) for j in db_jobs]

    # -- start ---------------------------------------------------------------------------------
    def start(
        self,
        resources: Resources | Mapping[str, Any],
        system_name: str | None = None,
        header_extra: Sequence[str] = (),
        exact_fit: bool = True,
        partial_node: bool = False,
        python_cmd: str | None = None,
        force_rerun: bool = False,
    ) -> None:
        """Submit the job (a job recreated from an earlier identical call is not submitted again).

        :param resources: a :class:`~expyre.resources.Resources` or a dict of its arguments.
        :param system_name: a system of config.json; default ``$EXPYRE_SYS``, else ``local``.
        :param header_extra: extra header lines (formatted with the header keys).
        :param exact_fit: only partitions whose nodes the tasks fill exactly.
        :param partial_node: allow less than a whole node (overrides ``exact_fit``).
        :param python_cmd: the job's Python (default: the system's ``python_cmd``; for
            ``"host": null`` this interpreter, else ``python3``).
        :param force_rerun: submit again even if this job already ran (earlier outputs are kept
            in ``_expyre_prev_<n>/`` inside the stage directory).
        """
        submit.start_one(self, resources, system_name=system_name, header_extra=header_extra, exact_fit=exact_fit,
                         partial_node=partial_node, python_cmd=python_cmd, force_rerun=force_rerun)

    @staticmethod
    def start_many(xprs: Sequence["ExPyRe"], resources: Resources | Mapping[str, Any], system_name: str | None = None,
                   **start_kw: Any) -> dict[str, BaseException]:
        """:meth:`start` for many jobs of one system, with ONE copy of all their stage directories
        to the executing host (one rsync over ssh) before they are submitted one by one.

        Jobs that need no submission (already submitted, finished, or being submitted by another
        process) are skipped as by :meth:`start`. Takes the keyword arguments of :meth:`start`.

        :return: the exception of each job (by id) whose preparation or submission failed; the
            other jobs are submitted regardless.
        """
        return submit.start_many(xprs, resources, system_name, **start_kw)

    @staticmethod
    def start_array(xprs: Sequence["ExPyRe"], resources: Resources | Mapping[str, Any], system_name: str | None = None,
                    **start_kw: Any) -> dict[str, BaseException]:
        """:meth:`start_many`, submitting the jobs as scheduler job arrays: one submission (one
        ``sbatch --array``, ``qsub -t``, ``qsub -J``) per array of at most the system's array size
        limit (see ``System.array_limit``). Each element stays an ordinary job (its own stage
        directory, hash, jobs-database row, restart, status and cancel, by the element's own
        scheduler id). All stage directories are copied in ONE operation. Systems whose scheduler
        has no arrays fall back to :meth:`start_many`.

        :return: the exception of each job (by id) whose preparation or submission failed.
        """
        return submit.start_array(xprs, resources, system_name, **start_kw)

    # -- results -------------------------------------------------------------------------------
    def get_results(
        self,
        timeout: float | str | None = 3600,
        check_interval: float = 30,
        sync: bool = True,
        quiet: bool = False,
        verbose: bool = False,
    ) -> Any:
        """Wait for the job and return the function's value.

        The captured output of the function is then in :attr:`stdout` and :attr:`stderr`, and the
        ``output_files`` are copied to the current directory.

        An identical call being submitted by another process (its ``start()`` claimed it first) is
        waited for; if that process is gone before the scheduler has the job, this one takes the
        submission over (looking the job up by name first), with the arguments of its own
        :meth:`start`.

        :param timeout: seconds (or a time string) to wait; None or <= 0 waits for ever.
        :param check_interval: the longest wait between checks (checks start fast and back off).
        :param sync: poll the scheduler and fetch remote files (False: only look for results here).
        :param quiet: no progress display.
        :param verbose: accepted for the API of ExPyRe's README; no effect.
        :raises RuntimeError: the job was never started (:meth:`start` not called, here or by a
            process that is still submitting it).
        :raises TypeError: an unknown keyword argument (named in the message).
        :raises ExPyReTimeoutError: (a ``TimeoutError``) the job did not finish within ``timeout``.
        :raises ExPyReJobDiedError: the job ended without a result.
        :raises Exception: the function's own exception, re-raised with its remote traceback.
        """
        if self.status in ("processed", "cleaned"):
            raise RuntimeError(f"job {self.id} has status {self.status}; its results are no longer available")
        if timeout is not None and not isinstance(timeout, (int, float)):
            timeout = Duration.parse(timeout).seconds
        deadline = None if timeout is None or timeout <= 0 else time.monotonic() + float(timeout)
        self.reload()
        if self.status == "created":  # being submitted by another process (waited for), or never started
            submit.await_submission(self, deadline, timeout)
        system = self.system
        shared_poll = Poller.get(system, config.db)
        wait = 0.02 if system.shares_stage_dirs else min(1.0, check_interval)
        outcome = None
        with Waiting(f"job {self.name}", enabled=not quiet) as progress:
            while True:
                outcome = results.outcome_files(self.stage_dir)
                if outcome is None and sync:
                    shared_poll.refresh(max_age=wait)
                    outcome = poller.evaluate(self, shared_poll)
                if outcome is not None:
                    break
                if self.system_name is not None and self.system_name != system.name:
                    # another process was still submitting it when this wait began: its system now
                    system = self.system
                    shared_poll = Poller.get(system, config.db)
                if deadline is not None and time.monotonic() >= deadline:
                    raise ExPyReTimeoutError(
                        f"job {self.id} not finished after {timeout} s (status {self.status}, "
                        f"scheduler: {config.db.get(self.id)['remote_status']}); it keeps running: call get_results() again"
                    )
                if progress.enabled:  # the scheduler's word costs a DB read: only for the display
                    progress.update(f"{self.status} ({(config.db.get(self.id) or {}).get('remote_status') or ''})")
                sleep = wait if deadline is None else max(0.0, min(wait, deadline - time.monotonic()))
                time.sleep(sleep)
                wait = min(check_interval, wait * 1.5)
        return results.finish(self, outcome)

    # -- live state ----------------------------------------------------------------------------
    def refresh(self, max_age: float | None = None) -> str:
        """Bring :attr:`status` up to date and return it: ``submitted`` while queued, ``started``
        once the job runs, ``succeeded``/``failed`` once its outcome file is here (the value is
        read by :meth:`get_results`), ``died``. It costs one SHARED poll of the job's system: one
        status query (one round trip on a remote host) serves every job of that system in this
        process, and is not repeated within ``max_age`` seconds (default 1 s; never less than the
        scheduler's ``min_poll_interval``), so refreshing many jobs in a loop polls once (and
        :meth:`refresh_many` polls once per system, whatever the time). Between refreshes,
        :attr:`status` is what the jobs database recorded last.

        Example::

            xpr.start(resources={"max_time": "1h", "n": (1, "tasks")}, system_name="local")
            while xpr.refresh() in ("submitted", "started"):
                print(xpr.status, xpr.tail(3))
                time.sleep(5)
        """
        return ExPyRe.refresh_many([self], max_age=REFRESH_MAX_AGE if max_age is None else max_age)[0]

    @staticmethod
    def refresh_many(xprs: Sequence["ExPyRe"], max_age: float = 0.0) -> list[str]:
        """:meth:`refresh` of many jobs: ONE shared poll per system for all of them (reusing
        one younger than ``max_age`` seconds, or than the scheduler's ``min_poll_interval``).
        Returns their statuses, in order."""
        from collections import defaultdict

        groups: dict[str, list[ExPyRe]] = defaultdict(list)
        for x in xprs:
            x.reload()
            if x.status in ("submitted", "started") and x.system_name:
                groups[x.system_name].append(x)
        for name, group in groups.items():
            shared = Poller.get(config.get_system(name), config.db)
            shared.refresh(max_age=float(max_age))
            for x in group:
                outcome = poller.evaluate(x, shared)
                if outcome in ("succeeded", "failed"):
                    config.db.update(x.id, status=outcome)
                    _usage.record_job_usage(x, outcome)
                    x.reload()
        return [x.status for x in xprs]

    def _live_output(self, stream: str, tail_lines: int | None = None) -> str | None:
        from .logs import JobLogs

        if self.status == "created":
            return None
        r = JobLogs(self.id, stream, function_only=True).read(tail_lines=tail_lines)
        if not r.present:
            return None
        return "".join(text for _, text in r.chunks)

    def _quiet_live_output(self, stream: str) -> str | None:
        """:meth:`_live_output` for the attributes: an attribute read never raises; what could not
        be read (a refused stage directory, an unreachable host) is logged and gives None."""
        try:
            return self._live_output(stream)
        except Exception as exc:  # noqa: BLE001 - read_output()/tail() raise it
            logger.info("job %s: its %s cannot be read now: %s", self.id, stream, exc)
            return None

    def read_output(self, stderr: bool = False) -> str | None:
        """The function's output so far (``stderr``: its standard error), read where the job runs:
        the stage directory, or over the system's transport (one command) on a remote host; None
        before the job has started writing it. :class:`expyre.logs.JobLogs` reads the job
        script's output too (``xpr logs``)."""
        return self._live_output("stderr" if stderr else "stdout")

    def tail(self, n: int = 10, stderr: bool = False) -> str:
        """The last ``n`` lines of the function's output so far (``stderr``: of its standard
        error), read as :meth:`read_output` does (one command on a remote host); "" when nothing
        was written yet.

        Example: ``print(xpr.tail(5))`` while the job runs.
        """
        return self._live_output("stderr" if stderr else "stdout", tail_lines=int(n)) or ""

    @property
    def stdout(self) -> str | None:
        """What the function wrote to its standard output: after :meth:`get_results` the whole
        of it; before, the output so far (:meth:`read_output`: each access reads it again, one
        command on a remote host); None when the job has not started writing it, or when it
        cannot be read now (logged; :meth:`read_output` raises the error instead)."""
        if self._stdout is not None:
            return self._stdout
        return self._quiet_live_output("stdout")

    @stdout.setter
    def stdout(self, value: str | None) -> None:
        self._stdout = value

    @property
    def stderr(self) -> str | None:
        """As :attr:`stdout`, for the function's standard error."""
        if self._stderr is not None:
            return self._stderr
        return self._quiet_live_output("stderr")

    @stderr.setter
    def stderr(self, value: str | None) -> None:
        self._stderr = value

    def job_script(
        self,
        resources: Resources | Mapping[str, Any],
        system_name: str | None = None,
        header_extra: Sequence[str] = (),
        exact_fit: bool = True,
        partial_node: bool = False,
        python_cmd: str | None = None,
    ) -> str:
        """The job script :meth:`start` would write and submit with the same arguments (header
        with the resources, the system's lines, the environment, the runner call), byte for byte,
        without writing or submitting anything.

        :raises ValueError: no partition of the system fits ``resources``, or the scheduler
            refuses the request (as :meth:`start` would).

        Example: ``print(xpr.job_script({"max_time": "1h", "n": (4, "tasks")}, system_name="archer2"))``
        """
        return submit.render_script(self, resources, system_name, header_extra=header_extra, exact_fit=exact_fit,
                                    partial_node=partial_node, python_cmd=python_cmd)[3]

    def usage(self, scheduler: bool = True) -> dict[str, Any] | None:
        """What the finished job used, as recorded in the jobs database (``xpr show`` prints it):
        ``{"runner": {...}, "scheduler": {...}}`` (see ``expyre.usage``), None when nothing is
        recorded. The runner's record is taken from the stage directory if not yet recorded.

        :param scheduler: when the scheduler's numbers are not recorded yet, ask its accounting
            records (one command; they may lag the job's end by seconds: ask again later).
        """
        row = self.reload()
        u = _usage.of_row(row) or {}
        if "runner" not in u and row["status"] in _usage.FINAL:
            _usage.record_runner(config.db, self.id, self.stage_dir)
        if scheduler and "scheduler" not in u and row["status"] in _usage.FINAL:
            _usage.collect_scheduler([row], config.db)
        return _usage.of_row(config.db.get(self.id) or {})

    # -- bookkeeping ---------------------------------------------------------------------------
    def mark_processed(self) -> None:
        """Record that the results were used: an identical call will now make a new job."""
        record_status(self.stage_dir, "processed")
        config.db.update(self.id, status="processed")
        self.status = "processed"

    def cancel(self) -> None:
        """Cancel the job in its scheduler (no-op if it already finished; a job not submitted yet
        is marked died and never submitted). :func:`expyre.control.control`, as ``xpr cancel``."""
        self._control("cancel")

    def hold(self) -> None:
        """Hold the queued job in its scheduler (it will not start until :meth:`release`).

        :raises expyre.control.ControlError: the job is not submitted or already ended.
        """
        self._control("hold")

    def release(self) -> None:
        """Release a held job.

        :raises expyre.control.ControlError: the job is not submitted or already ended.
        """
        self._control("release")

    def _control(self, op: "ControlOp") -> None:
        control.control(op, [self.id], strict=True)
        self.reload()

    def clean(self, wipe: bool = False, dry_run: bool = False, verbose: bool = False) -> list[str]:
        """Free the job's disk space, here and on the remote host; status becomes ``cleaned``.

        :param wipe: remove the whole stage directories (default: only the pickled call and result).
        :param dry_run: only return what would be removed.
        :return: the paths removed (or that would be).
        """
        return staging.clean(self, wipe=wipe, dry_run=dry_run)
