"""Service layer: submitting jobs: the job request and script, the submission claim (so that a
job is never submitted twice, even by concurrent or interrupted processes), the adoption of a
job an interrupted run already queued, and job arrays.

Functions take job handles (:class:`~expyre.job.JobHandle`, e.g. :class:`~expyre.func.ExPyRe`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any, Iterable, Mapping, Sequence

import attrs

from . import _faults, config
from .errors import ExPyReTimeoutError, JobPythonVersionError
from .jobpython import MIN_JOB_PYTHON
from .layout import (ARRAY_DIRS, ARRAY_OUTPUT_PREFIX, ARRAY_REF, ARRAY_SCRIPT, JOB_STDERR, JOB_STDOUT, META, RUNNER, SCRIPT,
                     TASK)
from .names import make_job_id
from .resources import Resources
from .script import build_array_script, build_script
from .stagedir import open_stage_dir
from .stage_records import record_claim, record_submitted
from .staging import archive_previous, atomic_text, discard_remote_results, read_meta
from .system import System
from .types import JobRequest, SubmitError
from .units import Memory
from .layout import USAGE  # noqa: I001 - apart from the other layout names

__all__ = ["owner", "owner_dead", "prepare", "submit_one", "mark_submitted", "start_one", "start_many", "start_array",
           "await_submission"]

#: the logger of the API this serves (``expyre.func``): what users configure keeps working
logger = logging.getLogger("expyre.func")
timing = logging.getLogger("expyre.timing")

Pending = tuple[System, JobRequest]


# -- claims --------------------------------------------------------------------------------------
def owner() -> str:
    """This process as a submission claim's owner: ``host:pid:process start time``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_proc_start(pid)}"


def _proc_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_dead(claim_owner: str | None, claimed_at: float | None) -> bool:
    """True when the process that made a claim is gone (on another host: after 10 minutes)."""
    if not claim_owner:
        return True
    host, _, rest = claim_owner.partition(":")
    pid_s, _, start = rest.partition(":")
    if host == socket.gethostname():
        try:
            return _proc_start(int(pid_s)) != start
        except ValueError:
            return True
    return claimed_at is not None and time.time() - claimed_at > 600


# -- one job -------------------------------------------------------------------------------------
def _array_ref(job: Any) -> dict | None:
    try:
        with open_stage_dir(job.stage_dir) as sd:
            ref = json.loads(sd.read_bytes(ARRAY_REF))
        return ref if isinstance(ref.get("array"), str) and isinstance(ref.get("index"), int) else None
    except (OSError, ValueError, AttributeError):
        return None


def prepare(job: Any, resources: Resources | Mapping[str, Any], system_name: str | None = None,
            header_extra: Sequence[str] = (), exact_fit: bool = True, partial_node: bool = False,
            python_cmd: str | None = None, force_rerun: bool = False) -> Pending | None:
    """The part of ``start()`` before the stage directory is copied: writes the job script and
    claims the submission. Returns ``(system, request)`` to stage and submit, or None (already
    submitted or finished, being submitted by another process, or adopted)."""
    row = job.reload()
    rerun = False
    if force_rerun and job.status != "created":
        archive_previous(job.stage_dir)
        try:
            (job.stage_dir / USAGE).unlink()  # the earlier run's: the new run writes its own
        except FileNotFoundError:
            pass
        config.db.update(job.id, force=True, status="created", remote_id=None, remote_status=None,
                         reason=None, suspect_since=None, submit_owner=None, submit_time=None, usage=None)
        row = job.reload()
        rerun = True
    if job.status != "created":
        logger.info("job %s already %s; not submitting again", job.id, job.status)
        return None
    missing = [n for n in (TASK, META, RUNNER) if not (job.stage_dir / n).is_file()]
    if missing:
        state = "is gone" if not job.stage_dir.is_dir() else f"lacks {', '.join(missing)}"
        raise FileNotFoundError(
            f"job {job.id}: its stage directory {job.stage_dir} {state} (deleted before the job was "
            f"submitted); create the ExPyRe again with the same function and arguments: that stages the "
            f"call again, under the same job id, and start() that")
    system = config.get_system(system_name)
    if rerun and not system.shares_stage_dirs:
        discard_remote_results(job.id, job.stage_dir, system)
    system, res, request, text = render_script(job, resources, system.name, header_extra=header_extra,
                                               exact_fit=exact_fit, partial_node=partial_node, python_cmd=python_cmd)
    check_job_python(job, system, python_cmd or system.default_python(), read_meta(job.stage_dir))
    atomic_text(job.stage_dir / SCRIPT, text)  # a private temporary name: concurrent start()s
    _faults.point("start_script_written")

    # intent before side effects: claim the submission, then look before submitting again
    previous_claim = row.get("submit_owner")
    stale = [previous_claim] if previous_claim and owner_dead(previous_claim, row.get("submit_time")) else []
    if not config.db.claim_submit(job.id, owner(), stale=stale):
        logger.info("job %s is being submitted by %s; not submitting it again", job.id, previous_claim)
        job.reload()
        return None
    if stale:
        logger.warning("job %s: the process submitting it (%s) is gone; taking its submission over", job.id, previous_claim)
    config.db.update(job.id, system=system.name, resources=res.to_dict())
    record_claim(job.stage_dir, system.name, owner(), res.to_dict())  # what a rebuilt jobs database knows
    job.system_name = system.name
    _faults.point("start_claimed")
    if previous_claim and _adopt(job, system):
        return None
    return system, request




