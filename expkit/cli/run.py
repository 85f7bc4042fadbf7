"""``expkit run`` and ``expkit demo``: execute templates, one run per tenant."""
from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ..errors import ConfigError
from ..formatting import text_table
from .main import cli, cluster_engine, cluster_option, runs_dir_option

DEMO_TENANTS = 3


def _summary_rows(results: list[dict]) -> list[dict]:
    return [{"tenant": r["tenant"] if r["tenant"] is not None else "all", "status": r["status"],
             "winner": r["winner"],
             "metric": f"{r['metric_name']} {r['metric']:.4f}" if r.get("metric") is not None else None,
             "run folder": r["path"] or r["error"]} for r in results]


def _print_results(results: list[dict]) -> int:
    click.echo("")
    click.echo(text_table(_summary_rows(results), ["tenant", "status", "winner", "metric", "run folder"]))
    for r in results:  # a tournament whose budget did not let every family run says so
        note = budget_note(r)
        if note:
            click.echo(f"{r['tenant'] or 'all'}: {note}", err=True)
    failed = [r for r in results if r["status"] != "succeeded"]
    for r in failed:
        click.echo(f"{r['tenant'] or 'all'}: {r['status']}: {r['error'] or 'see the report'}", err=True)
    return 1 if failed else 0


def budget_note(result: dict) -> str | None:
    """The tournament's "budget too small: ..." message recorded in the run's metrics.json."""
    if not result.get("path"):
        return None
    from ..files import read_json

    try:
        note = read_json(Path(result["path"]) / "metrics.json", {}).get("budget_note")
    except (OSError, ValueError, AttributeError):  # unreadable: the summary table says enough
        return None
    return note if isinstance(note, str) else None


def _done_line(result: dict) -> str:
    state = result["status"] if result["status"] == "succeeded" else f"{result['status']} ({result['error']})"
    note = result.get("mlflow")
    mlflow = "" if not note else f" (MLflow {'' if note.startswith('not logged') else 'run '}{note})"
    return f"[{result['tenant'] or 'all'}] {state}: {result['report'] or '-'}{mlflow}"


def _run_watched(template, runs_dir, templates_dir, interval, **kwargs) -> list[dict]:
    """run_template with the runs folder named first and live progress lines per tenant."""
    from ..execute import run_template
    from ..paths import runs_dir_source
    from ..templates import find_template
    from ..watch import Watcher

    name = find_template(template, templates_dir).stem
    root, why = runs_dir_source(runs_dir)
    named = False

    def echo(text: str) -> None:
        """Name the runs folder with the first line about a run (refused input stays one error line)."""
        nonlocal named
        if not named:
            click.echo(f"runs folder {root} ({why})", err=True)
            named = True
        click.echo(text, err=True)

    with Watcher(root, name, echo, interval=interval) as watcher:
        return run_template(template, runs_dir=runs_dir, templates_dir=templates_dir,
                            on_done=lambda r: watcher.echo(_done_line(r)), **kwargs)


mlflow_option = click.option("--mlflow", "mlflow", default=None, metavar="URI",
                             help="Also log each run to this MLflow tracking URI (default "
                                  "$MLFLOW_TRACKING_URI; needs pip install -e '.[mlflow]').")
progress_option = click.option("--progress-every", "interval", type=click.FloatRange(0.5), default=10.0,
                               show_default=True, metavar="SECONDS",
                               help="Seconds between progress lines of a run when not on a terminal.")


def _tenant_list(tenant, tenants, tenants_from) -> list | None:
    given = [o for o, v in (("--tenant", tenant), ("--tenants", tenants), ("--tenants-from", tenants_from))
             if v is not None]
    if len(given) > 1:
        raise ConfigError(f"use only one of {', '.join(given)}")
    if tenant is not None:
        return [tenant]
    if tenants is not None:
        values = [t.strip() for t in tenants.split(",") if t.strip()]
        if not values:
            raise ConfigError("--tenants is empty")
        return values
    if tenants_from is not None:
        from ..execute import tenants_from as read_tenants

        return read_tenants(tenants_from)
    return None


@cli.command()
@click.argument("template")
@click.option("-p", "--param", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Set a template parameter (repeatable); VALUE is parsed to the default's type.")
@click.option("-f", "--params-file", type=click.Path(dir_okay=False), default=None,
              help="YAML file of parameters (-p wins over it).")
@click.option("--tenant", default=None, help="Run for one tenant.")
@click.option("--tenants", default=None, help="Comma-separated tenants: one run each.")
@click.option("--tenants-from", default=None, metavar="FILE:COLUMN",
              help="One run per distinct value of COLUMN in FILE.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Runs executed at once, one kernel each [default: 1; on a cluster, one per worker thread].")
@cluster_option
@click.option("--templates-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of templates (default ./templates, then the bundled ones).")
@progress_option
@mlflow_option
@runs_dir_option
def run(template, params, params_file, tenant, tenants, tenants_from, workers, cluster, templates_dir,
        interval, mlflow, runs_dir):
    """Execute TEMPLATE (a name or an .ipynb) with papermill, one run per tenant.

    While the runs work, a line per tenant says which notebook.ipynb is being written,
    then the time spent of the budget, the trials finished and the best score so far
    (read from the run's study.log)."""
    strings = {}
    for name, value in params:
        if name in strings:
            raise ConfigError(f"parameter {name!r} is given twice")
        strings[name] = value
    values = _read_params_file(params_file) if params_file else {}
    where = cluster_engine(cluster)
    with where or contextlib.nullcontext():
        results = _run_watched(template, runs_dir, templates_dir, interval, strings=strings, values=values,
                               tenants=_tenant_list(tenant, tenants, tenants_from), workers=workers,
                               mlflow=mlflow, cluster=where)
    return _print_results(results)


def _read_params_file(path) -> dict:
    import yaml

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"parameters file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"parameters file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"parameters file {path} must hold a mapping of NAME: VALUE")
    return data


@cli.command()
@click.option("--tenants", "n_tenants", type=click.IntRange(1, 6), default=DEMO_TENANTS, show_default=True)
@click.option("--budget", type=click.IntRange(5), default=20, show_default=True,
              help="Tournament seconds per tenant.")
@click.option("--rows", type=click.IntRange(200), default=3000, show_default=True,
              help="Demo leads rows (all tenants).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True)
@cluster_option
@progress_option
@mlflow_option
@runs_dir_option
def demo(n_tenants, budget, rows, workers, cluster, interval, mlflow, runs_dir):
    """Run the tournament template on the bundled demo leads, one run per tenant."""
    from ..datasets import leads

    tenants = sorted(leads(n_rows=rows, n_tenants=n_tenants, seed=0)["tenant"].astype(str).unique())
    click.echo(f"tournament template on {rows} demo leads, tenants {', '.join(tenants)}, "
               f"budget {budget}s each, {workers} at a time ...", err=True)
    where = cluster_engine(cluster)
    with where or contextlib.nullcontext():
        results = _run_watched("tournament", runs_dir, None, interval,
                               values={"budget": budget, "n_rows": rows, "n_tenants": n_tenants},
                               tenants=tenants, workers=workers, mlflow=mlflow, cluster=where)
    code = _print_results(results)
    click.echo("\nreports:")
    for r in results:
        if r["report"]:
            click.echo(f"  {r['report']}")
    click.echo("\nnext: expkit runs list | expkit runs compare RUN RUN | "
               "expkit promote model RUN --app leads --tenant TENANT")
    return code


