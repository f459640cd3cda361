"""Leaf layer: the layout of a job's stage directory, the one place that names its files.

Every ``_expyre_*`` file a stage directory ``<root>/run_<id>`` (and its copy on the executing
host) may hold is named here, and only here. The job-side runner (``_runner.py``) runs on hosts
without expyre installed, so it keeps its own copies of the names it writes; a test checks that
they equal these.
"""

from __future__ import annotations

__all__ = [
    "TASK", "META", "HASHES", "RUNNER", "SCRIPT", "JOB_STDOUT", "JOB_STDERR", "STARTED", "SUCCEEDED",
    "FAILED", "STDOUT", "STDERR", "USAGE", "MARKERS", "RESULT_MARKERS", "PARTIAL_PREFIX", "ARRAY_SCRIPT", "ARRAY_DIRS",
    "ARRAY_OUTPUT_PREFIX", "ARRAY_REF", "PREVIOUS_RUN_PREFIX", "LOCAL_QUEUE_DIR", "STAGE_DIR_PREFIX",
]

#: directory name of a job's stage directory: ``run_<job id>``
STAGE_DIR_PREFIX = "run_"

# -- written by the driver when the job is created ----------------------------------------------
#: the pickled call: function, number of args, each arg, sorted kwarg names, each kwarg value
TASK = "_expyre_task.pkl"
#: what the job needs besides the call (name, env vars, pre/post commands, input/output files, cwd)
META = "_expyre_meta.json"
#: per-component digests of a call (function, each argument, each input file), for ``xpr why``
HASHES = "_expyre_hashes.json"
#: the job-side runner, a copy of ``expyre/_runner.py``
RUNNER = "_expyre_runner.py"

# -- written by the driver when the job is started ----------------------------------------------
#: the job script (header, environment, the runner call)
SCRIPT = "_expyre_script.sh"
#: the job script's stdout and stderr, as the scheduler writes them
JOB_STDOUT = "_expyre_job.out"
JOB_STDERR = "_expyre_job.err"

# -- written by the runner in the job (each created by atomic rename) ----------------------------
#: the runner began (host, pid, time)
STARTED = "_expyre_job_started"
#: the pickled return value
SUCCEEDED = "_expyre_job_succeeded"
#: a pickled dict: the exception (if picklable), its type, message, traceback
FAILED = "_expyre_job_failed"
#: what the function wrote to file descriptors 1 and 2
STDOUT = "_expyre_stdout"
STDERR = "_expyre_stderr"
#: the markers a poll lists on the executing host
MARKERS = (SUCCEEDED, FAILED, STARTED)
#: the markers that mean the job has a result
RESULT_MARKERS = (SUCCEEDED, FAILED)
#: resources the job used (peak memory, times), written by the runner when it ends
USAGE = "_expyre_usage.json"
#: per-call outcome files of a packed job (``<prefix><index>``), written as its calls finish
PARTIAL_PREFIX = "_expyre_elem_"

# -- job arrays ----------------------------------------------------------------------------------
#: a job array's shared script and its list of element directories (in the first element's directory)
ARRAY_SCRIPT = "_expyre_array.sh"
ARRAY_DIRS = "_expyre_array_dirs"
#: a job array's own stdout/stderr files (in its first element's directory) are named
#: ``<ARRAY_OUTPUT_PREFIX><scheduler's element token>.out``/``.err``
ARRAY_OUTPUT_PREFIX = "_expyre_array_"
#: in a job's stage dir while it is (being) submitted as an element of a job array: the array's
#: job name and the element's index, so that an interrupted run finds the array before resubmitting
ARRAY_REF = "_expyre_array_ref.json"

# -- kept runs ---------------------------------------------------------------------------------
#: ``start(force_rerun=True)`` moves an earlier run's outputs to ``<prefix><n>/`` (n = 1, 2, ...)
PREVIOUS_RUN_PREFIX = "_expyre_prev_"

# -- beside the stage directories --------------------------------------------------------------
#: the built-in ``local`` scheduler's queue directory, in the run directory
LOCAL_QUEUE_DIR = "_expyre_localq"
