"""The environment variables Slurm sets inside a job or step, and the ones its clients read.

``sbatch`` copies its whole environment into the job it submits (``--export=ALL``, the default),
so when expyre submits from inside a Slurm job (a driver running as a batch job, in an ``salloc``
shell or in an ``srun`` step) the enclosing allocation's variables would reach the new job: its
``srun`` would then take ``SLURM_CPUS_PER_TASK``, ``SLURM_MEM_PER_NODE``, the CPU binding... of the
other job. Those variables are removed before ``sbatch`` runs, and only those: the client's own
configuration (``SLURM_CONF``, ``SLURM_CLUSTERS``, ``SBATCH_*``...) must reach ``sbatch`` or it
talks to the wrong controller, or to none ("Unable to contact slurm controller").

The names are those of the "OUTPUT ENVIRONMENT VARIABLES" sections of the ``sbatch``, ``srun`` and
``salloc`` man pages (Slurm 22.05), plus the variables their ``--cpu-bind``/``--mem-bind`` texts
say are set. A name also covers its heterogeneous-job forms (``SLURM_NTASKS_HET_GROUP_1``, and
``..._PACK_GROUP_0`` which 22.05 still sets): they start with it, and the transport removes
variables by prefix. ``SLURM_WORKING_CLUSTER`` (not in the man pages; set in a job to the cluster
and controller address it runs on) is kept, like ``SLURM_CONF``: it says where the controller is.
"""

from __future__ import annotations

__all__ = [
    "CLIENT_INPUT_NAMES",
    "JOB_ENV_FAMILIES",
    "JOB_ENV_NAMES",
    "JOB_ENV_PREFIXES",
    "SALLOC_OUTPUT",
    "SBATCH_OUTPUT",
    "SRUN_OUTPUT",
]

#: sbatch(1), "OUTPUT ENVIRONMENT VARIABLES": set by the controller in the batch script's
#: environment (its ``SBATCH_MEM_BIND*`` are left out here: ``SBATCH_*`` are sbatch's inputs and
#: are never removed), and the ``--mem-bind`` text's ``SLURM_MEM_BIND_*``.
SBATCH_OUTPUT: tuple[str, ...] = (
    "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP", "SLURM_CLUSTER_NAME", "SLURM_CPUS_ON_NODE",
    "SLURM_CPUS_PER_GPU", "SLURM_CPUS_PER_TASK", "SLURM_CONTAINER", "SLURM_DIST_PLANESIZE",
    "SLURM_DISTRIBUTION", "SLURM_EXPORT_ENV", "SLURM_GPU_BIND", "SLURM_GPU_FREQ", "SLURM_GPUS",
    "SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_SOCKET", "SLURM_GPUS_PER_TASK",
    "SLURM_GTIDS", "SLURM_HET_SIZE", "SLURM_JOB_ACCOUNT", "SLURM_JOB_GPUS", "SLURM_JOB_ID",
    "SLURM_JOB_CPUS_PER_NODE", "SLURM_JOB_DEPENDENCY", "SLURM_JOB_NAME", "SLURM_JOB_NODELIST",
    "SLURM_JOB_NUM_NODES", "SLURM_JOB_PARTITION", "SLURM_JOB_QOS", "SLURM_JOB_RESERVATION",
    "SLURM_JOBID", "SLURM_LOCALID", "SLURM_MEM_BIND_LIST", "SLURM_MEM_BIND_PREFER",
    "SLURM_MEM_BIND_SORT", "SLURM_MEM_BIND_TYPE", "SLURM_MEM_BIND_VERBOSE", "SLURM_MEM_PER_CPU",
    "SLURM_MEM_PER_GPU", "SLURM_MEM_PER_NODE", "SLURM_NNODES", "SLURM_NODE_ALIASES", "SLURM_NODEID",
    "SLURM_NODELIST", "SLURM_NPROCS", "SLURM_NTASKS", "SLURM_NTASKS_PER_CORE", "SLURM_NTASKS_PER_GPU",
    "SLURM_NTASKS_PER_NODE", "SLURM_NTASKS_PER_SOCKET", "SLURM_OVERCOMMIT", "SLURM_PRIO_PROCESS",
    "SLURM_PROCID", "SLURM_PROFILE", "SLURM_RESTART_COUNT", "SLURM_SHARDS_ON_NODE", "SLURM_SUBMIT_DIR",
    "SLURM_SUBMIT_HOST", "SLURM_TASK_PID", "SLURM_TASKS_PER_NODE", "SLURM_THREADS_PER_CORE",
    "SLURM_TOPOLOGY_ADDR", "SLURM_TOPOLOGY_ADDR_PATTERN", "SLURMD_NODENAME",
)

