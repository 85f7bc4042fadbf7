"""The ``expkit`` command: a thin click layer over expkit's functions.

Every expkit error becomes one line ``error: <message>`` on stderr and the
error's exit code; usage mistakes print the usage and one error line (exit 2);
tracebacks appear only with ``--debug``.
"""
from __future__ import annotations

import gc
import json
import logging
import math
import signal
import sys
import threading
import traceback

import click

from .cli_scoring import commands as scoring_commands
from .errors import ConfigError, ExpkitError, Terminated

DEMO_TENANTS = 3


def _terminate(signum, frame):
    raise Terminated()


class ExpkitGroup(click.Group):
    """A click group that turns errors into one line (tracebacks only with --debug)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = sys.argv[1:] if args is None else list(args)
        debug = "--debug" in argv
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            code = super().main(args=argv, prog_name=prog_name or "expkit", complete_var=complete_var,
                                standalone_mode=False, **extra)
        except ExpkitError as exc:
            code = _fail(str(exc), exc.exit_code, debug)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            code = exc.exit_code
        except click.UsageError as exc:
            if exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
            code = _fail(exc.format_message(), exc.exit_code, debug)
        except click.ClickException as exc:
            code = _fail(exc.format_message(), exc.exit_code, debug)
        except (click.Abort, KeyboardInterrupt) as exc:  # click turns KeyboardInterrupt into Abort
            if isinstance(exc, Terminated) or isinstance(exc.__context__, Terminated):
                code = _fail("terminated", 143, debug)
            else:
                code = _fail("interrupted", 130, debug)
        except Exception as exc:  # a bug: still one line unless --debug
            code = _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)", 1, debug)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)  # e.g. when invoked inside a test process
        # Everything is written and committed by now; skip the collector's last walk over
        # every object the command created (over a second after scoring a million rows).
        gc.freeze()
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int, debug: bool) -> int:
    if debug and sys.exc_info()[0] is not None:
        traceback.print_exc()
    click.echo(f"error: {message}", err=True)
    return code


runs_dir_option = click.option("--runs-dir", type=click.Path(file_okay=False), default=None,
                               help="Runs folder (default $EXPKIT_RUNS or ./runs).")


@click.group(cls=ExpkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show debug logs and full tracebacks.")
@click.version_option(package_name="expkit")
def cli(debug):
    """expkit: explore, run model tournaments per tenant, promote, score and monitor."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def main():
    """Console-script entry point."""
    cli.main()


# -- helpers ---------------------------------------------------------------------
def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _summary_rows(results: list[dict]) -> list[dict]:
    return [{"tenant": r["tenant"] if r["tenant"] is not None else "all", "status": r["status"],
             "winner": r["winner"],
             "metric": f"{r['metric_name']} {r['metric']:.4f}" if r.get("metric") is not None else None,
             "run folder": r["path"] or r["error"]} for r in results]


def _print_results(results: list[dict]) -> int:
    click.echo("")
    click.echo(_table(_summary_rows(results), ["tenant", "status", "winner", "metric", "run folder"]))
    failed = [r for r in results if r["status"] != "succeeded"]
    for r in failed:
        click.echo(f"{r['tenant'] or 'all'}: {r['status']}: {r['error'] or 'see the report'}", err=True)
    return 1 if failed else 0


def _on_done(result: dict) -> None:
    state = result["status"] if result["status"] == "succeeded" else f"{result['status']} ({result['error']})"
    click.echo(f"[{result['tenant'] or 'all'}] {state}: {result['report'] or '-'}", err=True)


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
        from .execute import tenants_from as read_tenants

        return read_tenants(tenants_from)
    return None


# -- expkit run ---------------------------------------------------------------------
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
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Runs executed at once (one kernel each).")
@click.option("--templates-dir", type=click.Path(file_okay=False), default=None,
              help="Folder of templates (default ./templates, then the bundled ones).")
@runs_dir_option
def run(template, params, params_file, tenant, tenants, tenants_from, workers, templates_dir, runs_dir):
    """Execute TEMPLATE (a name or an .ipynb) with papermill, one run per tenant."""
    from .execute import run_template

    strings = {}
    for name, value in params:
        if name in strings:
            raise ConfigError(f"parameter {name!r} is given twice")
        strings[name] = value
    values = _read_params_file(params_file) if params_file else {}
    results = run_template(template, strings=strings, values=values,
                           tenants=_tenant_list(tenant, tenants, tenants_from), workers=workers,
                           runs_dir=runs_dir, templates_dir=templates_dir, on_done=_on_done)
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


# -- expkit runs ...------------------------------------------------------------------
@cli.group()
def runs():
    """List, show, compare runs; rebuild the run index."""


@runs.command("list")
@click.option("--template", default=None, help="Only runs of this template.")
@click.option("--tenant", default=None, help="Only runs of this tenant.")
@click.option("--status", default=None,
              type=click.Choice(["created", "running", "succeeded", "failed", "interrupted"]))
