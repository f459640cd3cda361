"""``xpr why``: :func:`expyre.why.why_report` (and, for queued jobs,
:func:`expyre.why.explain_queued`) of the jobs of a name, printed."""

from __future__ import annotations

import re
from collections import defaultdict

import click

from ..cli_output import STATUS_STYLE, json_out, table, when
from ..cli_select import light_db
from ..why import explain_queued, why_report
from .common import fail

__all__ = ["why_cmd"]


@click.command("why")
@click.argument("name")
@click.option("-r", "--regexp", is_flag=True, help="NAME is a regexp (default: the exact job name)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def why_cmd(name, regexp, as_json) -> None:
    """Explain job reuse for a job NAME: the recorded jobs of that name, their hashes, which one an
    identical new call would reuse and why the others would not; and, where the jobs recorded
    per-component digests, what changed between calls (function code, an argument, an input file).
    For a job still queued, the scheduler's reason for the wait, where it can give one.

    A call is reused only if its name and hash (function identity and code, arguments except
    hash_ignore, input file names and contents) match a job that can still give results
    (created, submitted, started, succeeded).

    \b
    Example:  xpr why relax_structure
    """
    db = light_db()
    rows = []
    if db is not None:
        try:
            rows = db.jobs(name=name if regexp else re.escape(name))
        except ValueError as exc:
            fail(str(exc))
    if not rows:
        fail(f"no recorded job is named {name!r}" + ("" if regexp else " (use -r for a regexp)"))
    by_name: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_name[r["name"]].append(r)
    reports = {n: why_report(rs) for n, rs in sorted(by_name.items())}
    waiting = explain_queued(rows)
    for rep in reports.values():
        for j in rep["jobs"]:
            if j["id"] in waiting:
                j["waiting"] = waiting[j["id"]]
    if as_json:
        json_out(reports)
        return
    for n, rep in reports.items():
        click.echo(f"job name {n!r}: {len(rep['jobs'])} recorded job(s), newest first")
        table(["id", "status", "created", "hash", "reusable", "why"],
              [[j["id"], j["status"], when(j["created"]), (j["hash"] or "-")[:12], "yes" if j["reusable"] else "no", j["why"]]
               for j in rep["jobs"]], styles=lambda i, j, c: STATUS_STYLE.get(c) if j == 1 else None, wrap=True)
        newest = rep["jobs"][0]
        for j in rep["jobs"][1:]:
            if "changed_since" not in j:
                continue
            if j["changed_since"] is None:
                click.echo(f"  {newest['id']} vs {j['id']}: different hash; no per-component digests recorded to say what changed")
            else:
                click.echo(f"  {newest['id']} vs {j['id']}: changed: {'; '.join(j['changed_since'])}")
        for j in rep["jobs"]:
            if "waiting" in j:
                click.echo(f"  {j['id']} waits in the queue: {j['waiting']}")
        click.echo(rep["verdict"])
