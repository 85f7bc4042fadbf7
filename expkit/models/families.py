"""The registry of model families that compete in a tournament.

A family is a name, an estimator factory ``factory(params, task, seed)``, an
Optuna search space ``space(trial) -> params``, a default configuration tried
first, and a predicate ``applies(task, n_rows, n_features, sparse)`` saying
when it may compete, and the feature view it learns from (``"linear"``: a scaled
sparse matrix with buckets and one-hot pivots; ``"tree"``: a dense DataFrame with
values as they are and categoricals as ``category`` codes; see
:mod:`expkit.features.featurizer`). Built-ins (:mod:`~expkit.models.estimators`)
cover logistic regression (ridge and elastic net for regression), LightGBM,
histogram gradient boosting, random forests, extra trees, RBF SVMs and k-nearest
neighbours; XGBoost joins when it is installed. :func:`register_family` adds a
user's own family with one call; it then competes like the built-ins.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import f_classif, f_regression
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError
from . import estimators

TASKS = ("binary", "multiclass", "regression")
CLASSIFICATION = ("binary", "multiclass")
#: Feature views a family can learn from (see :mod:`expkit.features.featurizer`).
VIEWS = ("linear", "tree")


@dataclass(frozen=True)
class Family:
    """One model family: how to build it, what to search, when it applies.

    Attributes
    ----------
    name : str
    factory : callable
        ``factory(params: dict, task: str, seed: int) -> estimator``.
    space : callable
        ``space(trial) -> dict`` of hyperparameters, drawn with the usual
        ``trial.suggest_*`` calls (names need no prefix; the tournament adds one).
    default : dict
        The configuration tried before any search; keys are those ``space`` draws.
    applies : callable
        ``applies(task, n_rows, n_features, sparse) -> bool``.
    class_weight : bool
        True when ``factory`` understands ``params["class_weight"]``
        (None or "balanced"); the tournament then searches it on imbalanced data.
    refit : callable, optional
        ``refit(params, fold_estimators, fold_rows, rows) -> params`` for the final
        fit on all ``rows`` training rows, given the estimators fitted on the
        cross-validation folds and their training rows. Histogram boosting uses it
        to train on every row with the number of iterations early stopping chose in
        the folds (scaled up for the larger fit), instead of holding out a random
        10% again. None: the final fit uses ``params`` as searched.
    cost : callable, optional
        ``cost(params, n_features) -> float``: how long a configuration takes to fit
        relative to another of the same family (e.g. trees x features tried per split for
        a forest). The budget rule scales the family's slowest fold so far by it, so a
        configuration many times dearer than the ones timed is not started just before
        the deadline. None: every configuration costs the same.
    view : {"linear", "tree"}
        The features it learns from. A ``"linear"`` family's search also chooses
        whether numeric buckets are in (``params["buckets"]``).
    builtin : bool
    """

    name: str
    factory: Callable[[dict, str, int], Any]
    space: Callable[[Any], dict]
    default: Mapping[str, Any] = field(default_factory=dict)
    applies: Callable[[str, int, int, bool], bool] = lambda task, n_rows, n_features, sparse: True
    class_weight: bool = False
    refit: Callable[[dict, list, list, int], dict] | None = None
    cost: Callable[[dict, int], float] | None = None
    view: str = "linear"
    builtin: bool = False

    def relative_cost(self, params: Mapping[str, Any], n_features: int) -> float:
        """``cost(params, n_features)`` (1.0 without a cost hint or when it fails)."""
        if self.cost is None:
            return 1.0
        try:
            value = float(self.cost(dict(params), n_features))
        except Exception:  # noqa: BLE001 - a hint, never a reason to fail a trial
            return 1.0
        return value if np.isfinite(value) and value > 0 else 1.0

    def build(self, params: Mapping[str, Any], task: str, seed: int, n_jobs: int | None = None):
        """The estimator for ``params``.

        ``n_jobs`` replaces every ``n_jobs`` parameter the factory gave a value
        (None means the estimator does not parallelise that way and is left alone).
        """
        est = self.factory(dict(params), task, seed)
        if n_jobs is not None:
            for name, value in est.get_params().items():
                if (name == "n_jobs" or name.endswith("__n_jobs")) and value is not None:
                    est.set_params(**{name: n_jobs})
        return est


_REGISTRY: dict[str, Family] = {}


def register_family(name: str, factory: Callable, space: Callable, *, default: Mapping | None = None,
                    applies: Callable | None = None, class_weight: bool = False,
                    refit: Callable | None = None, cost: Callable | None = None, view: str = "linear",
                    replace: bool = False) -> Family:
    """Add a model family to every later tournament.

    Parameters
    ----------
    name : str
        Unique name shown on the leaderboard.
    factory : callable
        ``factory(params, task, seed) -> sklearn estimator`` (``task`` is
        "binary", "multiclass" or "regression").
    space : callable
        ``space(trial) -> dict`` drawing hyperparameters with ``trial.suggest_*``.
    default : dict, optional
        Configuration tried first (must use the names ``space`` draws).
    applies : callable, optional
        ``applies(task, n_rows, n_features, sparse) -> bool``; default: always.
    class_weight : bool
        Whether ``factory`` accepts ``params["class_weight"]``.
    refit : callable, optional
        ``refit(params, fold_estimators, fold_rows, rows) -> params`` for the winner's final fit
        (see :class:`Family`).
    cost : callable, optional
        ``cost(params, n_features) -> float``, a configuration's relative fit time
        (see :class:`Family`).
    view : {"linear", "tree"}
        The feature view it learns from (see :class:`Family`).
    replace : bool
        Allow replacing an existing family of that name.

    Returns
    -------
    Family

    Examples
    --------
    >>> from sklearn.naive_bayes import BernoulliNB
    >>> register_family("bernoulli_nb", lambda p, task, seed: BernoulliNB(alpha=p["alpha"]),
    ...                 lambda t: {"alpha": t.suggest_float("alpha", 1e-3, 10, log=True)},
    ...                 default={"alpha": 1.0},
    ...                 applies=lambda task, n, p, sparse: task != "regression")  # doctest: +SKIP
    """
    if not name or not isinstance(name, str) or "." in name:
        raise ConfigError(f"family name {name!r} is not usable",
                          hint="use a non-empty string without dots")
    if not callable(factory) or not callable(space):
        raise ConfigError(f"family {name!r}: factory and space must be callables",
                          hint="factory(params, task, seed) -> estimator; space(trial) -> dict")
    if view not in VIEWS:
        raise ConfigError(f"family {name!r}: view={view!r} is not known", hint=f"use one of {VIEWS}")
    if name in _REGISTRY and not replace:
        raise ConfigError(f"a model family named {name!r} is already registered",
                          hint="choose another name or pass replace=True")
    fam = Family(name, factory, space, dict(default or {}),
                 applies or (lambda task, n_rows, n_features, sparse: True), class_weight, refit, cost, view)
    _REGISTRY[name] = fam
    return fam


def unregister_family(name: str) -> None:
    """Remove a family (built-in or user) from the registry."""
    _REGISTRY.pop(name, None)


def get_family(name: str) -> Family:
    """The registered family called ``name`` (ConfigError if unknown)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model family {name!r}",
                          hint=f"registered families: {', '.join(_REGISTRY)}") from None