def check_job_python(job: Any, system: System, python_cmd: str, meta: Mapping[str, Any]) -> None:
    """Refuse, before anything is submitted, a job whose Python cannot load its call: older than
    :data:`MIN_JOB_PYTHON`, or of another minor version than the Python that pickled functions by
    value for it (``meta["by_value"]``: code objects load only in the minor version that made
    them). Data pickles and shipped modules load in any job Python from 3.8 on.

    :raises JobPythonVersionError: naming both versions, the functions and the fixes.
    """
    by_value = meta.get("by_value") or []
    pickled = tuple(meta.get("python") or ())
    if not pickled:
        return  # staged before the versions were recorded
    version = system.job_python_version(python_cmd)
    if version is None:
        return
    where = f"the jobs' Python on system {system.name!r} (`{python_cmd}`)"
    fix_cmd = f"set \"python_cmd\" of system {system.name!r} in config.json (or start(python_cmd=...)) to a Python"
    if version < MIN_JOB_PYTHON:
        raise JobPythonVersionError(
            f"job {job.id} ({job.name}): {where} is Python {version[0]}.{version[1]}; jobs need Python "
            f"{MIN_JOB_PYTHON[0]}.{MIN_JOB_PYTHON[1]} or newer (their pickles use protocol 5). Fix: {fix_cmd} "
            f"{MIN_JOB_PYTHON[0]}.{MIN_JOB_PYTHON[1]} or newer. Nothing was submitted")
    if by_value and version != pickled[:2]:
        names = ", ".join(by_value)
        raise JobPythonVersionError(
            f"job {job.id} ({job.name}): the call holds code pickled by value ({names}), which only Python "
            f"{pickled[0]}.{pickled[1]} (the Python that pickled it) can load, but {where} is Python "
            f"{version[0]}.{version[1]}. Fix: {fix_cmd} {pickled[0]}.{pickled[1]}, or define the function in a "
            f"module the job imports: "
            f"a module of yours (a file next to your script, not __main__) is shipped with the call and loads in "
            f"any Python; an installed module must be installed for the jobs' Python too. Nothing was submitted")


def _adopt(job: Any, system: System) -> bool:
    """After an earlier claim: if an interrupted run already queued the job (on its own or as an
    element of a job array), record that and return True."""
    found = system.find([job.id])
    if found and job.id in found:
        logger.warning("job %s was already submitted (as %s) by an interrupted run; adopting it", job.id, found[job.id])
        mark_submitted(job, found[job.id])
        return True
    ref = _array_ref(job)
    if ref is not None:  # it may have been submitted as an element of a job array
        found = system.find([ref["array"]])
        if found and ref["array"] in found:
            element = system.scheduler.array_element_id(found[ref["array"]], ref["index"])
            logger.warning("job %s was already submitted as element %s of job array %s by an interrupted run; "
                           "adopting it", job.id, element, ref["array"])
            mark_submitted(job, element)
            return True
    return False


def submit_one(job: Any, system: System, request: JobRequest) -> None:
    """The part of ``start()`` after the stage directory was copied."""
    try:
        (job.stage_dir / ARRAY_REF).unlink()  # submitted on its own now, not as an array element
    except FileNotFoundError:
        pass
    try:
        remote_id = system.submit(request)
    except SubmitError:
        config.db.update(job.id, submit_owner=None)  # refused: nothing was queued
        raise
    # any other failure keeps the claim: the next start() looks the job up before submitting
    mark_submitted(job, remote_id)


def mark_submitted(job: Any, remote_id: str) -> None:
    record_submitted(job.stage_dir, job.system_name, remote_id)  # the stage dir first: it is the truth
    config.db.update(job.id, status="submitted", remote_id=remote_id, remote_status="submitted")
    _faults.point("start_recorded")
    job.remote_id = remote_id
    job.status = "submitted"


