"""Batch scoring with the production model of an (app, tenant).

:func:`score` scores a DataFrame in memory, :func:`score_file` scores a CSV, Parquet or
JSON-lines file (or a database query, :mod:`expkit.sql`) of any size in parts, in this
process, in worker processes or on a Dask cluster (:mod:`expkit.engine`); memory stays
bounded whatever the input's size. Scores go to a file or a database table.

Every batch is validated against the model's schema (missing columns are an error; extra
columns are ignored; values are converted to the model's types by the one rule of
:mod:`expkit.scoring.types`) and appends one record to the score log
(:mod:`expkit.scoring.scorelog`) only once its output is completely written. A failed or
interrupted batch leaves the score log, the registry and the output path as they were,
and no temporary file.
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import drift, engine, sql
from ..errors import ConfigError, ScoringError
from ..paths import runs_dir as _runs_dir
from ..paths import safe_name
from . import scorelog
from .reader import Part, Source, input_columns, plan, read_range
from .scorer import Scorer, load_scorer
from .worker import Job, ModelRef, PartResult, model_bytes, score_part
from .writer import Spill, Writer, clean_leftovers, output_kind, tmp_name, write_errors

log = logging.getLogger(__name__)


class _Batch:
    """One batch being written: output, ids file, score counts and field summaries.

    Parts are added in input order; each part's output is written by a background thread
    while the next part is awaited (at most one waits to be written). Parts that workers
    wrote themselves (:meth:`spill`) are joined to the output from their files.
    """

    def __init__(self, scorer: Scorer, app: str, tenant, runs_dir, output, out_kind: str):
        self.scorer, self.app, self.tenant, self.runs_dir = scorer, app, tenant, runs_dir
        self.id = scorelog.new_batch_id(app)
        self.started = scorelog.utcnow()
        self.ids_path = scorelog.ids_file(self.id, runs_dir)
        self.output = output
        self.rows = 0
        self.counts = np.zeros(10, dtype=np.int64)
        self.summaries: list[dict] = []
        self.ids = self.out = None
        self._pending = self._staging = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expkit-write")
        try:
            self.ids_path.parent.mkdir(parents=True, exist_ok=True)
            self.ids = Writer(self.ids_path, "parquet", dictionary=False)
            if isinstance(output, sql.TableWriter):  # a table: one transaction, committed last
                self.out = output
            else:
                self.out = None if output is None else Writer(output, out_kind)
        except BaseException:
            self.abort()
            raise

    def spill(self) -> Spill:
        """A staging folder next to the output where workers write their parts themselves."""
        self._staging = tmp_name(self.output.with_name(self.output.name + ".parts"))
        with write_errors(self.output):
            self._staging.mkdir()
        return Spill(str(self._staging), self.out.kind, str(self.output))

    def _unstage(self) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    def add(self, part: PartResult):
        """Account for the next part in input order; returns its output (in memory: score())."""
        out, ids = part.out, part.ids
        if not self.scorer.id_columns and self.rows and out is not None:
            out, ids = _renumber(out, ids, self.rows)
        self.rows += part.rows
        if part.counts is not None:
            self.counts += part.counts
        self.summaries.append(part.summary)
        self._wait()
        if ids is not None:
            self._pending = self._thread.submit(self._write, out, ids)
        return out

    def _write(self, out, ids) -> None:
        self.ids.write(ids)
        if self.out is not None:
            self.out.write(out)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def commit(self) -> dict:
        """Finish the files, move them into place, then append the score-log record."""
        try:
            self._wait()
        finally:
            self._thread.shutdown()
        record = {
            "id": self.id, "app": self.app, "tenant": self.tenant,
            "model_tenant": self.scorer.model_tenant, "version": self.scorer.version,
            "run_id": self.scorer.run_id, "rows": self.rows, "started_at": self.started,
            "finished_at": scorelog.utcnow(), "score_counts": [int(c) for c in self.counts],
            "fields": drift.merge(self.summaries)["fields"],
            "ids_path": self.ids_path.relative_to(_runs_dir(self.runs_dir)).as_posix(),
            "output": None if self.output is None else str(self.output),
        }
        self._unstage()
        self.ids.commit()
        try:
            if self.out is not None:
                self.out.commit()
            scorelog.record_batch(record, self.runs_dir)
        except BaseException:
            _remove(self.ids_path)
            if self.out is not None and self.out.kind not in ("dataset", "table"):
                _remove(self.output)
            raise
        log.info("scored %d rows of %s/%s with model %s (batch %s)", self.rows, self.app,
                 self.tenant, self.scorer.version, self.id)
        return record

    def abort(self) -> None:
        try:
            self._wait()
        except BaseException:  # noqa: BLE001 - the batch failed already; its files go
            pass
        finally:
            self._thread.shutdown()
        self._unstage()
        for writer in (self.ids, self.out):
            if writer is not None:
                writer.abort()


def _renumber(out, ids, offset: int):
    """Row numbers (the ids of a model without id columns) counted from ``offset``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(out, pd.DataFrame):
        out = out.assign(row=out["row"] + offset)
        return out, ids.assign(id=out["row"].astype(str).to_numpy())
    row = pc.add(out.column("row"), pa.scalar(offset, out.schema.field("row").type))
    out = out.set_column(out.schema.get_field_index("row"), "row", row)
    return out, ids.set_column(ids.schema.get_field_index("id"), "id", pc.cast(row, pa.string()))


