"""``expkit monitor``: fleet KPIs, production models, drift and alerts."""
from __future__ import annotations

import click

from ..errors import ConfigError
from ..formatting import fmt
from .main import cli, runs_dir_option


@cli.command()
@click.option("--app", default=None, help="Only the production models of this app.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write the self-contained HTML dashboard here.")
@click.option("--check", is_flag=True, help="Exit 1 when any alert fires (for cron/CI).")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="Override an alert threshold, e.g. psi_alert=0.3 (repeatable).")
@click.option("--notify", is_flag=True,
              help="Send new alerts to the sinks of schedules.yaml (once each, until they clear).")
@click.option("--now", default=None, metavar="ISO", help="The clock to use instead of the current time.")
@runs_dir_option
def monitor(app, html_path, check, thresholds, notify, now, runs_dir):
    """Fleet KPIs, production models, schedules, drift and alerts."""
    from ..files import check_writable
    from ..monitoring import monitor as run_monitor

    if html_path:
        check_writable(html_path)  # said now, not after the monitor has run
    result = run_monitor(app=app, runs_dir=runs_dir, thresholds=_parse_thresholds(thresholds), now=now)
    click.echo(result.folder_line, err=True)
    for name, value in zip(result.kpis["kpi"], result.kpis["value"]):
        click.echo(f"{name:<34}{fmt(value, '-')}")
    if result.models.empty:
        click.echo("no production models yet")
    else:
        cols = ["app", "tenant", "version", "eval_auroc", "live_auroc", "rows_scored", "score_psi",
                "max_field_psi", "worst_field", "status"]
        click.echo("\n" + result.models[cols].to_string(index=False))
    if len(result.schedules):
        click.echo("\n" + result.schedules[["schedule", "template", "cron", "last_slot", "last_status",
                                            "next_run"]].to_string(index=False))
    for a in result.alerts.itertuples():
        click.echo(f"{a.level.upper()}: {a.message}")
    if notify:
        from ..monitoring import alerts

        firing, evaluated = alerts.from_monitor(result)
        sent = alerts.notify(firing, evaluated, source="monitor", runs_dir=runs_dir, now=result.generated_at)
        click.echo(f"{len(sent)} new alert(s) sent")
    if html_path:
        result.to_html(html_path)
        click.echo(f"dashboard -> {html_path}")
    if check and not result.ok:
        click.get_current_context().exit(1)


def _parse_thresholds(items) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--threshold {item!r} is not NAME=VALUE", hint="e.g. --threshold psi_alert=0.3")
        out[name.strip()] = value.strip()
    return out


