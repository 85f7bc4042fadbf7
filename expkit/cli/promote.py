"""``expkit promote notebook|model`` and ``expkit models list``."""
from __future__ import annotations

import click

from ..errors import ConfigError
from ..formatting import fmt, text_table
from .main import cli, runs_dir_option


@cli.group()
def promote():
    """Promote a notebook to a template, or a run's model to production."""


@promote.command("notebook")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="Template name (templates/NAME.ipynb).")
@click.option("--templates-dir", type=click.Path(file_okay=False), default=None,
              help="Where templates live (default ./templates).")
@click.option("--reason", default=None, help="Why (kept in the template history).")
@runs_dir_option
def promote_notebook(path, name, templates_dir, reason, runs_dir):
    """Check PATH, execute it headless once, then save it as a template."""
    from ..promote import promote_notebook as do

    out = do(path, name, templates_dir=templates_dir, runs_dir=runs_dir, reason=reason)
    state = "saved as version" if out["changed"] else "unchanged, still version"
    click.echo(f"template {out['name']} {state} {out['version']} ({out['hash'][:12]}): {out['path']}")
    if out["scratch_run"]:
        click.echo(f"check run: {out['scratch_run']}")


@promote.command("model")
@click.argument("run_id", required=False)
@click.option("--app", required=True, help="Application the model serves.")
@click.option("--tenant", default=None, help="Tenant (default: the app-wide model).")
@click.option("--force", is_flag=True, help="Promote even if worse than production.")
@click.option("--tolerance", type=float, default=0.01, show_default=True,
              help="How much worse than production the hold-out metric may be.")
@click.option("--reason", default=None, help="Why (kept in the registry).")
@click.option("--rollback", is_flag=True, help="Put back the previous production model instead.")
@runs_dir_option
def promote_model(run_id, app, tenant, force, tolerance, reason, rollback, runs_dir):
    """Put RUN_ID's model in production for APP (and TENANT), or --rollback."""
    from ..registry import Registry

    registry = Registry(runs_dir)
    if rollback:
        if run_id:
            raise ConfigError("--rollback takes no RUN_ID")
        entry = registry.rollback(app, tenant, reason=reason)
        click.echo(f"{app}/{tenant or 'all'}: rolled back; version {entry['version']} "
                   f"(run {entry['run_id']}) is in production")
        return
    if not run_id:
        raise ConfigError("give the RUN_ID whose model to promote (or --rollback)")
    entry = registry.promote(run_id, app, tenant, force=force, tolerance=tolerance, reason=reason)
    click.echo(f"{app}/{tenant or 'all'}: version {entry['version']} (run {entry['run_id']}, "
               f"{entry['metric_name']} {fmt(entry['metric'])}) is in production")


@cli.group()
def models():
    """Production models."""


@models.command("list")
@click.option("--app", default=None, help="Only this app.")
@click.option("--all", "history", is_flag=True, help="Show every version, not only production.")
@runs_dir_option
def models_list(app, history, runs_dir):
    """Production models per (app, tenant); --all for the history."""
    from ..registry import Registry

    table = Registry(runs_dir).list(app)
    if not history:
        table = table[table["production"]]
    if table.empty:
        click.echo("no models in production" if not history else "no models promoted")
        return
    rows = table.to_dict("records")
    for r in rows:
        r["tenant"] = r["tenant"] or "all"
        r["promoted_at"] = (r["promoted_at"] or "")[:19].replace("T", " ")
    click.echo(text_table(rows, ["app", "tenant", "version", "status", "run_id", "metric_name", "metric",
                             "promoted_at", "by", "reason"]))




@models.command("decisions")
@click.option("--app", default=None, help="Only this app.")
@runs_dir_option
def models_decisions(app, runs_dir):
    """Automatic promotions (schedules with promote: if-better): promoted or not, and why."""
    from ..registry import Registry

    table = Registry(runs_dir).decisions(app)
    if table.empty:
        click.echo("no automatic promotion decisions yet")
        return
    rows = table.to_dict("records")
    for r in rows:
        r["tenant"] = r["tenant"] or "all"
        r["decided_at"] = (r["decided_at"] or "")[:19].replace("T", " ")
        r["promoted"] = "yes" if r["promoted"] else "no"
    click.echo(text_table(rows, ["decided_at", "app", "tenant", "run_id", "promoted", "version", "reason"]))
