"""Column types at scoring time: what the model's schema says, and nothing else.

The one rule: every column the model needs is converted to how it was stored in training
(:func:`storage_kind` of its schema entry: number, date, bool or text). Text files are
read as text (the null policy :data:`expkit.data.NULL_VALUES` gives the missing values)
and converted here; typed files (Parquet, JSON) are converted where their type differs.

- number: surrounding spaces ignored; ``12``, ``-1.5``, ``1e3`` are numbers, anything
  else is a :class:`~expkit.errors.SchemaError` naming the column and one bad value.
  A column stored as integers comes out as ``int64`` when a chunk has no missing value
  and every value is whole, else as ``float64`` (what pandas makes of such a column).
- date: ``pandas.to_datetime`` (plain ISO dates parsed in arrow, with the same result);
  a value that is not a date is a SchemaError.
- bool: ``true``/``false`` (any case) or ``1``/``0``; anything else is a SchemaError.
- text: numbers become their text (``12.0`` read from a typed file becomes ``"12"``).

Columns outside the schema (ids, ``--keep`` columns) stay as they were read.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import drift
from ..errors import SchemaError


def storage_kind(ct) -> str | None:
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


def coerce(s: pd.Series, ct) -> pd.Series:
    """``s`` converted to how column ``ct`` was stored in training, or SchemaError."""
    kind = storage_kind(ct)
    if kind is None or len(s) == 0:
        return s
    if kind == "number":
        return _as_integers(_numbers(s, ct), ct)
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
    if kind == "bool":
        return _booleans(s, ct)
    if kind == "string" and not pd.api.types.is_string_dtype(s):
        if pd.api.types.is_float_dtype(s) and s.dropna().eq(s.dropna().round()).all():
            return s.astype("Int64").astype("str").where(s.notna())  # 12.0 -> "12"
        return s.astype("str").where(s.notna())
    return s


def _numbers(s: pd.Series, ct) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    if pd.api.types.is_numeric_dtype(s):
        return s
    arr = drift.arrow_strings(s)
    if arr is not None:  # text read by pyarrow: trimmed and cast in arrow
        import pyarrow as pa
        import pyarrow.compute as pc

        text = pc.utf8_trim_whitespace(arr)
        text = pc.if_else(pc.equal(pc.binary_length(text), 0), pa.scalar(None, text.type), text)
        try:
            values = pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            pass  # the pandas path below finds and names the bad value
        else:
            return pd.Series(values.to_numpy(zero_copy_only=False), index=s.index, name=s.name)
    text = s.astype("str").str.strip()
    blank = s.isna() | text.eq("")
    values = pd.to_numeric(text.where(~blank), errors="coerce")
    _raise_bad(ct, s, values.isna() & ~blank, "a number")
    return values.astype(float)


def _as_integers(values: pd.Series, ct) -> pd.Series:
    """int64 when the column was stored as integers and the chunk has only whole values."""
    if not (ct.dtype or "").lower().startswith(("int", "uint")) or pd.api.types.is_integer_dtype(values):
        return values
    v = values.to_numpy(dtype=float, na_value=np.nan)
    if np.isfinite(v).all() and (v == np.round(v)).all():
        return pd.Series(v.astype(np.int64), index=values.index, name=values.name)
    return values


_TRUE, _FALSE = {"true", "1", "1.0"}, {"false", "0", "0.0"}


def _booleans(s: pd.Series, ct) -> pd.Series:
    if pd.api.types.is_bool_dtype(s):
        return s
    text = s.astype("str").str.strip().str.lower()
    blank = s.isna() | text.eq("")
    truth = text.isin(_TRUE)
    _raise_bad(ct, s, ~(truth | text.isin(_FALSE) | blank), "true/false")
    if not blank.any():
        return truth.astype(bool)
    return truth.astype(object).where(~blank, None)


#: Plain ISO formats parsed in arrow when every value of a chunk has the same one (pandas
#: infers one format from the first value, so a mix goes the pandas way, errors and all):
#: the characters at each position ("d": a digit; " " may also be "T", the same in every value).
_ISO_DATETIMES = ("dddd-dd-dd", "dddd-dd-dd dd:dd:dd")


def _iso_datetimes(s: pd.Series) -> pd.Series | None:
    """Dates held as arrow strings all in one of _ISO_DATETIMES, parsed in arrow exactly as
    ``pd.to_datetime`` parses them (blank -> NaT); None for anything else."""
    arr = drift.arrow_strings(s)
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
