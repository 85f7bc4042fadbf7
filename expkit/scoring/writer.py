"""Output tables written in input order to a temporary file, moved into place when complete.

Kinds by name: ``.csv``/``.txt`` (commas), ``.tsv`` (tabs), ``.parquet``/``.pq``, and a
folder (a path ending in ``/`` or an existing folder) for a Parquet dataset of one file per
part. Temporary names carry the writing process's id (``.<name>.<pid>.<random>.score.tmp``)
so that leftovers of a killed command can be told from files still being written
(:func:`clean_leftovers`).

Text written to CSV/TSV is neutralised against spreadsheet formulas (:func:`neutralise`).

Workers in other processes can write their parts themselves (:class:`Spill`) instead of
sending the scored rows back: the calling process then only joins the part files in input
order (text bytes copied, Parquet row groups re-written, a dataset's files renamed), which
keeps it, and a Dask cluster's scheduler beside it, from carrying every row.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
from pathlib import Path

from ..errors import DataError, ScoringError
from ..files import pid_alive

#: Suffix of every temporary file or folder scoring writes.
TMP_SUFFIX = ".score.tmp"
_TMP = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]+" + re.escape(TMP_SUFFIX) + "$")
#: A text cell starting with one of these is a formula to a spreadsheet (OWASP CSV injection).
FORMULA_START = "=+-@\t\r"
_FORMULA = "^[" + re.escape(FORMULA_START) + "]"
#: ... unless it is a plain number such as ``-12.5``, which a spreadsheet reads as that number.
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
#: Bytes copied at a time when joining a worker's text part to the output.
COPY_BLOCK = 1 << 20


def output_kind(path) -> str:
    """'csv', 'tsv', 'parquet' or 'dataset' from an output path; DataError otherwise."""
    text = str(path)
    path = Path(path)
    if text.endswith(("/", os.sep)) or path.is_dir():
        return "dataset"
    suffix = path.suffix.lower()
    kind = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)
    if kind is None:
        raise DataError(f"output file {text!r}: unsupported format {suffix or '(no extension)'!r}",
                        hint="use .csv, .tsv or .parquet, or a folder ending in '/' for a Parquet dataset")
    return kind


def tmp_name(path: Path) -> Path:
    """A temporary name next to ``path`` that records this process's id."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def clean_leftovers(folder: Path) -> list[Path]:
    """Remove temporary files and folders scoring left in ``folder`` when its process was
    killed (their process is gone); files of scorings still running are kept."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TMP.match(entry.name)
        if match and not pid_alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed.append(entry)
    return removed


def neutralise(table):
    """``table`` with text cells (and column names) that a spreadsheet would run as a formula
    prefixed with ``'``: cells starting with ``= + - @``, a tab or a carriage return, except
    plain numbers (``-12.5``). Number columns are left alone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        col = table.column(i)
        risky = pc.and_(pc.match_substring_regex(col, _FORMULA),
                        pc.invert(pc.match_substring_regex(col, _NUMBER)))
        if pc.any(risky).as_py():
            table = table.set_column(i, field.name, pc.if_else(risky, pc.utf8_replace_slice(col, 0, 0, "'"), col))
    names = [f"'{n}" if n[:1] and n[0] in FORMULA_START and not re.match(_NUMBER, n) else n
             for n in table.column_names]
    return table.rename_columns(names) if names != table.column_names else table


@contextlib.contextmanager
def write_errors(path, where: str = ""):
    """An OSError inside (a full disk, a folder that cannot be written) becomes one
    ScoringError naming ``path`` (and ``where`` it happened, e.g. " (in a worker)")."""
    try:
        yield
    except OSError as exc:
        raise ScoringError(f"cannot write {str(path)!r}{where}: {exc.strerror or exc}",
                           hint="free space or choose another output folder; nothing was written") from exc


@dataclasses.dataclass(frozen=True)
class Spilled:
    """A part's table that a worker wrote to ``path`` (a text part starts with its
    ``header`` bytes of column names)."""

    path: str
    header: int = 0


