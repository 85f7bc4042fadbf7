"""Batch scoring with the production model of an (app, tenant).

:func:`score` scores a DataFrame in memory, :func:`score_file` scores a CSV,
Parquet or JSON-lines file of any size in chunks (memory stays bounded).

Every batch is validated against the model's schema (missing columns are an
error; extra columns are ignored; values of the wrong type are coerced where
safe) and appends one record to the score log (:mod:`expkit.scoring.scorelog`) only
once its output is completely written. A failed batch leaves the score log,
the registry and the output path as they were.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from .. import drift, sql
from ..errors import ConfigError, ScoringError
from ..paths import runs_dir as _runs_dir
from . import scorelog
from .reader import (
    Writer,
    file_kind,
    input_columns,
    iter_chunks,
    output_delimiter,
    read_ahead,
)
from .scorer import Scorer, load_scorer, scored, storage_kind, summarized

log = logging.getLogger(__name__)


def _in_process(scorer: Scorer, chunks: Iterator[pd.DataFrame]) -> Iterator[tuple]:
    """(output, ids, counts, summary) per chunk, scored in this process."""
    offset = 0
    for chunk in chunks:
        prepared, summary = summarized(scorer, chunk)
        yield (*scored(scorer, prepared, offset), summary)
        offset += len(prepared)


# -- batches ------------------------------------------------------------------------
class _Batch:
    """Accumulates one batch: output, ids file, score counts and field summaries.

    Writing a chunk's ids and output runs in a background thread while the next
    chunk is read and scored; at most one chunk waits to be written, so memory
    stays bounded.
    """

    def __init__(self, scorer: Scorer, app: str, tenant, runs_dir, output, out_kind: str):
        self.scorer, self.app, self.tenant, self.runs_dir = scorer, app, tenant, runs_dir
        self.id = scorelog.new_batch_id(app)
        self.started = scorelog.utcnow()
        self.ids_path = scorelog.ids_file(self.id, runs_dir)
        self.ids_path.parent.mkdir(parents=True, exist_ok=True)
        self.ids_tmp = self.ids_path.with_name(self.ids_path.name + ".tmp")
        self.output = output
        self.out_tmp = None
        if isinstance(output, sql.TableWriter):  # a database table: one transaction, committed last
            self.out = output
        elif output is not None:
            self.out_tmp = output.with_name(f".{output.name}.{self.id}.tmp")
            self.out = Writer(self.out_tmp, out_kind, delimiter=output_delimiter(output))
        else:
            self.out = None
        self.ids = Writer(self.ids_tmp, "parquet", dictionary=False)
        self.rows = 0
        self.counts = np.zeros(10, dtype=np.int64)
        self.summaries = []
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="expkit-write")
        self._pending = None

    def add(self, out, ids, counts, summary: dict) -> None:
        """Account for one scored chunk: (output, ids, counts, summary), DataFrames or arrow tables."""
        self.rows += len(out)
        if counts is not None:
            self.counts += counts
        self.summaries.append(summary)
        self._wait()
        self._pending = self._worker.submit(self._write, out, ids)

    def _write(self, out, ids) -> None:
        self.ids.write(ids)
        if self.out is not None:
            self.out.write(out)

    def _wait(self) -> None:
        """Finish the chunk in flight (raising its error, if any)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def commit(self) -> dict:
        """Close files, move them into place, then append the score-log record."""
        try:
            self._wait()
        finally:
            self._worker.shutdown()
        self.ids.close()
        if self.out is not None and not isinstance(self.out, sql.TableWriter):
            self.out.close()
        record = {
            "id": self.id, "app": self.app, "tenant": self.tenant,
            "model_tenant": self.scorer.model_tenant, "version": self.scorer.version,
            "run_id": self.scorer.run_id, "rows": self.rows, "started_at": self.started,
            "finished_at": scorelog.utcnow(), "score_counts": [int(c) for c in self.counts],
            "fields": drift.merge(self.summaries)["fields"],
            "ids_path": self.ids_path.relative_to(_runs_dir(self.runs_dir)).as_posix(),
            "output": None if self.output is None else str(self.output),
        }
        os.replace(self.ids_tmp, self.ids_path)
        try:
            if isinstance(self.out, sql.TableWriter):
                self.out.commit()
            elif self.out is not None:
                os.replace(self.out_tmp, self.output)
            scorelog.record_batch(record, self.runs_dir)
        except BaseException:
            _remove(self.ids_path)
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
            self._worker.shutdown()
        for p in (self.ids_tmp, self.out_tmp):
            if p is not None:
                _remove(p)
        if isinstance(self.out, sql.TableWriter):
            self.out.abort()


