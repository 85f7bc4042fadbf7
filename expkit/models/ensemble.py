"""Ensembles of the best configurations: greedy selection and the ensemble model.

:func:`select` is ensemble selection with replacement (Caruana, Niculescu-Mizil,
Crew and Ksikes, 2004, "Ensemble selection from libraries of models"; what
AutoGluon's weighted ensemble does): starting from nothing, each round adds the
candidate (again, if it is already in) whose out-of-fold predictions most improve
the metric of the running average; the ensemble of the best round is kept, each
member weighted by how often it was picked. Out-of-fold predictions of every
candidate come from the same folds, so the average of theirs is the ensemble's.

:class:`EnsembleModel` is the result as one estimator on raw rows: each member
has its own feature view (a fitted :class:`~expkit.features.Featurizer`, shared by
members of the same view) and the scores are the weighted average of the members'
probabilities (regression: predictions).
"""
from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .calibration import scores_of

#: Rounds of greedy selection (members picked with replacement).
ROUNDS = 25
#: The ensemble is shipped only when its out-of-fold score beats the best single
#: configuration's by more than this.
MIN_GAIN = 1e-4


def select(candidates: dict, y: np.ndarray, metric, *, rounds: int = ROUNDS, fits=None, folds=None):
    """Greedy ensemble selection with replacement over out-of-fold predictions.

    Parameters
    ----------
    candidates : dict
        ``{key: out-of-fold scores}``, best single candidate first.
    y : ndarray
        The labels (class codes) or values of the out-of-fold rows.
    metric : evaluate.Metric
    rounds : int
    fits : callable, optional
        ``fits(members: set) -> bool``: whether an ensemble of these distinct members is
        affordable (e.g. refitting them fits in the time left); others are not picked.
    folds : list of arrays, optional
        The rows of each validation fold: the score is then the mean of the per-fold
        scores, as a cross-validated score is (AUROC over the pooled folds differs).

    Returns
    -------
    weights : dict
        ``{key: weight}`` (weights sum to 1) of the best round's ensemble.
    score : float
        Its out-of-fold score.
    """
    keys = list(candidates)
    preds = [np.asarray(candidates[k], dtype=float) for k in keys]
    sign = 1.0 if metric.greater_is_better else -1.0

    def score_of(p):
        if folds is None:
            return float(metric.fn(y, p))
        return float(np.mean([metric.fn(y[idx], p[idx]) for idx in folds]))

    total = np.zeros_like(preds[0])
    picked: list = []
    history: list[float] = []
    for r in range(rounds):
        best, best_score = None, None
        for i, key in enumerate(keys):
            if fits is not None and key not in picked and not fits(set(picked) | {key}):
                continue
            score = score_of((total + preds[i]) / (r + 1))
            if np.isfinite(score) and (best_score is None or sign * score > sign * best_score):
                best, best_score = i, score
        if best is None:
            break
        total += preds[best]
        picked.append(keys[best])
        history.append(best_score)
    if not picked:
        return {}, float("nan")
    stop = int(np.argmax(sign * np.asarray(history))) + 1  # the first best round
    counts = Counter(picked[:stop])
    return {k: counts[k] / stop for k in keys if k in counts}, history[stop - 1]


def blend(candidates: dict, weights: dict) -> np.ndarray:
    """The weighted average of the candidates' out-of-fold scores."""
    return sum(w * np.asarray(candidates[k], dtype=float) for k, w in weights.items())


class EnsembleModel(BaseEstimator):
    """A weighted average of models, each on its own feature view of the raw rows.

    Parameters
    ----------
    features : list of Featurizer
        One (unfitted) per distinct view; cloned and fitted in :meth:`fit`.
    members : list of (int, estimator)
        Each member's position in ``features`` and its (unfitted) estimator.
    weights : list of float
        One per member.
    task : {"binary", "multiclass", "regression"}

    Attributes
    ----------
    features_ : list of fitted Featurizer
    estimators_ : list of fitted estimators
    classes_ : ndarray (classification)
    """

    def __init__(self, features, members, weights, task="binary"):
        self.features = features
        self.members = members
        self.weights = weights
        self.task = task

    def fit(self, X, y):
        y = np.asarray(y)
        target = y
        if self.task != "regression":
            self.classes_, target = np.unique(y, return_inverse=True)  # the Featurizer learns on class codes
        self.features_, views = [], []
        for feat in self.features:
            feat = clone(feat)
            views.append(feat.fit_transform(X, target))
            self.features_.append(feat)
        self.estimators_ = []
        for index, est in self.members:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self.estimators_.append(clone(est).fit(views[index], y))
        self.n_features_in_ = X.shape[1]
        return self

    def _blend(self, X) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        views = [f.transform(X) for f in self.features_]
        task = self.task if self.task != "binary" else "multiclass"  # both class columns
        total = None
        for (index, _), est, w in zip(self.members, self.estimators_, self.weights):
            s = w * scores_of(est, views[index], task)
            total = s if total is None else total + s
        return total / float(np.sum(self.weights))

    @available_if(lambda self: self.task != "regression")
    def predict_proba(self, X) -> np.ndarray:
        """Weighted average of the members' class probabilities (classes in ``classes_`` order)."""
        return self._blend(X)

    def predict(self, X) -> np.ndarray:
        if self.task == "regression":
            return self._blend(X)
        return self.classes_[np.argmax(self._blend(X), axis=1)]

    def get_feature_names_out(self, input_features=None):
        """Every member view's features (each name once)."""
        check_is_fitted(self, "features_")
        names = dict.fromkeys(n for f in self.features_ for n in f.get_feature_names_out())
        return np.asarray(list(names), dtype=object)


__all__ = ["select", "blend", "EnsembleModel", "ROUNDS", "MIN_GAIN"]
