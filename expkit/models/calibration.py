"""Scores in expkit's conventions and calibrated probabilities from out-of-fold scores.

:func:`scores_of` is how every part of expkit reads a model's output (search,
evaluation, scoring). :class:`CalibratedModel` wraps the tournament's winner:
the estimator is fitted once on all training rows and its scores go through
calibrators (isotonic or sigmoid, one-vs-rest; or none) fitted on out-of-fold
scores, the ones the search already computed. That is what scikit-learn's
``CalibratedClassifierCV(ensemble=False)`` does, without refitting the
estimator once per fold, and isotonic calibration keeps the ranking of the raw
scores, so calibration never costs AUROC.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

#: Share of the raw score mixed into isotonic outputs so that its flat steps keep
#: the raw order (changes probabilities by at most this much).
TIE_BREAK = 1e-6


def scores_of(estimator, X, task: str) -> np.ndarray:
    """Scores in the package's conventions: regression predictions; the positive class's
    probability (or decision value) for binary; class probabilities for multiclass."""
    if task == "regression":
        return np.asarray(estimator.predict(X), dtype=float)
    if hasattr(estimator, "predict_proba"):
        p = np.asarray(estimator.predict_proba(X), dtype=float)
        return p[:, 1] if task == "binary" else p
    d = np.asarray(estimator.decision_function(X), dtype=float)
    if task == "binary":
        return d
    e = np.exp(d - d.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class CalibratedModel(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier fitted on all rows, its scores calibrated on out-of-fold scores.

    Parameters
    ----------
    estimator : sklearn classifier
        Fitted (a clone) on all rows passed to :meth:`fit`.
    method : {"isotonic", "sigmoid", "none"}
        Calibration map, one per class (one-vs-rest; multiclass rows renormalised).
        The sigmoid is fitted on the log-odds of probabilities (on decision scores of
        models without ``predict_proba``); "none" passes probabilities through.
    cv : int
        Folds for the out-of-fold scores when :meth:`fit` is not given them.
    random_state : int

    Attributes
    ----------
    estimator_ : the fitted estimator (uncalibrated scores)
    calibrators_ : list, one fitted calibrator per score column (None: constant ``priors_``)
    classes_ : ndarray
    """

    def __init__(self, estimator, method: str = "isotonic", cv: int = 3, random_state: int = 0):
        self.estimator = estimator
        self.method = method
        self.cv = cv
        self.random_state = random_state

    def fit(self, X, y, oof_scores=None, oof_y=None):
        """Fit the estimator on ``X, y`` and the calibrators on out-of-fold scores.

        Parameters
        ----------
        oof_scores : array, optional
            Out-of-fold scores (as :func:`scores_of` gives them) of the same configuration,
            e.g. from the tournament's cross-validation; ``oof_y`` are their class codes
            (positions in the sorted classes). Without them, ``cv``-fold scores of ``X, y``.
        """
        if self.method not in ("isotonic", "sigmoid", "none"):
            raise ValueError(f"method must be 'isotonic', 'sigmoid' or 'none', got {self.method!r}")
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        codes = np.searchsorted(self.classes_, y)
        if oof_scores is None:
            oof_scores, oof_y = self._cross_scores(X, y, codes, task), codes
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.logit_ = hasattr(self.estimator_, "predict_proba")
        if self.method == "none" and not self.logit_:
            raise ValueError("method='none' needs an estimator with predict_proba")
        self.n_features_in_ = getattr(self.estimator_, "n_features_in_", None)
        self._fit_calibrators(np.asarray(oof_scores, dtype=float), np.asarray(oof_y).astype(int))
        return self

    def _cross_scores(self, X, y, codes, task):
        k = max(2, min(int(self.cv), int(np.bincount(codes).min())))
        out = np.zeros((len(y),) if task == "binary" else (len(y), len(self.classes_)))
        for tr, va in StratifiedKFold(k, shuffle=True, random_state=self.random_state).split(X, codes):
            est = clone(self.estimator).fit(_rows(X, tr), y[tr])
            out[va] = scores_of(est, _rows(X, va), task)
        return out

    def _fit_calibrators(self, s, codes):
        from .evaluate import _fit_calibrator

        if self.method == "sigmoid":
            s = self._input(s)
        columns = [s] if s.ndim == 1 else [s[:, j] for j in range(s.shape[1])]
        targets = [codes == 1] if s.ndim == 1 else [codes == j for j in range(s.shape[1])]
        self.calibrators_, self.priors_, self.centers_, self.scales_ = [], [], [], []
        for col, hit in zip(columns, targets):
            hit = hit.astype(int)
            both = 0 < hit.sum() < len(hit)
            fitted = both and self.method != "none"
            self.calibrators_.append(_fit_calibrator(self.method, col, hit) if fitted else None)
            self.priors_.append(float(hit.mean()))
            self.centers_.append(float(np.median(col)))
            self.scales_.append(float(np.std(col)) or 1.0)
        return self

    def _calibrate(self, j: int, s: np.ndarray) -> np.ndarray:
        from .evaluate import _apply_calibrator

        if self.method == "none":
            return s
        cal = self.calibrators_[j]
        if cal is None:
            return np.full(len(s), self.priors_[j])
        p = _apply_calibrator(cal, self._input(s) if self.method == "sigmoid" else s)
        if self.method == "isotonic":  # strictly increasing in s: ties of the steps keep the raw order
            rank = 0.5 + np.arctan((s - self.centers_[j]) / self.scales_[j]) / np.pi
            p = (1 - TIE_BREAK) * p + TIE_BREAK * rank
        return p

    def _input(self, s):
        from .evaluate import calibration_input

        # models saved before the log-odds input had their sigmoid fitted on the raw score
        return calibration_input(s, getattr(self, "logit_", False))

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "calibrators_")
        binary = len(self.classes_) == 2
        s = scores_of(self.estimator_, X, "binary" if binary else "multiclass")
        if binary:
            p = self._calibrate(0, s)
            return np.column_stack([1 - p, p])
        from .evaluate import _normalise

        return _normalise(np.column_stack([self._calibrate(j, s[:, j]) for j in range(s.shape[1])]))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _rows(X, idx):
    return X.iloc[idx] if hasattr(X, "iloc") else X[idx]


__all__ = ["CalibratedModel", "scores_of", "TIE_BREAK"]
