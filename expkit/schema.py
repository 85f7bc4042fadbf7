"""Semantic column types inferred from values, not dtypes.

A :class:`Schema` maps each column to one of :data:`TYPES` with the evidence
behind the decision, knows the target, and round-trips through JSON.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping

from .errors import SchemaError
from .files import write_text

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: Every semantic type expkit knows, in the order reports show them.
TYPES = (
    "numeric", "integer", "binary", "categorical", "text",
    "email", "url", "phone", "date", "id", "constant",
)


@dataclass
class ColumnType:
    """The semantic type of one column and why it was chosen."""

    name: str
    type: str
    evidence: str = ""
    dtype: str = ""
    overridden: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise SchemaError(
                f"column {self.name!r}: unknown semantic type {self.type!r}",
                hint=f"use one of {', '.join(TYPES)}",
            )


@dataclass
class Schema:
    """Column name -> :class:`ColumnType`, plus the target column (if any)."""

    columns: dict[str, ColumnType] = field(default_factory=dict)
    target: str | None = None

    # -- mapping-like access -------------------------------------------------
    def __getitem__(self, name: str) -> ColumnType:
        try:
            return self.columns[name]
        except KeyError:
            raise SchemaError(f"column {name!r} is not in the schema",
                              hint=f"known columns: {', '.join(self.columns)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __iter__(self):
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def types(self) -> dict[str, str]:
        """``{column: semantic type}`` for every column (target included)."""
        return {c.name: c.type for c in self.columns.values()}

    @property
    def features(self) -> list[str]:
        """The input columns: every column except the target."""
        return [c for c in self.columns if c != self.target]

    def of_type(self, *types: str) -> list[str]:
        """Input columns whose semantic type is one of ``types``."""
        return [c for c in self.features if self.columns[c].type in types]

    def override(self, overrides: Mapping[str, str] | None) -> "Schema":
        """A copy with ``{column: type}`` overrides applied (overrides win)."""
        out = Schema.from_dict(self.to_dict())
        for name, typ in (overrides or {}).items():
            if name not in out.columns:
                raise SchemaError(f"override names column {name!r}, which is not in the table",
                                  hint=f"known columns: {', '.join(out.columns)}")
            out.columns[name] = ColumnType(name, typ, "set by the user", out.columns[name].dtype, True)
        return out

    def select(self, names: Iterable[str]) -> "Schema":
        """A schema restricted to ``names`` (target kept if present)."""
        keep = [n for n in self.columns if n in set(names) or n == self.target]
        return Schema({n: self.columns[n] for n in keep}, self.target)

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        return {"target": self.target, "columns": [asdict(c) for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Schema":
        cols = {c["name"]: ColumnType(**c) for c in d.get("columns", [])}
        return cls(cols, d.get("target"))

    def to_json(self, path=None, **kw) -> str:
        text = json.dumps(self.to_dict(), indent=2, **kw)
        if path is not None:
            write_text(path, text)
        return text

    @classmethod
    def from_json(cls, text_or_path) -> "Schema":
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        return cls.from_dict(json.loads(text))

    @classmethod
    def coerce(cls, schema) -> "Schema":
        """Accept a Schema, a ``{column: type}`` dict or a Schema dict."""
        if isinstance(schema, Schema):
            return schema
        if isinstance(schema, Mapping) and "columns" in schema:
            return cls.from_dict(schema)
        if isinstance(schema, Mapping):
            return cls({k: ColumnType(k, v) for k, v in schema.items()})
        raise SchemaError(f"cannot use {type(schema).__name__} as a schema",
                          hint="pass an expkit Schema or a {column: type} dict")

    # -- display ---------------------------------------------------------------
    def to_frame(self):
        import pandas as pd
        return pd.DataFrame([asdict(c) for c in self.columns.values()]).set_index("name")

    def _repr_html_(self) -> str:
        return self.to_frame()._repr_html_()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v}" for k, v in self.types.items())
        return f"Schema(target={self.target!r}, {{{inner}}})"


# -- inference ------------------------------------------------------------------
#: Values checked per column with patterns (a random sample of bigger columns).
SAMPLE_ROWS = 10_000
#: Share of non-missing values that must match a pattern (email, url, phone,
#: date, number stored as text) for the column to get that type.
MATCH_SHARE = 0.9
#: A string column whose ``TOP_K`` most common values cover ``COVERAGE`` of its
#: non-missing values is categorical, otherwise text.
TOP_K, COVERAGE = 50, 0.9
#: Share of distinct values (per non-missing row) above which short tokens are ids.
ID_SHARE = 0.95
#: Fewer non-missing values than this cannot show that a column is an id.
MIN_ID_ROWS = 20

_EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_URL = r"(?:https?://|www\.)[^\s/$.?#][^\s]*"
_PHONE = r"\+?[\d\s().-]{7,22}"
_PHONE_SEPARATORS = r"^\+|^\(|\d[\s.()-]+\d[\s.()-]+\d"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE = (r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[T\s].*)?"
         r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?:[T\s].*)?"
         r"|(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?(?:\d{1,2}\s)?" + _MONTH + r"\s\d{1,4}.*"
         r"|\d{1,2}[-\s/.]" + _MONTH + r"[-\s/.,]+\d{2,4}(?:[T\s].*)?"
         r"|\d{4}-\d{2}-\d{2}T.*")
_THOUSANDS = r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"
_DECIMAL_COMMA = r"[-+]?\d+,\d+"
_LEADING_ZERO = r"0\d+"
_NUMBER_LIKE = r"[-+$€£¥]?\s*[\d.,]+\s*%?|[-+]?(?:inf|nan)"
_ID_NAME = re.compile(r"(?:^|[_\s.-])(?:id|ID|Id|uuid|UUID|guid|GUID|key|KEY)$"
                      r"|[a-z0-9](?:Id|ID)$|^(?:id|ID)[_\s.-]")


def parse_numeric(values) -> "pd.Series":
    """Numbers from a column that may hold them as text.

    Understands ``"1,234.5"`` (thousands separators), ``"12,5"`` (decimal
    comma), a leading currency sign and a trailing ``%`` (``"12%"`` -> 12).
    Whatever does not parse becomes NaN.
    """
    import pandas as pd

    s = pd.Series(values)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        return s.astype(float)
    t = s.astype("str").str.strip()
    out = pd.to_numeric(t, errors="coerce").astype(float)
    rest = out.isna() & t.notna()
    if rest.any():  # clean only what plain parsing missed
        u = t[rest].str.replace(r"^[$€£¥]\s*", "", regex=True).str.replace(r"\s*%$", "", regex=True)
        u = u.where(~u.str.fullmatch(_THOUSANDS, na=False), u.str.replace(",", ""))
        u = u.where(~u.str.fullmatch(_DECIMAL_COMMA, na=False), u.str.replace(",", "."))
        out[rest] = pd.to_numeric(u, errors="coerce").astype(float)
    return out


def parse_dates(values) -> "pd.Series":
    """Datetimes from a column of dates or date strings (unparseable -> NaT).

    The format is inferred from the values; if that reads under 90% of them,
    each value is parsed on its own (slower, for mixed formats).
    """
    import pandas as pd

    s = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "could not infer format"
        out = pd.to_datetime(s, errors="coerce")
        if out.notna().sum() < MATCH_SHARE * s.notna().sum():
            out = pd.to_datetime(s, errors="coerce", format="mixed")
    return out


def _mixed_formats(values) -> str:
    """A warning for the evidence when date strings come in more than one format (one
    format read from the first value parses fewer than 90% of them), else ""."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        one = pd.to_datetime(pd.Series(values), errors="coerce")
    if one.notna().mean() >= MATCH_SHARE:
        return ""
    first, other = values[one.notna().to_numpy()], values[one.isna().to_numpy()]
    examples = ", ".join(repr(str(v)) for v in [*first[:1], *other[:1]])
    return (f"; warning: mixed date formats (e.g. {examples}), each value parsed on its own: "
            "check that day and month are read the right way round")


