"""Column profiles and warnings for exploring a table and for reports.

:func:`profile` gives, per column: semantic type, fill rate, distinct count,
top values, numeric summary, association with the target and warnings (likely
label leak, ID-like, constant, mostly empty, placeholder values that mean
missing). The result converts to a DataFrame and renders as HTML in notebooks.

Association with the target (one number per column, 0 = none, 1 = perfect):

================  ========================  ===============================
target            numeric/integer/date       categorical/binary (text) /email
================  ========================  ===============================
binary            AUC, as max(AUC, 1 - AUC)  Cramer's V (bias-corrected)
multiclass        correlation ratio (eta)    Cramer's V
regression        abs(Spearman rho)          correlation ratio (eta)
================  ========================  ===============================

Cramer's V and eta use the column's top 20 values plus OTHER and MISSING as
levels (so a missing pattern that gives the label away shows too; an email
column uses its domain). Text, id and constant columns get no association.
"""
from __future__ import annotations

import html
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .data import sample
from .schema import Schema, infer, parse_dates, parse_numeric

log = logging.getLogger(__name__)

__all__ = ["profile", "Profile", "cramers_v", "PLACEHOLDERS"]

#: Values that usually mean "missing" (compared stripped and lower-cased).
PLACEHOLDERS = frozenset({
    "", "select", "--select--", "-- select --", "please select", "choose one", "unknown",
    "unk", "?", "??", "n/a", "na", "#n/a", "none", "null", "nil", "nan", "-", "--", "---",
    ".", "missing", "not available", "not applicable", "undefined", "tbd", "xxx", "(blank)",
})
#: Association at or above which a column is flagged as a likely label leak.
LEAK_THRESHOLD = 0.95
#: Fill rate under which a column is flagged as mostly empty.
MOSTLY_EMPTY = 0.1
#: Profiles look at a sample of rows so that rows x columns stays under this.
MAX_CELLS = 2_000_000
_MIN_ROWS = 2_000
_LEVELS = 20
_TOP = 5
_NUMERIC = ("numeric", "integer")
_LEVELED = ("categorical", "binary", "email")


