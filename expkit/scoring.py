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
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from . import drift, scorelog
from .data import load
from .errors import ConfigError, DataError, ModelError, ScoringError, SchemaError
from .runs import runs_dir as _runs_dir

log = logging.getLogger(__name__)

_CSV = (".csv", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
_JSONL = (".jsonl", ".ndjson", ".json")


# -- the model ------------------------------------------------------------------
def load_scorer(app: str, tenant=None, run=None, runs_dir=None, reasons: int = 0,
                keep: Sequence[str] = (), lazy: bool = False) -> "Scorer":
    """The :class:`Scorer` of the production model of ``(app, tenant)``, or of ``run``'s model.

    The model file's sha256 must match the registry's record (else ModelError). With
    ``lazy`` the pipeline is built only by ``scorer.bundle.load()`` (the card, schema
    and checks are there at once).
    """
    from .models.bundle import load_model

    root = _runs_dir(runs_dir)
    if run is not None:
        model_dir = root / str(run) / "model"
        if not model_dir.is_dir():
            raise ModelError(f"run {run!r} has no model folder ({model_dir})",
                             hint="check the run id with `expkit runs list`")
        bundle = load_model(model_dir, lazy=lazy)
        return Scorer(bundle, version=f"run:{run}", run_id=str(run), reasons=reasons, keep=keep,
                      model_tenant=tenant)
    from .registry import Registry

    prod = Registry(root).production(app, tenant)
    model_dir = Path(prod["model_dir"])
    if not model_dir.is_absolute():
        model_dir = root / model_dir
    bundle = load_model(model_dir, expected_sha256=prod["sha256"], lazy=lazy)
    return Scorer(bundle, version=str(prod["version"]), run_id=prod["run_id"],
                  reasons=reasons, keep=keep, model_tenant=prod.get("tenant"))


class Scorer:
    """Validate, coerce and score chunks with one loaded model bundle.

    Parameters
    ----------
    bundle : expkit.models.bundle.ModelBundle
    version : str
        Model version written to every output row and to the score log.
    run_id : str, optional
        The run that trained the model.
    reasons : int
        Top reasons per row to add (``reason_1`` ...); 0 for none.
    keep : sequence of str
        Input columns passed through to the output unchanged.
    model_tenant : str, optional
        Tenant of the registry entry the model serves (``None``: app-wide).
    """

    def __init__(self, bundle, version: str, run_id=None, reasons: int = 0, keep: Sequence[str] = (),
                 model_tenant=None):
        self.bundle = bundle
        self.version = version
        self.run_id = run_id
        self.model_tenant = model_tenant
        self.reasons = int(reasons or 0)
        self.keep = [k for k in (keep or ()) if k]
        card = bundle.card
        self.schema = bundle.schema
        self.task = card.get("task", "binary")
        self.threshold = card.get("threshold", 0.5)
        self.reference = card.get("reference") or {"fields": {}}
        self.features = list(self.schema.features)
        ids = card.get("id_columns") or self.schema.of_type("id")
        self.id_columns = list(ids)
        classes = list(card.get("classes") or [0, 1])
        self.positive = card.get("positive_class", classes[-1])
        self.negative = next((c for c in classes if c != self.positive), None)

    # the columns a batch must have, and the ones it reads
    @property
    def needed(self) -> list[str]:
        return list(dict.fromkeys([*self.id_columns, *self.features, *self.keep]))

    def check_columns(self, columns: Sequence[str], source: str) -> None:
        """SchemaError listing every column the model needs that ``columns`` lacks."""
        missing = [c for c in self.needed if c not in set(columns)]
        if missing:
            raise SchemaError(
                f"{source} is missing {len(missing)} column(s) the model needs: {', '.join(missing)}",
                hint="add them (empty values are fine); extra columns are ignored")

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model's columns of ``df`` coerced to the types it was trained on."""
        out = {}
        for col in self.needed:
            out[col] = _coerce(df[col], self.schema.columns[col] if col in self.schema else None)
        return pd.DataFrame(out, index=df.index)

    def score(self, df: pd.DataFrame, row_offset: int = 0) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
        """Score a prepared chunk -> (output frame, scores, ids as strings)."""
        X = df[self.features]
        out = pd.DataFrame(index=df.index)
        if self.id_columns:
            for c in self.id_columns:
                out[c] = df[c]
            ids = _id_strings(df[self.id_columns])
        else:
            out["row"] = np.arange(row_offset, row_offset + len(df))
            ids = out["row"].astype(str)
        for c in self.keep:
            if c not in out:
                out[c] = df[c]
        if self.task == "regression":
            scores = np.asarray(self.bundle.score(X), dtype=float)
            out["prediction"] = scores
        elif self.task == "multiclass":
            proba = np.asarray(self.bundle.predict_proba(X))
            best = proba.argmax(axis=1)
            scores = proba[np.arange(len(best)), best]
            out["score"] = scores
            out["label"] = np.asarray(self.bundle.classes)[best]
        else:
            scores = np.asarray(self.bundle.score(X), dtype=float)
            out["score"] = scores
            out["label"] = np.where(scores >= self.threshold, self.positive, self.negative)
        out["model_version"] = self.version
        if self.reasons > 0:
            out = out.join(_reason_columns(self.bundle.reasons(X, k=self.reasons), self.reasons, X.index))
        return out.reset_index(drop=True), scores, ids.reset_index(drop=True)


def _reason_columns(reasons: pd.DataFrame, k: int, index) -> pd.DataFrame:
    """``reason_i`` (field) and ``impact_i`` (score change) columns of ``bundle.reasons``."""
    cols = [c for i in range(1, k + 1) for c in (f"reason_{i}", f"impact_{i}") if c in reasons.columns]
    return reasons[cols].set_axis(index)


def _id_strings(ids: pd.DataFrame) -> pd.Series:
    if ids.shape[1] == 1:
        return ids.iloc[:, 0].astype(str)
    return ids.astype(str).agg("|".join, axis=1)


# -- type coercion --------------------------------------------------------------
def _storage(ct) -> str | None:
    """How a column was stored in training: 'number', 'datetime', 'bool', 'string' or None."""
    if ct is None:
        return None
    dt = (ct.dtype or "").lower()
    if dt.startswith(("int", "uint", "float")):
        return "number"
    if dt.startswith("datetime"):
        return "datetime"
    if dt in ("bool", "boolean"):
        return "bool"
    if dt in ("str", "string", "object", "category") or dt.startswith("string"):
        return "string"
    return {"numeric": "number", "integer": "number", "date": "datetime"}.get(ct.type)


def _coerce(s: pd.Series, ct) -> pd.Series:
    """Coerce ``s`` to how column ``ct`` was stored in training, or raise SchemaError."""
    kind = _storage(ct)
    if kind is None or len(s) == 0:
        return s
    if kind == "number":
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            return s
        if pd.api.types.is_bool_dtype(s):
            return s.astype(float)
        text = s.astype("str").str.strip()
        blank = s.isna() | text.eq("")
        values = pd.to_numeric(text.where(~blank), errors="coerce")
        _raise_bad(ct, s, values.isna() & ~blank, "a number")
        return values
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(s):
            return s
        parsed = _iso_datetimes(s)
        if parsed is not None:
            return parsed
        text = s.astype("str").str.strip()
        blank = s.isna() | text.eq("")
        values = pd.to_datetime(text.where(~blank), errors="coerce")
        _raise_bad(ct, s, values.isna() & ~blank, "a date")
        return values
    if kind == "string" and not pd.api.types.is_string_dtype(s):
        if pd.api.types.is_float_dtype(s) and s.dropna().eq(s.dropna().round()).all():
            return s.astype("Int64").astype("str").where(s.notna())  # 12.0 read from CSV -> "12"
        return s.astype("str").where(s.notna())
    return s


#: Plain ISO formats parsed in arrow when every value of a chunk has the same one (pandas
#: infers one format from the first value, so a mix goes the pandas way, errors and all):
#: the characters at each position ("d": a digit; " " may also be "T", the same in every value).
_ISO_DATETIMES = ("dddd-dd-dd", "dddd-dd-dd dd:dd:dd")


def _iso_datetimes(s: pd.Series) -> pd.Series | None:
    """Dates held as arrow strings all in one of _ISO_DATETIMES, parsed in arrow exactly as
    ``pd.to_datetime`` parses them (blank -> NaT); None for anything else."""
    arr = drift._arrow_strings(s)
    if arr is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(arr)
    text = pc.if_else(pc.equal(pc.binary_length(text), 0), pa.scalar(None, text.type), text)
    values = text.drop_null().combine_chunks()
    widths = pc.min_max(pc.binary_length(values)).as_py()
    layout = next((f for f in _ISO_DATETIMES if widths["min"] == widths["max"] == len(f)), None)
    if layout is None or len(values) == 0:
        return None
    fixed = values.cast(pa.binary(len(layout)))  # fixed width: a (rows, width) byte matrix
    chars = np.frombuffer(fixed.buffers()[1], dtype=np.uint8)[
        fixed.offset * len(layout):(fixed.offset + len(fixed)) * len(layout)].reshape(len(fixed), -1)
    for i, want in enumerate(layout):
        col = chars[:, i]
        if want == "d":
            ok = ((col >= ord("0")) & (col <= ord("9"))).all()
        elif want == " ":
            ok = (col == col[0]).all() and col[0] in (ord(" "), ord("T"))
        else:
            ok = (col == ord(want)).all()
        if not ok:
            return None
    try:
        stamps = pc.cast(text, pa.timestamp("us"))
    except pa.ArrowInvalid:  # e.g. 2024-02-30: pandas names it
        return None
    return pd.Series(stamps.to_numpy(zero_copy_only=False), index=s.index, name=s.name)


def _raise_bad(ct, s: pd.Series, bad: pd.Series, what: str) -> None:
    if bad.any():
        example = s[bad].iloc[0]
        raise SchemaError(
            f"column {ct.name!r} should hold {what} but has {int(bad.sum())} value(s) that are not, "
            f"e.g. {example!r}",
            hint="fix or blank those values (empty values are scored normally)")


# -- chunked reading and writing ------------------------------------------------
def _kind(path: Path, role: str) -> str:
    """'parquet', 'csv' or 'jsonl' from the file name (compression suffixes skipped on input)."""
    suffixes = [x.lower() for x in path.suffixes]
    if role == "input" and suffixes and suffixes[-1] in (".gz", ".bz2", ".xz"):
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _PARQUET:
        return "parquet"
    if suffix in _CSV:
        return "csv"
    if suffix in _JSONL and role == "input":
        return "jsonl"
    raise DataError(f"{role} file {str(path)!r}: unsupported format {suffix or '(no extension)'!r}",
                    hint="use .csv, .tsv or .parquet" + (" or .jsonl" if role == "input" else ""))


def input_columns(path: Path) -> list[str]:
    """Column names of a CSV/Parquet/JSON-lines file, read without loading its rows.

    Missing, empty (no data rows), binary or undecodable files raise DataError.
    """
    kind = _kind(path, "input")
    if kind != "parquet":
        return list(load(path, nrows=5).columns)
    if not path.is_file():
        return list(load(path).columns)  # DataError naming the problem
    import pyarrow.parquet as pq

    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as exc:  # noqa: BLE001 - any reader failure is one clear error
        raise DataError(f"cannot read {str(path)!r} as Parquet: {exc}") from exc


def _csv_sep(path: Path, columns: Sequence[str]) -> str:
    """The delimiter under which the header reads as ``columns`` (as sniffed by expkit.data.load)."""
    for sep in (",", "\t", ";", "|"):
        try:
            if list(pd.read_csv(path, sep=sep, nrows=0).columns) == list(columns):
                return sep
        except (ValueError, UnicodeDecodeError):
            continue
    return ","


def iter_chunks(path: Path, columns: Sequence[str], chunksize: int,
                string_columns: Sequence[str] = (), number_columns: Sequence[str] | None = None
                ) -> Iterator[pd.DataFrame]:
    """Read ``columns`` of ``path`` in DataFrames of at most ``chunksize`` rows.

    ``string_columns`` are read as strings from text files (ids like ``007`` stay as they are).
    When ``number_columns`` is given and every other column is in ``string_columns``
    (or in ``number_columns``), CSV files are read with pyarrow's streaming reader,
    which is several times faster than pandas: number columns come out as pandas
    would infer them per chunk (int64, else float64, else text for the caller to
    coerce or reject). Should pyarrow fail on the file (a malformed line, not UTF-8, ...),
    reading carries on with pandas from the same row, so results and errors are pandas'.
    """
    kind = _kind(path, "input")
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunksize, columns=list(columns)):
                yield batch.to_pandas()
        elif kind == "csv":
            sep = _csv_sep(path, input_columns(path))
            done = 0
            if number_columns is not None and set(columns) <= {*string_columns, *number_columns}:
                try:
                    for chunk in _arrow_csv_chunks(path, sep, columns, chunksize, number_columns):
                        done += len(chunk)
                        yield chunk
                    return
                except _ArrowReadFailed as exc:
                    log.debug("pyarrow cannot read %s after %d rows (%s); reading it with pandas",
                              path, done, exc)
            reader = pd.read_csv(path, sep=sep, usecols=list(columns), chunksize=chunksize,
                                 dtype={c: "str" for c in string_columns})
            for chunk in reader:
                skip = min(done, len(chunk))
                done -= skip
                if skip < len(chunk):
                    yield chunk.iloc[skip:]
        else:
            for chunk in pd.read_json(path, lines=True, chunksize=chunksize):
                yield chunk.reindex(columns=list(columns))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a malformed line deep in the file
        raise DataError(f"cannot read {str(path)!r}: {exc}",
                        hint="fix the file (UTF-8, one record per line); nothing was written") from exc


