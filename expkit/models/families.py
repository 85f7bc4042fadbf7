"""The registry of model families that compete in a tournament.

A family is a name, an estimator factory ``factory(params, task, seed)``, an
Optuna search space ``space(trial) -> params``, a default configuration tried
first, and a predicate ``applies(task, n_rows, n_features, sparse)`` saying
when it may compete. Built-ins cover linear models, random forests, extra
trees, histogram gradient boosting, RBF SVMs and k-nearest neighbours;
LightGBM and XGBoost join when they are installed. :func:`register_family`
adds a user's own family with one call; it then competes like the built-ins.

Inputs arrive as the scaled sparse matrix the Featurizer produces, so linear
models, SVMs and kNN need no scaling of their own.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import f_classif, f_regression
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError

TASKS = ("binary", "multiclass", "regression")
CLASSIFICATION = ("binary", "multiclass")


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
                    refit: Callable | None = None, cost: Callable | None = None,
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
    if name in _REGISTRY and not replace:
        raise ConfigError(f"a model family named {name!r} is already registered",
                          hint="choose another name or pass replace=True")
    fam = Family(name, factory, space, dict(default or {}),
                 applies or (lambda task, n_rows, n_features, sparse: True), class_weight, refit, cost)
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


# -- helpers for the built-ins -----------------------------------------------------

class DenseTopK(TransformerMixin, BaseEstimator):
    """Keep at most ``k`` features (univariate F-score) and return a dense array.

    Histogram gradient boosting needs dense input; a wide sparse matrix (hashed
    text, large pivots) is cut to its ``k`` most informative columns first so
    densifying stays cheap.

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


def _cw(params, task):
    return params.get("class_weight") if task in CLASSIFICATION else None


def _linear(params, task, seed):
    from sklearn.linear_model import ElasticNet, LogisticRegression
    if task == "regression":
        return ElasticNet(alpha=params.get("alpha", 1e-3), l1_ratio=params.get("l1_ratio", 0.5),
                          max_iter=params.get("max_iter", 2000), random_state=seed)
    l1 = params.get("l1_ratio", 0.0)
    return LogisticRegression(C=params.get("C", 1.0), l1_ratio=l1,
                              solver="lbfgs" if l1 == 0 else "saga",
                              max_iter=params.get("max_iter", 300 if l1 == 0 else 200),
                              class_weight=_cw(params, task), random_state=seed)


def _linear_cost(params, n_features):
    """lbfgs 1; saga (any l1 share) 40x at C=1, ~8x at C=0.01 and ~200x at C=100 (measured
    on hashed text, where it is dearest)."""
    if params.get("l1_ratio", 0.0) == 0:
        return 1.0
    return 40.0 * float(params.get("C", 1.0)) ** 0.35


def _linear_space(t):
    return {"C": t.suggest_float("C", 1e-3, 1e2, log=True),
            "l1_ratio": t.suggest_categorical("l1_ratio", [0.0, 0.5, 1.0])}


def _ridge(params, task, seed):
    from sklearn.linear_model import Ridge
    return Ridge(alpha=params.get("alpha", 1.0), random_state=seed)


def _forest(kind):
    def factory(params, task, seed):
        from sklearn import ensemble
        cls = getattr(ensemble, f"{kind}{'Regressor' if task == 'regression' else 'Classifier'}")
        kw = dict(n_estimators=params.get("n_estimators", 200),
                  min_samples_leaf=params.get("min_samples_leaf", 1),
                  max_features=params.get("max_features", "sqrt" if task != "regression" else 0.5),
                  max_depth=params.get("max_depth"), random_state=seed, n_jobs=1)
        if task in CLASSIFICATION:
            kw["class_weight"] = _cw(params, task)
        return cls(**kw)
    return factory


def _forest_cost(params, n_features):
    """Trees x features tried per split (depth and leaf size only make a forest cheaper)."""
    share = params.get("max_features", "sqrt")
    tried = np.sqrt(n_features) if share == "sqrt" else float(share) * n_features
    return params.get("n_estimators", 200) * max(1.0, tried)


def _forest_space(t):
    return {"n_estimators": t.suggest_int("n_estimators", 100, 400, step=50),
            "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 20, log=True),
            "max_features": t.suggest_categorical("max_features", ["sqrt", 0.2, 0.5, 1.0]),
            "max_depth": t.suggest_categorical("max_depth", [None, 8, 16, 32])}


