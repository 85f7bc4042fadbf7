"""Batch scoring with the production model of an (app, tenant), and feedback.

:func:`score` scores a DataFrame in memory, :func:`score_file` scores a CSV,
Parquet or JSON-lines file of any size in chunks (memory stays bounded) and
:func:`feedback` loads actual outcomes for ids scored before, so that the
monitor can compute live AUROC.

Every batch is validated against the model's schema (missing columns are an
error; extra columns are ignored; values of the wrong type are coerced where
safe) and appends one record to the score log (:mod:`expkit.scorelog`) only
once its output is completely written. A failed batch leaves the score log,
the registry and the output path as they were.
"""
from __future__ import annotations

import gc
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from . import drift, scorelog
from .chunks import Writer, file_kind, input_columns, iter_chunks, output_delimiter, read_ahead
from .data import load
from .errors import ScoringError, SchemaError
from .runs import runs_dir as _runs_dir
from .scorer import Scorer, load_scorer, scored, storage_kind, summarized
from .workers import ScoringProcesses

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

    def __init__(self, scorer: Scorer, app: str, tenant, runs_dir, output: Path | None, out_kind: str):
        self.scorer, self.app, self.tenant, self.runs_dir = scorer, app, tenant, runs_dir
        self.id = scorelog.new_batch_id(app)
        self.started = scorelog.utcnow()
        self.ids_path = scorelog.ids_file(self.id, runs_dir)
        self.ids_path.parent.mkdir(parents=True, exist_ok=True)
        self.ids_tmp = self.ids_path.with_name(self.ids_path.name + ".tmp")
        self.output = output
        self.out_tmp = None if output is None else output.with_name(f".{output.name}.{self.id}.tmp")
        self.out = None if output is None else Writer(self.out_tmp, out_kind, delimiter=output_delimiter(output))
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
        if self.out is not None:
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
            if self.out is not None:
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
               *, processes: ScoringProcesses | None = None) -> dict:
    """Score a CSV/Parquet/JSON-lines file in chunks into a CSV or Parquet file.

    The output is written to a temporary file and moved into place when complete;
    only then is the batch appended to the score log. Memory is bounded by
    ``chunksize`` whatever the file size. Other parameters and errors as :func:`score`.

    Parameters
    ----------
    n_jobs : int
        Worker processes scoring chunks (``-1``: one per CPU; the CLI's default).
        Above 1, one forked process loads the model and forks the workers (which share
        it) while another reads and prepares chunks (:mod:`expkit.workers`). 1 (the
        default here, safe in a notebook kernel) scores in this process, reading in a
        thread. Where fork is unavailable chunks are always scored in this process.
    processes : expkit.workers.ScoringProcesses, optional
        Scoring processes forked earlier (``ScoringProcesses.for_jobs(n_jobs)``), so the
        model host imports scikit-learn while this process was still importing (what
        ``expkit score`` does); closed here. Overrides ``n_jobs``.

    Returns
    -------
    dict
        The score-log record of the batch (id, rows, score_counts, fields, ...).
    """
    if processes is None:
        processes = ScoringProcesses.for_jobs(n_jobs)  # first: the model loads while the input is checked
    # The model and every module loaded so far outlive the batch: keep the cyclic garbage
    # collector from walking them again and again while chunks are scored (and from touching,
    # hence copying, the pages forked processes share with this one). Undone at the end.
    gc.freeze()
    chunks = None
    try:
        src, dst = Path(input), Path(output)
        out_kind = file_kind(dst, "output")
        columns = input_columns(src)
        scorer = load_scorer(app, tenant, run, runs_dir, reasons, keep, lazy=processes is not None)
        scorer.check_columns(columns, f"input file {str(src)!r}")
        storage = {c: storage_kind(scorer.schema[c]) for c in scorer.needed if c in scorer.schema}
        # dates are read as text too (coerced per chunk); kept columns outside the schema as well
        texts = [c for c, k in storage.items() if k in ("string", "datetime")]
        texts += [c for c in scorer.keep if c not in scorer.schema]
        numbers = [c for c, k in storage.items() if k == "number"]
        dst.parent.mkdir(parents=True, exist_ok=True)

        def read() -> Iterator[pd.DataFrame]:
            return iter_chunks(src, scorer.needed, chunksize, texts, numbers)

        if processes is not None:
            processes.start(scorer, read)
            results = iter(processes)
        else:
            chunks = read_ahead(read())
            results = _in_process(scorer, chunks)
        batch = _Batch(scorer, app, tenant, runs_dir, dst, out_kind)  # its writer thread: after forks
        try:
            for result in results:
                batch.add(*result)
            if batch.rows == 0:
                raise ScoringError(f"input file {str(src)!r} has no rows to score")
            return batch.commit()
        except BaseException:
            batch.abort()
            raise
    finally:
        if chunks is not None:
            chunks.close()  # stops the reading thread if scoring failed
        if processes is not None:
            processes.close()
        gc.unfreeze()


