"""A complete third-party scheduler plugin, outside the expyre source tree: jobs are background
bash processes tracked by pid. It uses only the public contract (expyre.hookimpl, expyre.hookspecs),
including the optional job-array members: an "array" of n elements is n background processes
started by one submit command, which prints their pids; element i's id is the i-th pid."""

from __future__ import annotations

import shlex

import expyre
from expyre.hookspecs import Scheduler, SchedulerSpec
from expyre.types import JobState, JobStatus


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
            pid, stat = line.split()
            out[pid] = JobStatus(JobState.UNKNOWN if stat.startswith("Z") else JobState.RUNNING, raw=stat)
        return out

    def control_command(self, op, ids):
        return ["kill", "-s", {"cancel": "TERM", "hold": "STOP", "release": "CONT"}[op], "--", *[f"-{i}" for i in ids]]


@expyre.hookimpl
def expyre_register_schedulers():
    yield SchedulerSpec("shellq", ShellQ, "background shells (test plugin)")
