"""Read tables, fingerprint them, split and sample them.

:func:`load` reads CSV/TSV/semicolon/pipe text (delimiter sniffed), Parquet and
JSON lines files, or passes a DataFrame through; every failure is a
:class:`~expkit.errors.DataError` naming the file, the problem and what to do.
"""
from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import logging
import lzma
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ConfigError, DataError, TargetError

log = logging.getLogger(__name__)

__all__ = ["load", "fingerprint", "split", "sample"]

_SNIFF_BYTES = 64 * 1024
_DELIMITERS = ",\t;|"
#: The one format table of every reader (``load`` and scoring's partitioned reading):
#: file-name suffix -> kind. ``text`` is delimited text (delimiter sniffed), ``json`` a
#: file of JSON lines or one JSON table. A compression suffix may follow (data.csv.gz).
FORMATS = {".csv": "text", ".tsv": "text", ".txt": "text", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
#: The null policy of text tables: the strings read as missing, by ``load`` and by
#: scoring's chunked reader alike (pandas' default list; pyarrow's lacks ``None`` and
#: ``<NA>``). Typed formats (Parquet, JSON) keep their own nulls; a string there is a value.
NULL_VALUES = ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
               "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
# Text that is not UTF-8 is tried as Windows-1252 (what spreadsheet exports use);
# Latin-1 is not a fallback because it accepts any byte and so never says "no".
_FALLBACK_ENCODING = "cp1252"


def load(source, **read_kwargs) -> pd.DataFrame:
    """Read a table from a file or pass a DataFrame through.

    Parameters
    ----------
    source : str, pathlib.Path or pandas.DataFrame
        ``.csv``/``.tsv``/``.txt`` (any of ``, \\t ; |`` as delimiter, sniffed;
        ``.gz``/``.bz2``/``.xz`` compressed too), ``.parquet``/``.pq``,
        ``.jsonl``/``.ndjson``/``.json`` (JSON lines; a ``.json`` file holding
        one JSON table is read too). A DataFrame is returned as it is.
    **read_kwargs
        Passed to the pandas reader (``pd.read_csv``, ``pd.read_parquet`` or
        ``pd.read_json``); ``sep=`` or ``encoding=`` given here switch off
        sniffing of that setting.

    Returns
    -------
    pandas.DataFrame
        Date-like columns stay strings; :func:`expkit.schema.infer` types them.

    Raises
    ------
    DataError
        The file is missing, a folder, empty, binary, not decodable text, or
        cannot be parsed; the message names the file.
    """
    if isinstance(source, pd.DataFrame):
        return source
    if not isinstance(source, (str, Path)):
        raise DataError(f"cannot load a {type(source).__name__}",
                        hint="pass a file path or a pandas DataFrame")
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"file {str(path)!r} does not exist",
                        hint="check the path and the current folder "
                             f"({Path.cwd()})")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a folder, not a file", hint="pass a table file inside it")
    if path.stat().st_size == 0:
        raise DataError(f"file {str(path)!r} is empty (0 bytes)",
                        hint="re-export the table; it has no header and no rows")
    kind, compression = file_format(path)
    head = _head(path, _OPENERS.get(compression))
    if kind == "parquet" or head.startswith(b"PAR1"):
        df = _read(path, pd.read_parquet, "Parquet", **read_kwargs)
    elif kind in ("jsonl", "json"):
        df = _read_json(path, kind, head, **read_kwargs)
    else:
        df = _read_text(path, head, **read_kwargs)
    if df.shape[1] == 0 or len(df) == 0:
        raise DataError(f"file {str(path)!r} has no data rows "
                        f"({df.shape[1]} columns, {len(df)} rows)",
                        hint="check that the export wrote the rows, not only a header")
    log.info("loaded %s: %d rows x %d columns", path, len(df), df.shape[1])
    return df


def file_format(path) -> tuple[str | None, str | None]:
    """``(kind, compression)`` of a file from its name, by :data:`FORMATS`: kind ``text``,
    ``parquet``, ``jsonl``, ``json`` or None (unknown suffix), compression ``.gz``, ``.bz2``,
    ``.xz`` or None."""
    suffixes = [s.lower() for s in Path(path).suffixes[-2:]]
    compression = suffixes[-1] if suffixes and suffixes[-1] in _OPENERS else None
    if compression:  # data.csv.gz -> look at ".csv"
        suffixes = suffixes[:-1]
    return (FORMATS.get(suffixes[-1]) if suffixes else None), compression