def _remove(path: Path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _check_names(app, tenant, run, runs_dir) -> None:
    """App and tenant names follow the tenant rules; ``run`` must be a run id of the runs folder."""
    safe_name(app, "app")
    if tenant is not None:
        safe_name(tenant, "tenant")
    if run is not None:
        text = str(run)
        if safe_name(text, "run") != text or text.startswith("."):
            raise ConfigError(f"run {text!r} is not a run id", hint="use an id from `expkit runs list`")
        if not (_runs_dir(runs_dir) / text).is_dir():
            raise ConfigError(f"run {text!r} is not in the runs folder {str(_runs_dir(runs_dir))!r}",
                              hint="use an id from `expkit runs list`")


def score(df: pd.DataFrame, app: str, tenant=None, run=None, reasons: int = 0, keep=None,
          runs_dir=None, log_batch: bool = True) -> pd.DataFrame:
    """Score a DataFrame with the production model of ``(app, tenant)``, in this process.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows to score; must hold every input column of the model (extra columns are ignored).
    app : str
        Application name the model was promoted for.
    tenant : str, optional
        Tenant whose production model to use (``None``: the app-wide model).
    run : str, optional
        Score with the model of this run (an id of the runs folder) instead.
    reasons : int
        Add the top ``reasons`` reasons per row (``reason_1`` ...).
    keep : list of str, optional
        Extra input columns to pass through to the output.
    runs_dir : str or Path, optional
        Runs folder (default ``$EXPKIT_RUNS`` or ``./runs``).
    log_batch : bool
        Append the batch to the score log (default True).

    Returns
    -------
    pandas.DataFrame
        Id column(s), ``score`` (calibrated probability of the positive class),
        ``label`` (at the model's threshold), ``model_version`` and any reasons / kept columns.

    Raises
    ------
    RegistryError
        No production model for ``(app, tenant)``.
    ModelError
        The model file is missing or does not match the registry's digest.
    SchemaError
        A column is missing or holds values that cannot be converted to the model's type.
    ConfigError
        ``app``, ``tenant`` or ``run`` is not a valid name.
    ScoringError
        The input has no rows.
    """
    if not isinstance(df, pd.DataFrame):
        raise ScoringError(f"score() needs a pandas DataFrame, got {type(df).__name__}",
                           hint="use score_file() for files")
    _check_names(app, tenant, run, runs_dir)
    if df.empty:
        raise ScoringError("the input has no rows to score")
    scorer = load_scorer(app, tenant, run, runs_dir, reasons, keep or (), lazy=True)
    scorer.check_columns(list(df.columns), "the input")
    source = Source("<DataFrame>", "rows", tuple(scorer.needed))
    job = Job(source, ModelRef.of(scorer), chunksize=len(df), arrow=False)
    result = score_part(Part(0, data=df[scorer.needed]), job)
    if not log_batch:
        return result.out
    batch = _Batch(scorer, app, tenant, runs_dir, None, "csv")
    try:
        batch.add(result)
        batch.commit()
    except BaseException:
        batch.abort()
        raise
    return result.out


def score_file(input, output, app: str, tenant=None, run=None, chunksize: int = 100_000,
               reasons: int = 0, keep: Sequence[str] = (), runs_dir=None, n_jobs: int = 1,
               cluster=None, raw_text: bool = False, query: str | None = None, table: str | None = None,
               if_exists: str = "append") -> dict:
    """Score a CSV/TSV/Parquet/JSON-lines file or a database query into a CSV, TSV or Parquet
    file (or a Parquet dataset: an output path ending in ``/``) or a database table.

    The input is cut into parts of about ``chunksize`` rows that the workers read
    themselves (a query is streamed here and its rows handed over); the output is written
    in input order to a temporary file, moved into place when complete (a table: written
    in one transaction, committed when complete), and only then is the batch appended to
    the score log. A failure, Ctrl-C or SIGTERM anywhere ends every worker and leaves no
    output, temporary file or score-log record. Other parameters and errors as :func:`score`.

    Parameters
    ----------
    input, output : str or Path
        Files, or database URLs (see :mod:`expkit.sql`; no password in them).
    query : str, optional
        With a database ``input``: a table name or a SELECT.
    table : str, optional
        With a database ``output``: the table to write (``schema.table`` allowed).
    if_exists : str
        With a database ``output``: ``append`` (default; the table is created when
        missing), ``replace`` or ``fail``.
    n_jobs : int
        Worker processes on this machine (``-1``: one per CPU); 1 scores in this process.
    cluster : str, distributed.Client or expkit.engine.Engine, optional
        Score on a Dask cluster instead: a scheduler address, ``"local:N"`` (a local
        cluster of N processes) or a client; ``$EXPKIT_DASK_SCHEDULER`` when not given.
    raw_text : bool
        Write text to CSV/TSV as it is, without neutralising spreadsheet formulas
        (cells starting with ``= + - @``, tab or CR get a leading ``'`` by default).

    Returns
    -------
    dict
        The score-log record of the batch (id, rows, score_counts, fields, ...).
    """
    from_db, to_db = sql.is_url(str(input)), sql.is_url(str(output))
    if from_db and not query:
        raise ConfigError("the input is a database URL: give the query (a table name or a SELECT)",
                          hint="--query TABLE or --query 'select ...'")
    if to_db and not table:
        raise ConfigError("the output is a database URL: give the table to write", hint="--table NAME")
    src, dst = (str(input) if from_db else Path(input)), (str(output) if to_db else Path(output))
    out_kind = "table" if to_db else output_kind(output)
    where_from = f"{sql.redact(src)} ({query})" if from_db else f"input file {str(src)!r}"
    _check_names(app, tenant, run, runs_dir)
    scores_folder = scorelog.ids_file("x", runs_dir).parent
    for folder in ([] if to_db else [dst.parent]) + [scores_folder]:
        clean_leftovers(folder)
    columns = sql.columns(src, query) if from_db else input_columns(src)
    scorer = load_scorer(app, tenant, run, runs_dir, reasons, keep, lazy=True)
    scorer.check_columns(columns, where_from)
    rows = None
    if from_db:  # streamed here with a server-side cursor; the rows go to the workers
        source = Source(sql.redact(src), "rows", tuple(scorer.needed))
        rows = sql.read_chunks(src, query, chunksize, columns=scorer.needed)
        parts = (Part(i, data=chunk) for i, chunk in enumerate(rows))
    else:
        source, parts = plan(src, scorer.needed, chunksize)
    parts = iter(parts)
    first = list(itertools.islice(parts, 2))
    if len(first) < 2 and cluster is None:
        n_jobs = 1  # one part: workers would only add their start-up
    parts = itertools.chain(first, parts)
    if not to_db:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScoringError(f"cannot create the output folder {str(dst.parent)!r}: {exc.strerror or exc}",
                               hint="choose another output path") from exc
    batch = _Batch(scorer, app, tenant, runs_dir, sql.TableWriter(dst, table, if_exists) if to_db else dst,
                   out_kind)
    try:
        with engine.session(cluster, n_jobs) as where:
            log.info("scoring %s on %s", where_from, where.describe())
            ref = ModelRef.of(scorer)
            data = None
            if not where.shares_files:
                data = where.broadcast(model_bytes(ref))
                if not from_db and not where.sees(src):
                    parts = (_handed_over(source, p) for p in parts)
            # workers in other processes write their scored rows themselves when they can
            # (the rows numbered here, without id columns, need the caller to renumber them)
            spill = None
            if scorer.id_columns and not (to_db or where.in_process) and where.sees_folder(dst.parent):
                spill = batch.spill()
                log.info("the workers write their scored parts to %s", spill.folder)
            job = Job(source, ref, chunksize, arrow=True, neutralise=out_kind in ("csv", "tsv") and not raw_text,
                      spill=spill, sequential=not where.in_process)
            for result in where.map(score_part, parts, job, data):
                batch.add(result)
        if batch.rows == 0:
            raise ScoringError(f"{where_from} has no rows to score")
        return batch.commit()
    except BaseException:
        batch.abort()
        raise
    finally:
        if rows is not None:
            rows.close()  # the query's connection, when scoring stopped early


def _handed_over(source, part: Part) -> Part:
    """``part`` with its rows read here, for workers that cannot see the input file."""
    if source.kind in ("text", "jsonl"):
        return Part(part.number, part.start, part.end, part.line, data=read_range(source.path, part.start, part.end))
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(source.path).read_row_groups(list(part.row_groups), columns=list(source.columns))
        return Part(part.number, data=table.to_pandas())
    return part