@functools.lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(f"(?:{pattern})", re.IGNORECASE)


def _matches(values, pattern: str):
    """Boolean numpy array: which ``values`` (strings, no missing) fully match.

    A few values are checked with Python's ``re``; many run in Arrow (RE2),
    which is much faster over long columns. Patterns use the syntax both share.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(values) <= 256:
        match = _compiled(pattern).fullmatch
        return np.fromiter((match(str(v)) is not None for v in values), bool, len(values))
    arr = pa.array(values, type=pa.string(), from_pandas=True)
    return pc.match_substring_regex(arr, f"^(?:{pattern})$", ignore_case=True) \
        .to_numpy(zero_copy_only=False)


def _share(counts, pattern: str) -> float:
    """Share of values that fully match ``pattern``, from their ``value_counts``.

    Checks the 200 most common distinct values first and gives up early when
    under half of their rows match.
    """
    total = counts.sum()
    if total == 0:
        return 0.0
    head = counts.iloc[:200]
    share = float((_matches(head.index, pattern) * head.to_numpy()).sum() / head.sum())
    if share < 0.5 or len(counts) <= 200:
        return share
    return float((_matches(counts.index, pattern) * counts.to_numpy()).sum() / total)


def _weighted(flags, counts) -> float:
    """Share of rows whose distinct value has ``flags`` true."""
    return float((flags * counts.to_numpy()).sum() / counts.sum())


def _show(values, limit: int = 3) -> str:
    return ", ".join(repr(v) if isinstance(v, str) else f"{v:g}" if isinstance(v, float) else str(v)
                     for v in list(values)[:limit])


def _infer_column(s, name: str) -> tuple[str, str]:
    """(semantic type, evidence) of one column."""
    import pandas as pd

    api = pd.api.types
    values = s.dropna()
    n = len(values)
    if n == 0:
        return "constant", "every value is missing"
    if api.is_bool_dtype(s):
        return ("binary", "true/false values") if values.nunique() == 2 else \
            ("constant", f"always {values.iloc[0]}")
    if api.is_datetime64_any_dtype(s):
        return "date", "stored as datetimes"
    distinct = int(values.nunique())
    if distinct == 1:
        if n < len(s):
            return "binary", f"one value ({_show(values.unique())}) or missing"
        return "constant", f"only one value: {_show(values.unique())}"
    if distinct == 2:
        return "binary", f"2 distinct values: {_show(sorted(values.unique(), key=str))}"
    if api.is_timedelta64_dtype(s):
        return "numeric", "stored as durations"
    if api.is_numeric_dtype(s):
        return _infer_numeric(values, name, distinct)
    return _infer_strings(values.astype("str"), name, distinct)


def _infer_numeric(values, name: str, distinct: int) -> tuple[str, str]:
    import numpy as np

    arr = values.to_numpy(dtype=float, na_value=np.nan)
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        return "numeric", f"{distinct} distinct numbers, not all whole"
    n = len(values)
    if distinct == n and n >= MIN_ID_ROWS:
        if values.is_monotonic_increasing or values.is_monotonic_decreasing:
            return "id", f"{n} distinct whole numbers, one per row, in order"
        if _ID_NAME.search(str(name)):
            return "id", f"{n} distinct whole numbers, one per row, and an id-like name"
    return "integer", f"{distinct} distinct whole numbers"


def _infer_strings(values, name: str, distinct: int) -> tuple[str, str]:
    n_all = len(values)
    if n_all > SAMPLE_ROWS:
        values = values.sample(SAMPLE_ROWS, random_state=0)
    # patterns are checked once per distinct value, weighted by its count
    counts = values.str.strip().value_counts()
    n = int(counts.sum())
    sampled = f" (of a {n:,}-value sample)" if n < n_all else ""

    for typ, pattern, what in (("email", _EMAIL, "an email"), ("url", _URL, "a URL")):
        share = _share(counts, pattern)
        if share >= MATCH_SHARE:
            return typ, f"{share:.0%} of values{sampled} match {what} pattern"
    if _share(counts, _DATE) >= MATCH_SHARE:
        parsed = parse_dates(counts.index)
        share = _weighted(parsed.notna().to_numpy(), counts)
        if share >= MATCH_SHARE:
            return "date", f"{share:.0%} of values{sampled} parse as dates" + _mixed_formats(counts.index)
    if _share(counts, _PHONE) >= MATCH_SHARE:
        formatted = _weighted(_matches(counts.index, f".*(?:{_PHONE_SEPARATORS}).*"), counts)
        digits = counts.index.str.count(r"\d")
        share = _weighted((digits >= 7) & (digits <= 15), counts)
        if formatted >= 0.5 and share >= MATCH_SHARE:
            return "phone", f"{share:.0%} of values{sampled} match a phone number pattern"
    if _share(counts.iloc[:200], _NUMBER_LIKE) >= 0.5:
        numbers = parse_numeric(counts.index)
        share = _weighted(numbers.notna().to_numpy(), counts)
        if share >= MATCH_SHARE + 0.05 and _weighted(_matches(counts.index, _LEADING_ZERO),
                                                     counts) < 0.05:
            whole = bool((numbers.dropna() == numbers.dropna().round()).all())
            return ("integer" if whole else "numeric",
                    f"{share:.0%} of values{sampled} are numbers stored as text")
    if n_all >= MIN_ID_ROWS and distinct >= ID_SHARE * n_all:
        no_space = 1 - _weighted(_matches(counts.index, r".*\s.*"), counts)
        if no_space >= ID_SHARE and counts.index.str.len().to_series().median() <= 64:
            return "id", (f"{distinct:,} distinct values in {n_all:,} rows, "
                          "short tokens without spaces")
    if distinct <= TOP_K:
        return "categorical", f"{distinct} distinct values"
    cover = float(counts.iloc[:TOP_K].sum() / n)
    if cover >= COVERAGE:
        return "categorical", f"top {TOP_K} values cover {cover:.0%} of rows{sampled}"
    return "text", f"top {TOP_K} values cover only {cover:.0%} of rows{sampled} (free text)"


def infer(df, target: str | None = None, overrides: Mapping[str, str] | None = None) -> Schema:
    """Infer the semantic type of every column of ``df`` from its values.

    Rules, in order (each type records its evidence):

    - all missing, or one value and nothing missing -> ``constant``; one value
      or missing -> ``binary``; two distinct values -> ``binary``;
    - datetimes -> ``date``;
    - numbers: not all whole -> ``numeric``; whole numbers, one distinct value
      per row and in order (or with an id-like name such as ``PassengerId``)
      -> ``id``; other whole numbers -> ``integer`` (also small codes such as
      Titanic's ``Pclass``: their order is kept);
    - strings (a sample of at most :data:`SAMPLE_ROWS` values): at least 90%
      matching an email / URL pattern -> ``email`` / ``url``; parsing as dates
      -> ``date``; phone numbers -> ``phone``; numbers stored as text
      (``"1,234.5"``; 95%) -> ``numeric`` / ``integer`` (not codes with leading
      zeros); distinct in at least 95% of rows and without spaces -> ``id``;
      at most :data:`TOP_K` distinct values, or top :data:`TOP_K` covering
      :data:`COVERAGE` of the values -> ``categorical``; else ``text``.

    Parameters
    ----------
    df : pandas.DataFrame
    target : str, optional
        The label column; it is typed like the others and recorded as target.
    overrides : dict, optional
        ``{column: type}`` that win over inference.

    Returns
    -------
    Schema
    """
    from .errors import TargetError

    if target is not None and target not in df.columns:
        raise TargetError(f"target column {target!r} is not in the table",
                          hint=f"columns are: {', '.join(map(str, list(df.columns)[:30]))}")
    columns = {}
    for name in df.columns:
        typ, evidence = _infer_column(df[name], name)
        columns[str(name)] = ColumnType(str(name), typ, evidence, str(df[name].dtype))
        log.debug("column %r: %s (%s)", name, typ, evidence)
    schema = Schema(columns, target)
    return schema.override(overrides) if overrides else schema