def _read_ahead(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``chunks``, read in a background thread one chunk ahead of the caller (reading overlaps
    scoring; at most two chunks wait, so memory stays bounded). Errors reach the caller."""
    ahead: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not put((chunk, None)):
                    return
            put((end, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            put((end, exc))
        finally:
            chunks.close()

    reader = threading.Thread(target=read, name="expkit-read", daemon=True)
    reader.start()
    try:
        while True:
            chunk, error = ahead.get()
            if error is not None:
                raise error
            if chunk is end:
                return
            yield chunk
    finally:
        stop.set()
        reader.join()


class _ArrowReadFailed(Exception):
    """pyarrow could not read (part of) a CSV file; pandas takes over."""


#: What pandas.read_csv reads as missing (pyarrow's default list lacks ``None`` and ``<NA>``).
_NA_VALUES = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def _arrow_csv_chunks(path: Path, sep: str, columns: Sequence[str], chunksize: int,
                      number_columns: Sequence[str]) -> Iterator[pd.DataFrame]:
    """``columns`` of a CSV file in DataFrames of ``chunksize`` rows via pyarrow.csv.open_csv.

    Every column is read as text, number columns are then cast as pandas would infer
    them. Raises _ArrowReadFailed when pyarrow cannot read the file (compressed files
    are left to pandas).
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if path.suffix.lower() in (".gz", ".bz2", ".xz"):
        raise _ArrowReadFailed("compressed file")
    numbers = [c for c in columns if c in set(number_columns)]
    try:
        # a Python file object, not the path: given a path, pyarrow reads ahead as fast as it
        # can, so memory would grow with the file whenever scoring is slower than reading
        with open(path, "rb") as file:
            reader = pcsv.open_csv(
                file, read_options=pcsv.ReadOptions(block_size=1 << 22, use_threads=False),
                parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(
                    include_columns=list(columns), column_types={c: pa.string() for c in columns},
                    null_values=_NA_VALUES, strings_can_be_null=True, quoted_strings_can_be_null=True))
            pending, rows = [], 0
            for batch in reader:
                pending.append(pa.Table.from_batches([batch]))
                rows += batch.num_rows
                while rows >= chunksize:
                    table = pa.concat_tables(pending)
                    pending, rows = [table.slice(chunksize)], rows - chunksize
                    yield _arrow_to_pandas(table.slice(0, chunksize), numbers)
            if rows:
                yield _arrow_to_pandas(pa.concat_tables(pending), numbers)
    except (pa.ArrowException, OSError) as exc:
        raise _ArrowReadFailed(str(exc)) from exc


def _arrow_to_pandas(table, numbers: Sequence[str]) -> pd.DataFrame:
    """A text-only arrow table as pandas, with ``numbers`` columns as pandas would read them."""
    for col in numbers:
        i = table.schema.get_field_index(col)
        table = table.set_column(i, col, _as_number(table.column(i)))
    return table.to_pandas()


def _as_number(text):
    """Arrow strings as int64, else float64 (pandas reads " 12 " as 12 too), else as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for strip in (False, True):
        values = pc.utf8_trim_whitespace(text) if strip else text
        for typ in (pa.int64(), pa.float64()):
            try:
                return pc.cast(values, typ)
            except pa.ArrowInvalid:
                continue
    return text


class _Writer:
    """Append DataFrames to a CSV or Parquet file (pyarrow writers; the first chunk fixes the types).

    ``dictionary=False`` writes Parquet without dictionary encoding (twice as fast for
    columns of distinct values such as ids, and smaller).
    """

    def __init__(self, path: Path, kind: str, dictionary: bool = True):
        self.path, self.kind, self._pq, self._schema = path, kind, None, None
        self.dictionary = dictionary

    def write(self, df) -> None:
        """Append a DataFrame or an arrow table."""
        import pyarrow as pa

        table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
        if self._pq is None:
            schema = table.schema
            # a column that is empty in the first chunk would be typed null: use string
            self._schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                                      for f in schema]).remove_metadata()
            if self.kind == "csv":
                import pyarrow.csv as pcsv

                self._pq = pcsv.CSVWriter(self.path, self._schema)
            else:
                import pyarrow.parquet as pq

                self._pq = pq.ParquetWriter(self.path, self._schema, use_dictionary=self.dictionary)
        self._pq.write_table(table.cast(self._schema) if table.schema != self._schema else table)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        elif self.kind == "csv":
            open(self.path, "w").close()


# -- scoring chunks, in this process or in worker processes ------------------------
def _summarized(scorer: Scorer, chunk: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A chunk coerced to the model's types, and its drift summary (no model needed)."""
    prepared = scorer.prepare(chunk)
    return prepared, drift.summarize(prepared, scorer.reference)


def _scored(scorer: Scorer, prepared: pd.DataFrame, row_offset: int) -> tuple:
    """(output, ids with scores, bucket counts) of a prepared chunk."""
    out, scores, ids = scorer.score(prepared, row_offset=row_offset)
    counts = drift.score_buckets(scores, normalize=False) if scorer.task == "binary" else None
    return out, pd.DataFrame({"id": ids, "score": scores}), counts


def _in_process(scorer: Scorer, chunks: Iterator[pd.DataFrame]) -> Iterator[tuple]:
    """(output, ids, counts, summary) per chunk, scored in this process."""
    offset = 0
    for chunk in chunks:
        prepared, summary = _summarized(scorer, chunk)
        yield (*_scored(scorer, prepared, offset), summary)
        offset += len(prepared)


def n_workers(n_jobs: int | None) -> int:
    """Scoring worker processes for ``n_jobs`` (``-1``: one per CPU); 1 (score in this
    process) where fork is unavailable."""
    if n_jobs is None or n_jobs == 1:
        return 1
    if n_jobs == 0:
        raise ConfigError("n_jobs (--jobs) 0 would score with no process",
                          hint="use 1 (this process), N workers, or -1 (one per CPU)")
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return 1  # spawned workers would have to re-import and reload the model
    cpus = len(os.sched_getaffinity(0))
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return int(n_jobs)


#: Prepared chunks the reading process may hold ready for the workers: AHEAD while the
#: model loads (the workers cannot take any yet), STEADY_AHEAD once they score.
AHEAD = 10
STEADY_AHEAD = 4


def _child() -> None:
    """Set-up of a forked reader or worker: Ctrl-C is the parent's to handle (it stops the
    children), and a child whose parent dies is terminated (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _read_and_prepare(scorer: Scorer, read, tasks, results, n_workers: int, scoring) -> None:
    """The reading process: chunks coerced and summarized, queued for the workers.

    Up to AHEAD chunks wait while the model loads; once ``scoring`` is set, the queue
    is only topped up to STEADY_AHEAD, so memory does not depend on the file's size.
    """
    _child()
    seq = offset = 0
    chunks = read()
    try:
        while True:
            # wait for room before reading the next chunk, so no chunk waits outside the queue
            while tasks.qsize() >= (STEADY_AHEAD if scoring.is_set() else AHEAD):
                time.sleep(0.005)
            chunk = next(chunks, None)
            if chunk is None:
                break
            prepared, summary = _summarized(scorer, chunk)
            # pickled here, not by the queue's feeder thread: a waiting chunk then costs its
            # bytes, not a DataFrame (about half the memory)
            tasks.put(pickle.dumps((seq, offset, prepared, summary), protocol=pickle.HIGHEST_PROTOCOL))
            seq, offset = seq + 1, offset + len(prepared)
            del chunk, prepared
        for _ in range(n_workers):
            tasks.put(None)
        results.put(("end", seq, None))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent
        results.put(("error", seq, exc))
    tasks.close()
    results.close()
    tasks.join_thread()
    results.join_thread()


def _score_tasks(scorer: Scorer, tasks, results) -> None:
    """A scoring worker: prepared chunks in, arrow tables out (several times cheaper to pass)."""
    import pyarrow as pa

    _child()
    while (task := tasks.get()) is not None:
        seq, offset, prepared, summary = pickle.loads(task)
        try:
            out, ids, counts = _scored(scorer, prepared, offset)
            results.put(("chunk", seq, (pa.Table.from_pandas(out, preserve_index=False),
                                        pa.Table.from_pandas(ids, preserve_index=False), counts, summary)))
        except BaseException as exc:  # noqa: BLE001 - handed to the parent
            results.put(("error", seq, exc))
            break
    results.close()
    results.join_thread()


class _Pipeline:
    """Read and prepare chunks in one forked process, score them in ``n`` others.

    The reader is forked before the model is loaded, so reading, type coercion and
    the drift summaries of the first chunks overlap the model load (importing
    scikit-learn and skops takes seconds); :meth:`start_workers` forks the scoring
    workers once the model is loaded, so they share it. Results come back in input
    order. The reader holds at most ``AHEAD`` prepared chunks while the model loads and
    ``STEADY_AHEAD`` after, each worker one, so memory stays bounded whatever the file
    size. Both forks happen before this process starts any thread.
    """

    def __init__(self, scorer: Scorer, n: int, read):
        self.ctx = multiprocessing.get_context("fork")
        self.n = n
        self.tasks = self.ctx.Queue(maxsize=AHEAD)
        self.results = self.ctx.Queue(maxsize=2 * n + 2)  # workers wait when this process lags
        self.workers: list = []
        self.scoring = self.ctx.Event()
        self.reader = self.ctx.Process(target=_read_and_prepare, name="expkit-read", daemon=True,
                                       args=(scorer, read, self.tasks, self.results, n, self.scoring))
        self.reader.start()

    def start_workers(self, scorer: Scorer) -> None:
        for i in range(self.n):
            worker = self.ctx.Process(target=_score_tasks, name=f"expkit-score-{i}", daemon=True,
                                      args=(scorer, self.tasks, self.results))
            worker.start()
            self.workers.append(worker)
        self.scoring.set()

    def __iter__(self) -> Iterator[tuple]:
        """(output, ids, counts, summary) per chunk, in input order."""
        done, total, waiting = 0, None, {}
        while total is None or done < total:
            try:
                kind, seq, payload = self.results.get(timeout=1.0)
            except queue.Empty:
                self._check_alive()
                continue
            if kind == "error":
                raise payload
            if kind == "end":
                total = seq
                continue
            waiting[seq] = payload
            while done in waiting:
                yield waiting.pop(done)
                done += 1

    def _check_alive(self) -> None:
        for proc in (self.reader, *self.workers):
            if proc.exitcode not in (None, 0):
                raise ScoringError(f"scoring process {proc.name} died (exit code {proc.exitcode})",
                                   hint="out of memory? lower --chunksize or --jobs; nothing was written")

    def close(self) -> None:
        for proc in (self.reader, *self.workers):
            if proc.is_alive():
                proc.terminate()
        for proc in (self.reader, *self.workers):
            proc.join()
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()


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
        self.out = None if output is None else _Writer(self.out_tmp, out_kind)
        self.ids = _Writer(self.ids_tmp, "parquet", dictionary=False)
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
               reasons: int = 0, keep: Sequence[str] = (), runs_dir=None, n_jobs: int = 1) -> dict:
    """Score a CSV/Parquet/JSON-lines file in chunks into a CSV or Parquet file.

    The output is written to a temporary file and moved into place when complete;
    only then is the batch appended to the score log. Memory is bounded by
    ``chunksize`` whatever the file size. Other parameters and errors as :func:`score`.

    Parameters
    ----------
    n_jobs : int
        Worker processes scoring chunks (``-1``: one per CPU; the CLI's default).
        Above 1, a forked process reads and prepares chunks while the model loads
        and the workers, forked once it is loaded, share it. 1 (the default here,
        safe in a notebook kernel) scores in this process, reading in a thread. Where
        fork is unavailable chunks are always scored in this process.

    Returns
    -------
    dict
        The score-log record of the batch (id, rows, score_counts, fields, ...).
    """
    src, dst = Path(input), Path(output)
    out_kind = _kind(dst, "output")
    columns = input_columns(src)
    jobs = n_workers(n_jobs)
    scorer = load_scorer(app, tenant, run, runs_dir, reasons, keep, lazy=jobs > 1)
    scorer.check_columns(columns, f"input file {str(src)!r}")
    storage = {c: _storage(scorer.schema[c]) for c in scorer.needed if c in scorer.schema}
    # dates are read as text too (coerced per chunk); kept columns outside the schema as well
    texts = [c for c, k in storage.items() if k in ("string", "datetime")]
    texts += [c for c in scorer.keep if c not in scorer.schema]
    numbers = [c for c, k in storage.items() if k == "number"]
    dst.parent.mkdir(parents=True, exist_ok=True)

    def read() -> Iterator[pd.DataFrame]:
        return iter_chunks(src, scorer.needed, chunksize, texts, numbers)

    # The model and every module loaded so far outlive the batch: keep the cyclic garbage
    # collector from walking them again and again while chunks are scored (and from touching,
    # hence copying, the pages forked processes share with this one). Undone at the end.
    gc.freeze()
    pipeline = chunks = None
    try:
        if jobs > 1:
            pipeline = _Pipeline(scorer, jobs, read)  # forks the reader before the model loads
            scorer.bundle.load()
            gc.freeze()
            pipeline.start_workers(scorer)
            results = iter(pipeline)
        else:
            chunks = _read_ahead(read())
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
        if pipeline is not None:
            pipeline.close()
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