def _hgb(params, task, seed):
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    kw = dict(learning_rate=params.get("learning_rate", 0.1), max_iter=params.get("max_iter", 200),
              max_leaf_nodes=params.get("max_leaf_nodes", 31),
              min_samples_leaf=params.get("min_samples_leaf", 20),
              l2_regularization=params.get("l2_regularization", 0.0),
              early_stopping=params.get("early_stopping", True), validation_fraction=0.1,
              n_iter_no_change=20, random_state=seed)
    if task == "regression":
        model = HistGradientBoostingRegressor(**kw)
    else:
        model = HistGradientBoostingClassifier(class_weight=_cw(params, task), **kw)
    select_task = "regression" if task == "regression" else "classification"
    return Pipeline([("dense", DenseTopK(k=params.get("max_dense_features", 300), task=select_task)),
                     ("model", model)])


def _hgb_refit(params, fold_estimators, fold_rows, rows):
    """All training rows, no early-stopping hold-out, and the folds' mean iteration count
    scaled by the square root of how many more rows the final fit has than a fold's
    booster had (more rows carry more rounds before overfitting; on adult, 12,000 rows
    per fold and 29,304 in the end, x1.56 gave +0.0005-0.0008 hold-out AUROC over x1
    for both the default and a tuned configuration, and x2 was past the optimum)."""
    n_iter, fitted_rows = [], []
    for est, n in zip(fold_estimators, fold_rows):
        model = est[-1]
        n_iter.append(model.n_iter_)
        fitted_rows.append(n * (1 - model.validation_fraction) if model.early_stopping else n)
    per_fold = float(np.mean(fitted_rows))
    scale = max(np.sqrt(rows / per_fold), 1.0) if rows and per_fold > 0 else 1.0
    return {**params, "max_iter": max(1, int(round(float(np.mean(n_iter)) * scale))),
            "early_stopping": False}


def _hgb_cost(params, n_features):
    """Iterations x tree depth (early stopping only makes it cheaper)."""
    return params.get("max_iter", 200) * np.log2(max(params.get("max_leaf_nodes", 31), 2))


def _hgb_space(t):
    return {"learning_rate": t.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "max_iter": t.suggest_int("max_iter", 100, 500, step=50),
            "max_leaf_nodes": t.suggest_int("max_leaf_nodes", 8, 64, log=True),
            "min_samples_leaf": t.suggest_int("min_samples_leaf", 5, 100, log=True),
            "l2_regularization": t.suggest_float("l2_regularization", 1e-6, 10.0, log=True)}


def _svm(params, task, seed):
    from sklearn.svm import SVC, SVR
    if task == "regression":
        return SVR(C=params.get("C", 1.0), gamma=params.get("gamma", "scale"))
    # probability=False: the tournament ranks on decision scores and the winner's
    # probabilities come from calibration, which is cheaper than Platt inside SVC.
    return SVC(C=params.get("C", 1.0), gamma=params.get("gamma", "scale"),
               class_weight=_cw(params, task), random_state=seed)


def _svm_space(t):
    return {"C": t.suggest_float("C", 1e-2, 1e2, log=True),
            "gamma": t.suggest_categorical("gamma", ["scale", 0.001, 0.01, 0.1])}


def _knn(params, task, seed):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    cls = KNeighborsRegressor if task == "regression" else KNeighborsClassifier
    return cls(n_neighbors=params.get("n_neighbors", 15), weights=params.get("weights", "distance"),
               n_jobs=1)


def _knn_space(t):
    return {"n_neighbors": t.suggest_int("n_neighbors", 3, 75, log=True),
            "weights": t.suggest_categorical("weights", ["uniform", "distance"])}


def _lightgbm(params, task, seed):
    import lightgbm
    kw = dict(n_estimators=params.get("n_estimators", 300), learning_rate=params.get("learning_rate", 0.05),
              num_leaves=params.get("num_leaves", 31), min_child_samples=params.get("min_child_samples", 20),
              subsample=params.get("subsample", 1.0), subsample_freq=1,
              colsample_bytree=params.get("colsample_bytree", 1.0),
              reg_lambda=params.get("reg_lambda", 0.0), random_state=seed, n_jobs=1, verbose=-1)
    if task == "regression":
        return lightgbm.LGBMRegressor(**kw)
    return lightgbm.LGBMClassifier(class_weight=_cw(params, task), **kw)


