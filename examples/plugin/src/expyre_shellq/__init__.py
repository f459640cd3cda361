"""expyre-shellq: a complete scheduler plugin, written as a third party writes one. Jobs are
background bash processes on the system's host, tracked by pid; ``ps`` is the status command and
``kill`` the control command (cancel = TERM, hold = STOP, release = CONT).

It uses only the public contract (``expyre.hookimpl``, ``expyre.hookspecs``), including the optional
job-array members: an "array" of n elements is n background processes started by one submit
command, which prints their pids; element i's id is the i-th pid. Its tests
(``tests/test_contract.py``) run expyre's offline contract kit from recorded ``ps`` outputs.
"""

from __future__ import annotations

import shlex

import expyre
from expyre.hookspecs import Scheduler, SchedulerSpec
from expyre.types import JobState, JobStatus

#: ``ps`` process state codes (the first letter of STAT; procps-ng ps(1), PROCESS STATE CODES)
STATES = {
    "R": JobState.RUNNING,  # running or runnable
    "S": JobState.RUNNING,  # interruptible sleep (waiting for an event)
    "D": JobState.RUNNING,  # uninterruptible sleep (usually I/O)
    "I": JobState.RUNNING,  # idle kernel thread
    "W": JobState.RUNNING,  # paging (not valid since Linux 2.6)
    "T": JobState.HELD,  # stopped by a job control signal: our hold (SIGSTOP)
    "t": JobState.HELD,  # stopped by a debugger
    "Z": JobState.UNKNOWN,  # exited, not yet reaped by its parent: the job's result files decide
    "X": JobState.UNKNOWN,  # dead (should never be seen)
}


class ShellQ(Scheduler):
    name = "shellq"
    vanish_grace = 0.5
    # job arrays
    max_array_size = 100
    array_index_var = "SHELLQ_INDEX"
    array_output_token = "INDEX"

    def header(self, job):
        return [f"# shellq job {job.id}"]

    def array_header(self, job, n):
        return [f"# shellq array of {n}"]

    def array_element_id(self, array_id, i):
        return array_id.split(",")[i]

    def submit_command(self, job):
        script, out, err = (shlex.quote(x) for x in (job.script, job.stdout, job.stderr))
        return ["bash", "-c", f"""
n=$(sed -n 's/^# shellq array of \\([0-9]*\\)$/\\1/p' {script})
if [ -z "$n" ]; then
    setsid nohup bash {script} > {out} 2> {err} < /dev/null & echo $!
else
    o={out}; e={err}; pids=
    for i in $(seq 0 $((n - 1))); do
        SHELLQ_INDEX=$i setsid nohup bash {script} > "${{o//INDEX/$i}}" 2> "${{e//INDEX/$i}}" < /dev/null &
        pids="$pids${{pids:+,}}$!"
    done
    echo "$pids"
fi"""]

    def parse_submit(self, result, job):
        text = result.stdout.strip()
        if not result.ok or not text.replace(",", "").isdigit():
            raise self.submit_failed(result, "shellq")
        return text

    def status_command(self, ids):
        return ["ps", "-o", "pid=,stat=", "-p", ",".join(ids)]

    def parse_status(self, result, ids):
        out = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) != 2 or fields[0] not in ids:
                continue
            pid, stat = fields
            # an unknown code is UNKNOWN: the core keeps waiting, it never fails a job on it
            out[pid] = JobStatus(STATES.get(stat[:1], JobState.UNKNOWN), raw=stat)
        return out

    def control_command(self, op, ids):
        return ["kill", "-s", {"cancel": "TERM", "hold": "STOP", "release": "CONT"}[op], "--", *[f"-{i}" for i in ids]]


@expyre.hookimpl
def expyre_register_schedulers():
    yield SchedulerSpec("shellq", ShellQ, "background shells (the example plugin)")
