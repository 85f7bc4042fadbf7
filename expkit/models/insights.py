"""What drives a model: importance per raw field and per-record reasons.

Both work on raw input columns through the whole pipeline, so a field's
importance covers every feature derived from it (pivots, text hashes, null
indicators) without needing the lineage.

* :func:`field_importance`: permutation importance on the hold-out: shuffle one
  raw field, measure how much the hold-out score drops.
* :class:`Explainer`: leave-one-field-out reasons: replace one field by its
  training baseline (median for numbers, most frequent value for categories,
  missing otherwise) and measure how much each record's score moves.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import pandas as pd

_NUMERIC = ("numeric", "integer")
#: Score changes below this share of a record's score (at least of 1) count as none.
NOISE = 1e-6
_MODE = ("binary", "categorical")


def field_importance(predict: Callable[[pd.DataFrame], np.ndarray], X: pd.DataFrame, y: np.ndarray,
                     metric, *, fields=None, n_repeats: int = 3, max_rows: int = 2000,
                     seed: int = 0, seconds: float | None = None) -> pd.DataFrame:
    """Permutation importance of each raw field.

    Parameters
    ----------
    predict : callable
        ``predict(df) -> scores`` in the conventions of :mod:`expkit.models.evaluate`.
    X : DataFrame
        Hold-out rows (raw columns, no target).
    y : ndarray
        Hold-out labels (class codes or values).
    metric : evaluate.Metric
        The score whose drop is measured (sign flipped for losses, so a
        positive importance always means the field helps).
    fields : list, optional
        Fields to permute; default every column of ``X``.
    n_repeats, max_rows, seed
        Shuffles per field; rows used (a random subset above ``max_rows``).
    seconds : float, optional
        Time allowed: fewer repeats, then fewer rows, then fewer fields when the
        full measurement would take longer (see :func:`expkit.models.budget.importance_plan`).

    Returns
    -------
    DataFrame
        field, importance (mean drop), std; most important first; fields not
        measured for lack of time last, with NaN. ``attrs["plan"]`` holds the rows,
        repeats and fields measured.
    """
    import time

    from .budget import importance_plan

    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    fields = list(fields or X.columns)
    if len(X) > max_rows:
        take = rng.choice(len(X), max_rows, replace=False)
        X, y = X.iloc[take], y[take]
    X = X.reset_index(drop=True)
    sign = 1.0 if metric.greater_is_better else -1.0
    t = time.perf_counter()
    base = metric.fn(y, predict(X))
    plan = {"rows": len(X), "repeats": n_repeats, "fields": len(fields)}
    if seconds is not None:
        took = time.perf_counter() - t
        plan = importance_plan(seconds - took, took, len(X), len(fields), max_rows, n_repeats)
        if plan["rows"] < len(X):
            take = rng.choice(len(X), plan["rows"], replace=False)
            X, y = X.iloc[take].reset_index(drop=True), y[take]
            base = metric.fn(y, predict(X))
    requested, n_repeats = n_repeats, plan["repeats"]
    deadline = t + seconds if seconds is not None else float("inf")
    measured, last = [], time.perf_counter() - t
    for field in fields[:plan["fields"]]:
        start = time.perf_counter()
        if start + last > deadline:  # the plan was optimistic: stop rather than overrun
            break
        # the repeats' shuffles scored in one call (one pass through the pipeline)
        shuffled = pd.concat([X] * n_repeats, ignore_index=True)
        shuffled[field] = np.concatenate([X[field].to_numpy()[rng.permutation(len(X))] for _ in range(n_repeats)])
        scores = predict(shuffled)
        drops = [sign * (base - metric.fn(y, scores[i * len(X):(i + 1) * len(X)])) for i in range(n_repeats)]
        measured.append({"field": field, "importance": float(np.mean(drops)), "std": float(np.std(drops))})
        last = time.perf_counter() - start
    plan["fields"] = len(measured)
    rows = measured + [{"field": f, "importance": np.nan, "std": np.nan} for f in fields[len(measured):]]
    out = pd.DataFrame(rows, columns=["field", "importance", "std"])
    out = out.sort_values("importance", ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    out.attrs["plan"] = dict(plan, complete=plan["fields"] == len(fields) and n_repeats == requested)
    return out


def _jsonable(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def _constant_like(s: pd.Series, value) -> pd.Series:
    """A column like ``s`` holding ``value`` everywhere (dtype kept where it fits)."""
    try:
        return pd.Series([value] * len(s), index=s.index, dtype=s.dtype)
    except (TypeError, ValueError):
        return pd.Series([value] * len(s), index=s.index, dtype=object if value is None else None)


class Explainer:
    """Leave-one-field-out reasons for individual scores.

    Parameters
    ----------
    baseline : dict
        ``{field: value}``: what a field is replaced with (None = missing).
    """

    def __init__(self, baseline: Mapping[str, object]):
        self.baseline = dict(baseline)

    @classmethod
    def from_frame(cls, X: pd.DataFrame, types: Mapping[str, str]) -> "Explainer":
        """Baselines from training rows: median of numbers, mode of categories, else missing.

        ``types`` maps each field to its semantic type; ``id`` and ``constant``
        fields get no baseline (they never explain anything).
        """
        baseline = {}
        for col in X.columns:
            kind = types.get(col)
            if kind in ("id", "constant"):
                continue
            s = X[col]
            value = None
            if kind in _NUMERIC and pd.api.types.is_numeric_dtype(s) and s.notna().any():
                value = float(s.median())
            elif kind in _MODE and s.notna().any():
                value = s.mode(dropna=True).iloc[0]
            baseline[col] = _jsonable(value)
        return cls(baseline)

    def to_dict(self) -> dict:
        return {k: _jsonable(v) for k, v in self.baseline.items()}

    def reasons(self, predict: Callable[[pd.DataFrame], np.ndarray], df: pd.DataFrame,
                k: int = 3) -> pd.DataFrame:
        """The ``k`` fields that move each record's score most.

        Parameters
        ----------
        predict : callable
            ``predict(df) -> scores`` (1-D, or 2-D class probabilities; then the
            probability of each record's predicted class is explained).
        df : DataFrame
            Raw records.
        k : int

        Returns
        -------
        DataFrame
            Indexed like ``df``: ``score``, then ``reason_i`` (field) and
            ``impact_i`` (score minus the score with that field at its baseline;
            positive means the field's value raised the score; changes below
            :data:`NOISE` of the score are 0) for i = 1..k.
        """
        frame = df.reset_index(drop=True)
        base = np.asarray(predict(frame), dtype=float)
        column = None
        if base.ndim == 2:
            column = np.argmax(base, axis=1)
            base = base[np.arange(len(base)), column]
        fields = [f for f in self.baseline if f in frame.columns]
        impacts = np.zeros((len(frame), len(fields)))
        for j, field in enumerate(fields):
            changed = frame.copy()
            value = self.baseline[field]
            changed[field] = _constant_like(frame[field], value)
            s = np.asarray(predict(changed), dtype=float)
            if column is not None:
                s = s[np.arange(len(s)), column]
            impacts[:, j] = base - s
        # differences at the level of floating-point noise (1e-8 of a probability) are no reason
        impacts[np.abs(impacts) <= NOISE * np.maximum(np.abs(base), 1.0)[:, None]] = 0.0
        out = pd.DataFrame({"score": base}, index=df.index)
        k = min(k, len(fields))
        order = np.argsort(-np.abs(impacts), axis=1, kind="stable")[:, :k]
        for i in range(k):
            out[f"reason_{i + 1}"] = [fields[j] for j in order[:, i]]
            out[f"impact_{i + 1}"] = impacts[np.arange(len(frame)), order[:, i]]
        return out


__all__ = ["field_importance", "Explainer"]