def families() -> dict[str, Family]:
    """A copy of the registry, ``{name: Family}`` in registration order."""
    return dict(_REGISTRY)


def select(names, task: str, n_rows: int, n_features: int, is_sparse: bool) -> list[Family]:
    """The families that compete: ``names="auto"`` -> every one that applies.

    An explicit list is taken as asked (unknown names raise ConfigError), but a
    family that does not handle ``task`` is refused with a ConfigError.
    """
    if names == "auto" or names is None:
        chosen = [f for f in _REGISTRY.values() if f.applies(task, n_rows, n_features, is_sparse)]
    else:
        if isinstance(names, str):
            names = [names]
        chosen = [get_family(n) for n in names]
        wrong = [f.name for f in chosen if not _task_ok(f, task)]
        if wrong:
            raise ConfigError(f"families {wrong} do not handle a {task} task",
                              hint="drop them or use families='auto'")
    if not chosen:
        raise ConfigError(f"no model family applies to a {task} task with {n_rows} rows",
                          hint="pass families=[...] explicitly or register one")
    return chosen


def _task_ok(fam: Family, task: str) -> bool:
    """Whether ``fam`` handles ``task`` at some size (used for explicit choices)."""
    return fam.applies(task, 100, 10, False)


# -- kept for models saved before the tree view ----------------------------------------

