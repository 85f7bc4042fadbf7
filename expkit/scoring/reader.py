"""Tables read and written in chunks: CSV (pyarrow's streaming reader, else pandas),
Parquet and JSON lines in; CSV and Parquet out. Memory is bounded by the chunk size
whatever the file's size.
"""
from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from ..data import load
from ..errors import DataError

log = logging.getLogger(__name__)

_CSV = (".csv", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
_JSONL = (".jsonl", ".ndjson", ".json")


def file_kind(path: Path, role: str) -> str:
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


def output_delimiter(path: Path) -> str:
    """The field delimiter of a CSV output: a tab for ``.tsv``, else a comma."""
    return "\t" if path.suffix.lower() == ".tsv" else ","


def input_columns(path: Path) -> list[str]:
    """Column names of a CSV/Parquet/JSON-lines file, read without loading its rows.

    Missing, empty (no data rows), binary or undecodable files raise DataError.
    """
    kind = file_kind(path, "input")
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
    kind = file_kind(path, "input")
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


def read_ahead(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
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


class Writer:
    """Append DataFrames to a CSV or Parquet file (pyarrow writers; the first chunk fixes the types).

    ``dictionary=False`` writes Parquet without dictionary encoding (twice as fast for
    columns of distinct values such as ids, and smaller).
    """

    def __init__(self, path: Path, kind: str, dictionary: bool = True, delimiter: str = ","):
        self.path, self.kind, self._pq, self._schema = path, kind, None, None
        self.dictionary, self.delimiter = dictionary, delimiter

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

                self._pq = pcsv.CSVWriter(self.path, self._schema,
                                          write_options=pcsv.WriteOptions(delimiter=self.delimiter))
            else:
                import pyarrow.parquet as pq

                self._pq = pq.ParquetWriter(self.path, self._schema, use_dictionary=self.dictionary)
        self._pq.write_table(table.cast(self._schema) if table.schema != self._schema else table)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        elif self.kind == "csv":
            open(self.path, "w").close()


