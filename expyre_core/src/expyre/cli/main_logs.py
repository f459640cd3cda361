"""``xpr logs ID``: :class:`expyre.logs.JobLogs` of one job, printed (and followed with ``-f``)."""

from __future__ import annotations

import json
import sys

import click

from ..cli_output import json_out
from .common import fail
from .main_show import complete_job_id

__all__ = ["logs_cmd"]


@click.command("logs")
@click.argument("job_id", metavar="ID", shell_complete=complete_job_id)
@click.option("--stderr", "stderr_", is_flag=True, help="the error output (default: the standard output)")
@click.option("-f", "--follow", is_flag=True, help="keep printing new output until the job ends (Ctrl-C stops)")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None, metavar="N",
              help="only the last N lines of each file at first")
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="seconds between reads with -f")
@click.option("--json", "as_json", is_flag=True,
              help="machine-readable output (with -f: one JSON object per line and chunk)")
def logs_cmd(job_id, stderr_, follow, lines, interval, as_json) -> None:
    """Print a job's output so far: what the job script wrote (_expyre_job.out, or .err with
    --stderr: what the scheduler captured) and what the function wrote (_expyre_stdout or
    _expyre_stderr), each under a '==> file <==' line. Read where the job runs (over ssh for a
    remote host, one command per read); a finished job from its stage directory.

    \b
    Examples:
      xpr logs fit_energy_ab12cd34ef_3 -n 20
      xpr logs fit_energy_ab12cd34ef_3 --stderr -f
    """
    from ..logs import JobLogs

    try:
        logs = JobLogs(job_id, "stderr" if stderr_ else "stdout")
    except LookupError as exc:
        fail(str(exc))
        return
    if not follow:
        r = logs.read(tail_lines=lines)
        if as_json:
            json_out({"id": job_id, "where": r.where, "finished": r.finished,
                      "files": {f: text for f, text in r.chunks}})
            return
        _Printer()(r.chunks)
        if not r.chunks:
            click.echo(f"xpr: no output yet in {r.where}", err=True)
        return
    printer = _Printer()
    try:
        for name, text in logs.follow(interval=interval, tail_lines=lines):
            if as_json:
                sys.stdout.write(json.dumps({"file": name, "text": text}) + "\n")
                sys.stdout.flush()
            else:
                printer([(name, text)])
    except KeyboardInterrupt:
        sys.exit(0)  # a Ctrl-C ends following quietly


class _Printer:
    """Prints chunks, each under a ``==> file <==`` line when it comes from another file than the
    one before (as ``tail`` does for several files)."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.at_line_start = True

    def __call__(self, chunks) -> None:
        for name, text in chunks:
            if name != self.last:
                if not self.at_line_start:
                    sys.stdout.write("\n")
                sys.stdout.write(f"==> {name} <==\n")
                self.last = name
            sys.stdout.write(text)
            self.at_line_start = text.endswith("\n")
        sys.stdout.flush()
