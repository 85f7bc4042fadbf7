"""Featurizer: Transmogrifier then SanityChecker, the one transformer that
tournaments, model bundles and scoring use, in the view a model family needs.

Every view comes from the same fit: the Transmogrifier makes every column any view
uses (scaled values, buckets, pivots and ordinal codes), the SanityChecker decides
once which of them leak or carry nothing, and a view is a choice of columns:

* ``"linear"`` (linear models, SVMs, kNN): scaled numeric values, label-aware
  buckets (``buckets=False`` leaves them out), one-hot pivots, empty-field
  indicators, text statistics and hashed TF-IDF; a CSR matrix.
* ``"tree"`` (forests, boosting): one value column per number (imputed, no
  buckets), one ordinal code column per categorical (a ``category`` column that
  histogram boosting and LightGBM split natively), empty-field indicators of
  numbers, text statistics and the :data:`TREE_TEXT_COLUMNS` hashed text columns
  most associated with the label; a dense float32 DataFrame.
* ``"all"``: every kept column (CSR); :meth:`Featurizer.view_columns` picks a view's
  columns out of it, which is how a tournament featurizes each fold once for all views.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.feature_selection import f_classif, f_regression
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, FeatureError
from .base import ONE_HOT_TRANSFORMS, is_regression
from .sanity import REPORT_COLUMNS, SanityChecker
from .transmogrify import Transmogrifier, _lineage_frame

VIEWS = ("linear", "tree", "all")
#: Most hashed TF-IDF columns the tree view keeps (those with the highest F-score).
TREE_TEXT_COLUMNS = 200
#: Transforms a tree view leaves out of a field that has an ordinal code column.
_CODED = ("pivot", "null")


class Featurizer(TransformerMixin, BaseEstimator):
    """Raw DataFrame -> sanity-checked features in one model family's view.

    ``fit(X, y)`` fits a :class:`Transmogrifier` and then a
    :class:`SanityChecker` whose groups are the raw columns from the lineage
    (so a leaking column loses every feature); ``transform`` returns the kept
    features of the ``view`` (see the module docstring).

    Parameters
    ----------
    schema : Schema or dict, optional
        Passed to the Transmogrifier when it has none of its own.
    transmogrifier : Transmogrifier, optional
        Configured (unfitted) Transmogrifier to use; cloned at fit (its ordinal
        code columns are always made, so that every view shares one fit).
    sanity : bool or SanityChecker, default True
        False skips the checks; a SanityChecker instance sets thresholds.
    view : {"linear", "tree", "all"}, default "linear"
    buckets : bool, default True
        Numeric buckets in the linear view.
    random_state : int, default 0

    Attributes
    ----------
    transmogrifier_ : fitted Transmogrifier
    sanity_ : fitted SanityChecker or None
    schema_ : Schema
    lineage_ : DataFrame (feature, column, transform) of the view's features
    sanity_report_ : DataFrame (feature, column, statistic, value, reason)
    feature_names_out_ : list of the view's feature names
    keep_ : ndarray, the Transmogrifier's columns in the view
    supported_ : ndarray, the Transmogrifier's columns the SanityChecker kept
    """

    def __init__(self, schema=None, transmogrifier=None, sanity=True, view="linear", buckets=True,
                 random_state=0):
        self.schema = schema
        self.transmogrifier = transmogrifier
        self.sanity = sanity
        self.view = view
        self.buckets = buckets
        self.random_state = random_state

    def fit(self, X, y):
        self._fit(X, y)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        return self._output(self._fit(X, y))

    def _fit(self, X, y):
        if self.view not in VIEWS:
            raise ConfigError(f"view={self.view!r} is not known", hint=f"use one of {VIEWS}")
        tm = clone(self.transmogrifier) if self.transmogrifier is not None else \
            Transmogrifier(random_state=self.random_state)
        tm.set_params(ordinal=True)
        tm.set_output(transform="default")
        if self.schema is not None and tm.schema is None:
            tm.set_params(schema=self.schema)
        Xt = tm.fit_transform(X, y)
        self.transmogrifier_ = tm
        self._lineage_cache = None
        if self.sanity is False or self.sanity is None:
            self.sanity_ = None
            supported = np.arange(Xt.shape[1])
        else:
            checker = clone(self.sanity) if isinstance(self.sanity, SanityChecker) else SanityChecker()
            names, columns, transforms = self._lineage()
            onehot = [c if t in ONE_HOT_TRANSFORMS else None for c, t in zip(columns, transforms)]
            checker.fit(Xt, y, groups=columns, feature_names=names, onehot_groups=onehot)
            self.sanity_ = checker
            supported = np.flatnonzero(checker.support_)
            if not len(supported):
                raise FeatureError(f"the sanity checker removed all {Xt.shape[1]} features",
                                   hint="see sanity_report_; check the label and the input columns")
        self.supported_ = supported
        self.text_rank_ = self._rank_text(Xt, y)
        self.keep_ = supported[self.view_columns(self.view, self.buckets)]
        if not len(self.keep_):
            raise FeatureError(f"no feature is left for the {self.view} view",
                               hint="see sanity_report_; check the input columns")
        self.ordinal_sizes_ = self._ordinal_sizes()
        return Xt[:, self.keep_]

    def _rank_text(self, Xt, y) -> np.ndarray:
        """Kept hashed-text columns (positions in ``supported_``), most associated with the label first."""
        transforms = np.asarray(self._lineage()[2], dtype=object)[self.supported_]
        text = np.flatnonzero(transforms == "tfidf")
        if len(text) <= TREE_TEXT_COLUMNS or y is None:
            return text
        scorer = f_regression if is_regression(y) else f_classif
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # constant columns: score 0
            scores, _ = scorer(Xt[:, self.supported_[text]], np.asarray(y))
        scores = np.nan_to_num(scores, nan=0.0, posinf=np.finfo(float).max)
        return text[np.argsort(-scores, kind="stable")]

    def view_columns(self, view: str, buckets: bool = True) -> np.ndarray:
        """Positions, among the kept columns (the ``"all"`` view), of a view's columns."""
        check_is_fitted(self, "supported_")
        _, columns, transforms = self._lineage()
        t = np.asarray(transforms, dtype=object)[self.supported_]
        c = np.asarray(columns, dtype=object)[self.supported_]
        if view == "all":
            return np.arange(len(t))
        if view == "linear":
            ok = t != "ordinal"
            if not buckets:
                ok &= t != "bucket"
            return np.flatnonzero(ok)
        if view != "tree":
            raise ConfigError(f"view={view!r} is not known", hint=f"use one of {VIEWS}")
        coded = np.isin(c, c[t == "ordinal"])
        ok = (t != "bucket") & (t != "tfidf") & ~(coded & np.isin(t, _CODED))
        ok[self.text_rank_[:TREE_TEXT_COLUMNS]] = True
        return np.flatnonzero(ok)

    def view_output(self, X_all, view: str, buckets: bool = True):
        """A view's features out of this ``view="all"`` Featurizer's output ``X_all``:
        what a Featurizer of that view, fitted on the same rows, gives."""
        check_is_fitted(self, "keep_")
        if self.view != "all":
            raise ConfigError(f"view_output needs a Featurizer with view='all', not {self.view!r}")
        cols = self.view_columns(view, buckets)
        X = X_all[:, cols]
        if view != "tree":
            return X
        ordinal = self.is_ordinal_
        rank = np.cumsum(ordinal) - 1  # position of each ordinal column among them
        chosen = cols[ordinal[cols]]
        return tree_frame(X, ordinal[cols], self.ordinal_sizes_[rank[chosen]])

    def _ordinal_sizes(self) -> np.ndarray:
        """Categories of each ordinal column in the view (its pivots, OTHER included, + missing)."""
        _, columns, transforms = self._lineage()
        columns, transforms = np.asarray(columns, dtype=object), np.asarray(transforms, dtype=object)
        pivots = {}
        for col in columns[transforms == "pivot"]:
            pivots[col] = pivots.get(col, 0) + 1
        return np.array([pivots.get(columns[i], 1) + 1 for i in self.keep_ if transforms[i] == "ordinal"],
                        dtype=np.int64)

    def transform(self, X):
        check_is_fitted(self, "keep_")
        return self._output(self.transmogrifier_.transform(X)[:, self.keep_])

    def _output(self, Xt):
        """The view's container: CSR, or (tree view) a dense float32 DataFrame whose
        ordinal columns are ``category`` columns with fixed categories."""
        if getattr(self, "view", "linear") != "tree":
            return Xt
        return tree_frame(Xt, self.is_ordinal_, self.ordinal_sizes_)

    @property
    def is_ordinal_(self) -> np.ndarray:
        """Per output column: an ordinal code column or not."""
        check_is_fitted(self, "keep_")
        transforms = np.asarray(self._lineage()[2], dtype=object)
        return transforms[self.keep_] == "ordinal"

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "keep_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def lineage_lists(self) -> tuple[list[str], list[str], list[str]]:
        """(names, raw columns, transforms) of the view's features, from the
        Transmogrifier's lineage (generated, not stored, to keep models small)."""
        check_is_fitted(self, "keep_")
        return tuple([lst[i] for i in self.keep_] for lst in self._lineage())

    def _lineage(self):
        """The Transmogrifier's lineage lists, generated once per fitted object (not saved)."""
        cached = getattr(self, "_lineage_cache", None)
        if cached is None:
            cached = self._lineage_cache = tuple(np.asarray(lst, dtype=object)
                                                 for lst in self.transmogrifier_.lineage_lists())
        return cached

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_lineage_cache", None)  # one entry per column: regenerated on demand
        return state

    @property
    def feature_names_out_(self) -> list[str]:
        return self.lineage_lists()[0]

    @property
    def feature_names_out(self) -> list[str]:
        """Names of the view's features (same as ``get_feature_names_out()``)."""
        return list(self.get_feature_names_out())

    @property
    def schema_(self):
        check_is_fitted(self, "keep_")
        return self.transmogrifier_.schema_

    @property
    def lineage_(self) -> pd.DataFrame:
        return _lineage_frame(*self.lineage_lists())

    @property
    def sanity_report_(self) -> pd.DataFrame:
        check_is_fitted(self, "keep_")
        if self.sanity_ is None:
            return pd.DataFrame(columns=REPORT_COLUMNS)
        return self.sanity_.report_


def tree_frame(X, ordinal: np.ndarray, sizes: np.ndarray) -> pd.DataFrame:
    """A dense float32 DataFrame of ``X`` (columns ``f0, f1, ...``; positions, since
    feature names may hold characters a booster refuses), the ``ordinal`` columns as
    ``category`` columns whose categories are ``0 .. size-1``."""
    dense = X.toarray() if sp.issparse(X) else np.asarray(X)
    frame = pd.DataFrame(dense.astype(np.float32, copy=False), columns=[f"f{i}" for i in range(dense.shape[1])])
    for j, size in zip(np.flatnonzero(ordinal), sizes):
        codes = np.clip(dense[:, j].astype(np.int64), 0, size - 1)
        frame[f"f{j}"] = pd.Categorical.from_codes(codes, categories=np.arange(size))
    return frame