def _boost_space(t):
    return {"n_estimators": t.suggest_int("n_estimators", 100, 600, step=50),
            "learning_rate": t.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "num_leaves": t.suggest_int("num_leaves", 8, 128, log=True),
            "min_child_samples": t.suggest_int("min_child_samples", 5, 100, log=True),
            "subsample": t.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": t.suggest_float("colsample_bytree", 0.3, 1.0),
            "reg_lambda": t.suggest_float("reg_lambda", 1e-6, 10.0, log=True)}


def _boost_cost(params, n_features):
    """Rounds x tree depth x share of features per tree."""
    return (params.get("n_estimators", 300) * np.log2(max(params.get("num_leaves", 31), 2))
            * params.get("colsample_bytree", 1.0))


def _xgboost(params, task, seed):
    import xgboost
    kw = dict(n_estimators=params.get("n_estimators", 300), learning_rate=params.get("learning_rate", 0.05),
              max_leaves=params.get("num_leaves", 31), grow_policy="lossguide", tree_method="hist",
              min_child_weight=params.get("min_child_samples", 20) / 10,
              subsample=params.get("subsample", 1.0), colsample_bytree=params.get("colsample_bytree", 1.0),
              reg_lambda=params.get("reg_lambda", 1.0), random_state=seed, n_jobs=1)
    return (xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier)(**kw)


def _any(task, n_rows, n_features, is_sparse):
    return True


def _classification(task, n_rows, n_features, is_sparse):
    return task in CLASSIFICATION


def _regression(task, n_rows, n_features, is_sparse):
    return task == "regression"


#: RBF SVMs scale quadratically or worse with rows: they compete only below this.
SVM_MAX_ROWS = 5_000
#: kNN predicts by scanning the training rows; above this it is too slow to search.
KNN_MAX_ROWS = 20_000


def _register_builtins() -> None:
    builtins = [
        Family("logistic", _linear, _linear_space, {"C": 1.0, "l1_ratio": 0.0}, _classification, True,
               cost=_linear_cost),
        Family("ridge", _ridge, lambda t: {"alpha": t.suggest_float("alpha", 1e-3, 1e3, log=True)},
               {"alpha": 1.0}, _regression),
        Family("elastic_net", _linear,
               lambda t: {"alpha": t.suggest_float("alpha", 1e-5, 1.0, log=True),
                          "l1_ratio": t.suggest_float("l1_ratio", 0.05, 1.0)},
               {"alpha": 1e-3, "l1_ratio": 0.5}, _regression),
        # cheap and strong first: on large tables with a small budget the defaults of the
        # forests alone can use the whole budget
        Family("hist_gradient_boosting", _hgb, _hgb_space,
               {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                "l2_regularization": 1e-6}, _any, True, _hgb_refit, _hgb_cost),
        Family("random_forest", _forest("RandomForest"), _forest_space,
               {"n_estimators": 200, "min_samples_leaf": 1, "max_features": "sqrt", "max_depth": None},
               _any, True, cost=_forest_cost),
        Family("extra_trees", _forest("ExtraTrees"), _forest_space,
               {"n_estimators": 200, "min_samples_leaf": 2, "max_features": "sqrt", "max_depth": None},
               _any, True, cost=_forest_cost),
        Family("svm", _svm, _svm_space, {"C": 1.0, "gamma": "scale"},
               lambda task, n_rows, n_features, s: n_rows <= SVM_MAX_ROWS, True),
        Family("knn", _knn, _knn_space, {"n_neighbors": 15, "weights": "distance"},
               lambda task, n_rows, n_features, s: n_rows <= KNN_MAX_ROWS),
    ]
    if importlib.util.find_spec("lightgbm") is not None:
        builtins.append(Family("lightgbm", _lightgbm, _boost_space,
                               {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31,
                                "min_child_samples": 20, "subsample": 1.0, "colsample_bytree": 1.0,
                                "reg_lambda": 1e-6}, _any, True, cost=_boost_cost))
    if importlib.util.find_spec("xgboost") is not None:
        builtins.append(Family("xgboost", _xgboost, _boost_space,
                               {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31,
                                "min_child_samples": 20, "subsample": 1.0, "colsample_bytree": 1.0,
                                "reg_lambda": 1.0}, _any, cost=_boost_cost))
    for fam in builtins:
        _REGISTRY[fam.name] = replace(fam, builtin=True)


_register_builtins()

__all__ = ["Family", "DenseTopK", "register_family", "unregister_family", "get_family", "families",
           "select", "TASKS"]
