"""``expkit schedule add|list|remove|run-due|cron|starts`` and ``expkit alerts list|test``."""
from __future__ import annotations

import click

from ..errors import ConfigError
from ..formatting import text_table
from .main import cli, runs_dir_option
from .run import _read_params_file

file_option = click.option("--file", "file", type=click.Path(dir_okay=False), default=None,
                           help="Schedules file (default $EXPKIT_SCHEDULES, else schedules.yaml "
                                "in the project root).")
now_option = click.option("--now", default=None, metavar="ISO",
                          help="The clock to use instead of the current time (for testing), "
                               "e.g. 2024-05-01T03:05 (UTC unless an offset is given).")


def _when(value) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:%Y-%m-%d %H:%M}" if hasattr(value, "strftime") else str(value)


@cli.group()
def schedule():
    """Run templates on a schedule: retrain monthly, monitor hourly, ..."""


@schedule.command("add")
@click.argument("name")
@click.option("--template", required=True, help="Template name or .ipynb path.")
@click.option("--cron", "cron", required=True,
              help="Cron expression: minute hour day-of-month month day-of-week, e.g. '0 3 1 * *'.")
@click.option("-p", "--param", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Template parameter (repeatable), parsed to the default's type.")
@click.option("-f", "--params-file", type=click.Path(dir_okay=False), default=None,
              help="YAML file of parameters (-p wins over it).")
@click.option("--tenant", default=None, help="Run for one tenant.")
@click.option("--tenants", default=None, help="Comma-separated tenants: one run each.")
@click.option("--tenants-from", default=None, metavar="FILE:COLUMN",
              help="One run per distinct value of COLUMN in FILE, read at every start.")
@click.option("--promote", type=click.Choice(["if-better"]), default=None,
              help="Promote each succeeded run's model through the gate of `expkit promote model`.")
@click.option("--app", default=None, help="App the promoted models serve (default: the template's app parameter).")
@click.option("--tolerance", type=float, default=0.01, show_default=True,
              help="How much worse than production the hold-out metric may be.")
@click.option("--alert", is_flag=True, help="Send the alerts the run saves (the monitor template) to the sinks.")
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of the cron expression.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True, help="Runs at once.")
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
@click.option("--templates-dir", type=click.Path(file_okay=False), default=None)
@file_option
@now_option
def schedule_add(name, template, cron, params, params_file, tenant, tenants, tenants_from, promote, app,
                 tolerance, alert, timezone, workers, replace, templates_dir, file, now):
    """Add schedule NAME: TEMPLATE on CRON (checked now, not at 3 a.m.)."""
    from .. import schedules
    from ..templates import find_template, resolve_params, template_parameters

    strings = {}
    for key, value in params:
        if key in strings:
            raise ConfigError(f"parameter {key!r} is given twice")
        strings[key] = value
    values = _read_params_file(params_file) if params_file else {}
    path = find_template(template, templates_dir)
    resolved = resolve_params(path, strings, values)
    given = [o for o, v in (("--tenant", tenant), ("--tenants", tenants), ("--tenants-from", tenants_from)) if v]
    if len(given) > 1:
        raise ConfigError(f"use only one of {', '.join(given)}")
    tenant_list = [tenant] if tenant else [t.strip() for t in tenants.split(",") if t.strip()] if tenants else None
    if (tenant_list or tenants_from) and "tenant" not in template_parameters(path):
        raise ConfigError(f"template {path.stem!r} has no 'tenant' parameter")
    if tenants_from:
        from ..execute import tenants_from as read_tenants

        read_tenants(tenants_from)  # the file and column exist now
    if promote:
        app = app or resolved.get("app") or template_parameters(path).get("app")
        if not app:
            raise ConfigError("--promote needs the app the models serve", hint="pass --app APP")
    entry = schedules.Schedule(
        name=name, template=template, cron=cron, params=resolved, tenants=tenant_list,
        tenants_from=tenants_from, promote=promote, app=app,
        tolerance=tolerance, alert=alert, timezone=timezone, workers=workers)
    target = schedules.add(entry, file, replace=replace, now=now)
    click.echo(f"schedule {name}: {template} on '{cron}' ({timezone}); next run "
               f"{_when(entry.next_slot(now or schedules.utcnow()))} -> {target}")


@schedule.command("list")
@file_option
@now_option
@runs_dir_option
def schedule_list(file, now, runs_dir):
    """The schedules with their last and next run."""
    from .. import schedules

    table = schedules.fleet(now, file, runs_dir)
    if table.empty:
        click.echo(f"no schedules in {schedules.path(file)}")
        return
    rows = table.to_dict("records")
    for r in rows:
        for key in ("last_slot", "next_run"):
            r[key] = _when(r[key])
    click.echo(text_table(rows, ["schedule", "template", "cron", "tenants", "then", "last_slot", "last_status",
                                 "next_run"]))


