"""``xpr plugins``: the scheduler and transport plugins (:func:`expyre.plugins.plugin_infos`)."""

from __future__ import annotations

import click

from ..cli_output import json_out, table

__all__ = ["plugins_cmd"]


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins_cmd(as_json) -> None:
    """List scheduler and transport plugins with their distribution and version, and any that
    failed to load (with the reason).

    \b
    Examples:
      xpr plugins
      EXPYRE_DISABLE_PLUGINS=pbs xpr plugins --json
    """
    from .. import plugins

    infos = plugins.plugin_infos()
    data = {
        "plugins": [
            {
                "name": i.name,
                "module": i.module,
                "distribution": i.distribution,
                "version": i.version,
                "hooks": list(i.hooks),
                "schedulers": list(i.schedulers),
                "transports": list(i.transports),
                "status": i.status,
            }
            for i in infos
        ],
        "schedulers": sorted(plugins.schedulers()),
        "transports": sorted(plugins.transports()),
        "failed": plugins.failed_plugins(),
    }
    if as_json:
        json_out(data)
        return
    rows = []
    for p in data["plugins"]:
        dist = f"{p['distribution']} {p['version']}" if p["distribution"] else "built in (expyre-core)"
        provides = ", ".join([f"scheduler {s}" for s in p["schedulers"]] + [f"transport {t}" for t in p["transports"]])
        rows.append([p["name"], dist, p["status"], provides or "-"])

    def style(i, j, c):
        if j == 2:
            return "green" if c == "loaded" else ("dim" if c == "disabled" else "bold red")
        return None

    table(["plugin", "distribution", "status", "provides"], rows, styles=style, wrap=True)
    click.echo(f"schedulers: {', '.join(data['schedulers'])}")
    click.echo(f"transports: {', '.join(data['transports'])}")
    for n, reason in data["failed"].items():
        click.echo(f"xpr: plugin {n!r} failed to load: {reason} (disable it with EXPYRE_DISABLE_PLUGINS={n})", err=True)

