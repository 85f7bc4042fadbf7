"""``expkit score`` and ``expkit feedback``."""
from __future__ import annotations

import contextlib
import time

import click

from .main import cli, cluster_engine, runs_dir_option


@cli.command()
@click.argument("input", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output file (.csv, .tsv or .parquet; a folder ending in / for a Parquet dataset), "
                   "or a database URL with --table; written only when complete.")
@click.option("--query", default=None,
              help="With a database URL as INPUT: a table name or a SELECT.")
@click.option("--table", default=None, help="With a database URL as --output: the table to write.")
@click.option("--if-exists", type=click.Choice(["append", "replace", "fail"]), default="append",
              show_default=True, help="With --table: what to do when the table exists.")
@click.option("--app", required=True, help="Application the model was promoted for.")
@click.option("--tenant", default=None, help="Tenant whose production model to use.")
@click.option("--run", "run_id", default=None,
              help="Score with the model of this run (an id of the runs folder) instead of production.")
@click.option("--reasons", type=click.IntRange(0, 20), default=0, show_default=True,
              help="Top reasons per row to add.")
@click.option("--keep", multiple=True,
              help="Input column(s) to pass through: repeatable or comma-separated (--keep a,b).")
@click.option("--chunksize", type=click.IntRange(1), default=100_000, show_default=True,
              help="Rows scored at a time (bounds memory).")
@click.option("--jobs", type=int, default=-1, show_default=True,
              help="Worker processes on this machine (-1: one per CPU; 1: this process only).")
@click.option("--cluster", default=None, metavar="ADDRESS|local:N",
              help="Score on a Dask cluster: a scheduler address, or local:N for a local cluster of N "
                   "processes (default $EXPKIT_DASK_SCHEDULER).")
@click.option("--raw-text", is_flag=True,
              help="Write text to CSV/TSV as it is (by default cells starting with = + - @ get a ' so "
                   "spreadsheets do not run them as formulas).")
@runs_dir_option
def score(input, output, query, table, if_exists, app, tenant, run_id, reasons, keep, chunksize, jobs, cluster,
          raw_text, runs_dir):
    """Score INPUT (CSV/Parquet/JSON lines, or a database URL with --query) with the
    production model of APP/TENANT."""
    start = time.perf_counter()
    from .. import sql
    from ..files import check_writable
    from ..scoring import score_file
    from ..scoring.writer import output_kind

    if not sql.is_url(output):  # a file or folder: said before the model is loaded and the input read
        dataset = output_kind(output) == "dataset"
        check_writable(str(output).rstrip("/\\") if dataset else output, folder=dataset)
    where = cluster_engine(cluster)
    with where or contextlib.nullcontext():
        record = score_file(input, output, app=app, tenant=tenant, run=run_id, chunksize=chunksize,
                            reasons=reasons, keep=[c.strip() for k in keep for c in k.split(",")],
                            runs_dir=runs_dir, n_jobs=jobs, cluster=where, raw_text=raw_text, query=query,
                            table=table, if_exists=if_exists)
    secs = time.perf_counter() - start
    click.echo(f"scored {record['rows']:,} rows with {app}/{tenant or '-'} model {record['version']} "
               f"in {secs:.1f}s ({record['rows'] / max(secs, 1e-9):,.0f} rows/s) -> {record['output']} "
               f"(batch {record['id']})")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--app", required=True, help="Application whose scored ids the outcomes refer to.")
@click.option("--tenant", default=None, help="Tenant of the scored rows.")
@click.option("--id-column", default=None, help="Id column (default: id, or the model's id column).")
@click.option("--label-column", default=None, help="Outcome column (default: label, or the model's target).")
@runs_dir_option
def feedback(file, app, tenant, id_column, label_column, runs_dir):
    """Load actual outcomes (id + 0/1 label) for rows scored before."""
    from ..scoring import feedback as load_feedback

    n = load_feedback(file, app=app, tenant=tenant, id_column=id_column, label_column=label_column,
                      runs_dir=runs_dir)
    click.echo(f"loaded {n:,} outcomes for {app}/{tenant or '-'}")


