"""Numeric and integer columns: imputed scaled value, label-aware buckets,
empty-field indicator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from .base import ColumnVectorizer, is_regression, one_hot, want_null_indicator

SCALINGS = ("auto", "standard", "robust", "log1p", None)
#: A bucket tree's leaf holds at least this many times the square root of the rows.
BUCKET_LEAF_SQRT = 3.0


def to_float(s: pd.Series) -> np.ndarray:
    """Values as float64; anything non-numeric or infinite becomes NaN."""
    x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    x[~np.isfinite(x)] = np.nan
    return x


def min_bucket_rows(n_rows: int, share: float) -> int:
    """Fewest rows in a label-aware bucket: ``share`` of the rows, and at least
    :data:`BUCKET_LEAF_SQRT` x sqrt(rows)."""
    return max(1, int(np.ceil(max(share * n_rows, BUCKET_LEAF_SQRT * np.sqrt(n_rows)))))


class NumericVectorizer(ColumnVectorizer):
    """Median imputation, a scaled value, buckets and an empty-field indicator.

    Buckets are label-aware when ``fit`` gets ``y``: a shallow decision tree
    (classifier, or regressor for a continuous ``y``) on this column alone;
    its split points become bucket edges and each bucket one indicator column.
    Without ``y`` the edges are quantiles.

    Parameters
    ----------
    scaling : {"auto", "standard", "robust", "log1p", None}, default "auto"
        How the imputed value is scaled (linear models need it). "auto" takes
        ``sign(x) * log1p(|x|)`` of a skewed column (|skew| > 2) then
        standardises; "robust" centres on the median and divides by the IQR;
        "log1p" always takes the signed log first; None leaves values raw.
    buckets : int, default 8
        Most buckets (tree leaves or quantile bins); 0 turns buckets off.
    min_bucket_share : float, default 0.02
        Smallest share of rows in a bucket tree's leaf; the leaf also holds at least
        :data:`BUCKET_LEAF_SQRT` times the square root of the rows, so that on a few
        hundred rows a bucket is not a handful of rows fitted to noise (300 rows: 52
        per leaf, 10,000 rows: 300, 100,000 rows: 2,000 from the share).
    null_indicator : {"auto", True, False}, default "auto"
    random_state : int, default 0
    """

    def __init__(self, scaling="auto", buckets=8, min_bucket_share=0.02,
                 null_indicator="auto", random_state=0):
        self.scaling = scaling
        self.buckets = buckets
        self.min_bucket_share = min_bucket_share
        self.null_indicator = null_indicator
        self.random_state = random_state

    def _fit(self, s, y):
        if self.scaling not in SCALINGS:
            from ..errors import ConfigError
            raise ConfigError(f"scaling={self.scaling!r} is not known", hint=f"use one of {SCALINGS}")
        x = to_float(s)
        missing = np.isnan(x)
        seen = x[~missing]
        self.median_ = float(np.median(seen)) if seen.size else 0.0
        self.log_ = self.scaling == "log1p" or (
            self.scaling == "auto" and seen.size > 2 and abs(pd.Series(seen).skew()) > 2)
        v = self._signed_log(np.where(missing, self.median_, x))
        if self.scaling == "robust":
            q1, q3 = np.percentile(v, [25, 75])
            self.center_, self.scale_ = float(np.median(v)), float(q3 - q1)
        elif self.scaling is None:
            self.center_, self.scale_ = 0.0, 1.0
        else:
            self.center_, self.scale_ = float(v.mean()), float(v.std())
        if not self.scale_ > 0:
            self.scale_ = 1.0
        self.edges_ = self._edges(x, missing, y)
        self.null_ = want_null_indicator(self.null_indicator, missing)
        self.feature_suffixes_ = ["value"] + self._bucket_names() + (["null"] if self.null_ else [])
        self.feature_transforms_ = (["value"] + ["bucket"] * len(self._bucket_names())
                                    + (["null"] if self.null_ else []))

    def _signed_log(self, v):
        return np.sign(v) * np.log1p(np.abs(v)) if self.log_ else v

    def _edges(self, x, missing, y) -> list[float]:
        if not self.buckets or missing.all():
            return []
        seen = x[~missing]
        if y is None:
            qs = np.quantile(seen, np.linspace(0, 1, self.buckets + 1)[1:-1])
            return [float(e) for e in np.unique(qs)]
        y = np.asarray(y)[~missing]
        tree_cls = DecisionTreeRegressor if is_regression(y) else DecisionTreeClassifier
        tree = tree_cls(max_leaf_nodes=max(self.buckets, 2),
                        min_samples_leaf=min_bucket_rows(len(seen), self.min_bucket_share),
                        random_state=self.random_state).fit(seen.reshape(-1, 1), y)
        t = tree.tree_
        return [float(e) for e in np.unique(t.threshold[t.feature >= 0])]

    def _bucket_names(self) -> list[str]:
        if not self.edges_:  # no split found (or buckets off): no bucket columns
            return []
        bounds = ["-inf"] + [f"{e:.4g}" for e in self.edges_] + ["inf"]
        return [f"bucket_{lo}_{hi}" for lo, hi in zip(bounds[:-1], bounds[1:])]

    def _transform(self, s):
        x = to_float(s)
        missing = np.isnan(x)
        value = (self._signed_log(np.where(missing, self.median_, x)) - self.center_) / self.scale_
        blocks = [sp.csr_matrix(value.reshape(-1, 1))]
        if self.edges_:
            index = np.searchsorted(np.asarray(self.edges_), x, side="left")
            # tree rule is x <= threshold -> left, so side="left" puts x == edge in the lower bucket
            blocks.append(one_hot(np.where(missing, -1, index), len(self.edges_) + 1))
        if self.null_:
            blocks.append(sp.csr_matrix(missing.reshape(-1, 1).astype(np.float64)))
        return sp.hstack(blocks, format="csr")
