"""The ``#SBATCH`` lines expyre writes by default, and the lines that correct ``EXPYRE_*`` from the
allocation Slurm actually made."""

from __future__ import annotations

import shlex

from expyre.hookspecs import JobRequest

__all__ = ["DIRECTIVE", "default_header", "array_header", "job_env"]

DIRECTIVE = "#SBATCH"


def _q(value: object) -> str:
    return shlex.quote(str(value))


def default_header(job: JobRequest) -> list[str]:
    """Job name, partition, time limit (``max_time_HMS``), stdout and stderr files.

    The job id is already safe as a job name; the partition comes from config.json and may be a
    comma list (``"node16_old,node16_new"``), which ``--partition`` accepts as it is. Values are
    shell-quoted anyway (sbatch strips quotes in directives). Slurm rounds the time limit up to
    whole minutes.
    """
    keys = job.header_keys
    lines = [f"{DIRECTIVE} --job-name={_q(job.id)}", f"{DIRECTIVE} --partition={_q(job.partition)}"]
    if job.max_time is not None:
        lines.append(f"{DIRECTIVE} --time={_q(keys['max_time_HMS'])}")
    lines += [f"{DIRECTIVE} --output={_q(job.stdout)}", f"{DIRECTIVE} --error={_q(job.stderr)}"]
    return lines


def array_header(n: int, throttle: int | None = None) -> list[str]:
    """``--array=0-<n-1>`` (``%<throttle>``: at most that many elements at once)."""
    if n < 1:
        raise ValueError(f"a job array needs at least one element, got {n}")
    return [f"{DIRECTIVE} --array=0-{n - 1}" + (f"%{int(throttle)}" if throttle else "")]


# bash, run inside the job after the core exported EXPYRE_* from the request. Slurm sets a variable
# only when the allocation defines it (SLURM_NTASKS needs --ntasks...), so each falls back to the
# requested value. SLURM_JOB_CPUS_PER_NODE looks like "4(x2),2": its sum is the total core count.
_JOB_ENV = r"""# EXPYRE_* from the allocation Slurm made (the requested values where it sets none)
export EXPYRE_NNODES=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-$EXPYRE_NNODES}}
export EXPYRE_TOT_NTASKS=${SLURM_NTASKS:-$EXPYRE_TOT_NTASKS}
export EXPYRE_NTASKS_PER_NODE=${SLURM_NTASKS_PER_NODE:-$EXPYRE_NTASKS_PER_NODE}
export EXPYRE_NCORES_PER_TASK=${SLURM_CPUS_PER_TASK:-$EXPYRE_NCORES_PER_TASK}
export EXPYRE_NCORES_PER_NODE=${SLURM_CPUS_ON_NODE:-$EXPYRE_NCORES_PER_NODE}
_expyre_rx='^[0-9]+(\(x[0-9]+\))?(,[0-9]+(\(x[0-9]+\))?)*$'
if [[ ${SLURM_JOB_CPUS_PER_NODE:-} =~ $_expyre_rx ]]; then
    _expyre_tot=0
    for _expyre_group in ${SLURM_JOB_CPUS_PER_NODE//,/ }; do
        _expyre_n=${_expyre_group%%(*}
        _expyre_times=1
        [[ $_expyre_group == *"(x"* ]] && { _expyre_times=${_expyre_group#*(x}; _expyre_times=${_expyre_times%)}; }
        _expyre_tot=$((_expyre_tot + _expyre_n * _expyre_times))
    done
    export EXPYRE_TOT_NCORES=$_expyre_tot
    unset _expyre_tot _expyre_group _expyre_n _expyre_times
fi
unset _expyre_rx"""


def job_env(job: JobRequest) -> list[str]:
    """Lines that set ``EXPYRE_NNODES``, ``EXPYRE_TOT_NCORES``, ``EXPYRE_TOT_NTASKS``,
    ``EXPYRE_NCORES_PER_NODE``, ``EXPYRE_NTASKS_PER_NODE`` and ``EXPYRE_NCORES_PER_TASK`` from the
    ``SLURM_*`` variables of the running job, keeping the requested value where Slurm sets none."""
    return _JOB_ENV.splitlines()
