"""The ``#$`` lines expyre writes by default, and the bash lines that correct ``EXPYRE_*`` from the
allocation Grid Engine actually made."""

from __future__ import annotations

import shlex

from expyre.hookspecs import JobRequest

__all__ = ["DIRECTIVE", "SHELL", "default_header", "array_header", "job_env"]

DIRECTIVE = "#$"
#: all.q's default ``shell_start_mode posix_compliant`` ignores the script's shebang and runs the
#: queue's ``shell`` (often /bin/sh, or csh on old sites): ask for bash explicitly.
SHELL = "/bin/bash"


def _q(value: object) -> str:
    # qsub strips shell quotes from embedded options; safe values (job ids, queue names) stay bare
    return shlex.quote(str(value))


def default_header(job: JobRequest) -> list[str]:
    """Job name, queue, time limit, stdout/stderr, working directory and shell.

    * ``-N``: the job id verbatim (it is a valid Grid Engine name: a letter first, then only
      ``[A-Za-z0-9_.-]``; see :mod:`expyre.names`).
    * ``-q``: the partition, i.e. the queue (a config.json key such as ``"all.q"`` or a comma list
      ``"short.q,long.q"``, which ``-q`` accepts as it is).
    * ``-l h_rt``: ``max_time_HMS`` (``H:MM:SS``); Grid Engine enforces it to the second (SIGKILL).
    * ``-o``/``-e``: relative to the working directory because of ``-cwd``.
    * ``-cwd``: run in the directory ``qsub`` ran in, which the core makes the job's directory.
    * ``-S /bin/bash``: see :data:`SHELL`.
    """
    keys = job.header_keys
    lines = [f"{DIRECTIVE} -N {_q(job.id)}", f"{DIRECTIVE} -q {_q(job.partition)}"]
    if job.max_time is not None:
        lines.append(f"{DIRECTIVE} -l h_rt={_q(keys['max_time_HMS'])}")
    lines += [
        f"{DIRECTIVE} -o {_q(job.stdout)}",
        f"{DIRECTIVE} -e {_q(job.stderr)}",
        f"{DIRECTIVE} -cwd",
        f"{DIRECTIVE} -S {SHELL}",
    ]
    return lines


def array_header(n: int, throttle: int | None = None) -> list[str]:
    """``-t 1-<n>`` (task ids count from 1), and ``-tc <throttle>``: at most that many at once."""
    if n < 1:
        raise ValueError(f"an array job needs at least one task, got {n}")
    return [f"{DIRECTIVE} -t 1-{n}", *([f"{DIRECTIVE} -tc {int(throttle)}"] if throttle else [])]


# bash, run in the job after the core exported EXPYRE_* from the request. Grid Engine sets NSLOTS
# (slots granted: 1 without a parallel environment) and NHOSTS in every job; PE_HOSTFILE lists
# "host slots queue processors" per host of a parallel job. Per-node cores come from the hostfile
# only for multi-host jobs: with -V an enclosing job's PE_HOSTFILE could still be in the
# environment, while NSLOTS and NHOSTS are always set afresh.
_JOB_ENV = r"""if [[ ${NSLOTS:-} =~ ^[0-9]+$ && ${NHOSTS:-} =~ ^[0-9]+$ ]]; then
    export EXPYRE_TOT_NCORES=$NSLOTS EXPYRE_NNODES=$NHOSTS
    if [[ $NHOSTS -gt 1 && -r ${PE_HOSTFILE:-} ]]; then
        _expyre_n=$(awk 'NR == 1 { print $2 }' "$PE_HOSTFILE")
        if [[ $_expyre_n =~ ^[0-9]+$ ]]; then export EXPYRE_NCORES_PER_NODE=$_expyre_n; fi
        unset _expyre_n
    else
        export EXPYRE_NCORES_PER_NODE=$NSLOTS
    fi
    if [[ ${EXPYRE_NCORES_PER_TASK:-} =~ ^[1-9][0-9]*$ ]]; then
        export EXPYRE_TOT_NTASKS=$((EXPYRE_TOT_NCORES / EXPYRE_NCORES_PER_TASK))
        if [[ -n ${EXPYRE_NTASKS_PER_NODE:-} ]]; then
            export EXPYRE_NTASKS_PER_NODE=$((EXPYRE_NCORES_PER_NODE / EXPYRE_NCORES_PER_TASK))
        fi
    fi
fi"""


def job_env(job: JobRequest) -> list[str]:
    """Lines that set ``EXPYRE_TOT_NCORES`` (``NSLOTS``), ``EXPYRE_NNODES`` (``NHOSTS``),
    ``EXPYRE_NCORES_PER_NODE`` (slots on the first host of ``PE_HOSTFILE``, or ``NSLOTS`` on one
    host), and ``EXPYRE_TOT_NTASKS``/``EXPYRE_NTASKS_PER_NODE`` derived from them with the
    requested cores per task. Outside a Grid Engine job (no ``NSLOTS``) nothing changes."""
    return _JOB_ENV.splitlines()