def text_dialect(path, encoding: str | None = None) -> tuple[str, str]:
    """``(encoding, delimiter)`` of a delimited text file as :func:`load` reads it: UTF-8,
    else Windows-1252; the delimiter sniffed among ``, \\t ; |``. DataError for files
    that are missing, binary, not text or blank."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file {str(path)!r} does not exist", hint="check the path")
    head = _head(path, _OPENERS.get(file_format(path)[1]))
    encoding, text = _decode(path, head, encoding)
    if not text.strip():
        raise DataError(f"file {str(path)!r} holds only blank lines",
                        hint="re-export the table; it has no header and no rows")
    return encoding, _sniff(path, text)


def _head(path: Path, opener) -> bytes:
    try:
        with (opener or open)(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}",
                        hint="check the file's permissions and that it is not corrupt") from exc


def _read(path: Path, reader, what: str, **kwargs) -> pd.DataFrame:
    try:
        return reader(path, **kwargs)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear error
        raise DataError(f"cannot read {str(path)!r} as {what}: {exc}",
                        hint=f"check that the file is a complete {what} file") from exc


def is_json_table(head: bytes) -> bool:
    """Whether a ``.json`` file starting with ``head`` holds one JSON table (``[...]`` or
    ``{...}`` over several lines) rather than JSON lines."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return True
    first = text.split(b"\n", 1)[0].strip()
    return text.startswith(b"{") and not first.endswith(b"}")


def _read_json(path: Path, kind: str, head: bytes = b"", **kwargs) -> pd.DataFrame:
    if kind == "json" and "lines" not in kwargs and is_json_table(head):
        kwargs.pop("nrows", None)
        return _read(path, pd.read_json, "JSON", **kwargs)
    kwargs.setdefault("lines", True)
    return _read(path, pd.read_json, "JSON lines", **kwargs)


def _decode(path: Path, head: bytes, encoding: str | None) -> tuple[str, str]:
    """(encoding, decoded sample) of a text file; DataError if it is not text."""
    if b"\x00" in head:
        raise DataError(f"file {str(path)!r} is binary (it contains NUL bytes), not a text table",
                        hint="pass a CSV/TSV, Parquet or JSON lines file")
    for enc in [encoding] if encoding else ["utf-8-sig", _FALLBACK_ENCODING]:
        try:
            # a multi-byte character may be cut at the end of the sample
            return enc, head.decode(enc) if len(head) < _SNIFF_BYTES else \
                head[:-4].decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
    raise DataError(f"file {str(path)!r} is not UTF-8 or Windows-1252 text",
                    hint="convert it to UTF-8, or pass encoding='...' (e.g. 'latin-1')")


def _sniff(path: Path, text: str) -> str:
    """The delimiter of a delimited text sample (``,`` when there is only one column)."""
    lines = text.splitlines()
    if len(text) >= _SNIFF_BYTES - 4 and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    sample = "\n".join(lines[:200])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = None
    header = lines[0] if lines else ""
    if delimiter is None or delimiter not in header:
        counts = {d: header.count(d) for d in _DELIMITERS}
        best = max(counts, key=counts.get)
        delimiter = best if counts[best] else ","
    log.debug("%s: delimiter %r", path, delimiter)
    return delimiter


def _read_text(path: Path, head: bytes, **kwargs) -> pd.DataFrame:
    user_encoding = kwargs.pop("encoding", None)
    encoding, text = _decode(path, head, user_encoding)
    if not text.strip():
        raise DataError(f"file {str(path)!r} holds only blank lines",
                        hint="re-export the table; it has no header and no rows")
    if "sep" not in kwargs and "delimiter" not in kwargs:
        kwargs["sep"] = _sniff(path, text)
    if "na_values" not in kwargs and "keep_default_na" not in kwargs:
        kwargs.update(na_values=list(NULL_VALUES), keep_default_na=False)
    try:
        return pd.read_csv(path, encoding=encoding, **kwargs)
    except UnicodeDecodeError as exc:
        if user_encoding is None and encoding != _FALLBACK_ENCODING:
            log.warning("%s is not UTF-8 beyond its first %d bytes; reading it as %s",
                        path, _SNIFF_BYTES, _FALLBACK_ENCODING)
            try:
                return pd.read_csv(path, encoding=_FALLBACK_ENCODING, **kwargs)
            except UnicodeDecodeError:
                pass
        raise DataError(f"file {str(path)!r} is not {encoding} text: {exc.reason} at byte {exc.start}",
                        hint="convert it to UTF-8, or pass encoding='...'") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"file {str(path)!r} has no columns to read",
                        hint="re-export the table with a header row") from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot parse {str(path)!r} as delimited text "
                        f"(delimiter {kwargs.get('sep')!r}): {exc}",
                        hint="pass sep='...' if the delimiter was guessed wrong, "
                             "or fix the malformed line") from exc


