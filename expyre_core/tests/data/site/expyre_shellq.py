"""A complete third-party scheduler plugin, outside the expyre source tree: jobs are background
bash processes tracked by pid. It uses only the public contract (expyre.hookimpl, expyre.hookspecs)."""

from __future__ import annotations

import expyre
from expyre.hookspecs import Scheduler, SchedulerSpec
from expyre.types import JobState, JobStatus


class ShellQ(Scheduler):
    name = "shellq"
    vanish_grace = 0.5

    def header(self, job):
        return [f"# shellq job {job.id}"]

    def submit_command(self, job):
        return ["bash", "-c", f"setsid nohup bash {job.script} > {job.stdout} 2> {job.stderr} < /dev/null & echo $!"]

    def parse_submit(self, result, job):
        if not result.ok or not result.stdout.strip().isdigit():
            raise self.submit_failed(result, "shellq")
        return result.stdout.strip()

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