@schedule.command("remove")
@click.argument("name")
@file_option
def schedule_remove(name, file):
    """Remove schedule NAME (its past starts stay in the index)."""
    from .. import schedules

    target = schedules.remove(name, file)
    click.echo(f"schedule {name} removed from {target}")


@schedule.command("run-due")
@click.option("--only", multiple=True, help="Only this schedule (repeatable).")
@click.option("--templates-dir", type=click.Path(file_okay=False), default=None)
@file_option
@now_option
@runs_dir_option
def schedule_run_due(only, templates_dir, file, now, runs_dir):
    """Start every schedule that is due (call it every minute: see `expkit schedule cron`).

    Exits 1 when a started run failed; refused promotions and monitor alerts are
    sent to the alert sinks, not errors.
    """
    from ..scheduler import run_due

    started = run_due(now=now, file=file, runs_dir=runs_dir, templates_dir=templates_dir, names=only or None)
    if not started:
        click.echo("nothing due")
        return
    for s in started:
        caught = f" (caught up {s['missed']} missed slot(s))" if s["missed"] else ""
        click.echo(f"{s['schedule']} [{_when(s['slot'])}]{caught}: {s['status']}: {s['detail']}")
        for r in s["runs"]:
            if r["status"] != "succeeded":
                click.echo(f"  {r['tenant'] or 'all'}: {r['status']}: {r['error']}", err=True)
        for a in s["alerts"]:
            click.echo(f"  alert sent: {a['message']}")
    if any(s["status"] != "succeeded" for s in started):
        click.get_current_context().exit(1)


@schedule.command("cron")
@file_option
@runs_dir_option
def schedule_cron(file, runs_dir):
    """Print the crontab line that runs `expkit schedule run-due` every minute."""
    from ..scheduler import cron_line

    click.echo("# add with `crontab -e`; the database password, if any, goes in ~/.pgpass, not here")
    click.echo(cron_line(file, runs_dir))


@schedule.command("starts")
@click.argument("name", required=False)
@runs_dir_option
def schedule_starts(name, runs_dir):
    """Past starts (newest first), of one schedule or all."""
    from .. import schedules

    table = schedules.starts(name, runs_dir)
    if table.empty:
        click.echo("no starts yet")
        return
    rows = table.to_dict("records")
    for r in rows:
        r["slot"], r["started_at"] = _when(r["slot"]), _when(r["started_at"])
        r["runs"] = len(r["runs"])
    click.echo(text_table(rows, ["schedule", "slot", "missed", "started_at", "status", "runs", "detail"]))


@cli.group()
def alerts():
    """Alerts sent to the sinks of schedules.yaml (webhook, file, log)."""


@alerts.command("list")
@click.option("--all", "everything", is_flag=True, help="Cleared alerts too.")
@runs_dir_option
def alerts_list(everything, runs_dir):
    """Open alerts (sent once, until they clear)."""
    from ..monitoring.alerts import state

    table = state(runs_dir, open_only=not everything)
    if table.empty:
        click.echo("no open alerts" if not everything else "no alerts yet")
        return
    rows = table.to_dict("records")
    for r in rows:
        r["opened_at"], r["cleared_at"] = _when(r["opened_at"]), _when(r["cleared_at"])
        r["sinks"] = len(r["delivered"])
    click.echo(text_table(rows, ["status", "level", "app", "tenant", "check", "opened_at", "cleared_at",
                                 "times_opened", "sinks", "message"]))


@alerts.command("test")
@file_option
@runs_dir_option
def alerts_test(file, runs_dir):
    """Send one test alert to every configured sink (nothing is recorded)."""
    from ..monitoring.alerts import config
    from ..scoring.scorelog import utcnow

    _, sinks = config(file, runs_dir)
    record = {"level": "alert", "app": None, "tenant": None, "check": "test",
              "message": "expkit test alert: this sink works", "source": "expkit alerts test",
              "fired_at": utcnow().isoformat(timespec="seconds")}
    failed = 0
    for sink in sinks:
        try:
            sink.send(record)
            click.echo(f"{sink.id}: sent")
        except Exception as exc:  # noqa: BLE001 - report every sink's outcome
            failed += 1
            click.echo(f"{sink.id}: FAILED: {exc}", err=True)
    if failed:
        click.get_current_context().exit(1)