@click.option("--since", default=None, help="Only runs created since a date (2024-05-01) or an age (12h, 7d).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@runs_dir_option
def runs_list(template, tenant, status, since, limit, runs_dir):
    """The runs, newest first."""
    from . import runs as runs_mod

    table = runs_mod.list(template=template, tenant=tenant, status=status, since=since, runs_dir=runs_dir)
    if table.empty:
        click.echo("no runs")
        return
    rows = table.head(limit).to_dict("records")
    for r in rows:
        r["created"] = (r["created"] or "")[:19].replace("T", " ")
        r["metric"] = f"{r['metric_name']} {r['metric']:.4f}" if _fmt(r["metric"]) != "-" else None
    click.echo(_table(rows, ["run_id", "status", "template", "tenant", "created", "duration",
                             "winner", "metric"]))
    if len(table) > limit:
        click.echo(f"... {len(table) - limit} more (use --limit)")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print run.json and metrics as JSON.")
@runs_dir_option
def runs_show(run_id, as_json, runs_dir):
    """Parameters, status, error, metrics and files of RUN_ID."""
    from . import runs as runs_mod

    info = runs_mod.show(run_id, runs_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    pad = " " * 17
    click.echo(f"{'run':<17}{info['id']}")
    for key in ("status", "template", "template_hash", "template_version", "tenant", "created",
                "started", "ended", "duration", "git_commit", "path"):
        click.echo(f"{key:<17}{_fmt(info.get(key))}")
    error = info.get("error")
    if error:
        where = f"cell {error['cell']} (In [{error.get('execution_count')}]): " if error.get("cell") else ""
        click.echo(f"{'error':<17}{where}{error.get('message')}")
        if error.get("source"):
            click.echo(pad + error["source"].replace("\n", "\n" + pad))
    for key, value in (info.get("data") or {}).items():
        click.echo(f"{'data.' + key:<17}{_fmt(value)}")
    click.echo("params")
    for key, value in info.get("params", {}).items():
        click.echo(f"  {key} = {value!r}")
    click.echo("metrics")
    for key, value in runs_mod._flatten(info.get("metrics", {})).items():
        click.echo(f"  {key} = {_fmt(value)}")
    click.echo(f"{'files':<17}" + ", ".join(info["files"]))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--diff", "only_diff", is_flag=True, help="Show only the rows that differ.")
@runs_dir_option
def runs_compare(run_ids, only_diff, runs_dir):
    """Parameters and metrics of RUN_IDS side by side; '*' marks differences."""
    from . import runs as runs_mod

    frame = runs_mod.compare(run_ids, runs_dir)
    ids = [c for c in frame.columns if c != "differs"]
    rows = []
    for name, row in frame.iterrows():
        if only_diff and not row["differs"]:
            continue
        rows.append({"": "*" if row["differs"] else "", "field": name, **{i: row[i] for i in ids}})
    click.echo(_table(rows, ["", "field", *ids]))


@runs.command("rebuild-index")
@runs_dir_option
def runs_rebuild(runs_dir):
    """Recreate the run index from the run folders."""
    from . import runs as runs_mod

    n = runs_mod.rebuild_index(runs_dir)
    click.echo(f"indexed {n} run(s) in {runs_mod.runs_dir(runs_dir)}")


# -- expkit promote ...---------------------------------------------------------------
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
    from .promote import promote_notebook as do

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
    from .registry import Registry

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
               f"{entry['metric_name']} {_fmt(entry['metric'])}) is in production")


@cli.group()
def models():
    """Production models."""


@models.command("list")
@click.option("--app", default=None, help="Only this app.")
@click.option("--all", "history", is_flag=True, help="Show every version, not only production.")
@runs_dir_option
def models_list(app, history, runs_dir):
    """Production models per (app, tenant); --all for the history."""
    from .registry import Registry

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
    click.echo(_table(rows, ["app", "tenant", "version", "status", "run_id", "metric_name", "metric",
                             "promoted_at", "by", "reason"]))


# -- expkit demo ------------------------------------------------------------------------
@cli.command()
@click.option("--tenants", "n_tenants", type=click.IntRange(1, 6), default=DEMO_TENANTS, show_default=True)
@click.option("--budget", type=click.IntRange(5), default=20, show_default=True,
              help="Tournament seconds per tenant.")
@click.option("--rows", type=click.IntRange(200), default=3000, show_default=True,
              help="Demo leads rows (all tenants).")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True)
@runs_dir_option
def demo(n_tenants, budget, rows, workers, runs_dir):
    """Run the tournament template on the bundled demo leads, one run per tenant."""
    from .datasets import leads
    from .execute import run_template

    tenants = sorted(leads(n_rows=rows, n_tenants=n_tenants, seed=0)["tenant"].astype(str).unique())
    click.echo(f"tournament template on {rows} demo leads, tenants {', '.join(tenants)}, "
               f"budget {budget}s each, {workers} at a time ...", err=True)
    results = run_template("tournament", values={"budget": budget, "n_rows": rows, "n_tenants": n_tenants},
                           tenants=tenants, workers=workers, runs_dir=runs_dir, on_done=_on_done)
    code = _print_results(results)
    click.echo("\nreports:")
    for r in results:
        if r["report"]:
            click.echo(f"  {r['report']}")
    click.echo("\nnext: expkit runs list | expkit runs compare RUN RUN | "
               "expkit promote model RUN --app leads --tenant TENANT")
    return code


for _command in scoring_commands:
    cli.add_command(_command)
