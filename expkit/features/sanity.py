"""The SanityChecker: drop features that leak the label or carry nothing."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from .base import ONE_HOT_TRANSFORMS, is_regression

log = logging.getLogger(__name__)

REPORT_COLUMNS = ["feature", "column", "statistic", "value", "reason"]
#: Why a feature was dropped; ``drop_code_`` holds 1 + the index here (0 = kept).
#: Fitted arrays of names kept as one text when pickled or saved, joined by :data:`_SEP`.
_TEXT_ARRAYS = ("names_", "columns_")
_SEP = "\x1f"  # the ASCII unit separator: not in feature names
DROP_STATISTICS = ("abs_correlation", "cramers_v", "correlation_ratio", "group", "variance")
_DROP_CODE = {s: i + 1 for i, s in enumerate(DROP_STATISTICS)}
_LEAKS = frozenset({"abs_correlation", "cramers_v", "correlation_ratio"})


def _column_moments(X: sp.csr_matrix):
    """Mean and (population) variance of every column, without densifying.

    The variance sums ``(x - mean)^2`` over stored values plus
    ``mean^2`` for each implicit zero, which stays accurate for large values.
    """
    n = X.shape[0]
    mean = np.asarray(X.sum(axis=0)).ravel() / n
    dev = (X.data - mean[X.indices]) ** 2
    stored = np.bincount(X.indices, minlength=X.shape[1])
    sq = np.bincount(X.indices, weights=dev, minlength=X.shape[1])
    return mean, (sq + (n - stored) * mean ** 2) / n


def _label_matrix(y):
    """Centred label matrix: y itself (regression), or one 0/1 column per
    class (one column for two classes), and the class indicator matrix."""
    y = np.asarray(y)
    if is_regression(y):
        Y = y.astype(np.float64).reshape(-1, 1)
        return Y - Y.mean(axis=0), None
    classes, index = np.unique(y, return_inverse=True)  # one class: all statistics 0
    onehot = np.zeros((len(y), len(classes)))
    onehot[np.arange(len(y)), index] = 1.0
    Y = onehot[:, 1:] if len(classes) <= 2 else onehot
    return Y - Y.mean(axis=0), onehot


class SanityChecker(TransformerMixin, BaseEstimator):
    """Remove features that leak the label or carry nothing, with reasons.

    A feature is dropped when its variance is below ``min_variance``, when
    its absolute Pearson correlation with the label exceeds
    ``max_correlation`` (multiclass: with each class indicator, the maximum
    counts), or when the one-hot group it belongs to (the pivot of one raw
    column) has Cramér's V with the label above ``max_cramers_v``
    (regression: the correlation ratio). When any feature of a raw column
    leaks, every feature of that column goes (``drop_group``).

    Statistics use column sums and ``X.T @ Y`` on the sparse matrix; nothing
    is densified.

    Names and groups: given to :meth:`fit`, else taken from a DataFrame ``X``:
    its columns name the features and, when it comes from a
    :class:`~expkit.features.Transmogrifier` with pandas output, its
    ``attrs["lineage"]`` gives each feature's raw column (the group) and
    transform. So in a plain ``Pipeline([("features", Transmogrifier()),
    ("sanity", SanityChecker())]).set_output(transform="pandas")`` the report
    names real features and raw fields, and a leaking field loses every feature.

    Parameters
    ----------
    max_correlation : float, default 0.95
    max_cramers_v : float, default 0.95
    min_variance : float, default 1e-5
    drop_group : bool, default True

    Attributes
    ----------
    support_ : ndarray of bool, kept features
    report_ : DataFrame (feature, column, statistic, value, reason) of dropped features
    statistics_ : DataFrame per feature: variance, correlation, group_association
    names_, columns_ : ndarray of str, name and group (raw column) of each feature
    variance_, correlation_, group_association_ : ndarray of float, per feature
    drop_code_ : ndarray of int8, per feature 0 (kept) or 1 + index into
        :data:`DROP_STATISTICS`

    ``report_`` and ``statistics_`` are built from these arrays when read, so
    a saved model stays small however many features were dropped. Pickled or saved,
    ``names_`` and ``columns_`` travel as one text each (a fixed-width array of 8,000
    hashed-text names is over 1 MB; the text about a quarter of that).
    """

    def __getstate__(self):
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__ itself
        for key in _TEXT_ARRAYS:
            values = state.get(key)
            names = values.tolist() if isinstance(values, np.ndarray) else []
            if names and not any(_SEP in name for name in names):
                state[key] = _SEP.join(names)
        return state

    def __setstate__(self, state):
        state = dict(state)
        for key in _TEXT_ARRAYS:
            if isinstance(state.get(key), str):
                state[key] = np.asarray(state[key].split(_SEP), dtype=str)
        super().__setstate__(state)

    def __init__(self, max_correlation=0.95, max_cramers_v=0.95, min_variance=1e-5, drop_group=True):
        self.max_correlation = max_correlation
        self.max_cramers_v = max_cramers_v
        self.min_variance = min_variance
        self.drop_group = drop_group

    def fit(self, X, y, groups=None, feature_names=None, onehot_groups=None):
        """Decide which features to keep.

        Parameters
        ----------
        X : sparse matrix, array or DataFrame, shape (n_rows, n_features)
        y : array-like, the label
        groups : array-like of str, optional
            Raw column of each feature (default: each feature its own group).
        feature_names : array-like of str, optional
            Default: DataFrame columns or ``x0, x1, ...``.
        onehot_groups : array-like, optional
            Label of the mutually exclusive one-hot group of each feature
            (None for features in none) used for Cramér's V. Default: the 0/1
            features of each group, when no row has two of them set.
        """
        if isinstance(X, pd.DataFrame):
            lineage = X.attrs.get("lineage") or {}
            if feature_names is None:
                feature_names = list(X.columns)
            if groups is None and len(lineage.get("column", ())) == X.shape[1]:
                groups = lineage["column"]
                if onehot_groups is None and len(lineage.get("transform", ())) == X.shape[1]:
                    onehot_groups = [g if t in ONE_HOT_TRANSFORMS else None
                                     for g, t in zip(groups, lineage["transform"])]
        X = sp.csr_matrix(validate_data(self, X, accept_sparse="csr", dtype=np.float64))
        y = column_or_1d(np.asarray(y))
        check_consistent_length(X, y)
        n, p = X.shape
        if n < 2:
            raise ValueError(f"SanityChecker needs at least 2 rows, got n_samples={n}")
        names = [str(f) for f in feature_names] if feature_names is not None else [f"x{i}" for i in range(p)]
        groups = [str(g) for g in groups] if groups is not None else names
        mean, var = _column_moments(X)
        Yc, onehot = _label_matrix(y)
        cov = np.asarray(X.T @ Yc) / n                          # (p, k); centred Y needs no mean_x term
        denom = np.sqrt(np.outer(var, (Yc ** 2).mean(axis=0)))
        corr = np.divide(np.abs(cov), denom, out=np.zeros_like(cov), where=denom > 0).max(axis=1)
        assoc = self._group_association(X, y, Yc, onehot, groups, onehot_groups)

        # Compact fitted state (numpy arrays; skops stores them as .npy files):
        # report_ and statistics_ are built from these when read.
        self.names_ = np.asarray(names, dtype=str)
        self.columns_ = np.asarray(groups, dtype=str)
        assoc_name = "cramers_v" if onehot is not None else "correlation_ratio"
        leak = np.zeros(p, dtype=np.int8)
        leak[assoc > self.max_cramers_v] = _DROP_CODE[assoc_name]
        leak[corr > self.max_correlation] = _DROP_CODE["abs_correlation"]
        code = leak.copy()
        if self.drop_group:
            code[(code == 0) & np.isin(self.columns_, self.columns_[leak > 0])] = _DROP_CODE["group"]
        code[(code == 0) & (var < self.min_variance)] = _DROP_CODE["variance"]
        self.variance_, self.correlation_, self.group_association_ = var, corr, assoc
        self.drop_code_ = code
        self.support_ = code == 0
        log.info("sanity checker kept %d of %d features", int(self.support_.sum()), p)
        return self

    def _group_association(self, X, y, Yc, onehot, groups, onehot_groups):
        """Cramér's V (classes) or correlation ratio (regression) of each
        feature's one-hot group with the label; 0 for features in no group."""
        p = X.shape[1]
        out = np.zeros(p)
        binary = np.zeros(p, dtype=bool)
        nonbinary = np.bincount(X.indices[(X.data != 0) & (X.data != 1)], minlength=p) > 0
        binary[~nonbinary] = True
        labels = onehot_groups if onehot_groups is not None else groups
        members: dict[str, list[int]] = {}
        for i, g in enumerate(labels):
            if g is not None and binary[i]:
                members.setdefault(str(g), []).append(i)
        n = X.shape[0]
        for g, idx in members.items():
            sub = X[:, idx]
            if onehot_groups is None and sub.sum(axis=1).max() > 1:
                continue  # not mutually exclusive: not a one-hot group
            if onehot is not None:
                table = np.asarray(sub.T @ onehot)              # (levels, classes) counts
                table = np.vstack([table, onehot.sum(axis=0) - table.sum(axis=0)])  # rows in no level
                out[idx] = _cramers_v(table, n)
            else:
                yc = Yc[:, 0]
                counts = np.append(np.asarray(sub.sum(axis=0)).ravel(), 0)
                sums = np.append(np.asarray(sub.T @ yc).ravel(), 0)
                counts[-1], sums[-1] = n - counts[:-1].sum(), -sums[:-1].sum()
                total = (yc ** 2).sum()
                between = np.divide(sums ** 2, counts, out=np.zeros_like(sums), where=counts > 0).sum()
                out[idx] = np.sqrt(between / total) if total > 0 else 0.0
        return out

    def transform(self, X):
        check_is_fitted(self, "support_")
        checked = validate_data(self, X, reset=False, accept_sparse="csr", dtype=None)
        if isinstance(X, pd.DataFrame):
            out = X.loc[:, self.support_]
            lineage = X.attrs.get("lineage") or {}
            if all(len(v) == X.shape[1] for v in lineage.values()):  # the kept columns' lineage
                out.attrs["lineage"] = {k: [v[i] for i in np.flatnonzero(self.support_)]
                                        for k, v in lineage.items()}
            return out
        return checked[:, np.flatnonzero(self.support_)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "support_")
        return self.names_.astype(object)[self.support_]

    @property
    def report_(self) -> pd.DataFrame:
        """Dropped features: feature, column, statistic, value, reason."""
        check_is_fitted(self, "support_")
        dropped = np.flatnonzero(~self.support_)
        names, columns = self.names_.tolist(), self.columns_.tolist()
        leaking = {columns[i]: names[i]  # the last leaking feature of each raw column
                   for i in dropped if DROP_STATISTICS[self.drop_code_[i] - 1] in _LEAKS}
        records = []
        for i in dropped:
            statistic = DROP_STATISTICS[self.drop_code_[i] - 1]
            if statistic == "abs_correlation":
                value = self.correlation_[i]
                reason = f"|correlation with label| {value:.3f} > {self.max_correlation}: label leak"
            elif statistic == "group":
                value, reason = np.nan, f"same raw column as leaking feature {leaking[columns[i]]}"
            elif statistic == "variance":
                value = self.variance_[i]
                reason = f"variance {value:.2g} < {self.min_variance}: no information"
            else:
                value = self.group_association_[i]
                reason = (f"{statistic} of the {columns[i]} group {value:.3f} > "
                          f"{self.max_cramers_v}: label leak")
            records.append({"feature": names[i], "column": columns[i], "statistic": statistic,
                            "value": float(value), "reason": reason})
        return pd.DataFrame(records, columns=REPORT_COLUMNS)

    @property
    def statistics_(self) -> pd.DataFrame:
        """Per feature: variance, |correlation| with the label, group association."""
        check_is_fitted(self, "support_")
        return pd.DataFrame({"feature": self.names_.tolist(), "column": self.columns_.tolist(),
                             "variance": self.variance_, "correlation": self.correlation_,
                             "group_association": self.group_association_})


def _cramers_v(table: np.ndarray, n: int) -> float:
    """Cramér's V of a contingency table (empty rows/columns ignored)."""
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    r, c = table.shape
    if min(r, c) < 2:
        return 0.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (n * (min(r, c) - 1))))
