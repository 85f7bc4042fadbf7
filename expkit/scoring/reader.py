"""Input tables in partitions that workers read themselves.

:func:`plan` looks at a file once and yields its :class:`Part` s lazily; :func:`read_part`
(run by whichever worker scores the part) turns one into DataFrames of at most
``chunksize`` rows. Only the needed columns are read.

- Parquet: a part is one or more whole row groups (``ParquetFile.iter_batches``).
- Delimited text and JSON lines: a part is a byte range that starts and ends on a record
  boundary. The planner reads the file once in large blocks to find the boundaries
  (quote-aware for CSV: a newline inside a quoted value is not one; RFC 4180 escapes
  quotes by doubling them, which keeps the count even). Workers parse their range with
  ``pyarrow.csv`` (every column as text, :data:`expkit.data.NULL_VALUES` as missing) or
  pandas' JSON-lines reader.
- Compressed files, a JSON file holding one table, and DataFrames cannot be split
  without reading them: the calling process reads them in chunks (pandas' chunked
  readers, same null policy) and hands the rows over (``Part.data``).

The format table and delimiter sniffer are :mod:`expkit.data`'s, shared with
:func:`expkit.load`.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from ..data import NULL_VALUES, file_format, is_json_table, load, text_dialect
from ..errors import DataError

#: Bytes the planner reads at a time when it looks for record boundaries.
BLOCK = 8 << 20


@dataclasses.dataclass(frozen=True)
class Source:
    """One input file as the workers read it."""

    path: str
    kind: str  # "text", "jsonl", "parquet", or "rows" (rows handed over in Part.data)
    columns: tuple[str, ...]
    delimiter: str = ","
    encoding: str = "utf-8"
    header: bytes = b""  # the header record of a text file, put before each part's bytes


@dataclasses.dataclass(frozen=True)
class Part:
    """One partition: a byte range, row groups, or rows handed over in ``data``."""

    number: int
    start: int = 0
    end: int = 0
    line: int = 1  # the file line the part starts on (for error messages)
    row_groups: tuple[int, ...] = ()
    data: Any = None


def input_kind(path: Path) -> tuple[str, str | None]:
    """``(kind, compression)`` of an input file; DataError for formats that cannot be scored."""
    kind, compression = file_format(path)
    if kind is None or (kind == "parquet" and compression):
        suffix = "".join(Path(path).suffixes[-2:]) or "(no extension)"
        raise DataError(f"input file {str(path)!r}: unsupported format {suffix!r}",
                        hint="use .csv, .tsv, .txt, .parquet, .jsonl or .json (optionally .gz/.bz2/.xz)")
    return kind, compression


def input_columns(path: Path) -> list[str]:
    """Column names of an input file, read without loading its rows (DataError for
    missing, empty, binary or undecodable files)."""
    kind, _ = input_kind(path)
    if kind not in ("parquet", "json"):
        return list(load(path, nrows=5).columns)
    if kind == "json":
        return list(load(path, dtype=False).columns)
    if not path.is_file():
        return list(load(path).columns)  # DataError naming the problem
    import pyarrow.parquet as pq

    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as exc:  # noqa: BLE001 - any reader failure is one clear error
        raise DataError(f"cannot read {str(path)!r} as Parquet: {exc}") from exc


def plan(path: Path, columns: Sequence[str], rows: int) -> tuple[Source, Iterator[Part]]:
    """The :class:`Source` of ``path`` and its parts of about ``rows`` rows each (lazily:
    the boundaries of later parts are found while earlier ones are scored)."""
    path = Path(path)
    kind, compression = input_kind(path)
    columns = tuple(columns)
    if kind == "parquet":
        return Source(str(path), "parquet", columns), _parquet_parts(path, rows)
    if kind == "json" and not compression:
        with open(path, "rb") as fh:
            kind = "json" if is_json_table(fh.read(1 << 16)) else "jsonl"
    if compression or kind == "json":
        return Source(str(path), "rows", columns), _handed_over(path, kind, columns, rows)
    if kind == "jsonl":
        return Source(str(path), "jsonl", columns), _byte_parts(path, 0, rows, quotes=False, line=1)
    encoding, delimiter = text_dialect(path)
    header = _header(path)
    source = Source(str(path), "text", columns, delimiter, encoding, header)
    return source, _byte_parts(path, len(header), rows, quotes=True, line=1 + header.count(b"\n"))


def frame_parts(df: pd.DataFrame, rows: int) -> Iterator[Part]:
    """Parts of an in-memory DataFrame (rows handed over)."""
    for i, start in enumerate(range(0, len(df), rows)):
        yield Part(i, data=df.iloc[start:start + rows])


def _parquet_parts(path: Path, rows: int) -> Iterator[Part]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    group, count, number = [], 0, 0
    for i in range(meta.num_row_groups):
        group.append(i)
        count += meta.row_group(i).num_rows
        if count >= rows:
            yield Part(number, row_groups=tuple(group))
            group, count, number = [], 0, number + 1
    if group:
        yield Part(number, row_groups=tuple(group))


def _header(path: Path) -> bytes:
    """The bytes of the first record (the header), quote-aware, newline included."""
    head, inside, pos = b"", False, 0
    with open(path, "rb") as fh:
        while more := fh.read(1 << 20):
            head += more
            while (nl := head.find(b"\n", pos)) >= 0:
                inside ^= head.count(b'"', pos, nl) % 2 == 1
                pos = nl + 1
                if not inside:
                    return head[:pos]
    return head


def _byte_parts(path: Path, start: int, rows: int, quotes: bool, line: int) -> Iterator[Part]:
    """Byte ranges of about ``rows`` records each, from ``start`` to the end of the file;
    ``line`` is the file line at ``start``."""
    size = path.stat().st_size
    if start >= size:
        return
    with open(path, "rb") as fh:
        fh.seek(start)
        sample = fh.read(1 << 20)
        target = max(len(sample) * rows // max(sample.count(b"\n"), 1), 1)  # bytes of ~`rows` records
        fh.seek(start)
        number, part_start, part_line, inside = 0, start, line, False
        block_start, want = start, start + target
        while block := fh.read(BLOCK):
            pos = 0  # `inside` and `line` hold for block[:pos]

            def advance(to: int) -> None:
                nonlocal pos, inside, line
                if quotes:
                    inside ^= block.count(b'"', pos, to) % 2 == 1
                line += block.count(b"\n", pos, to)
                pos = to

            while want < block_start + len(block):
                advance(max(want - block_start, pos))
                while (nl := block.find(b"\n", pos)) >= 0:
                    advance(nl + 1)
                    if not inside:
                        break
                if nl < 0:  # no boundary in this block: look on in the next one
                    want = block_start + len(block)
                    break
                yield Part(number, part_start, block_start + pos, part_line)
                number, part_start, part_line = number + 1, block_start + pos, line
                want = part_start + target
            advance(len(block))
            block_start += len(block)
        if part_start < size:
            yield Part(number, part_start, size, part_line)


def _handed_over(path: Path, kind: str, columns: Sequence[str], rows: int) -> Iterator[Part]:
    """Parts whose rows the calling process reads (files that cannot be split)."""
    if kind == "json":
        whole = load(path, dtype=False)
        yield from frame_parts(whole.reindex(columns=list(columns)), rows)
        return
    try:
        if kind == "jsonl":
            reader = pd.read_json(path, lines=True, chunksize=rows, dtype=False)
        else:
            encoding, delimiter = text_dialect(path)
            reader = pd.read_csv(path, sep=delimiter, encoding=encoding, usecols=list(columns), dtype="str",
                                 chunksize=rows, na_values=list(NULL_VALUES), keep_default_na=False)
        with reader:
            for i, chunk in enumerate(reader):
                yield Part(i, data=chunk.reindex(columns=list(columns)))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. a malformed line deep in the file
        raise DataError(f"cannot read {str(path)!r}: {exc}",
                        hint="fix the file (one record per line); nothing was written") from exc


# -- in the worker ------------------------------------------------------------------
def read_part(source: Source, part: Part, chunksize: int) -> Iterator[pd.DataFrame]:
    """The rows of ``part`` in DataFrames of at most ``chunksize`` rows (columns:
    ``source.columns``; text files give text columns). DataError names the file and line."""
    if source.kind == "rows" or part.data is not None and not isinstance(part.data, bytes):
        for start in range(0, len(part.data), chunksize):
            yield part.data.iloc[start:start + chunksize]
        return
    try:
        if source.kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(source.path)
            for batch in pf.iter_batches(batch_size=chunksize, row_groups=list(part.row_groups),
                                         columns=list(source.columns)):
                yield batch.to_pandas()
            return
        data = part.data if part.data is not None else read_range(source.path, part.start, part.end)
        if source.kind == "jsonl":
            df = pd.read_json(io.BytesIO(data), lines=True, dtype=False)
            df = df.reindex(columns=list(source.columns))
            for start in range(0, len(df), chunksize):
                yield df.iloc[start:start + chunksize]
            return
        table = _parse_csv(source, data)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pyarrow/pandas parse errors become one clear line
        raise DataError(f"cannot read {source.path!r} (the part from line {part.line}): {exc}",
                        hint="fix the file (UTF-8 or Windows-1252 text, one record per line); "
                             "nothing was written") from exc
    for start in range(0, table.num_rows, chunksize):
        yield table.slice(start, chunksize).to_pandas()


def read_range(path: str, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` of a file."""
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(end - start)


def _parse_csv(source: Source, data: bytes):
    """All ``source.columns`` of a text range as arrow strings (missing: NULL_VALUES)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    bad = []

    def invalid(row):
        bad.append(row)
        return "error"

    encoding = "utf8" if source.encoding.replace("-", "").lower() in ("utf8", "utf8sig") else source.encoding
    try:
        return pcsv.read_csv(
            pa.py_buffer(source.header + data),
            read_options=pcsv.ReadOptions(use_threads=False, encoding=encoding, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(delimiter=source.delimiter, newlines_in_values=True,
                                            invalid_row_handler=invalid),
            convert_options=pcsv.ConvertOptions(
                include_columns=list(source.columns), column_types={c: pa.string() for c in source.columns},
                null_values=list(NULL_VALUES), strings_can_be_null=True, quoted_strings_can_be_null=True))
    except pa.ArrowInvalid as exc:
        if bad:
            row = bad[0]
            raise DataError(f"cannot read {source.path!r}: a line has {row.actual_columns} field(s) where the "
                            f"header has {row.expected_columns}: {row.text[:80]!r}",
                            hint="fix that line (quote values holding the delimiter); nothing was written") \
                from exc
        raise