def _remove(path: Path) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def score(df: pd.DataFrame, app: str, tenant=None, run=None, reasons: int = 0, keep=None,
          runs_dir=None, log_batch: bool = True) -> pd.DataFrame:
    """Score a DataFrame with the production model of ``(app, tenant)``.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows to score; must hold every input column of the model (extra columns are ignored).
    app : str
        Application name the model was promoted for.
    tenant : str, optional
        Tenant whose production model to use (``None``: the app-wide model).
    run : str, optional
        Score with this run's model instead of the production model.
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
        The model file is missing or does not match the registry's hash.
    SchemaError
        A column is missing or holds values that cannot be coerced.
    ScoringError
        The input has no rows.
    """
    if not isinstance(df, pd.DataFrame):
        raise ScoringError(f"score() needs a pandas DataFrame, got {type(df).__name__}",
                           hint="use score_file() for files")
    if df.empty:
        raise ScoringError("the input has no rows to score")
    scorer = load_scorer(app, tenant, run, runs_dir, reasons, keep or ())
    scorer.check_columns(list(df.columns), "the input")
    if not log_batch:
        return scorer.score(scorer.prepare(df))[0]
    batch = _Batch(scorer, app, tenant, runs_dir, None, "csv")
    try:
        result = next(_in_process(scorer, iter([df])))
        batch.add(*result)
        batch.commit()
    except BaseException:
        batch.abort()
        raise
    return result[0]


def score_file(input, output, app: str, tenant=None, run=None, chunksize: int = 100_000,
               reasons: int = 0, keep: Sequence[str] = (), runs_dir=None, n_jobs: int = 1,
               query: str | None = None, table: str | None = None, if_exists: str = "append") -> dict:
    """Score a CSV/Parquet/JSON-lines file or a database query in chunks into a CSV or
    Parquet file or a database table.

    The output is written to a temporary file and moved into place when complete (a
    table: written in one transaction, committed when complete); only then is the batch
    appended to the score log. Memory is bounded by ``chunksize`` whatever the input's
    size. Other parameters and errors as :func:`score`.

    Parameters
    ----------
    input, output : str or Path
        Files, or database URLs (see :mod:`expkit.sql`; no password in them).
    query : str, optional
        With a database ``input``: a table name or a SELECT.
    table : str, optional
        With a database ``output``: the table to write (``schema.table`` allowed).
    if_exists : str
        With a database ``output``: ``append`` (default; the table is created if
        missing), ``replace`` or ``fail``.
    n_jobs : int
        Processes scoring chunks (``-1``: one per CPU); 1 scores in this process.

    Returns
    -------
    dict
        The score-log record of the batch (id, rows, score_counts, fields, ...).
    """
    chunks = None
    try:
        from_db, to_db = sql.is_url(str(input)), sql.is_url(str(output))
        if from_db and not query:
            raise ConfigError("the input is a database URL: give the query (a table name or a SELECT)",
                              hint="--query TABLE or --query 'select ...'")
        if to_db and not table:
            raise ConfigError("the output is a database URL: give the table to write",
                              hint="--table NAME")
        src = str(input) if from_db else Path(input)
        dst = str(output) if to_db else Path(output)
        out_kind = "table" if to_db else file_kind(dst, "output")
        where = f"{sql.redact(src)} ({query})" if from_db else f"input file {str(src)!r}"
        columns = sql.columns(src, query) if from_db else input_columns(src)
        scorer = load_scorer(app, tenant, run, runs_dir, reasons, keep)
        scorer.check_columns(columns, where)
        storage = {c: storage_kind(scorer.schema[c]) for c in scorer.needed if c in scorer.schema}
        # dates are read as text too (coerced per chunk); kept columns outside the schema as well
        texts = [c for c, k in storage.items() if k in ("string", "datetime")]
        texts += [c for c in scorer.keep if c not in scorer.schema]
        numbers = [c for c, k in storage.items() if k == "number"]
        if not to_db:
            dst.parent.mkdir(parents=True, exist_ok=True)

        def read() -> Iterator[pd.DataFrame]:
            if from_db:
                return sql.read_chunks(src, query, chunksize, columns=scorer.needed)
            return iter_chunks(src, scorer.needed, chunksize, texts, numbers)

        chunks = read_ahead(read())
        results = _in_process(scorer, chunks)
        target = sql.TableWriter(dst, table, if_exists) if to_db else dst
        batch = _Batch(scorer, app, tenant, runs_dir, target, out_kind)
        try:
            for result in results:
                batch.add(*result)
            if batch.rows == 0:
                raise ScoringError(f"{where} has no rows to score")
            return batch.commit()
        except BaseException:
            batch.abort()
            raise
    finally:
        if chunks is not None:
            chunks.close()  # stops the reading thread if scoring failed
