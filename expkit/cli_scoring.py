"""``expkit score``, ``expkit feedback`` and ``expkit monitor`` (added to the group by expkit.cli).

Errors are raised as :mod:`expkit.errors` exceptions; the group turns them into
one line on stderr and a non-zero exit code.
"""
from __future__ import annotations

import time

import click

from .errors import ConfigError

_runs_dir_option = click.option("--runs-dir", type=click.Path(file_okay=False), default=None,
                                help="Runs folder (default $EXPKIT_RUNS or ./runs).")


@click.command()
@click.argument("input", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output file (.csv or .parquet); written only when complete.")
@click.option("--app", required=True, help="Application the model was promoted for.")
@click.option("--tenant", default=None, help="Tenant whose production model to use.")
@click.option("--run", "run_id", default=None, help="Score with this run's model instead of production.")
@click.option("--reasons", type=click.IntRange(0, 20), default=0, show_default=True,
              help="Top reasons per row to add.")
@click.option("--keep", multiple=True,
              help="Input column(s) to pass through: repeatable or comma-separated (--keep a,b).")
@click.option("--chunksize", type=click.IntRange(1), default=100_000, show_default=True,
              help="Rows scored at a time (bounds memory).")
@click.option("--jobs", type=int, default=-1, show_default=True,
              help="Worker processes scoring chunks in parallel (-1: one per CPU; 1: none).")
@_runs_dir_option
def score(input, output, app, tenant, run_id, reasons, keep, chunksize, jobs, runs_dir):
    """Score INPUT (CSV/Parquet/JSON lines) with the production model of APP/TENANT."""
    start = time.perf_counter()
    from .workers import ScoringProcesses

    # fork the model host once pandas (which both processes need) is imported and before
    # this process imports the rest: scikit-learn and skops load beside it
    import pandas  # noqa: F401

    processes = ScoringProcesses.for_jobs(jobs)
    try:
        from .models.bundle import skip_skops_estimator_scan
        from .scoring import score_file

        skip_skops_estimator_scan()  # this process only scores: 1.5 s less start-up
        record = score_file(input, output, app=app, tenant=tenant, run=run_id, chunksize=chunksize,
                            reasons=reasons, keep=[c.strip() for k in keep for c in k.split(",")],
                            runs_dir=runs_dir, n_jobs=jobs,
                            processes=processes)
    finally:
        if processes is not None:
            processes.close()  # score_file closes them too; this covers a failure before it
    secs = time.perf_counter() - start
    click.echo(f"scored {record['rows']:,} rows with {app}/{tenant or '-'} model {record['version']} "
               f"in {secs:.1f}s ({record['rows'] / max(secs, 1e-9):,.0f} rows/s) -> {output} "
               f"(batch {record['id']})")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--app", required=True, help="Application whose scored ids the outcomes refer to.")
@click.option("--tenant", default=None, help="Tenant of the scored rows.")
@click.option("--id-column", default=None, help="Id column (default: id, or the model's id column).")
@click.option("--label-column", default=None, help="Outcome column (default: label, or the model's target).")
@_runs_dir_option
def feedback(file, app, tenant, id_column, label_column, runs_dir):
    """Load actual outcomes (id + 0/1 label) for rows scored before."""
    from .scoring import feedback as load_feedback

    n = load_feedback(file, app=app, tenant=tenant, id_column=id_column, label_column=label_column,
                      runs_dir=runs_dir)
    click.echo(f"loaded {n:,} outcomes for {app}/{tenant or '-'}")


@click.command()
@click.option("--app", default=None, help="Only the production models of this app.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None,
              help="Write the self-contained HTML dashboard here.")
@click.option("--check", is_flag=True, help="Exit 1 when any alert fires (for cron/CI).")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="Override an alert threshold, e.g. psi_alert=0.3 (repeatable).")
@_runs_dir_option
def monitor(app, html_path, check, thresholds, runs_dir):
    """Fleet KPIs, production models, drift and alerts."""
    from .monitoring import monitor as run_monitor

    result = run_monitor(app=app, runs_dir=runs_dir, thresholds=_parse_thresholds(thresholds))
    for name, value in zip(result.kpis["kpi"], result.kpis["value"]):
        shown = "-" if value != value else f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.4g}"
        click.echo(f"{name:<34}{shown}")
    if result.models.empty:
        click.echo("no production models yet")
    else:
        cols = ["app", "tenant", "version", "eval_auroc", "live_auroc", "rows_scored", "score_psi",
                "max_field_psi", "worst_field", "status"]
        click.echo("\n" + result.models[cols].to_string(index=False))
    for a in result.alerts.itertuples():
        click.echo(f"{a.level.upper()}: {a.message}")
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


commands = [score, feedback, monitor]