def start_one(job: Any, resources: Resources | Mapping[str, Any], **start_kw: Any) -> None:
    """``ExPyRe.start``: prepare, copy the stage directory, submit."""
    t0 = time.monotonic()
    # kept for get_results(): if another process holds the claim and dies, this one takes it over
    job._start_args = {"resources": resources, **start_kw, "force_rerun": False}
    job._start_failed = True  # until it returns: a claim of this process is then this handle's own
    pending = prepare(job, resources, **start_kw)
    if pending is not None:
        pending[0].stage_in([job.stage_dir])
        submit_one(job, *pending)
    job._start_failed = False
    timing.debug("%s: start() done in %.3f s", job.id, time.monotonic() - t0)


def await_submission(job: Any, deadline: float | None, timeout: Any = None) -> None:
    """Wait until a job that another process is submitting leaves ``created`` (the claim's owner
    recorded its scheduler id). When the claim's owner died (or there is no claim any more: a
    refused submission released it) and this handle was started (``job._start_args``), start it
    again here: the claim is taken over and the job looked up by name in the scheduler before it
    is submitted, so it is never submitted twice.

    :raises RuntimeError: the job was never started (no claim, no ``start()`` here).
    :raises expyre.errors.ExPyReTimeoutError: ``deadline`` (of :func:`time.monotonic`) passed first.
    """
    wait = 0.02
    me = owner()
    while True:
        row = job.reload()
        if job.status != "created":
            return
        claim = row.get("submit_owner")
        # a claim of this process is another thread's (it waits like any other), unless it is the
        # one this handle's own interrupted start() left
        ours = claim == me and getattr(job, "_start_failed", False)
        if not claim or ours or (claim != me and owner_dead(claim, row.get("submit_time"))):
            args = getattr(job, "_start_args", None)
            if args is None:
                if claim and claim != me:
                    raise RuntimeError(f"job {job.id} was being submitted by a process that is gone ({claim}): "
                                       f"call start() to take its submission over")
                raise RuntimeError(f"job {job.id} has not been started: call start() first")
            start_one(job, **args)
            if job.status != "created":
                return
        if deadline is not None and time.monotonic() >= deadline:
            raise ExPyReTimeoutError(f"job {job.id} not submitted after {timeout} s: process {claim} is still "
                                     f"submitting it; call get_results() again")
        time.sleep(wait if deadline is None else max(0.0, min(wait, deadline - time.monotonic())))
        wait = min(1.0, wait * 1.5)


# -- many jobs -----------------------------------------------------------------------------------
def _prepare_each(jobs: Sequence[Any], resources: Resources | Mapping[str, Any], system_name: str | None,
                  start_kw: Mapping[str, Any], errors: dict[str, BaseException]) -> list[tuple[Any, Pending]]:
    """:func:`prepare` of each job: ``(job, (system, request))`` for those to stage and submit; a
    job whose preparation fails gets its exception in ``errors``."""
    pending = []
    for x in jobs:
        try:
            p = prepare(x, resources, system_name, **start_kw)
        except Exception as exc:  # noqa: BLE001 - reported per job
            errors[x.id] = exc
            continue
        if p is not None:
            pending.append((x, p))
    return pending


def _release_claims(jobs: Iterable[Any], exc: BaseException, errors: dict[str, BaseException]) -> None:
    """Nothing of these jobs was queued: drop their submission claims (the next start() submits
    them) and report ``exc`` for each."""
    for x in jobs:
        config.db.update(x.id, submit_owner=None)
        errors[x.id] = exc


def start_many(jobs: Sequence[Any], resources: Resources | Mapping[str, Any], system_name: str | None = None,
               **start_kw: Any) -> dict[str, BaseException]:
    """``ExPyRe.start_many``: ONE copy of all stage directories, then one submission per job."""
    errors: dict[str, BaseException] = {}
    pending = _prepare_each(jobs, resources, system_name, start_kw, errors)
    if pending:
        try:
            pending[0][1][0].stage_in([x.stage_dir for x, _ in pending])
        except Exception as exc:  # noqa: BLE001 - every job of the batch gets the error
            _release_claims([x for x, _ in pending], exc, errors)
            return errors
    for x, p in pending:
        try:
            submit_one(x, *p)
        except Exception as exc:  # noqa: BLE001 - reported per job
            errors[x.id] = exc
    return errors


def _prepare_array(system: System, group: Sequence[tuple[Any, JobRequest]], header_extra: Sequence[str]):
    """Write one array's shared script and directory list into its first element's stage dir
    and each element's :data:`~expyre.layout.ARRAY_REF`; return ``(array request, elements)``."""
    first_x, first_job = group[0]
    array_name = make_job_id(f"xa_{first_x.name}")
    token = system.scheduler.array_output_token
    array_job = attrs.evolve(first_job, id=array_name, script=ARRAY_SCRIPT,
                             stdout=f"{ARRAY_OUTPUT_PREFIX}{token}.out", stderr=f"{ARRAY_OUTPUT_PREFIX}{token}.err")
    names = [x.stage_dir.name for x, _ in group]
    text = build_array_script(system, array_job, names, header_extra=header_extra)
    atomic_text(first_x.stage_dir / ARRAY_DIRS, "".join(f"{n}\n" for n in names))
    atomic_text(first_x.stage_dir / ARRAY_SCRIPT, text)
    for i, (x, _) in enumerate(group):
        atomic_text(x.stage_dir / ARRAY_REF, json.dumps({"array": array_name, "index": i}))
    return array_job, [x for x, _ in group]