# -- statistics ---------------------------------------------------------------------
def _levels(values: pd.Series, k: int = _LEVELS) -> np.ndarray:
    """Integer codes of the top ``k`` values, one code for OTHER, one for MISSING."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) > k:
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        keep = np.zeros(len(uniques), dtype=bool)
        keep[np.argsort(-counts, kind="stable")[:k]] = True
        codes = np.where(codes < 0, -1, np.where(keep[np.maximum(codes, 0)], codes, len(uniques)))
    return np.where(codes < 0, codes.max(initial=0) + 1, codes)


def cramers_v(x, y) -> float:
    """Bias-corrected Cramer's V between two categorical arrays (0..1).

    Missing values count as one more level. Uses the Bergsma (2013) correction,
    so a column with many small levels does not look associated by chance.
    """
    a, b = _levels(pd.Series(x), k=10**9), _levels(pd.Series(y), k=10**9)
    return _cramers_v_codes(a, b)


def _cramers_v_codes(a: np.ndarray, b: np.ndarray) -> float:
    n = len(a)
    if n < 2:
        return float("nan")
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    r, k = a.max() + 1, b.max() + 1
    if r < 2 or k < 2:
        return 0.0
    table = np.bincount(a * k + b, minlength=r * k).reshape(r, k).astype(float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    phi2 = max(0.0, chi2 / n - (k - 1) * (r - 1) / (n - 1))
    r_c, k_c = r - (r - 1) ** 2 / (n - 1), k - (k - 1) ** 2 / (n - 1)
    denom = min(r_c - 1, k_c - 1)
    return float(np.sqrt(phi2 / denom)) if denom > 0 else 0.0


def _auc(x: np.ndarray, positive: np.ndarray) -> float:
    """max(AUC, 1 - AUC) of ``x`` as a score for ``positive`` (bool array); ties
    count half (Mann-Whitney with average ranks)."""
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2
    auc = (average_rank[inverse][positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(max(auc, 1 - auc))


def _eta(groups: np.ndarray, values: np.ndarray) -> float:
    """Correlation ratio: sqrt(between-group / total sum of squares) of ``values``."""
    total = ((values - values.mean()) ** 2).sum()
    if total == 0:
        return 0.0
    _, g = np.unique(groups, return_inverse=True)
    sums, counts = np.bincount(g, values), np.bincount(g)
    between = (counts * (sums / counts - values.mean()) ** 2).sum()
    return float(np.sqrt(between / total))


def _numbers(s: pd.Series, typ: str) -> pd.Series | None:
    """The column as floats (dates as nanoseconds) when it is numeric-like, else None."""
    if typ == "date":
        d = parse_dates(s)
        return pd.Series(d.to_numpy(dtype="datetime64[ns]").astype("int64"), index=s.index,
                         dtype=float).where(d.notna())
    if typ in _NUMERIC or (typ == "binary" and pd.api.types.is_numeric_dtype(s)):
        return parse_numeric(s)
    return None


def _task(y: pd.Series, typ: str) -> str:
    distinct = y.nunique()
    if distinct == 2:
        return "binary"
    if typ in _NUMERIC and distinct > _LEVELS:
        return "regression"
    return "multiclass"


def _association(s: pd.Series, x: pd.Series | None, typ: str, y: pd.Series,
                 task: str, y_levels: np.ndarray) -> tuple[float, str]:
    """(value, metric name) of column ``s`` (as numbers: ``x``) against the target ``y``
    (whose :func:`_levels` are ``y_levels``)."""
    if x is not None:
        present = x.notna().to_numpy()
        xv, yv = x.to_numpy()[present], y.to_numpy()[present]
        if len(xv) < 2:
            return float("nan"), ""
        if task == "binary":
            return _auc(xv, yv == _positive(y)), "AUC"
        if task == "multiclass":
            return _eta(pd.factorize(yv)[0], xv), "eta"
        from scipy.stats import spearmanr

        rho = spearmanr(xv, yv.astype(float)).statistic
        return (float(abs(rho)) if np.isfinite(rho) else 0.0), "|Spearman|"
    if typ in _LEVELED:
        if typ == "email":
            s = s.astype("str").str.lower().str.rsplit("@", n=1).str[-1]
        codes = _levels(s)
        if task == "regression":
            return _eta(codes, y.to_numpy(dtype=float)), "eta"
        return _cramers_v_codes(codes, y_levels), "Cramer's V"
    return float("nan"), ""


def _positive(y: pd.Series):
    return sorted(y.dropna().unique(), key=lambda v: (str(type(v)), v))[-1]


# -- the profile ----------------------------------------------------------------------
@dataclass
class Profile:
    """Per-column profile of a table; see :func:`profile`.

    Attributes
    ----------
    columns : list of dict
        One record per column (keys as in :meth:`to_frame`, plus ``warnings``:
        a list of ``(kind, message)``).
    schema : Schema
    target : str or None
    task : {"binary", "multiclass", "regression"} or None
    n_rows, n_profiled : int
        Rows of the table, and rows the statistics were computed on.
    """

    columns: list[dict]
    schema: Schema
    target: str | None = None
    task: str | None = None
    n_rows: int = 0
    n_profiled: int = 0

    def to_frame(self) -> pd.DataFrame:
        """One row per column: type, evidence, fill_rate, distinct, top_values,
        mean, std, min, p25, p50, p75, max, association, association_metric,
        warnings (the kinds, comma-separated)."""
        rows = []
        for c in self.columns:
            row = {k: v for k, v in c.items() if k != "warnings"}
            row["top_values"] = _top_text(c["top_values"])
            row["warnings"] = ", ".join(kind for kind, _ in c["warnings"])
            rows.append(row)
        return pd.DataFrame(rows).set_index("column")

    @property
    def warnings(self) -> pd.DataFrame:
        """Every warning: DataFrame with columns column, kind, message."""
        return pd.DataFrame([{"column": c["column"], "kind": kind, "message": msg}
                             for c in self.columns for kind, msg in c["warnings"]],
                            columns=["column", "kind", "message"])

    def __repr__(self) -> str:
        return (f"Profile({self.n_rows} rows x {len(self.columns)} columns, "
                f"target={self.target!r}, {len(self.warnings)} warnings)")

    def _repr_html_(self) -> str:
        esc = html.escape
        head = (f"<b>{self.n_rows:,} rows &times; {len(self.columns):,} columns</b>")
        if self.n_profiled < self.n_rows:
            head += f" (statistics on a sample of {self.n_profiled:,} rows)"
        if self.target is not None:
            head += f"; target <code>{esc(str(self.target))}</code> ({self.task})"
        n_warn = len(self.warnings)
        head += f"; <b>{n_warn} warning{'s' if n_warn != 1 else ''}</b>"
        rows = []
        for c in self.columns:
            kinds = {k for k, _ in c["warnings"]}
            color = "#f8d7da" if "leak" in kinds else "#fff3cd" if kinds else \
                "#e7f1ff" if c["column"] == self.target else ""
            style = f' style="background:{color}"' if color else ""
            fill = c["fill_rate"]
            bar = (f'<div style="background:#ddd;width:60px;height:6px">'
                   f'<div style="background:#3b7dd8;width:{fill * 60:.0f}px;height:6px"></div></div>')
            if c["mean"] is not None and np.isfinite(c["mean"]):
                values = (f"mean {c['mean']:.4g}, std {c['std']:.3g}, min {c['min']:.4g}, "
                          f"median {c['p50']:.4g}, max {c['max']:.4g}")
            else:
                values = esc(_top_text(c["top_values"]))
            assoc = "" if not np.isfinite(c["association"]) else \
                f"{c['association']:.2f} {esc(c['association_metric'])}"
            warn = "<br>".join(f"<b>{esc(k)}</b>: {esc(m)}" for k, m in c["warnings"])
            name = esc(str(c["column"])) + (" (target)" if c["column"] == self.target else "")
            rows.append(
                f"<tr{style}><td><b>{name}</b></td><td title='{esc(c['evidence'])}'>"
                f"{esc(c['type'])}</td><td>{fill:.0%}{bar}</td><td>{c['distinct']:,}</td>"
                f"<td>{values}</td><td>{assoc}</td><td>{warn}</td></tr>")
        cols = ("column", "type", "filled", "distinct", "values", "association", "warnings")
        header = "".join(f"<th style='text-align:left'>{h}</th>" for h in cols)
        return (f"<div><p>{head}</p><table><thead><tr>{header}</tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>")


def _top_text(top) -> str:
    return ", ".join(f"{v} ({share:.0%})" if share >= 0.01 else f"{v} ({share:.1%})"
                     for v, share in top)


def _placeholders(counts: pd.Series, n: int) -> list[tuple[str, str]]:
    return [("placeholder", f"placeholder {str(v)!r} in {c / n:.1%} of rows probably means missing")
            for v, c in counts.items() if str(v).strip().lower() in PLACEHOLDERS]


_SUMMARY = ("mean", "std", "min", "p25", "p50", "p75", "max")


def _numeric_block(df: pd.DataFrame, positive: np.ndarray | None, labelled) -> dict:
    """Summaries (and, for a binary target, AUCs) of numeric-dtype columns, computed
    for all of them at once: wide tables are mostly numbers.

    Returns ``{column: {"mean": ..., ..., "max": ..., "association": auc or absent}}``.
    """
    if df.shape[1] == 0:
        return {}
    x = df.to_numpy(dtype=float, na_value=np.nan)
    out = {c: dict.fromkeys(_SUMMARY) for c in df.columns}
    has = np.isfinite(x).any(axis=0)
    if has.any():
        with np.errstate(all="ignore"):
            v = x[:, has]
            q = np.nanquantile(v, [0, 0.25, 0.5, 0.75, 1], axis=0)
            stats = np.vstack([np.nanmean(v, 0), np.nan_to_num(np.nanstd(v, 0, ddof=1)), q])
        for j, c in enumerate(df.columns[has]):
            out[c].update(zip(_SUMMARY, stats[:, j].tolist()))
    if positive is not None:
        from scipy.stats import rankdata

        xl = x[labelled]
        full = ~np.isnan(xl).any(axis=0)  # columns with missing values go one by one
        n1 = int(positive.sum())
        n0 = len(positive) - n1
        if full.any() and n1 and n0:
            ranks = rankdata(xl[:, full], axis=0)
            auc = (ranks[positive].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
            for c, a in zip(df.columns[full], np.maximum(auc, 1 - auc)):
                out[c]["association"] = float(a)
    return out


def _column(s: pd.Series, ct, y: pd.Series | None = None, task: str | None = None,
            labelled=None, y_levels=None, block: dict | None = None) -> dict:
    """The profile record of column ``s``; association with ``y`` (given for
    feature columns only) on the ``labelled`` rows; ``block`` holds what
    :func:`_numeric_block` computed already."""
    n = len(s)
    present = s.dropna()
    fill = len(present) / n if n else 0.0
    rec = {"column": ct.name, "type": ct.type, "evidence": ct.evidence, "fill_rate": fill,
           "distinct": int(present.nunique()), "top_values": [],
           **dict.fromkeys(_SUMMARY), "association": float("nan"), "association_metric": "",
           "warnings": []}
    warn = rec["warnings"]
    block = block or {}
    numbers = None if ct.type == "id" or "association" in block else _numbers(s, ct.type)
    if block:
        rec.update({k: block[k] for k in _SUMMARY})
    elif numbers is not None and ct.type != "date":
        x = numbers.dropna()
        if len(x):
            q = np.quantile(x, [0, 0.25, 0.5, 0.75, 1])
            rec.update(mean=float(x.mean()), std=float(x.std()) if len(x) > 1 else 0.0,
                       min=q[0], p25=q[1], p50=q[2], p75=q[3], max=q[4])
    counts = None
    if ct.type not in ("id", "numeric") and len(present):
        counts = present.value_counts()
        top = counts.iloc[:_TOP]
        if ct.type == "text":  # a free-text value seen once is not a "top value"
            top = top[top > 1]
        rec["top_values"] = [(v, c / n) for v, c in top.items()]
    if "association" in block:
        rec["association"], rec["association_metric"] = block["association"], "AUC"
    elif y is not None and ct.type not in ("id", "constant", "text"):
        rec["association"], rec["association_metric"] = _association(
            s[labelled], None if numbers is None else numbers[labelled], ct.type, y, task,
            y_levels)
    if rec["association"] >= LEAK_THRESHOLD:
        warn.append(("leak", f"likely label leak: {rec['association_metric']} "
                             f"{rec['association']:.2f} with the target"))
    if ct.type == "id":
        warn.append(("id", f"ID-like ({ct.evidence}); not used as a feature"))
    elif ct.type == "constant":
        warn.append(("constant", f"constant ({ct.evidence}); not used as a feature"))
    elif ct.type == "date" and "warning: " in ct.evidence:
        warn.append(("mixed_dates", ct.evidence.split("warning: ", 1)[1]))
    if fill < MOSTLY_EMPTY and ct.type != "constant":
        warn.append(("mostly_empty", f"mostly empty: {fill:.0%} of rows have a value"))
    if counts is not None and not pd.api.types.is_numeric_dtype(s):
        warn.extend(_placeholders(counts, n))
    return rec


def profile(df: pd.DataFrame, target: str | None = None, schema=None, *,
            max_cells: int = MAX_CELLS, seed: int = 0) -> Profile:
    """Profile every column of a table.

    Parameters
    ----------
    df : pandas.DataFrame
    target : str, optional
        Label column; adds each column's association with it and leak warnings.
        Defaults to ``schema.target`` when a schema is given.
    schema : Schema or dict, optional
        Column types to use; inferred (:func:`expkit.schema.infer`) when omitted.
    max_cells : int
        Tables with more rows x columns are profiled on a (stratified) sample
        of rows so that 1,000-column tables take seconds.
    seed : int
        Seed of that sample.

    Returns
    -------
    Profile
        ``.to_frame()``, ``.warnings`` (column, kind, message), ``.schema`` and
        an HTML table in notebooks. Warning kinds: ``leak`` (association at
        least 0.95), ``id``, ``constant``, ``mostly_empty`` (under 10% filled),
        ``placeholder`` (values like "Select", "unknown", "?", "N/A" that mean
        missing, with their share of rows), ``mixed_dates`` (dates in several
        formats), ``few_rows`` (a table of one row).
    """
    n_rows = len(df)
    if schema is not None:
        schema = Schema.coerce(schema)
        target = target if target is not None else schema.target
    if target is not None and target not in df.columns:
        from .errors import TargetError

        raise TargetError(f"target column {target!r} is not in the table",
                          hint=f"columns are: {', '.join(map(str, list(df.columns)[:30]))}")
    rows = max(_MIN_ROWS, max_cells // max(1, df.shape[1]))
    if n_rows > rows:
        log.info("profiling a sample of %d of %d rows", rows, n_rows)
        df = sample(df, rows, target=target, seed=seed)
    if schema is None:
        schema = infer(df, target=target)
    elif schema.target != target:
        schema = Schema(dict(schema.columns), target)
    missing = [c for c in df.columns if c not in schema]
    if missing:
        schema = Schema({**schema.columns, **infer(df[missing]).columns}, target)

    task, y, labelled = None, None, None
    if target is not None:
        labelled = df[target].notna().to_numpy()
        y = df[target][labelled]
        task = _task(y, schema[target].type) if y.nunique() > 1 else None
        if task is None:
            log.warning("target %r has fewer than 2 classes; no associations computed", target)
    api = pd.api.types
    numeric = [c for c in df.columns if c != target and schema[c].type in _NUMERIC + ("binary",)
               and api.is_numeric_dtype(df[c]) and not api.is_bool_dtype(df[c])]
    positive = None
    if task == "binary":
        positive = (y == _positive(y)).to_numpy()
    block = _numeric_block(df[numeric], positive, labelled)
    y_levels = _levels(y) if task else None
    columns = [_column(df[name], schema[name],
                       *((y, task, labelled, y_levels) if task and name != target
                         else (None,) * 4),
                       block=block.get(name))
               for name in df.columns]
    if n_rows < 2:  # every column looks constant; the table is what is short
        log.warning("the table has %d row(s)", n_rows)
        for c in columns:
            c["warnings"] = [("few_rows", f"the table has {n_rows} row(s); nothing can be said about "
                                          "this column's values")]
    return Profile(columns, schema, target, task, n_rows, len(df))
