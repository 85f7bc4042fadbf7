"""``expkit runs list|show|compare|rebuild-index``."""
from __future__ import annotations

import json

import click

from ..formatting import fmt, text_table
from .main import cli, runs_dir_option


@cli.group()
def runs():
    """List, show, compare runs; rebuild the run index."""


@runs.command("list")
@click.option("--template", default=None, help="Only runs of this template.")
@click.option("--tenant", default=None, help="Only runs of this tenant.")
@click.option("--status", default=None,
              type=click.Choice(["created", "running", "succeeded", "failed", "interrupted"]))
@click.option("--since", default=None, help="Only runs created since a date (2024-05-01) or an age (12h, 7d).")
@click.option("--where", default=None, metavar="CONDITIONS",
              help="Conditions on metrics and parameters, e.g. \"auroc > 0.8 and budget >= 30\".")
@click.option("--sort", default=None, metavar="NAME [asc|desc]",
              help="Sort by a column, metric or parameter, e.g. \"auroc desc\" (default: newest first).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@runs_dir_option
def runs_list(template, tenant, status, since, where, sort, limit, runs_dir):
    """The runs, newest first (or as --sort says)."""
    from .. import runs as runs_mod

    table = runs_mod.list(template=template, tenant=tenant, status=status, since=since, runs_dir=runs_dir,
                          where=where, sort=sort)
    click.echo(table.folder_line(), err=True)
    if table.empty:
        click.echo("no runs")
        return
    extra = [c for c in table.columns if c not in runs_mod.LIST_COLUMNS]  # named in --where/--sort
    rows = table.head(limit).to_dict("records")
    for r in rows:
        r["created"] = (r["created"] or "")[:19].replace("T", " ")
        r["metric"] = f"{r['metric_name']} {fmt(r['metric'])}" if _show(r["metric"]) != "-" else None
    click.echo(text_table(rows, ["run_id", "status", "template", "tenant", "created", "duration",
                             "winner", "metric", *extra]))
    if len(table) > limit:
        click.echo(f"... {len(table) - limit} more (use --limit)")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print run.json and metrics as JSON.")
@runs_dir_option
def runs_show(run_id, as_json, runs_dir):
    """Parameters, status, error, metrics and files of RUN_ID."""
    from .. import runs as runs_mod

    info = runs_mod.show(run_id, runs_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    pad = " " * 17
    click.echo(f"{'run':<17}{info['id']}")
    for key in ("status", "template", "template_hash", "template_version", "tenant", "created",
                "started", "ended", "duration", "git_commit", "path"):
        click.echo(f"{key:<17}{_show(info.get(key))}")
    error = info.get("error")
    if error:
        where = f"cell {error['cell']} (In [{error.get('execution_count')}]): " if error.get("cell") else ""
        click.echo(f"{'error':<17}{where}{error.get('message')}")
        if error.get("source"):
            click.echo(pad + error["source"].replace("\n", "\n" + pad))
    for key, value in (info.get("data") or {}).items():
        click.echo(f"{'data.' + key:<17}{_show(value)}")
    click.echo("params")
    for key, value in info.get("params", {}).items():
        click.echo(f"  {key} = {value!r}")
    click.echo("metrics")
    for key, value in runs_mod.flatten(info.get("metrics", {})).items():
        click.echo(f"  {key} = {_show(value)}")
    click.echo(f"{'files':<17}" + ", ".join(info["files"]))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--diff", "only_diff", is_flag=True, help="Show only the rows that differ.")
@runs_dir_option
def runs_compare(run_ids, only_diff, runs_dir):
    """Parameters and metrics of RUN_IDS side by side: what differs first ('*'), then
    what they share."""
    from .. import runs as runs_mod

    frame = runs_mod.compare(run_ids, runs_dir)
    ids = [c for c in frame.columns if c != "differs"]
    differ, same = frame[frame["differs"]], frame[~frame["differs"]]
    rows = [{"": "*", "field": name, **{i: row[i] for i in ids}} for name, row in differ.iterrows()]
    click.echo(f"{len(differ)} of {len(frame)} fields differ" + ("" if only_diff or not len(same) else
                                                                 f"; the {len(same)} shared follow"))
    if not only_diff and len(same):
        rows.append({"": "", "field": "", **dict.fromkeys(ids, "")})
        rows += [{"": "", "field": name, **{i: row[i] for i in ids}} for name, row in same.iterrows()]
    click.echo(text_table(rows, ["", "field", *ids]))


@runs.command("rebuild-index")
@runs_dir_option
def runs_rebuild(runs_dir):
    """Recreate the index (runs, registry, score log, feedback) from the files."""
    from ..index import rebuild
    from ..paths import runs_dir as where

    out = rebuild(runs_dir)
    if out.moved:
        click.echo(f"the corrupt index was moved to {out.moved}")
    click.echo(f"indexed {out.runs} run(s), {out.versions} model version(s), {out.batches} score batch(es) "
               f"and {out.feedback} feedback row(s) in {where(runs_dir)}")
    for folder, why in out.skipped:
        click.echo(f"skipped {folder}: {why}", err=True)


def _show(value) -> str:
    return fmt(value, "-")