def start_array(jobs: Sequence[Any], resources: Resources | Mapping[str, Any], system_name: str | None = None,
                **start_kw: Any) -> dict[str, BaseException]:
    """``ExPyRe.start_array``: one submission per array of at most the system's array size limit;
    a system without arrays falls back to :func:`start_many`."""
    system = config.get_system(system_name)
    limit = system.array_limit()
    if limit is None:
        logger.info("system %s (%s) has no job arrays here; submitting %d jobs one by one",
                    system.name, system.cfg.scheduler, len(jobs))
        return start_many(jobs, resources, system.name, **start_kw)
    errors: dict[str, BaseException] = {}
    pending = [(x, p[1]) for x, p in _prepare_each(jobs, resources, system.name, start_kw, errors)]
    arrays: list[tuple[JobRequest, list[Any]]] = []
    singles: list[tuple[Any, JobRequest]] = []
    for k in range(0, len(pending), limit):
        group = pending[k : k + limit]
        if len(group) == 1:  # an array of one is a plain job (PBS Pro refuses -J 0-0)
            singles.append(group[0])
            continue
        try:
            arrays.append(_prepare_array(system, group, start_kw.get("header_extra", ())))
        except Exception as exc:  # noqa: BLE001 - every element of this array gets the error
            _release_claims([x for x, _ in group], exc, errors)
    if not arrays and not singles:
        return errors
    try:
        system.stage_in([x.stage_dir for _, elems in arrays for x in elems] + [x.stage_dir for x, _ in singles])
    except Exception as exc:  # noqa: BLE001 - every job of the batch gets the error
        _release_claims([x for _, elems in arrays for x in elems] + [x for x, _ in singles], exc, errors)
        return errors
    for x, request in singles:
        try:
            submit_one(x, system, request)
        except Exception as exc:  # noqa: BLE001 - reported per job
            errors[x.id] = exc
    for array_job, elems in arrays:
        try:
            array_id = system.submit(array_job)
        except SubmitError as exc:  # refused: nothing was queued
            _release_claims(elems, exc, errors)
            continue
        except Exception as exc:  # noqa: BLE001 - claims kept: the next start() looks the array up
            for x in elems:
                errors[x.id] = exc
            continue
        logger.info("system %s: job array %s (%s) of %d jobs submitted", system.name, array_job.id, array_id, len(elems))
        for i, x in enumerate(elems):
            mark_submitted(x, system.scheduler.array_element_id(array_id, i))
    return errors


def render_script(job: Any, resources: Resources | Mapping[str, Any], system_name: str | None = None,
                  header_extra: Sequence[str] = (), exact_fit: bool = True, partial_node: bool = False,
                  python_cmd: str | None = None) -> tuple[System, Resources, JobRequest, str]:
    """The job script ``start()`` writes and submits for ``job`` with these arguments, without
    writing or submitting anything: ``(system, resources, request, script text)``. The one place
    the request and the script are made (``prepare`` and ``ExPyRe.job_script`` both call it).

    :raises ValueError: no partition fits, or the scheduler refuses the request (``check_request``).
    """
    system = config.get_system(system_name)
    res = Resources.from_any(resources)
    partition, alloc = res.find_nodes(system.partitions, exact_fit=exact_fit, partial_node=partial_node)
    mem = None
    if res.max_mem_per_task is not None:
        mem = Memory(int(res.max_mem_per_task.kb * alloc.tot_ntasks / alloc.nnodes))
    request = JobRequest(
        id=job.id,
        remote_dir=system.remote_dir(job.stage_dir),
        script=SCRIPT,
        stdout=JOB_STDOUT,
        stderr=JOB_STDERR,
        partition=partition,
        max_time=res.max_time,
        nodes=alloc,
        max_mem_per_node=mem,
        partial_node=partial_node,
        system_name=system.name,
    )
    system.scheduler.check_request(request)  # e.g. more cores than a local machine has: refused here
    meta = read_meta(job.stage_dir)
    text = build_script(
        system,
        request,
        header_extra=header_extra,
        python_cmd=python_cmd or system.default_python(),
        env_vars=[tuple(e) for e in meta["env_vars"]],
        pre_run_commands=meta["pre_run_commands"],
        post_run_commands=meta["post_run_commands"],
    )
    return system, res, request, text


__all__ += ["render_script"]