@dataclasses.dataclass(frozen=True)
class Spill:
    """Where workers write their parts' tables (a staging folder of the calling process)
    and in which form: text for a CSV/TSV output, else Parquet. ``output`` names the
    final output in errors."""

    folder: str
    kind: str
    output: str

    def write(self, number: int, out, ids) -> tuple[Spilled, Spilled]:
        """Write part ``number``'s output and ids tables; their :class:`Spilled` handles."""
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        folder = Path(self.folder)
        with write_errors(self.output, " (in a worker)"):
            ids_path = folder / f"ids-{number:06d}.parquet"
            pq.write_table(ids, ids_path)
            if self.kind in ("csv", "tsv"):
                out_path = folder / f"part-{number:06d}.csv"
                options = pcsv.WriteOptions(delimiter="\t" if self.kind == "tsv" else ",")
                with open(out_path, "wb") as fh:
                    pcsv.write_csv(out.slice(0, 0), fh, write_options=options)
                    header = fh.tell()
                    options.include_header = False
                    pcsv.write_csv(out, fh, write_options=options)
                return Spilled(str(out_path), header), Spilled(str(ids_path))
            out_path = folder / f"part-{number:06d}.parquet"
            pq.write_table(out, out_path)
            return Spilled(str(out_path)), Spilled(str(ids_path))


class Writer:
    """Arrow tables appended in order to a temporary file (or folder), moved to ``path``
    by :meth:`commit`; :meth:`abort` removes it. Write errors (a full disk, a folder that
    cannot be written) are one ScoringError naming ``path``."""

    def __init__(self, path: Path, kind: str, dictionary: bool = True):
        self.path, self.kind, self.dictionary = Path(path), kind, dictionary
        self.tmp = tmp_name(self.path)
        self._file = self._parquet = None
        self._schema = None
        self._parts = 0
        with write_errors(self.path):
            if kind == "dataset":
                self.tmp.mkdir()
            else:
                self._file = open(self.tmp, "wb")

    def write(self, table) -> None:
        """Append one arrow table (or DataFrame, or a worker's :class:`Spilled` part, whose
        file is removed once appended)."""
        import pyarrow as pa

        if isinstance(table, Spilled):
            with write_errors(self.path):
                self._append(table)
                self._parts += 1
            return
        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        with write_errors(self.path):
            if self.kind in ("csv", "tsv"):
                import pyarrow.csv as pcsv

                options = pcsv.WriteOptions(include_header=self._parts == 0,
                                            delimiter="\t" if self.kind == "tsv" else ",")
                pcsv.write_csv(table, self._file, write_options=options)
            elif self.kind == "dataset":
                import pyarrow.parquet as pq

                pq.write_table(table, self.tmp / f"part-{self._parts:05d}.parquet")
            else:
                self._write_parquet(table)
            self._parts += 1

    def _append(self, part: Spilled) -> None:
        if self.kind == "dataset":  # the worker's file is the part
            os.replace(part.path, self.tmp / f"part-{self._parts:05d}.parquet")
            return
        if self.kind in ("csv", "tsv"):  # the bytes as they are, the header only once
            with open(part.path, "rb") as fh:
                if self._parts:
                    fh.seek(part.header)
                shutil.copyfileobj(fh, self._file, COPY_BLOCK)
        else:
            import pyarrow.parquet as pq

            self._write_parquet(pq.read_table(part.path))
        os.remove(part.path)

    def _write_parquet(self, table) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._parquet is None:
            # a column that is empty in the first part would be typed null: use string
            self._schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                                      for f in table.schema]).remove_metadata()
            self._parquet = pq.ParquetWriter(self._file, self._schema, use_dictionary=self.dictionary)
        if table.schema != self._schema:
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ScoringError(f"cannot write {str(self.path)!r}: a column changes type between parts "
                                   f"({exc})", hint="write CSV, or give the column one type in the input") from exc
        self._parquet.write_table(table)

    def commit(self) -> None:
        """Finish the file (flushed to disk) and move it into place."""
        with write_errors(self.path):
            if self._parquet is not None:
                self._parquet.close()
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
            if self.kind == "dataset":
                self._replace_folder()
            else:
                os.replace(self.tmp, self.path)

    def _replace_folder(self) -> None:
        old = None
        if self.path.exists():
            old = tmp_name(self.path)
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Close and remove the temporary file or folder."""
        for closing in (self._parquet, self._file):
            if closing is not None:
                with contextlib.suppress(Exception):
                    closing.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.tmp) if self.tmp.is_dir() else self.tmp.unlink()