class DenseTopK(TransformerMixin, BaseEstimator):
    """Keep at most ``k`` features (univariate F-score) and return a dense array.

    Histogram gradient boosting needed dense input from the sparse linear
    features; the tree view is dense now, so no built-in family uses this, but
    models saved before it hold one and must still load.

    Parameters
    ----------
    k : int
    task : {"classification", "regression"}
    """

    def __init__(self, k: int = 300, task: str = "classification"):
        self.k = k
        self.task = task

    def fit(self, X, y):
        n = X.shape[1]
        if n <= self.k:
            self.support_ = np.arange(n)
        else:
            scorer = f_regression if self.task == "regression" else f_classif
            with np.errstate(all="ignore"):
                scores, _ = scorer(X, y)
            scores = np.nan_to_num(scores, nan=0.0, posinf=np.finfo(float).max)
            self.support_ = np.sort(np.argsort(-scores, kind="stable")[: self.k])
        self.n_features_in_ = n
        return self

    def transform(self, X):
        check_is_fitted(self, "support_")
        X = X[:, self.support_]
        return X.toarray() if sparse.issparse(X) else np.asarray(X)



def _register_builtins() -> None:
    e = estimators
    builtins = [
        Family("logistic", e.linear, e.linear_space, {"C": 1.0, "l1_ratio": 0.0}, e.classification, True,
               cost=e.linear_cost),
        Family("ridge", e.ridge, e.ridge_space, {"alpha": 1.0}, e.regression),
        Family("elastic_net", e.linear, e.elastic_net_space, {"alpha": 1e-3, "l1_ratio": 0.5}, e.regression),
        # cheap and strong first: on large tables with a small budget the defaults of the
        # forests alone can use the whole budget
        Family("lightgbm", e.lgbm, e.lgbm_space, e.LIGHTGBM_DEFAULT, e.any_task, True, cost=e.boost_cost,
               view="tree"),
        Family("hist_gradient_boosting", e.hgb, e.hgb_space,
               {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                "l2_regularization": 1e-6}, e.any_task, True, e.hgb_refit, e.hgb_cost, view="tree"),
        Family("random_forest", e.forest("RandomForest"), e.forest_space,
               {"n_estimators": 200, "min_samples_leaf": 1, "max_features": "sqrt", "max_depth": None},
               e.any_task, True, cost=e.forest_cost, view="tree"),
        Family("extra_trees", e.forest("ExtraTrees"), e.forest_space,
               {"n_estimators": 200, "min_samples_leaf": 2, "max_features": "sqrt", "max_depth": None},
               e.any_task, True, cost=e.forest_cost, view="tree"),
        Family("svm", e.svm, e.svm_space, {"C": 1.0, "gamma": "scale"}, e.small_for_svm, True),
        Family("knn", e.knn, e.knn_space, {"n_neighbors": 15, "weights": "distance"}, e.small_for_knn),
    ]
    if importlib.util.find_spec("xgboost") is not None:
        builtins.append(Family("xgboost", e.xgb, e.lgbm_space, dict(e.LIGHTGBM_DEFAULT), e.any_task,
                               cost=e.boost_cost, view="tree"))
    for fam in builtins:
        _REGISTRY[fam.name] = replace(fam, builtin=True)


_register_builtins()

__all__ = ["Family", "DenseTopK", "register_family", "unregister_family", "get_family", "families",
           "select", "TASKS", "VIEWS"]