#: srun(1), "OUTPUT ENVIRONMENT VARIABLES": set in the environment of a step's tasks, and the
#: ``--cpu-bind`` text's ``SLURM_CPU_BIND_*``. Its ``SLURM_UMASK`` is left out: it is also an input
#: of sbatch (the umask of the job's output files), see :data:`CLIENT_INPUT_NAMES`.
SRUN_OUTPUT: tuple[str, ...] = (
    "SLURM_CLUSTER_NAME", "SLURM_CPU_BIND_LIST", "SLURM_CPU_BIND_TYPE", "SLURM_CPU_BIND_VERBOSE",
    "SLURM_CPU_FREQ_REQ", "SLURM_CPUS_ON_NODE", "SLURM_CPUS_PER_TASK", "SLURM_DISTRIBUTION",
    "SLURM_GPUS_ON_NODE", "SLURM_GTIDS", "SLURM_HET_SIZE", "SLURM_JOB_ACCOUNT", "SLURM_JOB_CPUS_PER_NODE",
    "SLURM_JOB_DEPENDENCY", "SLURM_JOB_GPUS", "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_NODELIST",
    "SLURM_JOB_NODES", "SLURM_JOB_PARTITION", "SLURM_JOB_QOS", "SLURM_JOB_RESERVATION", "SLURM_JOBID",
    "SLURM_LAUNCH_NODE_IPADDR", "SLURM_LOCALID", "SLURM_MEM_BIND_LIST", "SLURM_MEM_BIND_PREFER",
    "SLURM_MEM_BIND_SORT", "SLURM_MEM_BIND_TYPE", "SLURM_MEM_BIND_VERBOSE", "SLURM_NODE_ALIASES",
    "SLURM_NODEID", "SLURM_NPROCS", "SLURM_NTASKS", "SLURM_OVERCOMMIT", "SLURM_PRIO_PROCESS",
    "SLURM_PROCID", "SLURM_SRUN_COMM_HOST", "SLURM_SRUN_COMM_PORT", "SLURM_CONTAINER",
    "SLURM_SHARDS_ON_NODE", "SLURM_STEP_GPUS", "SLURM_STEP_ID", "SLURM_STEP_LAUNCHER_PORT",
    "SLURM_STEP_NODELIST", "SLURM_STEP_NUM_NODES", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_TASKS_PER_NODE",
    "SLURM_STEPID", "SLURM_SUBMIT_DIR", "SLURM_SUBMIT_HOST", "SLURM_TASK_PID", "SLURM_TASKS_PER_NODE",
    "SLURM_TOPOLOGY_ADDR", "SLURM_TOPOLOGY_ADDR_PATTERN", "SLURMD_NODENAME", "SRUN_DEBUG",
)

