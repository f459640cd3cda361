"""Service layer: the job script: header, environment, the runner call. Every user value that reaches the shell
(paths, environment values) is quoted here; header lines and commands are the user's shell text."""

from __future__ import annotations

import posixpath
import shlex
from typing import Sequence

from . import plugins
from .layout import ARRAY_DIRS, ARRAY_OUTPUT_PREFIX, ARRAY_SCRIPT, JOB_STDERR, JOB_STDOUT, RUNNER, SCRIPT
from .shell import remote_path
from .system import System
from .types import JobRequest

__all__ = ["build_script", "build_array_script", "expyre_env", "SCRIPT", "JOB_STDOUT", "JOB_STDERR", "RUNNER",
           "ARRAY_SCRIPT", "ARRAY_DIRS", "ARRAY_OUTPUT_PREFIX", "PARTITION_NOTE"]



def expyre_env(job: JobRequest) -> dict[str, str]:
    """The ``EXPYRE_*`` variables a job sees, from its request."""
    n = job.nodes
    return {
        "EXPYRE_NNODES": str(n.nnodes),
        "EXPYRE_TOT_NCORES": str(n.tot_ncores),
        "EXPYRE_TOT_NTASKS": str(n.tot_ntasks),
        "EXPYRE_NCORES_PER_NODE": str(n.ncores_per_node),
        "EXPYRE_NTASKS_PER_NODE": str(n.ntasks_per_node if n.ntasks_per_node is not None else ""),
        "EXPYRE_NCORES_PER_TASK": str(n.ncores_per_task),
        "EXPYRE_JOB_ID": job.id,
        "EXPYRE_SYS": job.system_name,
    }


def _format(lines: Sequence[str], keys: dict, where: str) -> list[str]:
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(line.format(**keys))
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"{where}[{i}] {line!r} cannot be formatted: {exc!r}; available keys: {', '.join(keys)}"
            ) from None
    return out


def build_header(system: System, job: JobRequest, header_extra: Sequence[str]) -> list[str]:
    header: list[str] = []
    if not system.cfg.no_default_header:
        header += system.scheduler.header(job)
    keys = job.header_keys
    header += _format(system.cfg.header, keys, f"systems.{system.name}.header")
    part = system.partitions.get(job.partition)
    if part is not None:
        header += _format(part.header, keys, f"systems.{system.name}.partitions.{job.partition}.header")
    header += _format(header_extra, keys, "header_extra")
    plugins.modify_header(system.name, job, header)
    return header


#: how the job script records the partition chosen for the job (read back by ``expyre.show``)
PARTITION_NOTE = ", partition "


def _partition_note(job: JobRequest) -> str:
    if not job.partition:
        return ""
    return PARTITION_NOTE + " ".join(str(job.partition).split())  # one line, whatever the name


def build_script(
    system: System,
    job: JobRequest,
    *,
    header_extra: Sequence[str] = (),
    python_cmd: str,
    env_vars: Sequence[tuple[str, str]] = (),
    pre_run_commands: Sequence[str] = (),
    post_run_commands: Sequence[str] = (),
) -> str:
    lines = ["#!/bin/bash", *build_header(system, job, header_extra), "", f"# expyre job {job.id} on system {system.name}{_partition_note(job)}"]
    lines.append(f"cd -- {remote_path(job.remote_dir)} || exit 1")
    lines += list(system.cfg.commands)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in expyre_env(job).items()]
    lines += system.scheduler.job_env(job)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env_vars]
    lines += list(pre_run_commands)
    lines += [f"{python_cmd} {RUNNER}", "expyre_status=$?"]
    lines += list(post_run_commands)
    lines += ["exit $expyre_status", ""]
    return "\n".join(lines)


def build_array_script(system: System, job: JobRequest, dir_names: Sequence[str], *, header_extra: Sequence[str] = ()) -> str:
    """The shared script of a job array: element ``i`` runs the ordinary job script of the ``i``-th
    directory of ``dir_names`` (read from :data:`ARRAY_DIRS`, beside this script), in that
    directory, with its stdout and stderr in that directory's usual files.

    :param job: the array's request (its ``id`` is the array's job name, its ``remote_dir`` the
        first element's directory, which holds this script and :data:`ARRAY_DIRS`).
    :param dir_names: the elements' directory names (``run_<id>``), all beside ``job.remote_dir``.
    """
    sched = system.scheduler
    var = sched.array_index_var
    if not var.isidentifier():
        raise ValueError(f"scheduler {sched.name!r}: array_index_var {var!r} is not a variable name")
    base = posixpath.dirname(job.remote_dir.rstrip("/")) or "."
    lines = ["#!/bin/bash", *build_header(system, job, header_extra), *sched.array_header(job, len(dir_names)), ""]
    lines += [
        f"# expyre job array {job.id} of {len(dir_names)} jobs on system {system.name}: element i runs the",
        f"# job script in the directory on line i+1 of {ARRAY_DIRS}",
        f"cd -- {remote_path(job.remote_dir)} || exit 1",
        f"_expyre_line=$(( ${{{var}:?expyre: not run as an array element}} - {int(sched.array_index_base)} + 1 ))",
        f'_expyre_dir=$(sed -n "${{_expyre_line}}p" {ARRAY_DIRS})',
        'case $_expyre_dir in run_*) ;; *) echo "expyre: no job directory for array index $_expyre_line" >&2; exit 1;; esac',
        f'cd -- {remote_path(base)}/"$_expyre_dir" || exit 1',
        f"exec /bin/bash ./{SCRIPT} > {JOB_STDOUT} 2> {JOB_STDERR}",
        "",
    ]
    return "\n".join(lines)
