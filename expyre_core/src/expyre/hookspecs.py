"""The expyre plugin contract.

A plugin is a module (or object) registered under the ``expyre`` entry-point group::

    # pyproject.toml of a plugin distribution "expyre-mysched"
    [project.entry-points.expyre]
    mysched = "expyre_mysched"

It implements one or more of the hooks below with ``@expyre.hookimpl``. Schedulers and transports
are *registered* (``expyre_register_schedulers`` / ``expyre_register_transports``) as named backend
classes; the operations of the design card are their methods, declared and documented here:

=====================  ==============================================================
operation              contract
=====================  ==============================================================
header generation      :meth:`Scheduler.header` (+ :meth:`Scheduler.job_env`),
                       then every :func:`expyre_modify_header` hook
submit                 :meth:`Scheduler.submit_command` + :meth:`Scheduler.parse_submit`
                       (look-up after an ambiguous submit: :meth:`Scheduler.find_command`)
status                 :meth:`Scheduler.status_command` + :meth:`Scheduler.parse_status`
                       (vanished jobs: :meth:`Scheduler.accounting_command`)
usage (optional)       :meth:`Scheduler.usage_command` + :meth:`Scheduler.parse_usage`
                       (elapsed time and peak memory from the accounting records;
                       default: not available)
cancel, hold, release  :meth:`Scheduler.control_command` + :meth:`Scheduler.check_control`
job arrays (optional)  :attr:`Scheduler.max_array_size`, :attr:`Scheduler.array_index_var`,
                       :meth:`Scheduler.array_header`, :meth:`Scheduler.array_element_id`
                       (default: no arrays; the core submits the jobs one by one)
checks (optional)      :meth:`Scheduler.default_partitions`, :meth:`Scheduler.probe_command`,
                       :meth:`Scheduler.partitions_command` + :meth:`Scheduler.parse_partitions`,
                       :meth:`Scheduler.explain_command` + :meth:`Scheduler.parse_explain`
                       (``xpr config show/check``, ``xpr why``; default: not available)
transport              :meth:`Transport.run`, :meth:`Transport.put`, :meth:`Transport.get`
=====================  ==============================================================

A scheduler backend only turns requests into command lines and parses the output ("data + small
verbs"). The core owns running them through the system's transport, waiting, retries (only of
idempotent commands), reconciliation of vanished jobs and the jobs database. The composed
operations :meth:`Scheduler.submit`, :meth:`Scheduler.status`... have default implementations built
from the verbs; a backend may override them (the built-in ``local`` scheduler does, to work
in-process when it runs on this machine).
"""

from __future__ import annotations

import abc
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Iterable, Literal, Sequence

import attrs
from attrs import frozen

from . import shell as _shell
from ._markers import hookspec
from .types import (
    CommandResult,
    JobRequest,
    JobState,
    JobStatus,
    JobUsage,
    SchedulerCommandError,
    SchedulerContext,
    SubmitError,
    TransportError,
)

__all__ = [
    "Scheduler",
    "SchedulerSpec",
    "Transport",
    "TransportSpec",
    "ControlOp",
    "expyre_register_schedulers",
    "expyre_register_transports",
    "expyre_modify_header",
]

if TYPE_CHECKING:
    from .config_model import Partition

ControlOp = Literal["cancel", "hold", "release"]


#: prints the Python's version on a line of its own (any Python, 2.7 included)
_PY_VERSION_CHECK = "import sys; sys.stdout.write('expyre-python %d.%d\\n' % sys.version_info[:2])"


_PY_VERSION_LINE = re.compile(r"^expyre-python (\d+)\.(\d+)\b", re.M)