#: salloc(1), "OUTPUT ENVIRONMENT VARIABLES": set in the shell (or command) salloc starts.
SALLOC_OUTPUT: tuple[str, ...] = (
    "SLURM_CLUSTER_NAME", "SLURM_CONTAINER", "SLURM_CPUS_PER_GPU", "SLURM_CPUS_PER_TASK",
    "SLURM_DIST_PLANESIZE", "SLURM_DISTRIBUTION", "SLURM_GPU_BIND", "SLURM_GPU_FREQ", "SLURM_GPUS",
    "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_SOCKET", "SLURM_GPUS_PER_TASK", "SLURM_HET_SIZE",
    "SLURM_JOB_ACCOUNT", "SLURM_JOB_ID", "SLURM_JOB_CPUS_PER_NODE", "SLURM_JOB_GPUS", "SLURM_JOB_NODELIST",
    "SLURM_JOB_NUM_NODES", "SLURM_JOB_PARTITION", "SLURM_JOB_QOS", "SLURM_JOB_RESERVATION", "SLURM_JOBID",
    "SLURM_MEM_BIND", "SLURM_MEM_BIND_LIST", "SLURM_MEM_BIND_PREFER", "SLURM_MEM_BIND_SORT",
    "SLURM_MEM_BIND_TYPE", "SLURM_MEM_BIND_VERBOSE", "SLURM_MEM_PER_CPU", "SLURM_MEM_PER_GPU",
    "SLURM_MEM_PER_NODE", "SLURM_NNODES", "SLURM_NODELIST", "SLURM_NODE_ALIASES", "SLURM_NTASKS",
    "SLURM_NTASKS_PER_CORE", "SLURM_NTASKS_PER_GPU", "SLURM_NTASKS_PER_NODE", "SLURM_NTASKS_PER_SOCKET",
    "SLURM_OVERCOMMIT", "SLURM_PROFILE", "SLURM_SHARDS_ON_NODE", "SLURM_SUBMIT_DIR", "SLURM_SUBMIT_HOST",
    "SLURM_TASKS_PER_NODE", "SLURM_THREADS_PER_CORE",
)

#: Families every member of which Slurm sets in a job (newer releases add members, e.g.
#: ``SLURM_JOB_START_TIME``, ``SLURM_JOB_USER``); no client reads a variable of these families
#: (``srun`` reads ``SLURM_JOB_ID``... only to run inside that job, which a nested job must not).
JOB_ENV_FAMILIES: tuple[str, ...] = ("SLURM_JOB_", "SLURM_ARRAY_")

#: The ``SLURM_*`` inputs of the clients expyre runs, kept: the "INPUT ENVIRONMENT VARIABLES" of
#: sbatch(1) and the "ENVIRONMENT VARIABLES" of squeue(1), sacct(1), scancel(1) and scontrol(1).
#: ``SLURM_CONF`` and ``SLURM_CLUSTERS`` choose the controller and cluster, so every command of
#: one system must see the same values. Besides these, ``SBATCH_*``, ``SQUEUE_*``, ``SACCT_*``,
#: ``SCANCEL_*`` and ``SCONTROL_*`` are never touched.
CLIENT_INPUT_NAMES: tuple[str, ...] = (
    "SLURM_BITSTR_LEN",
    "SLURM_CLUSTERS",
    "SLURM_CONF",
    "SLURM_CONF_OUT",
    "SLURM_DEBUG_FLAGS",
    "SLURM_EXIT_ERROR",
    "SLURM_STEP_KILLED_MSG_NODE_ID",  # why SLURM_STEP_* is not a family: this one is an input
    "SLURM_TIME_FORMAT",
    "SLURM_TOPO_LEN",
    "SLURM_UMASK",  # srun sets it in a step too, but sbatch reads it: the user's choice wins
)

#: Every documented name of a job's or step's environment, sorted.
JOB_ENV_NAMES: tuple[str, ...] = tuple(sorted(set(SBATCH_OUTPUT) | set(SRUN_OUTPUT) | set(SALLOC_OUTPUT)))

#: What is removed before ``sbatch``: the families, then the names outside them (as prefixes, so
#: that ``<NAME>_HET_GROUP_<n>`` goes too).
JOB_ENV_PREFIXES: tuple[str, ...] = JOB_ENV_FAMILIES + tuple(
    n for n in JOB_ENV_NAMES if not n.startswith(JOB_ENV_FAMILIES)
)
