"""Built-in scheduler ``local``: jobs as detached processes on the machine that runs them.

No queuing system needed. A per-rundir queue (:mod:`expyre.builtin.localq`) runs each job as its
own process group that survives the driver, never more cores at once than the machine has across
all drivers sharing the rundir (the expyre root, for ``"host": null``), kills jobs at their
``max_time`` and cancels, holds and releases them. On this machine the queue is driven in-process;
on a remote host (``"host": "user@machine"``) through ``python3 localq.py ...`` over the transport.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Sequence

from attrs import frozen

from .._markers import hookimpl
from ..config_model import Partition
from ..layout import LOCAL_QUEUE_DIR
from ..machine import LOCAL_PARTITION, machine_mem_kb
from ..hookspecs import Scheduler, SchedulerSpec, Transport
from ..types import CommandResult, JobRequest, JobState, JobStatus, SchedulerCommandError, SubmitError
from ..units import Memory
from . import localq

QUEUE_DIR = LOCAL_QUEUE_DIR

_STATES = {
    "queued": JobState.QUEUED,
    "held": JobState.HELD,
    "running": JobState.RUNNING,
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "timeout": JobState.TIMEOUT,
    "cancelled": JobState.CANCELLED,
}


@frozen
class LocalOptions:
    """``scheduler_options`` of a ``local`` system.

    :param python: Python used to run the queue helper on a remote host.
    """

    python: str = "python3"


class LocalScheduler(Scheduler):
    name = "local"
    Options = LocalOptions
    vanish_grace = 0.0  # the queue's state files are definitive on the machine that runs the jobs
    min_poll_interval = 0.0  # a status query reads a few local files
    directive = "#"

    @classmethod
    def default_partitions(cls) -> dict[str, Partition]:
        mem = machine_mem_kb()
        return {LOCAL_PARTITION: Partition(ncores=localq.machine_ncores(), max_time=None,
                                           max_mem=Memory(mem) if mem else None)}

    @property
    def queue_dir(self) -> str:
        return os.path.join(self.context.rundir, QUEUE_DIR)

    @property
    def _options(self) -> LocalOptions:
        return self.context.options

    def _helper(self) -> list[str]:
        return [*shlex.split(self._options.python), f"{self.queue_dir}/localq.py"]

    # -- verbs (used over a remote transport) ---------------------------------------------------
    def header(self, job: JobRequest) -> list[str]:
        return []

    def check_request(self, job: JobRequest) -> None:
        """On this machine, refuse a job that needs more cores than the queue may ever run at once
        (it could never start). On a remote host the queue itself refuses it (the job dies with
        the same reason), as only that host knows its cores."""
        if self.context.host is not None:
            return
        have = localq.capacity()
        n = job.nodes
        if n.tot_ncores > have:
            raise ValueError(
                f"job {job.id} on system {self.context.system_name!r}: the resources ask for {n.tot_ncores} cores "
                f"({n.tot_ntasks} task(s) x {n.ncores_per_task} core(s)), but the local scheduler "
                f"runs at most {have} at once on this machine ({have} cores"
                + (", EXPYRE_LOCAL_NCORES" if os.environ.get("EXPYRE_LOCAL_NCORES") else "")
                + f"); ask for at most {have} cores"
            )

    def setup(self, transport: Transport) -> None:
        if transport.is_local:
            return
        source = Path(localq.__file__).read_text()
        q = shlex.quote(self.queue_dir)
        script = f"umask 077 && mkdir -p {q} && cat > {q}/localq.py.tmp && mv {q}/localq.py.tmp {q}/localq.py"
        result = transport.run(script, input=source)
        if not result.ok:
            raise SchedulerCommandError(f"could not install the local queue helper: {result.describe()}", result)

    def submit_command(self, job: JobRequest) -> list[str]:
        # Runs from the remote home (see submit), like every other queue command: the queue
        # paths and job.remote_dir may be relative to it.
        cmd = [*self._helper(), "submit", self.queue_dir, "--dir", job.remote_dir, "--script", job.script,
               "--stdout", job.stdout, "--stderr", job.stderr, "--name", job.id,
               "--ncores", str(job.nodes.tot_ncores)]
        if job.max_time is not None:
            cmd += ["--max-time", str(job.max_time.seconds)]
        return cmd

    def parse_submit(self, result: CommandResult, job: JobRequest) -> str:
        jid = result.stdout.strip()
        if not result.ok or not jid:
            raise self.submit_failed(result, "local queue")
        return jid

    def status_command(self, ids: Sequence[str]) -> list[str]:
        return [*self._helper(), "status", self.queue_dir, *ids]

    def parse_status(self, result: CommandResult, ids: Sequence[str]) -> dict[str, JobStatus]:
        if not result.ok:
            raise SchedulerCommandError(f"local queue status failed: {result.describe()}", result)
        try:
            return self._to_status(json.loads(result.stdout))
        except json.JSONDecodeError as exc:
            raise SchedulerCommandError(f"local queue status printed unparseable output: {exc}", result) from None

    def find_command(self, names: Sequence[str]) -> list[str]:
        return [*self._helper(), "find", self.queue_dir, *names]

    def parse_find(self, result: CommandResult, names: Sequence[str]) -> dict[str, str]:
        if not result.ok:
            raise SchedulerCommandError(f"local queue find failed: {result.describe()}", result)
        return json.loads(result.stdout)

    def control_command(self, op, ids):
        return [*self._helper(), "control", self.queue_dir, op, *ids]

    def probe_command(self) -> str:
        """``command -v <python>``: the Python that runs the queue helper on a remote host."""
        return f"command -v {shlex.quote(shlex.split(self._options.python)[0])}"

    @staticmethod
    def _to_status(raw: dict[str, dict]) -> dict[str, JobStatus]:
        out = {}
        for jid, st in raw.items():
            state = _STATES.get(st.get("state"), JobState.UNKNOWN)
            out[jid] = JobStatus(state=state, reason=st.get("reason") or "", raw=st.get("state", ""),
                                 exit_code=st.get("exit"))
        return out

    # -- in-process operations on this machine -------------------------------------------------
    def submit(self, transport: Transport, job: JobRequest) -> str:
        if not transport.is_local:
            result = transport.run(self.submit_command(job), unset_env_prefixes=self.foreign_env_prefixes)
            return self.parse_submit(result, job)
        try:
            return localq.submit(
                self.queue_dir, directory=job.remote_dir, script=job.script, stdout=job.stdout, stderr=job.stderr,
                ncores=job.nodes.tot_ncores, max_time=job.max_time.seconds if job.max_time else None, name=job.id,
            )
        except localq.UnsafeQueueError as exc:
            raise SubmitError(str(exc)) from exc
        except OSError as exc:
            raise SubmitError(f"local queue submission failed: {exc}") from exc

    def status(self, transport: Transport, ids: Sequence[str]) -> dict[str, JobStatus]:
        if not transport.is_local:
            return super().status(transport, ids)
        try:
            return self._to_status(localq.status(self.queue_dir, list(ids)))
        except localq.UnsafeQueueError:
            raise
        except (OSError, ValueError) as exc:  # e.g. an unreadable state file: a failed poll
            raise SchedulerCommandError(f"local queue status failed: {exc}") from exc

    def find(self, transport: Transport, names: Sequence[str]) -> dict[str, str] | None:
        if not transport.is_local:
            return super().find(transport, names)
        return localq.find(self.queue_dir, list(names))

    def probe(self, transport: Transport, timeout: float | None = None) -> str | None:
        if not transport.is_local:
            return super().probe(transport, timeout)
        return "built-in local queue"

    def control(self, transport: Transport, op, ids: Sequence[str]) -> None:
        if not transport.is_local:
            return super().control(transport, op, ids)
        if ids:
            localq.control(self.queue_dir, op, list(ids))

    def forget(self, transport: Transport, ids: Sequence[str]) -> None:
        """Remove the queue's records of these ended jobs (request, state, environment)."""
        if not ids:
            return
        if not transport.is_local:
            result = transport.run([*self._helper(), "forget", self.queue_dir, *ids])
            if not result.ok:
                raise SchedulerCommandError(f"local queue forget failed: {result.describe()}", result)
            return
        localq.forget(self.queue_dir, list(ids))


@hookimpl
def expyre_register_schedulers():
    yield SchedulerSpec(name="local", backend=LocalScheduler, description="processes on the machine itself, no queuing system")
