"""Featurizer: Transmogrifier then SanityChecker, the one transformer that
tournaments, model bundles and scoring use."""
from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from ..errors import FeatureError
from .base import ONE_HOT_TRANSFORMS
from .sanity import REPORT_COLUMNS, SanityChecker
from .transmogrify import Transmogrifier, _lineage_frame


class Featurizer(TransformerMixin, BaseEstimator):
    """Raw DataFrame -> sanity-checked CSR feature matrix.

    ``fit(X, y)`` fits a :class:`Transmogrifier` and then a
    :class:`SanityChecker` whose groups are the raw columns from the lineage
    (so a leaking column loses every feature); ``transform`` returns only the
    kept features.

    Parameters
    ----------
    schema : Schema or dict, optional
        Passed to the Transmogrifier when it has none of its own.
    transmogrifier : Transmogrifier, optional
        Configured (unfitted) Transmogrifier to use; cloned at fit.
    sanity : bool or SanityChecker, default True
        False skips the checks; a SanityChecker instance sets thresholds.
    random_state : int, default 0

    Attributes
    ----------
    transmogrifier_ : fitted Transmogrifier
    sanity_ : fitted SanityChecker or None
    schema_ : Schema
    lineage_ : DataFrame (feature, column, transform) of kept features
    sanity_report_ : DataFrame (feature, column, statistic, value, reason)
    feature_names_out_ : list of kept feature names
    """

    def __init__(self, schema=None, transmogrifier=None, sanity=True, random_state=0):
        self.schema = schema
        self.transmogrifier = transmogrifier
        self.sanity = sanity
        self.random_state = random_state

    def fit(self, X, y):
        self._fit(X, y)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        return self._fit(X, y)

    def _fit(self, X, y):
        tm = clone(self.transmogrifier) if self.transmogrifier is not None else \
            Transmogrifier(random_state=self.random_state)
        if self.schema is not None and tm.schema is None:
            tm.set_params(schema=self.schema)
        Xt = tm.fit_transform(X, y)
        self.transmogrifier_ = tm
        if self.sanity is False or self.sanity is None:
            self.sanity_ = None
            keep = np.arange(Xt.shape[1])
        else:
            checker = clone(self.sanity) if isinstance(self.sanity, SanityChecker) else SanityChecker()
            names, columns, transforms = tm.lineage_lists()
            onehot = [c if t in ONE_HOT_TRANSFORMS else None for c, t in zip(columns, transforms)]
            checker.fit(Xt, y, groups=columns, feature_names=names, onehot_groups=onehot)
            self.sanity_ = checker
            keep = np.flatnonzero(checker.support_)
            if not len(keep):
                raise FeatureError(f"the sanity checker removed all {Xt.shape[1]} features",
                                   hint="see sanity_report_; check the label and the input columns")
        self.keep_ = keep
        return Xt[:, keep] if len(keep) < Xt.shape[1] else Xt

    def transform(self, X):
        check_is_fitted(self, "keep_")
        Xt = self.transmogrifier_.transform(X)
        return Xt[:, self.keep_] if len(self.keep_) < Xt.shape[1] else Xt

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "keep_")
        return np.asarray(self.feature_names_out_, dtype=object)

    def lineage_lists(self) -> tuple[list[str], list[str], list[str]]:
        """(names, raw columns, transforms) of the kept features, from the
        Transmogrifier's lineage (generated, not stored, to keep models small)."""
        check_is_fitted(self, "keep_")
        return tuple([lst[i] for i in self.keep_] for lst in self.transmogrifier_.lineage_lists())

    @property
    def feature_names_out_(self) -> list[str]:
        return self.lineage_lists()[0]

    @property
    def feature_names_out(self) -> list[str]:
        """Names of the kept features (same as ``get_feature_names_out()``)."""
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
