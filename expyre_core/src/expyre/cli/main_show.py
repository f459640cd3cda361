"""``xpr show ID``: :func:`expyre.show.describe` of one job, printed as a block (or JSON)."""

from __future__ import annotations

import json
from typing import Any

import click

from ..cli_output import json_out, when
from ..show import JobNotFoundError, describe
from .common import fail

__all__ = ["show_cmd", "complete_job_id"]


def complete_job_id(ctx, param, incomplete: str) -> list:
    """Shell completion of a job ID: the recorded ids starting with what was typed (at most 100)."""
    import re

    from click.shell_completion import CompletionItem

    from ..cli_select import light_db

    try:
        db = light_db()
        rows = db.jobs(id=re.escape(incomplete) + ".*", order="id", limit=100) if db is not None else []
    except Exception:  # noqa: BLE001 - completion must never fail loudly
        return []
    return [CompletionItem(r["id"], help=f"{r['name']} ({r['status']})") for r in rows]


def _res_text(res: Any) -> str:
    if not isinstance(res, dict):
        return str(res) if res else "not recorded"
    parts = []
    n = res.get("n")
    if isinstance(n, (list, tuple)) and len(n) == 2:
        parts.append(f"{n[0]} {n[1]}")
    if res.get("max_time") is not None:
        parts.append(f"max_time {res['max_time']} s")
    if res.get("ncores_per_task"):
        parts.append(f"ncores_per_task {res['ncores_per_task']}")
    if res.get("max_mem_per_task"):
        parts.append(f"max_mem_per_task {res['max_mem_per_task']} kB")
    if res.get("partitions"):
        parts.append(f"partitions asked {', '.join(res['partitions'])}")
    return ", ".join(parts) or json.dumps(res)


def _usage_lines(usage: Any) -> list[str]:
    from ..usage import summary

    if not isinstance(usage, dict) or not usage:
        return ["  usage:         not recorded"]
    out = [f"  usage:         {summary(usage)}"]
    r = usage.get("runner")
    if isinstance(r, dict) and r.get("start_time") and r.get("end_time"):
        out.append(f"    ran:         {when(r['start_time'])} to {when(r['end_time'])}"
                   + (f" on {r['host']}" if r.get("host") else ""))
    if "scheduler" not in usage:
        out.append("    scheduler:   not recorded (not available, or not yet in its accounting records)")
    return out


def _block(info: dict[str, Any]) -> list[str]:
    status = info["status"] + (f": {info['reason']}" if info.get("reason") else "")
    out = [f"job {info['id']}  (name {info['name']})", f"  status:        {status}"]
    t = info["times"]
    out.append(f"  created:       {when(t['created'])}")
    if t.get("submitted"):
        out.append(f"  submitted:     {when(t['submitted'])}")
    if t.get("started"):
        where = info["started"] or {}
        out.append(f"  started:       {when(t['started'])}" + (f" on {where['host']} (pid {where.get('pid')})" if where.get("host") else ""))
    out.append(f"  last change:   {when(t['status_changed'])}")
    out.append(f"  system:        {info['system'] or '- (not started)'}")
    if info.get("remote_id"):
        ongoing = info["status"] in ("created", "submitted", "started")  # the last poll's word is stale after the end
        out.append(f"  scheduler id:  {info['remote_id']}"
                   + (f"  (last recorded: {info.get('remote_status') or '-'})" if ongoing else ""))
        view = info.get("scheduler")
        if view is not None:
            out.append(f"  scheduler now: {view.get('describe') or 'cannot ask: ' + str(view.get('error'))}")
    out.append(f"  resources:     {_res_text(info.get('resources'))}")
    out.append(f"  partition:     {info.get('partition') or 'not recorded'}")
    for line in info.get("script_header") or []:
        out.append(f"    {line}")
    out.append(f"  stage dir:     {info['stage_dir']}")
    if info.get("remote_dir"):
        out.append(f"  remote dir:    {info['remote_dir']}")
    out.extend(_usage_lines(info.get("usage")))
    failure = info.get("failure")
    if failure:
        if failure.get("error"):
            out.append(f"  failure:       {failure['error']}")
        if failure.get("type") or failure.get("traceback"):
            where = " ".join(x for x in (f"on {failure['host']}" if failure.get("host") else "",
                                          f"while {failure['stage']}" if failure.get("stage") else "") if x)
            out.append(f"  failure:       {failure.get('type')}: {failure.get('message')}" + (f" ({where})" if where else ""))
            out.append("  remote traceback:")
            out.extend(f"    {ln}" for ln in (failure.get("traceback") or "").rstrip().splitlines())
        for e in failure.get("elements", []):
            idx = f" (map index {e['index']})" if e.get("index") is not None else ""
            out.append(f"  element {e['element']}{idx} failed: " + (e.get("error") or f"{e.get('type')}: {e.get('message')}"))
            out.extend(f"    {ln}" for ln in (e.get("traceback") or "").rstrip().splitlines())
    for p in info.get("problems") or []:
        out.append(f"  note:          {p}")
    return out


@click.command("show")
@click.argument("job_id", metavar="ID", shell_complete=complete_job_id)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (times in epoch seconds)")
def show_cmd(job_id, as_json) -> None:
    """Show everything known of one job: status and reason, times, system, scheduler id and the
    scheduler's current view (one status query), resources and the partition chosen, stage and
    remote directories, a failed call's remote traceback (each failed element's for a packed
    Executor job), and resource usage when recorded.

    \b
    Example:  xpr show fit_energy_ab12cd34ef_3
    """
    try:
        info = describe(job_id)
    except JobNotFoundError as exc:
        fail(str(exc))
        return
    if as_json:
        json_out(info)
        return
    click.echo("\n".join(_block(info)))
