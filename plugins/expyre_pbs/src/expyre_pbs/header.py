"""The ``#PBS`` directives expyre writes by default, and the job-side lines that correct the
``EXPYRE_*`` variables from the real PBS allocation.

The system's, partition's and job's own header lines (``#PBS -l nodes={nnodes}:ppn={ncores_per_node}``
for Torque, ``#PBS -l select={nnodes}:ncpus={ncores_per_node}`` for PBS Pro) follow these; the core
formats them with the header keys of ExPyRe's README.
"""

from __future__ import annotations

import shlex

from expyre.types import JobRequest

__all__ = ["DIRECTIVE", "default_header", "job_env_lines", "JOB_ENV_PREFIXES"]

DIRECTIVE = "#PBS"

#: variables PBS (Torque, PBS Pro, the Slurm wrappers' spank_pbs) sets inside a job. They are
#: removed before ``qsub`` runs, so an enclosing job's allocation does not leak into a nested
#: submission. Prefixes only: ``PBS_SERVER``, ``PBS_DEFAULT``, ``PBS_CONF_FILE``, ``PBS_EXEC``
#: and ``PBS_HOME`` select the server and the installation and must stay.
JOB_ENV_PREFIXES: tuple[str, ...] = (
    "PBS_O_",  # PBS_O_WORKDIR, PBS_O_HOST, PBS_O_QUEUE...
    "PBS_JOB",  # PBS_JOBID, PBS_JOBNAME, PBS_JOBDIR, PBS_JOBCOOKIE
    "PBS_NODE",  # PBS_NODEFILE, PBS_NODENUM
    "PBS_NUM_",  # PBS_NUM_NODES, PBS_NUM_PPN (Torque)
    "PBS_NP",  # PBS_NP (Torque)
    "PBS_TASKNUM",
    "PBS_VNODENUM",
    "PBS_MOMPORT",
    "PBS_QUEUE",
    "PBS_ENVIRONMENT",
    "PBS_ARRAY",  # PBS_ARRAYID (Torque), PBS_ARRAY_INDEX, PBS_ARRAY_ID (Pro)
    "PBS_GPUFILE",
    "PBS_MICFILE",
    "PBS_WALLTIME",
)


def _q(value: object) -> str:
    return shlex.quote(str(value))


def default_header(job: JobRequest) -> list[str]:
    """Job name, queue, walltime, stdout/stderr, shell and the rerunnable flag.

    :raises ValueError: the partition is a comma list (PBS's ``-q`` takes one destination).
    """
    if "," in job.partition:
        raise ValueError(
            f"partition {job.partition!r} is a comma list; a PBS queue (-q) is one destination "
            "such as 'workq' or 'workq@server': name each queue as its own partition in config.json"
        )
    lines = [f"{DIRECTIVE} -N {job.id}"]
    if job.partition:
        lines.append(f"{DIRECTIVE} -q {_q(job.partition)}")
    if job.max_time is not None:
        lines.append(f"{DIRECTIVE} -l walltime={job.max_time.hms()}")
    lines += [
        f"{DIRECTIVE} -o {_q(job.stdout)}",
        f"{DIRECTIVE} -e {_q(job.stderr)}",
        f"{DIRECTIVE} -S /bin/bash",
        f"{DIRECTIVE} -r n",
    ]
    return lines


def job_env_lines() -> list[str]:
    """Bash lines that replace the requested ``EXPYRE_*`` numbers with the real allocation.

    Sources, first found wins: nodes from ``PBS_NUM_NODES`` (Torque) or the distinct hosts of
    ``PBS_NODEFILE`` (both); cores per node from ``PBS_NUM_PPN`` (Torque) or ``NCPUS`` (PBS Pro,
    the ncpus of the job's first chunk); total cores from ``PBS_NP`` (Torque) or ``NCPUS`` times
    the nodes. Tasks are then recomputed from ``EXPYRE_NCORES_PER_TASK``. Without any of these
    (Slurm's Torque wrappers set none of them) the requested values stay.
    """
    return [
        "# expyre-pbs: EXPYRE_* from the real PBS allocation, when PBS reports it",
        'if [ -n "${PBS_NUM_NODES:-}${PBS_NUM_PPN:-}${PBS_NP:-}${NCPUS:-}" ] || [ -r "${PBS_NODEFILE:-}" ]; then',
        '    if [ -n "${PBS_NUM_NODES:-}" ]; then EXPYRE_NNODES=$PBS_NUM_NODES',
        '    elif [ -r "${PBS_NODEFILE:-}" ]; then EXPYRE_NNODES=$(( $(sort -u "$PBS_NODEFILE" | wc -l) ))',
        "    fi",
        '    if [ -n "${PBS_NUM_PPN:-}" ]; then EXPYRE_NCORES_PER_NODE=$PBS_NUM_PPN',
        '    elif [ -n "${NCPUS:-}" ]; then EXPYRE_NCORES_PER_NODE=$NCPUS',
        "    fi",
        '    if [ -n "${PBS_NP:-}" ]; then EXPYRE_TOT_NCORES=$PBS_NP',
        "    else EXPYRE_TOT_NCORES=$(( EXPYRE_NCORES_PER_NODE * EXPYRE_NNODES ))",
        "    fi",
        '    if [ "${EXPYRE_NCORES_PER_TASK:-0}" -gt 0 ]; then',
        "        EXPYRE_TOT_NTASKS=$(( EXPYRE_TOT_NCORES / EXPYRE_NCORES_PER_TASK ))",
        "        EXPYRE_NTASKS_PER_NODE=$(( EXPYRE_NCORES_PER_NODE / EXPYRE_NCORES_PER_TASK ))",
        "    fi",
        "    export EXPYRE_NNODES EXPYRE_NCORES_PER_NODE EXPYRE_TOT_NCORES EXPYRE_TOT_NTASKS EXPYRE_NTASKS_PER_NODE",
        "fi",
    ]
