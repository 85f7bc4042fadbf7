"""Reference distributions and drift (PSI) between training data and new data.

A *reference profile* is a JSON-able summary of the training table that the
model card stores: per input field its fill rate and the share of values per
bin (quantile bins for numbers, top values for categories, length bins for
text), plus the share of scores per probability bucket. :func:`summarize`
computes the same summary for new data *on the reference's bins*, so that
:func:`psi` compares like with like, and :func:`merge` combines the summaries
of several chunks of one scoring batch.

Shares of numeric, categorical and text fields are over the non-missing
values; missing values show up as a change of ``fill_rate`` instead.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .schema import Schema

#: The key under which categorical summaries count values not listed in the reference.
OTHER = "__OTHER__"
#: Share used in place of an empty bin so that PSI stays finite.
EPSILON = 1e-4

_NUMERIC = ("numeric", "integer")
_CATEGORICAL = ("categorical", "binary", "email", "url")  # email: free-mail domain or (company); url: TLD
_TEXT = ("text",)
_FILL_ONLY = ("date", "phone")  # fill rate only: values are not comparable over time


def reference_profile(df: pd.DataFrame, schema, scores=None, *, bins: int = 10,
                      max_categories: int = 50, min_share: float = 0.01,
                      max_values: int = 1000) -> dict:
    """Summarize the training table as the reference for drift checks.

    Parameters
    ----------
    df : pandas.DataFrame
        The training rows (the target column, if present, is ignored).
    schema : Schema or dict
        Semantic types; ``id`` and ``constant`` columns are skipped.
    scores : array-like, optional
        Model scores (positive-class probabilities) on evaluation data.
    bins : int
        Number of quantile bins for numbers and text lengths.
    max_categories, min_share :
        Categorical bins: at most ``max_categories`` values, each with at least
        ``min_share`` of the rows; the rest are pooled as ``__OTHER__`` (listing
        rare values would make PSI flag every new sample of a high-cardinality field).
    max_values : int
        Most frequent values remembered (``values``) to count unseen categories.

    Returns
    -------
    dict
        ``{"fields": {column: summary}, "score_buckets": [shares] or None, "rows": n}``.
    """
    schema = Schema.coerce(schema)
    fields = {}
    for col in schema.features:
        kind = schema.types[col]
        if col not in df.columns or kind in ("id", "constant"):
            continue
        s = df[col]
        base = {"fill_rate": _fill_rate(s), "count": int(s.notna().sum())}
        if kind in _NUMERIC:
            values = _numbers(s)
            edges = _quantile_edges(values, bins)
            fields[col] = {"kind": "numeric", **base, "edges": edges,
                           "shares": _bin_shares(values, edges)}
        elif kind in _CATEGORICAL:
            counts = _category_counts(s, kind)
            n_keys = sum(counts.values())
            total = max(n_keys, 1)
            top = list(counts.items())[:max_categories]
            shares = {str(k): float(v) / total for k, v in top if v >= min_share * total}
            shares[OTHER] = max(0.0, 1.0 - sum(shares.values())) if n_keys else 0.0
            fields[col] = {"kind": "categorical", **base, "source": kind, "shares": shares,
                           "values": [str(k) for k in list(counts)[:max_values]],
                           "n_values": len(counts)}
        elif kind in _TEXT:
            lengths = _text_lengths(s)
            edges = _quantile_edges(lengths, bins)
            fields[col] = {"kind": "text", **base, "length_edges": edges,
                           "shares": _bin_shares(lengths, edges)}
        elif kind in _FILL_ONLY:
            fields[col] = {"kind": "fill", **base}
    return {
        "fields": fields,
        "score_buckets": None if scores is None else score_buckets(scores),
        "rows": int(len(df)),
    }


def summarize(df: pd.DataFrame, reference: Mapping) -> dict:
    """Summarize new data on the bins of ``reference`` (same shape as the reference).

    Categorical summaries also carry ``unseen_share``: the share of non-missing
    values never seen in training (exact up to the reference's ``max_values``
    most frequent values). Reference fields
    absent from ``df`` are left out. Scores are not summarized here; pass them
    to :func:`score_buckets`.
    """
    fields = {}
    for col, ref in reference.get("fields", {}).items():
        if col not in df.columns:
            continue
        s = df[col]
        base = {"fill_rate": _fill_rate(s), "count": int(s.notna().sum())}
        kind = ref["kind"]
        if kind == "numeric":
            values = _numbers(s)
            fields[col] = {"kind": kind, **base, "edges": ref["edges"],
                           "shares": _bin_shares(values, ref["edges"])}
        elif kind == "categorical":
            counts = _category_counts(s, ref.get("source", "categorical"))
            n_keys = sum(counts.values())
            total = max(n_keys, 1)
            listed = {k: counts.get(k, 0) for k in ref["shares"] if k != OTHER}
            shares = {k: float(v) / total for k, v in listed.items()}
            shares[OTHER] = float(n_keys - sum(listed.values())) / total if n_keys else 0.0
            seen = set(ref.get("values", listed))
            unseen = float(sum(v for k, v in counts.items() if k not in seen)) / total
            fields[col] = {"kind": kind, **base, "source": ref.get("source", "categorical"),
                           "shares": shares, "unseen_share": unseen}
        elif kind == "text":
            lengths = _text_lengths(s)
            fields[col] = {"kind": kind, **base, "length_edges": ref["length_edges"],
                           "shares": _bin_shares(lengths, ref["length_edges"])}
        else:
            fields[col] = {"kind": kind, **base}
    return {"fields": fields, "rows": int(len(df))}


def merge(summaries: Iterable[Mapping]) -> dict:
    """Combine the summaries of several chunks of one batch into one summary."""
    summaries = [s for s in summaries if s]
    rows = sum(s["rows"] for s in summaries)
    fields: dict = {}
    for s in summaries:
        for col, f in s["fields"].items():
            acc = fields.setdefault(col, {**f, "_filled": 0.0, "_n": 0, "count": 0,
                                          "shares": _zero_like(f.get("shares")),
                                          "unseen_share": 0.0})
            n = f["count"]
            acc["_filled"] += f["fill_rate"] * s["rows"]
            acc["_n"] += s["rows"]
            acc["count"] += n
            if "shares" in f:
                acc["shares"] = _add(acc["shares"], f["shares"], n)
            acc["unseen_share"] += f.get("unseen_share", 0.0) * n
    for f in fields.values():
        f["fill_rate"] = f.pop("_filled") / f.pop("_n") if f["_n"] else 0.0
        total = f["count"]
        if f["shares"] is not None:
            f["shares"] = _scale(f["shares"], 1.0 / total if total else 0.0)
        else:
            f.pop("shares")
        if f["kind"] == "categorical":
            f["unseen_share"] = f["unseen_share"] / total if total else 0.0
        else:
            f.pop("unseen_share")
    return {"fields": fields, "rows": rows}


def psi(expected_shares, actual_shares, epsilon: float = EPSILON) -> float:
    """Population stability index between two distributions over the same bins.

    ``sum((actual - expected) * ln(actual / expected))``, with empty bins set to
    ``epsilon``. Accepts two sequences of equal length or two ``{bin: share}``
    dicts (missing keys count as empty). Returns NaN when either side is empty.
    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, >= 0.25 major shift.
    """
    if isinstance(expected_shares, Mapping) or isinstance(actual_shares, Mapping):
        keys = list(dict.fromkeys([*expected_shares, *actual_shares]))
        e = np.array([expected_shares.get(k, 0.0) for k in keys], dtype=float)
        a = np.array([actual_shares.get(k, 0.0) for k in keys], dtype=float)
    else:
        e = np.asarray(expected_shares, dtype=float)
        a = np.asarray(actual_shares, dtype=float)
        if e.shape != a.shape:
            raise ValueError(f"psi needs shares over the same bins, got {e.size} and {a.size}")
    if e.sum() <= 0 or a.sum() <= 0:
        return math.nan
    e = np.clip(e / e.sum(), epsilon, None)
    a = np.clip(a / a.sum(), epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


def score_buckets(scores, n: int = 10, normalize: bool = True) -> list:
    """Share (or count, ``normalize=False``) of scores per probability bucket.

    Bucket ``i`` holds scores in ``[i/n, (i+1)/n)``; a score of 1.0 falls in the
    last bucket. Missing scores are ignored.
    """
    s = np.asarray(scores, dtype=float)
    s = s[~np.isnan(s)]
    idx = np.clip((s * n).astype(int), 0, n - 1)
    counts = np.bincount(idx, minlength=n)
    if not normalize:
        return [int(c) for c in counts]
    total = counts.sum()
    return [float(c) / total if total else 0.0 for c in counts]


def compare(reference: Mapping, summary: Mapping) -> pd.DataFrame:
    """Per field drift of ``summary`` against ``reference``.

    Returns
    -------
    pandas.DataFrame
        Columns ``field, kind, psi, fill_rate_ref, fill_rate, fill_rate_change,
        unseen_share`` (``psi`` is NaN for fill-only fields).
    """
    rows = []
    for col, ref in reference.get("fields", {}).items():
        now = summary.get("fields", {}).get(col)
        if now is None:
            continue
        value = psi(ref["shares"], now["shares"]) if "shares" in ref else math.nan
        rows.append({
            "field": col, "kind": ref["kind"], "psi": value,
            "fill_rate_ref": ref["fill_rate"], "fill_rate": now["fill_rate"],
            "fill_rate_change": now["fill_rate"] - ref["fill_rate"],
            "unseen_share": now.get("unseen_share", math.nan),
        })
    cols = ["field", "kind", "psi", "fill_rate_ref", "fill_rate", "fill_rate_change", "unseen_share"]
    return pd.DataFrame(rows, columns=cols)


# -- helpers -------------------------------------------------------------------
def arrow_strings(s: pd.Series):
    """The pyarrow array behind a pyarrow-backed string Series (pandas' default ``str``), else None."""
    if isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow":
        return s.array.__arrow_array__()
    return None


def _fill_rate(s: pd.Series) -> float:
    if len(s) == 0:
        return 0.0
    arr = arrow_strings(s)
    if arr is not None:  # filled: not missing and not blank, counted in arrow (no Python strings)
        import pyarrow.compute as pc

        blank = pc.or_kleene(pc.equal(pc.binary_length(arr), 0), pc.utf8_is_space(arr))
        return float((pc.sum(pc.invert(blank)).as_py() or 0) / len(s))
    filled = s.notna()
    if pd.api.types.is_string_dtype(s) or s.dtype == object:
        filled &= s.astype(str).str.strip().ne("")
    return float(filled.mean())


def _quantile_edges(values: np.ndarray, bins: int) -> list:
    if values.size == 0:
        return []
    qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(q) for q in np.unique(qs)]