def fingerprint(df: pd.DataFrame) -> str:
    """A sha256 hex digest of a table's content, column names, dtypes and shape.

    Row order matters, the index does not: the same rows read twice give the
    same fingerprint.
    """
    h = hashlib.sha256()
    h.update(repr(df.shape).encode())
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    for name in df.columns:
        col = df[name]
        try:
            hashed = pd.util.hash_pandas_object(col, index=False)
        except TypeError:  # unhashable cells (lists, dicts): hash their text
            hashed = pd.util.hash_pandas_object(col.astype(str), index=False)
        h.update(np.ascontiguousarray(hashed.to_numpy()).tobytes())
    return h.hexdigest()


def _strata(y: pd.Series, max_classes: int = 50) -> pd.Series | None:
    """Labels to stratify ``y`` on, or None when stratifying is not possible.

    Classes (missing counts as one) for a categorical-like target; ten quantile
    bins for a continuous one. None when a stratum has fewer than 2 rows.
    """
    if pd.api.types.is_numeric_dtype(y) and y.nunique() > max_classes:
        strata = pd.qcut(y, 10, labels=False, duplicates="drop").fillna(-1)
    else:
        strata = y.astype(str).where(y.notna(), "__missing__")
    if strata.value_counts().min() < 2:
        return None
    return strata


def _check_target(df: pd.DataFrame, target: str) -> None:
    if target not in df.columns:
        raise TargetError(f"target column {target!r} is not in the table",
                          hint=f"columns are: {', '.join(map(str, df.columns[:30]))}")


def split(df: pd.DataFrame, target: str, holdout: float = 0.2, seed: int = 0,
          stratify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a table into training and hold-out rows.

    Parameters
    ----------
    df : pandas.DataFrame
    target : str
        Label column (used for stratification).
    holdout : float
        Share of rows held out, in (0, 1).
    seed : int
        Random seed.
    stratify : bool
        Keep the class shares (or, for a continuous target, the decile shares)
        equal in both parts; falls back to a plain random split when a class
        has fewer than 2 rows.

    Returns
    -------
    (train, test) : tuple of pandas.DataFrame
        Original index kept.
    """
    from sklearn.model_selection import train_test_split

    _check_target(df, target)
    if not 0 < holdout < 1:
        raise ConfigError(f"holdout={holdout} must be between 0 and 1 (a share of rows)")
    if len(df) < 2:
        raise DataError(f"cannot split a table of {len(df)} row(s)", hint="load more rows")
    strata = _strata(df[target]) if stratify else None
    if stratify and strata is None:
        log.warning("target %r has a class with fewer than 2 rows; splitting without stratification",
                    target)
    try:
        return tuple(train_test_split(df, test_size=holdout, random_state=seed, stratify=strata))
    except ValueError:  # hold-out too small to hold every class
        log.warning("hold-out of %s is too small to stratify on %r; splitting at random",
                    holdout, target)
        return tuple(train_test_split(df, test_size=holdout, random_state=seed))


def sample(df: pd.DataFrame, n: int, target: str | None = None, seed: int = 0) -> pd.DataFrame:
    """At most ``n`` rows of ``df``, stratified on ``target`` when given.

    Rows keep their original order and index; a table of ``n`` rows or fewer is
    returned unchanged.
    """
    from sklearn.model_selection import train_test_split

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"sample size n={n!r} must be a positive whole number")
    if len(df) <= n:
        return df
    strata = None
    if target is not None:
        _check_target(df, target)
        strata = _strata(df[target])
    positions = np.arange(len(df))
    try:
        picked = train_test_split(positions, train_size=int(n), random_state=seed, stratify=strata)[0]
    except ValueError:  # n too small to hold every class
        picked = np.random.default_rng(seed).choice(positions, size=int(n), replace=False)
    return df.iloc[np.sort(picked)]