# -- feedback ---------------------------------------------------------------------
def feedback(file, app: str, tenant=None, id_column: str | None = None,
             label_column: str | None = None, runs_dir=None) -> int:
    """Load actual outcomes (id + label) for rows scored before by ``(app, tenant)``.

    Parameters
    ----------
    file : str, Path or DataFrame
        Table with an id column and a 0/1 (or positive-class / other) label column.
    id_column, label_column : str, optional
        Default: the id column of the batches' model output (``id`` if the table
        has it) and ``label`` / the model's target.

    Returns
    -------
    int
        Number of outcomes stored.

    Raises
    ------
    ScoringError
        Nothing was scored for ``(app, tenant)``, or some ids were never scored
        (nothing is stored then), or a label is not 0/1.
    """
    df = file if isinstance(file, pd.DataFrame) else load(file)
    name = "the feedback" if isinstance(file, pd.DataFrame) else f"feedback file {str(file)!r}"
    past = scorelog.batches(app, tenant, all_tenants=False, runs_dir=runs_dir)
    if past.empty:
        raise ScoringError(f"nothing was scored for app {app!r}" + (f", tenant {tenant!r}" if tenant else ""),
                           hint="score a batch first; feedback refers to scored ids")
    id_col = id_column or _pick(df, ["id", *_model_ids(past, runs_dir)], name, "id")
    label_col = label_column or _pick(df, ["label", "actual", "outcome", *_model_target(past, runs_dir)],
                                      name, "label")
    for c in (id_col, label_col):
        if c not in df.columns:
            raise SchemaError(f"{name} has no column {c!r}", hint=f"columns: {', '.join(map(str, df.columns))}")
    df = df[[id_col, label_col]].dropna()
    if df.empty:
        raise ScoringError(f"{name} has no rows with both an id and a label")
    ids = df[id_col].astype(str)
    labels = _binary_labels(df[label_col], name, label_col)
    scored = set(scorelog.scored_ids(past, runs_dir)["id"])
    unknown = ids[~ids.isin(scored)]
    if len(unknown):
        raise ScoringError(
            f"{len(unknown)} of {len(ids)} ids in {name} were never scored for app {app!r}"
            + (f", tenant {tenant!r}" if tenant else "") + f", e.g. {unknown.iloc[0]!r}",
            hint="check the app/tenant and the id column; nothing was loaded")
    n = scorelog.add_feedback(app, tenant, ids, labels, runs_dir)
    log.info("loaded %d outcomes for %s/%s", n, app, tenant)
    return n


def _pick(df, candidates, name, what):
    for c in candidates:
        if c in df.columns:
            return c
    raise SchemaError(f"{name} has no {what} column (looked for {', '.join(dict.fromkeys(candidates))})",
                      hint=f"name it or pass --{what}-column")


def _latest_card(past: pd.DataFrame, runs_dir) -> dict:
    import json

    run_id = past["run_id"].dropna().iloc[-1] if past["run_id"].notna().any() else None
    path = _runs_dir(runs_dir) / str(run_id) / "model" / "card.json"
    if run_id is None or not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _model_ids(past, runs_dir) -> list:
    card = _latest_card(past, runs_dir)
    ids = card.get("id_columns") or [c["name"] for c in card.get("schema", {}).get("columns", [])
                                      if c.get("type") == "id"]
    return list(ids) + ["row"]


def _model_target(past, runs_dir) -> list:
    target = _latest_card(past, runs_dir).get("target")
    return [target] if target else []


def _binary_labels(s: pd.Series, name: str, col: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(int).to_numpy()
    values = pd.to_numeric(s, errors="coerce")
    if values.notna().all() and values.isin([0, 1]).all():
        return values.astype(int).to_numpy()
    text = s.astype(str).str.strip().str.lower()
    mapping = {"true": 1, "yes": 1, "1": 1, "false": 0, "no": 0, "0": 0}
    mapped = text.map(mapping)
    if mapped.isna().any():
        raise ScoringError(f"{name}: label column {col!r} must be 0/1, got {s[mapped.isna()].iloc[0]!r}",
                           hint="use 1 for the positive outcome and 0 otherwise")
    return mapped.astype(int).to_numpy()