def parse_python_version(text: str) -> tuple[int, int] | None:
    """The ``(major, minor)`` of a line ``expyre-python X.Y...`` in ``text`` (what
    :data:`_PY_VERSION_CHECK` prints; a longer line such as ``expyre-python 3.11.7 cloudpickle=3.1.1``
    is read too), or None."""
    m = _PY_VERSION_LINE.search(text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


class Transport(abc.ABC):
    """How commands and files reach the host that runs the scheduler.

    One instance serves one system for the life of the process; it may keep a connection open
    (the ssh transport keeps one multiplexed master per host) and must release it in :meth:`close`.

    :param host: ``"[user@]machine"`` from config.json, or None for this machine.
    :param remsh_cmd: the remote shell command (config ``remsh_cmd``, else ``$EXPYRE_RSH``, else ``ssh``).
    """

    #: True when commands run on this machine and paths are shared with it (no copying needed).
    is_local: ClassVar[bool] = False
    #: Seconds after which :meth:`run` kills a command given no ``timeout`` of its own (raising
    #: :class:`TransportError` that names the host and the command), and the longest a copy may
    #: go without progress. The core sets it from the system's ``command_timeout``; None: no limit.
    command_timeout: float | None = None

    def __init__(self, host: str | None, remsh_cmd: str | None = None) -> None:
        self.host = host
        self.remsh_cmd = remsh_cmd

    @abc.abstractmethod
    def run(
        self,
        command: Sequence[str] | str,
        *,
        cwd: str | None = None,
        input: str | None = None,
        timeout: float | None = None,
        unset_env_prefixes: Sequence[str] = (),
    ) -> CommandResult:
        """Run one command on the host and return its result (a non-zero exit is *not* an error).

        :param command: an argv list (each element is quoted at the boundary, so nothing in it is
            interpreted by a shell), or a string that is a bash script run with ``bash -c``.
        :param cwd: directory to run in (absolute, or relative to the remote home).
        :param input: text fed to the command's stdin.
        :param timeout: seconds after which the command is killed and :class:`TransportError` raised
            (default :attr:`command_timeout`).
        :param unset_env_prefixes: environment variables with these prefixes are removed from the
            command's environment (so e.g. an enclosing job's ``SLURM_JOB_ID`` does not leak into ``sbatch``).
        :raises TransportError: the command could not be run (``retry_safe`` says whether it
            certainly did not start).

        Example::

            result = transport.run(["squeue", "-h", "-u", "alice"], timeout=60)
            if result.ok:
                print(result.stdout)
        """

    @abc.abstractmethod
    def put(self, local_dirs: Sequence[Path], remote_parent: str) -> None:
        """Copy each local directory (recursively, keeping its name) into ``remote_parent``,
        creating it (mode 0700) if needed. Many directories are sent in one operation. Every file
        is written under a temporary name and renamed into place (a job may already read there).

        Example: ``transport.put([Path("/home/me/_expyre/run_x_1")], "expyre_rundir")``
        """

    @abc.abstractmethod
    def get(self, remote_dirs: Sequence[str], local_parent: Path) -> None:
        """Copy each remote directory's contents back into ``local_parent / basename(dir)``.
        Files that vanish while being copied are not an error.

        Other drivers may read these directories meanwhile, and this one may be killed at any
        moment: every file must land under a temporary name in its destination directory and be
        renamed into place, and a job's result markers (:data:`expyre.layout.RESULT_MARKERS`)
        last, only those that existed before the other files were copied
        (:func:`expyre.files.copy_tree` does this for a copy on this machine;
        :func:`expyre.files.move_tree` for files fetched into a :func:`expyre.files.holding_dir`).

        Example: ``transport.get(["expyre_rundir/run_x_1"], Path("/home/me/_expyre"))``
        """

    def probe(self, python_cmd: str, commands: Sequence[str] = ()) -> None:
        """Check the host once, before a system's first command (optional; default: nothing).

        Raise an error that names the host and the command that failed when jobs cannot run
        there, e.g. when ``python_cmd`` cannot import cloudpickle after the system's ``commands``.
        :class:`TransportError` means the host could not be reached (the core retries it); any
        other exception is final.

        :param python_cmd: the system's default job Python (``System.default_python()``).
        :param commands: the system's ``commands`` (they run before the Python in every job).

        Example: ``transport.probe("/opt/venv/bin/python", ["module load python"])``
        """

    def python_version(self, python_cmd: str, commands: Sequence[str] = ()) -> tuple[int, int] | None:
        """The ``(major, minor)`` version of the jobs' Python ``python_cmd`` on the host, run after
        the system's ``commands`` as a job runs it; None when it cannot be told (nothing is then
        checked). The core asks once per system and Python command, before the first job that
        holds code pickled by value is submitted (code objects load only in the minor version that
        made them). Default: one bash script through :meth:`run`; a transport that learnt the
        version already (e.g. in :meth:`probe`) may return it.

        Example: ``transport.python_version("/opt/py38/bin/python") == (3, 8)``
        """
        from .jobpython import python_script

        script = python_script(python_cmd, _PY_VERSION_CHECK, commands)
        try:
            result = self.run(script, timeout=120)
        except TransportError as exc:
            logging.getLogger(__name__).info("cannot ask the version of %s on %s: %s", python_cmd,
                                             self.host or "this machine", exc)
            return None
        return parse_python_version(result.stdout)

    def close(self) -> None:
        """Release connections. Called at interpreter exit and by ``xpr`` when done."""


class Scheduler(abc.ABC):
    """A queuing system backend.

    Subclasses set :attr:`name` and implement the abstract verbs. Each verb is pure: it builds an
    argv list or parses a :class:`~expyre.types.CommandResult`; the core runs the commands.

    :param context: the system this instance serves (name, rundir, host, options).
    """

    #: The value of ``"scheduler"`` in config.json that selects this backend.
    name: ClassVar[str] = ""
    #: Optional attrs class for the system's ``scheduler_options`` in config.json. The core
    #: structures the dict into it with its converter (also an empty or missing dict), so errors
    #: carry the key path, and the backend always finds an instance in ``context.options``. Field
    #: types: those of config.json (str, int, float, bool, None, Literal, lists, dicts),
    #: :class:`~expyre.units.Duration`, :class:`~expyre.units.Memory`, and the backend's own types
    #: derived from :class:`~expyre.types.ConfigValue`. A backend never registers anything on the
    #: core's converter.
    Options: ClassVar[type | None] = None
    #: Environment variable prefixes removed before running submit commands (an enclosing job's
    #: variables must not leak into a nested submission), e.g. ``("PBS_O_", "PBS_JOB")``. Only what
    #: the scheduler sets inside a job: its clients' own configuration (``SLURM_CONF``,
    #: ``PBS_SERVER``...) must stay. The other commands run with the environment unchanged.
    foreign_env_prefixes: ClassVar[tuple[str, ...]] = ()
    #: Seconds a job must stay absent/terminal without result files before it is declared died
    #: (covers file systems that show new files late and schedulers that requeue).
    vanish_grace: ClassVar[float] = 10.0
    #: Shortest interval between two status queries of one system from one process, to spare the
    #: scheduler (result files on a shared file system are still checked more often).
    min_poll_interval: ClassVar[float] = 1.0
    #: Directive prefix, for documentation and for :meth:`header` helpers (``"#SBATCH"``...).
    directive: ClassVar[str] = "#"

    def __init__(self, context: SchedulerContext) -> None:
        if self.Options is not None and context.options is None:  # made without the core: defaults
            context = attrs.evolve(context, options=self.Options())
        self.context = context

    # -- header generation -------------------------------------------------------------------
    @abc.abstractmethod
    def header(self, job: JobRequest) -> list[str]:
        """The default directives for ``job``: job name, partition/queue, time limit, stdout and
        stderr files (and whatever this scheduler always needs, e.g. SGE's ``-S /bin/bash``).

        They are skipped when the system sets ``no_default_header``. The system's, the partition's
        and ``header_extra`` lines follow them, formatted with :attr:`JobRequest.header_keys`.

        Example (Slurm)::

            ["#SBATCH --job-name=fit_ab12cd", "#SBATCH --partition=debug",
             "#SBATCH --time=1:00:00", "#SBATCH --output=_expyre_job.out", "#SBATCH --error=_expyre_job.err"]
        """

    def job_env(self, job: JobRequest) -> list[str]:
        """Bash lines run inside the job after the core exported ``EXPYRE_*`` from the request, to
        correct them from the real allocation (e.g. ``EXPYRE_NNODES=${SLURM_NNODES:-$EXPYRE_NNODES}``).
        Default: none.
        """
        return []

    def check_request(self, job: JobRequest) -> None:
        """Refuse a job this scheduler can never run, before anything is claimed, staged or
        submitted: raise ``ValueError`` naming the request and the limit. Default: accept (the
        scheduler's own submit command judges it).

        Example (the built-in ``local`` scheduler): 1000 cores on a 4-core machine.
        """

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, transport: Transport) -> None:
        """Prepare the host once per process before the first command (default: nothing)."""

    # -- submit ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def submit_command(self, job: JobRequest) -> list[str]:
        """argv that submits ``job.script``; it runs with ``cwd=job.remote_dir``.

        Example: ``["sbatch", "--parsable", "_expyre_script.sh"]``
        """

    @abc.abstractmethod
    def parse_submit(self, result: CommandResult, job: JobRequest) -> str:
        """The scheduler's job id from the submit command's result.

        :raises SubmitError: the submission failed; the message must quote the scheduler's reason.
        """

    def find_command(self, names: Sequence[str]) -> list[str] | None:
        """argv that lists this user's jobs with the given job names, used after a submit whose
        outcome is unknown so that a job is never submitted twice. None if unsupported."""
        return None

    def parse_find(self, result: CommandResult, names: Sequence[str]) -> dict[str, str]:
        """Map job name -> scheduler id from :meth:`find_command`'s result."""
        return {}

    # -- status ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def status_command(self, ids: Sequence[str]) -> list[str]:
        """argv that reports all of ``ids`` (restricted to this user) in ONE query.

        Example: ``["squeue", "-h", "--me", "-t", "all", "-o", "%i|%T|%r", "-j", "12,13"]``
        """

    @abc.abstractmethod
    def parse_status(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        """Map each id that the scheduler still knows to its :class:`JobStatus`; leave out ids it no
        longer lists. Unknown state codes map to ``JobState.UNKNOWN`` (never raise for one job).

        :raises SchedulerCommandError: the whole query failed (the core keeps the last known
            states and retries later).
        """

    def explain(self, transport: "Transport", statuses: dict[str, JobStatus]) -> dict[str, JobStatus]:
        """Add detail that one status query cannot give (e.g. SGE's reason for an ``Eqw`` job, one
        ``qstat -j`` per job in error). Called after every status query; default: unchanged."""
        return statuses

    def accounting_command(self, ids: Sequence[str]) -> list[str] | None:
        """argv that asks the accounting records (``sacct``, ``qacct``) about jobs that vanished
        from the queue, or None if this scheduler has none."""
        return None

    def parse_accounting(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        """Final states from :meth:`accounting_command`'s result (missing ids are left out)."""
        return {}

    # -- usage (optional: the default means "not available") ------------------------------------
    def usage_command(self, ids: Sequence[str]) -> list[str] | str | None:
        """ONE command that asks the accounting records what the finished jobs ``ids`` used
        (elapsed time, peak memory); its result goes to :meth:`parse_usage`. None (the default):
        not available. The core asks it for finished jobs only (``xpr sync``, ``xpr show``,
        ``ExPyRe.usage()``), never in a status poll, and stores what it gets in the jobs database.

        :param ids: the scheduler's job ids (array elements as :meth:`array_element_id` gives them).

        Returns: an argv list, a bash script string (e.g. a loop over a one-job-per-call command),
        or None.

        Example (Slurm): ``usage_command(["12", "13_1"]) ==
        ["sacct", "-P", "-n", "-o", "JobID,State,ElapsedRaw,MaxRSS", "-j", "12,13_1"]``
        """
        return None

    def parse_usage(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobUsage]:
        """What each job of ``ids`` used, from the result of :meth:`usage_command`. Leave out the
        ids the records do not have yet (a job still running, or not yet written by the
        accounting daemon): the core asks again later. Never raise for one job.

        :param result: the command's result.
        :param ids: the ids that were asked about.

        Returns: job id -> :class:`~expyre.types.JobUsage`. Default: empty.

        Example (Slurm, ``12|COMPLETED|40|`` and ``12.batch|COMPLETED|40|221200K``)::

            {"12": JobUsage(elapsed=40.0, max_rss_kib=221200, source="sacct")}
        """
        return {}

    # -- cancel / hold / release ----------------------------------------------------------------
    @abc.abstractmethod
    def control_command(self, op: ControlOp, ids: Sequence[str]) -> list[str]:
        """argv that cancels, holds or releases all of ``ids`` at once.

        Example: ``control_command("hold", ["12", "13"]) == ["scontrol", "hold", "12,13"]``
        """

    def check_control(self, op: ControlOp, result: CommandResult, ids: Sequence[str]) -> None:
        """Raise :class:`SchedulerCommandError` if ``op`` failed. Default: a non-zero exit fails."""
        if not result.ok:
            raise SchedulerCommandError(f"{self.name} {op} of {', '.join(ids)} failed: {result.describe()}", result)

    # -- job arrays (optional: the defaults mean "no arrays") ----------------------------------
    #: The largest number of elements one array may have, or None when this backend cannot submit
    #: job arrays (the core then submits the jobs one by one with ``ExPyRe.start_many``). A site
    #: overrides it with ``scheduler_options.max_array_size`` (see :meth:`array_size_limit`).
    max_array_size: ClassVar[int | None] = None
    #: The environment variable holding the element's index inside an array job
    #: (``SLURM_ARRAY_TASK_ID``, ``SGE_TASK_ID``...), counted from :attr:`array_index_base`.
    array_index_var: ClassVar[str] = ""
    #: The index of the first element (0 for Slurm and PBS, 1 for Grid Engine).
    array_index_base: ClassVar[int] = 0
    #: How the element's index is written in the stdout/stderr file names of an array header
    #: (``%a`` for Slurm, ``$TASK_ID`` for Grid Engine, ``^array_index^`` for PBS Pro), so that
    #: each element has its own files; ``""``: all elements share the array's files.
    array_output_token: ClassVar[str] = ""

    def arrays_supported(self) -> bool:
        """Whether this backend, as configured and detected on its host, can submit job arrays.
        Called after :meth:`setup`. Default: ``max_array_size is not None and array_index_var``."""
        return self.max_array_size is not None and bool(self.array_index_var)

    def array_size_limit(self, transport: Transport) -> int | None:
        """The most elements one array may have on this system: ``scheduler_options.max_array_size``
        when set, else what the scheduler reports (a backend may ask it, e.g. Slurm's
        ``MaxArraySize``), else :attr:`max_array_size`; None when the site disabled arrays.
        Called once per process and system, after :meth:`setup`; a :class:`TransportError` or
        :class:`SchedulerCommandError` here only means the class default is used.

        Example: ``SlurmScheduler.array_size_limit(t) == 1001`` (``scontrol show config``).
        """
        site = getattr(self.context.options, "max_array_size", None)
        if site is not None:
            return int(site)
        return int(self.max_array_size or 1)

    def array_header(self, job: JobRequest, n: int) -> list[str]:
        """Directive lines that make the job ``job`` (the array's shared script) an array of ``n``
        elements, indexed ``array_index_base .. array_index_base + n - 1``. They follow the
        default, system and partition header lines.

        Example (Slurm): ``array_header(job, 200) == ["#SBATCH --array=0-199"]``
        """
        raise NotImplementedError(f"scheduler {self.name!r} does not submit job arrays")

    def array_element_id(self, array_id: str, i: int) -> str:
        """The scheduler's id of element ``i`` (counted from 0) of the array whose submission
        returned ``array_id``. It is stored as the element's ``remote_id``, so :meth:`parse_status`
        (which must report array elements one by one), :meth:`accounting_command` and
        :meth:`control_command` must accept it.

        Example: Slurm ``("123", 4) -> "123_4"``; Grid Engine ``("123", 4) -> "123.5"``;
        PBS ``("123[].srv", 4) -> "123[4].srv"``.
        """
        raise NotImplementedError(f"scheduler {self.name!r} does not submit job arrays")

    # -- describing and checking a system (optional: the defaults mean "not available") ---------
    @classmethod
    def default_partitions(cls) -> "dict[str, Partition] | None":
        """The partitions of a system whose config.json gives none, or None (the default) when this
        scheduler has no defaults: a system must then list its partitions (``xpr config check``
        and the config loader say so). ``xpr config show`` prints them as "scheduler default".

        Returns: partition name -> :class:`~expyre.config_model.Partition`, or None.

        Example (the built-in ``local`` scheduler)::

            @classmethod
            def default_partitions(cls):
                return {"local": Partition(ncores=os.cpu_count(), max_time=None)}
        """
        return None

    def probe_command(self) -> list[str] | str | None:
        """A command that shows this scheduler's commands exist on the host and answer, for
        ``xpr config check``: it must exit 0 and print one line that describes them (a path, a
        version). None (the default): not available; the check then only looks that the program of
        :meth:`status_command` is on the host's ``PATH``. Must not need :meth:`setup` first.

        Returns: an argv list, a bash script string, or None.

        Example (Slurm): ``probe_command() == "command -v squeue"``
        """
        return None

    def partitions_command(self) -> list[str] | str | None:
        """A command that lists the partitions (queues) that exist on the host, so that
        ``xpr config check`` can compare them with the configured ones; None (the default): not
        available (the configured partitions are then not checked). Its result goes to
        :meth:`parse_partitions`. Must not need :meth:`setup` first.

        Returns: an argv list, a bash script string, or None.

        Example (Grid Engine): ``partitions_command() == ["qconf", "-sql"]``
        """
        return None

    def parse_partitions(self, result: CommandResult) -> set[str]:
        """The partition names in the result of :meth:`partitions_command`.

        :param result: the command's result (a non-zero exit has already raised).

        Returns: the set of names. Default: empty.

        Example (Slurm, ``sinfo -h -o %P``): ``"debug*\\nlong\\n"`` gives ``{"debug", "long"}``.
        """
        return set()

    def explain_command(self, ids: Sequence[str]) -> list[str] | None:
        """A detail query that says why queued jobs wait (or why a job is in error), one command for
        all of ``ids``; its result goes to :meth:`parse_explain`. ``xpr why`` asks it about the
        queued jobs it reports; a backend may also use it in :meth:`explain`. None (the default):
        not available. It is never counted as a status query.

        :param ids: the scheduler's job ids.

        Returns: an argv list, or None.

        Example (Grid Engine): ``explain_command(["12", "13"]) == ["qstat", "-j", "12,13"]``
        """
        return None

    def parse_explain(self, result: CommandResult, ids: Sequence[str]) -> dict[str, str]:
        """Why each job of ``ids`` waits, from the result of :meth:`explain_command`; ids the
        scheduler says nothing about are left out (never raise for one job).

        :param result: the command's result.
        :param ids: the ids that were asked about.

        Returns: job id -> one line of explanation. Default: empty.

        Example (Grid Engine): ``{"12": "queue instance \"all.q@vm\" dropped because it is disabled"}``
        """
        return {}

    # -- composed operations (the core calls these; override only to bypass commands) ----------
    def submit(self, transport: Transport, job: JobRequest) -> str:
        """Submit ``job`` and return its id. Not retried by the default implementation."""
        result = transport.run(
            self.submit_command(job), cwd=job.remote_dir, unset_env_prefixes=self.foreign_env_prefixes
        )
        return self.parse_submit(result, job)

    def status(self, transport: Transport, ids: Sequence[str]) -> dict[str, JobStatus]:
        if not ids:
            return {}
        return self.explain(transport, self.parse_status(transport.run(self.status_command(ids)), ids))

    def accounting(self, transport: Transport, ids: Sequence[str]) -> dict[str, JobStatus]:
        cmd = self.accounting_command(ids) if ids else None
        if cmd is None:
            return {}
        return self.parse_accounting(transport.run(cmd), ids)

    def usage(self, transport: Transport, ids: Sequence[str]) -> dict[str, JobUsage]:
        """Run :meth:`usage_command` for ``ids`` (ONE command): job id -> :class:`JobUsage`
        ({} when not available)."""
        cmd = self.usage_command(ids) if ids else None
        if cmd is None:
            return {}
        return self.parse_usage(transport.run(cmd), ids)

    def find(self, transport: Transport, names: Sequence[str]) -> dict[str, str] | None:
        """Look jobs up by name; None when the scheduler cannot tell."""
        cmd = self.find_command(names)
        if cmd is None:
            return None
        result = transport.run(cmd)
        return self.parse_find(result, names)

    def control(self, transport: Transport, op: ControlOp, ids: Sequence[str]) -> None:
        if ids:
            self.check_control(op, transport.run(self.control_command(op, ids)), ids)

    def probe(self, transport: Transport, timeout: float | None = None) -> str | None:
        """Run :meth:`probe_command`: its first line of output, or None when not available.

        :raises SchedulerCommandError: the command failed or printed nothing (the message quotes it).
        """
        cmd = self.probe_command()
        if cmd is None:
            return None
        result = transport.run(cmd, timeout=timeout)
        lines = result.stdout.strip().splitlines()
        if not result.ok or not lines:
            text = cmd if isinstance(cmd, str) else " ".join(cmd)
            raise SchedulerCommandError(f"`{text}` found nothing: {result.describe()}", result)
        return lines[0].strip()

    def list_partitions(self, transport: Transport, timeout: float | None = None) -> set[str] | None:
        """Run :meth:`partitions_command`: the partitions that exist, or None when not available.

        :raises SchedulerCommandError: the listing failed.
        """
        cmd = self.partitions_command()
        if cmd is None:
            return None
        result = transport.run(cmd, timeout=timeout)
        if not result.ok:
            raise SchedulerCommandError(f"listing partitions failed: {result.describe()}", result)
        return self.parse_partitions(result)

    def explain_queued(self, transport: Transport, ids: Sequence[str], timeout: float | None = None) -> dict[str, str]:
        """Run :meth:`explain_command` for ``ids``: job id -> why it waits ({} when not available)."""
        cmd = self.explain_command(ids) if ids else None
        if cmd is None:
            return {}
        return self.parse_explain(transport.run(cmd, timeout=timeout), ids)

    # -- helpers for subclasses -----------------------------------------------------------------
    @staticmethod
    def quote(value: object) -> str:
        """Shell-quote one value for a directive line (:func:`expyre.shell.quote`)."""
        return _shell.quote(value)

    @staticmethod
    def submit_failed(result: CommandResult, what: str) -> SubmitError:
        return SubmitError(f"{what} submission failed: {result.describe()}", result)


@frozen
class SchedulerSpec:
    """A scheduler backend offered by a plugin.

    :param name: the value of ``"scheduler"`` in config.json (``"slurm"``, ``"sge"``...).
    :param backend: the :class:`Scheduler` subclass.
    :param description: one line for ``xpr plugins``.
    """

    name: str
    backend: type[Scheduler]
    description: str = ""


@frozen
class TransportSpec:
    """A transport backend offered by a plugin.

    :param name: the transport's name. ``"local"`` serves systems with ``"host": null``; ``"ssh"``
        serves the others unless a system names another one with ``"transport"``.
    :param backend: the :class:`Transport` subclass.
    :param description: one line for ``xpr plugins``.
    """

    name: str
    backend: type[Transport]
    description: str = ""


# ---------------------------------------------------------------------------------------------
# hooks
# ---------------------------------------------------------------------------------------------


@hookspec
def expyre_register_schedulers() -> Iterable[SchedulerSpec]:
    """Offer scheduler backends.

    :return: the :class:`SchedulerSpec` of each backend this plugin provides. Two plugins offering
        the same name is an error that names both.

    Example::

        @expyre.hookimpl
        def expyre_register_schedulers():
            yield SchedulerSpec(name="slurm", backend=SlurmScheduler, description="Slurm (sbatch/squeue)")
    """


@hookspec
def expyre_register_transports() -> Iterable[TransportSpec]:
    """Offer transport backends.

    :return: the :class:`TransportSpec` of each backend this plugin provides.

    Example::

        @expyre.hookimpl
        def expyre_register_transports():
            yield TransportSpec(name="ssh", backend=SshTransport, description="OpenSSH + rsync")
    """


@hookspec
def expyre_modify_header(system_name: str, job: JobRequest, header: list[str]) -> None:
    """Edit a job script's header in place before it is written, for site policy.

    Every implementation runs, each on the list the previous one left: pluggy calls the most
    recently registered plugin first (installed plugins are registered in the order of their
    entry-point names, so ``b`` runs before ``a``). ``header`` holds the final directive lines
    (default, system, partition and ``header_extra`` lines, already formatted).

    :param system_name: the config.json key of the system.
    :param job: the request (partition, resources, id...).
    :param header: the list of lines; append, remove or edit entries.

    Example::

        @expyre.hookimpl
        def expyre_modify_header(system_name, job, header):
            if system_name == "archer2":
                header.append("#SBATCH --account=e89")
    """


# re-exported for plugin authors
__all__ += ["CommandResult", "JobRequest", "JobState", "JobStatus", "JobUsage", "SchedulerContext"]
