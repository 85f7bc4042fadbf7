"""Shared machinery of the per-type vectorizers.

Every vectorizer works on one raw column (a Series or a one-column DataFrame),
learns in ``fit``, returns a scipy CSR matrix from ``transform`` and names its
outputs ``<column>__<suffix>``. ``feature_transforms_`` says which transform
made each output column (the lineage the Transmogrifier reports).

Fitted state holds only short lists, dicts, numpy arrays and sklearn
estimators so that models persist with skops. skops writes lists and dicts
item by item as JSON, so anything with one entry per output column (names,
lineage) is generated from compact parameters instead of stored.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from ..errors import SchemaError

#: Strings that mean "no value" (compared stripped and lower-cased).
PLACEHOLDERS = ("", "?", "-", "--", "n/a", "na", "nan", "none", "null", "select", "unknown")

#: Lineage transforms whose columns form one mutually exclusive one-hot group.
ONE_HOT_TRANSFORMS = frozenset({"pivot", "bucket", "domain", "null"})


def as_series(X) -> pd.Series:
    """The single column in ``X`` (Series, one-column DataFrame or 1-D array)."""
    if isinstance(X, pd.Series):
        return X
    if isinstance(X, pd.DataFrame):
        if X.shape[1] != 1:
            raise SchemaError(f"expected one column, got {X.shape[1]}: {list(X.columns)}",
                              hint="per-column vectorizers take exactly one column")
        return X.iloc[:, 0]
    arr = np.asarray(X)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise SchemaError(f"expected one column, got an array of shape {arr.shape}")
    return pd.Series(arr, name="x")


def _clean_text(value) -> str:
    """A value as stripped text; whole floats print as integers (3.0 -> '3')."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def factorize(s: pd.Series, placeholders=PLACEHOLDERS) -> tuple[np.ndarray, np.ndarray]:
    """Codes per row and the distinct cleaned string values.

    Work is done once per distinct value (vectorised for string columns), not
    per row. Missing values and placeholders get code -1; values equal after
    stripping ("US", "US ") share one code.

    Returns
    -------
    codes : ndarray of intp, shape (n_rows,)
    uniques : ndarray of str objects
    """
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if uniques.dtype != object and pd.api.types.is_string_dtype(uniques.dtype):
        cleaned = pd.Series(uniques, dtype="str").str.strip()
    else:
        cleaned = pd.Series([_clean_text(u) for u in uniques], dtype="str")
    missing = cleaned.str.lower().isin([p.lower() for p in placeholders]).to_numpy(dtype=bool)
    new_codes, new_uniques = pd.factorize(cleaned.mask(missing), use_na_sentinel=True)
    lookup = np.append(new_codes, -1).astype(np.intp)  # code -1 stays -1
    return lookup[codes], np.asarray(new_uniques, dtype=object)


def strings(uniques: np.ndarray) -> pd.Series:
    """Distinct values as a string Series, for vectorised string operations."""
    return pd.Series(uniques, dtype="str")


def is_regression(y) -> bool:
    """True when ``y`` is a continuous target (regression), False for classes."""
    return type_of_target(np.asarray(y)) == "continuous"


def one_hot(index: np.ndarray, n_columns: int) -> sp.csr_matrix:
    """CSR with a 1 at ``(row, index[row])`` for rows where ``index >= 0``."""
    index = np.asarray(index, dtype=np.int64)
    rows = index >= 0
    indptr = np.concatenate([[0], np.cumsum(rows)])
    return sp.csr_matrix((np.ones(int(rows.sum())), index[rows], indptr),
                         shape=(len(index), n_columns))


def want_null_indicator(setting, missing: np.ndarray) -> bool:
    """Whether to emit an empty-field indicator: ``"auto"`` means only when
    the column had missing values at fit time (like sklearn's ``missing-only``)."""
    if setting == "auto":
        return bool(missing.any())
    return bool(setting)


class ColumnVectorizer(TransformerMixin, BaseEstimator):
    """Base class: one raw column in, a CSR block with named columns out.

    Subclasses implement ``_fit(s, y)`` (setting ``feature_suffixes_`` and
    ``feature_transforms_``, or the state that properties of those names
    derive them from) and ``_transform(s)`` (returning a sparse or dense
    2-D block). ``_fit_transform`` may be overridden to share work.
    """

    def fit(self, X, y=None):
        self._fit_transform(as_series(X), y, transform=False)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        return self._fit_transform(as_series(X), y, transform=True)

    def transform(self, X):
        check_is_fitted(self, "feature_suffixes_")
        return self._finish(self._transform(as_series(X)))

    def _fit_transform(self, s, y, transform):
        self.column_ = str(s.name) if s.name is not None else "x"
        self._fit(s, y)
        return self._finish(self._transform(s)) if transform else None

    def _finish(self, block) -> sp.csr_matrix:
        out = sp.csr_matrix(block, dtype=np.float64)
        if out.shape[1] != len(self.feature_suffixes_):  # pragma: no cover - programming error
            raise RuntimeError(f"{type(self).__name__} made {out.shape[1]} columns, "
                               f"expected {len(self.feature_suffixes_)}")
        return out

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "feature_suffixes_")
        return np.array([f"{self.column_}__{s}" for s in self.feature_suffixes_], dtype=object)