def _bin_shares(values: np.ndarray, edges: Sequence[float]) -> list:
    """Shares of ``values`` in ``(-inf, e0], (e0, e1], ..., (ek, inf)``."""
    idx = np.searchsorted(np.asarray(edges, dtype=float), values, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    total = counts.sum()
    return [float(c) / total if total else 0.0 for c in counts]


def _numbers(s: pd.Series) -> np.ndarray:
    """The non-missing values of a column as floats (values that are not numbers dropped)."""
    if pd.api.types.is_numeric_dtype(s):
        values = s.to_numpy(dtype=float, na_value=np.nan)
        return values[~np.isnan(values)]
    return pd.to_numeric(s.dropna(), errors="coerce").dropna().to_numpy(dtype=float)


def _text_lengths(s: pd.Series) -> np.ndarray:
    """Length in characters of each non-missing value."""
    arr = arrow_strings(s)
    if arr is not None:
        import pyarrow.compute as pc

        return pc.utf8_length(arr).drop_null().to_numpy().astype(float)
    return s.dropna().astype(str).str.len().to_numpy(dtype=float)


def _category_counts(s: pd.Series, kind: str) -> dict:
    """``{key: count}`` of a column's non-missing values, most frequent first (ties by key).

    Keys are computed once per distinct value, not per row (for e-mail addresses held as
    arrow strings: once per distinct domain), and summed in a dict: a column has few
    distinct keys, and pandas' per-call overhead would cost more than the counting.
    """
    arr = arrow_strings(s)
    totals: dict = {}
    if arr is not None:
        import pyarrow.compute as pc

        if kind == "email":
            arr, totals = _email_domains(arr)
        vc = pc.value_counts(arr)
        present = pc.is_valid(vc.field("values"))
        uniques = pd.Series(pc.filter(vc.field("values"), present).to_pandas(types_mapper=pd.ArrowDtype),
                            dtype="str")
        counts = pc.filter(vc.field("counts"), present).to_numpy()
        if kind == "email":  # domains keep what followed the address: trailing blanks go
            uniques = _email_key(uniques.str.rstrip().str.lower())
            kind = "categorical"
    else:
        codes, uniques = pd.factorize(s)  # missing values: code -1
        uniques = pd.Series(uniques)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    keys = _category_keys(uniques, kind)
    for key, n in zip(keys.tolist(), counts[keys.index.to_numpy()].tolist()):
        totals[key] = totals.get(key, 0) + n
    return dict(sorted(totals.items(), key=lambda item: (-item[1], item[0])))


def _email_domains(arr):
    """(domains, {"(invalid)": n}) of e-mail addresses held in arrow: what follows the last
    ``@`` of each address that has one (missing values skipped), and how many have none."""
    import pyarrow.compute as pc

    parts = pc.split_pattern(arr, "@", max_splits=1, reverse=True)
    domains = pc.list_element(pc.filter(parts, pc.equal(pc.list_value_length(parts), 2)), 1)
    invalid = len(arr) - arr.null_count - len(domains)
    return domains, ({"(invalid)": invalid} if invalid else {})


def _email_key(domain: pd.Series) -> pd.Series:
    """The drift key of lower-case e-mail domains: the domain if free mail, else ``(company)``."""
    from .domains import FREE_MAIL

    return domain.where(domain.isin(FREE_MAIL), "(company)")


def _category_keys(non_null: pd.Series, kind: str) -> pd.Series:
    """String keys for category counting, stable across dtypes (1 and 1.0 -> "1");
    empty keys are dropped (the index says which values remain)."""
    if pd.api.types.is_bool_dtype(non_null):
        return non_null.astype(int).astype(str)
    if pd.api.types.is_numeric_dtype(non_null):
        v = non_null.to_numpy(dtype=float)
        integral = np.isfinite(v) & (v == np.round(v))
        if integral.all():
            return pd.Series(v.astype(np.int64).astype(str), index=non_null.index)
        return non_null.astype(str)
    keys = non_null.astype(str).str.strip()
    if kind == "email":  # company domains churn with every batch; their share does not
        domain = keys.str.replace(r"^.*@", "", regex=True).str.lower()  # vectorized (arrow)
        keys = _email_key(domain).where(keys.str.contains("@", regex=False), "(invalid)")
    elif kind == "url":  # top-level domain of the host
        host = keys.str.replace(r"^[A-Za-z][\w+.-]*://", "", regex=True)
        keys = host.str.replace(r"[/:?#].*$", "", regex=True).str.replace(r"^.*\.", "", regex=True).str.lower()
    return keys[keys.notna() & keys.ne("")]


def _zero_like(shares):
    if shares is None:
        return None
    if isinstance(shares, Mapping):
        return {k: 0.0 for k in shares}
    return [0.0] * len(shares)


def _add(acc, shares, weight):
    if isinstance(acc, Mapping):
        out = dict(acc)
        for k, v in shares.items():
            out[k] = out.get(k, 0.0) + v * weight
        return out
    return [a + v * weight for a, v in zip(acc, shares)]


def _scale(shares, factor):
    if isinstance(shares, Mapping):
        return {k: v * factor for k, v in shares.items()}
    return [v * factor for v in shares]
