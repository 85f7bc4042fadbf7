"""The built-in families' estimators: factories, search spaces, cost hints and refit hooks.

:mod:`expkit.models.families` registers them. Linear models, SVMs and kNN get the
``"linear"`` feature view (a scaled sparse matrix with one-hot pivots), so they need no
scaling of their own; forests and boosting get the ``"tree"`` view (a dense DataFrame
whose categoricals are ``category`` columns, split natively by histogram boosting,
LightGBM and XGBoost). See :mod:`expkit.features.featurizer`.

Boosting fits on one OpenMP thread (LightGBM ``num_threads=1``, XGBoost ``nthread=1``;
histogram boosting by the tournament's thread limit): on the search's folds (at most
20,000 rows) more threads gain little, and on a busy machine OpenMP threads waiting
for each other made LightGBM and histogram boosting 15-50x slower (2 threads against
1 on the project's shared 2-vCPU machine, 650 and 13,000 rows). Forests and kNN keep
the tournament's ``n_jobs`` (joblib threads).
"""
from __future__ import annotations

import numpy as np

CLASSIFICATION = ("binary", "multiclass")


def class_weight(params, task):
    return params.get("class_weight") if task in CLASSIFICATION else None


# -- linear ---------------------------------------------------------------------------
def linear(params, task, seed):
    from sklearn.linear_model import ElasticNet, LogisticRegression
    if task == "regression":
        return ElasticNet(alpha=params.get("alpha", 1e-3), l1_ratio=params.get("l1_ratio", 0.5),
                          max_iter=params.get("max_iter", 2000), random_state=seed)
    l1 = params.get("l1_ratio", 0.0)
    return LogisticRegression(C=params.get("C", 1.0), l1_ratio=l1,
                              solver="lbfgs" if l1 == 0 else "saga",
                              max_iter=params.get("max_iter", 300 if l1 == 0 else 200),
                              class_weight=class_weight(params, task), random_state=seed)


def linear_cost(params, n_features):
    """lbfgs 1; saga (any l1 share) 40x at C=1, ~8x at C=0.01 and ~200x at C=100 (measured
    on hashed text, where it is dearest)."""
    if params.get("l1_ratio", 0.0) == 0:
        return 1.0
    return 40.0 * float(params.get("C", 1.0)) ** 0.35


def linear_space(t):
    return {"C": t.suggest_float("C", 1e-3, 1e2, log=True),
            "l1_ratio": t.suggest_categorical("l1_ratio", [0.0, 0.5, 1.0])}


def ridge(params, task, seed):
    from sklearn.linear_model import Ridge
    return Ridge(alpha=params.get("alpha", 1.0), random_state=seed)


def ridge_space(t):
    return {"alpha": t.suggest_float("alpha", 1e-3, 1e3, log=True)}


def elastic_net_space(t):
    return {"alpha": t.suggest_float("alpha", 1e-5, 1.0, log=True),
            "l1_ratio": t.suggest_float("l1_ratio", 0.05, 1.0)}


# -- forests ----------------------------------------------------------------------------
def forest(kind):
    def factory(params, task, seed):
        from sklearn import ensemble
        cls = getattr(ensemble, f"{kind}{'Regressor' if task == 'regression' else 'Classifier'}")
        kw = dict(n_estimators=params.get("n_estimators", 200),
                  min_samples_leaf=params.get("min_samples_leaf", 1),
                  max_features=params.get("max_features", "sqrt" if task != "regression" else 0.5),
                  max_depth=params.get("max_depth"), random_state=seed, n_jobs=1)
        if task in CLASSIFICATION:
            kw["class_weight"] = class_weight(params, task)
        return cls(**kw)
    return factory


def forest_cost(params, n_features):
    """Trees x features tried per split (depth and leaf size only make a forest cheaper)."""
    share = params.get("max_features", "sqrt")
    tried = np.sqrt(n_features) if share == "sqrt" else float(share) * n_features
    return params.get("n_estimators", 200) * max(1.0, tried)


def forest_space(t):
    return {"n_estimators": t.suggest_int("n_estimators", 100, 400, step=50),
            "min_samples_leaf": t.suggest_int("min_samples_leaf", 1, 20, log=True),
            "max_features": t.suggest_categorical("max_features", ["sqrt", 0.2, 0.5, 1.0]),
            "max_depth": t.suggest_categorical("max_depth", [None, 8, 16, 32])}


# -- histogram gradient boosting -----------------------------------------------------------
def hgb(params, task, seed):
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
    )
    # categorical_features="from_dtype": the tree view's ordinal codes are category columns
    kw = dict(learning_rate=params.get("learning_rate", 0.1), max_iter=params.get("max_iter", 200),
              max_leaf_nodes=params.get("max_leaf_nodes", 31),
              min_samples_leaf=params.get("min_samples_leaf", 20),
              l2_regularization=params.get("l2_regularization", 0.0),
              early_stopping=params.get("early_stopping", True), validation_fraction=0.1,
              n_iter_no_change=20, categorical_features="from_dtype", random_state=seed)
    if task == "regression":
        return HistGradientBoostingRegressor(**kw)
    return HistGradientBoostingClassifier(class_weight=class_weight(params, task), **kw)


def hgb_refit(params, fold_estimators, fold_rows, rows):
    """All training rows, no early-stopping hold-out, and the folds' mean iteration count
    scaled by the square root of how many more rows the final fit has than a fold's
    booster had (more rows carry more rounds before overfitting; on adult, 12,000 rows
    per fold and 29,304 in the end, x1.56 gave +0.0005-0.0008 hold-out AUROC over x1
    for both the default and a tuned configuration, and x2 was past the optimum)."""
    n_iter, fitted_rows = [], []
    for est, n in zip(fold_estimators, fold_rows):
        model = est[-1] if hasattr(est, "steps") else est
        n_iter.append(model.n_iter_)
        fitted_rows.append(n * (1 - model.validation_fraction) if model.early_stopping else n)
    per_fold = float(np.mean(fitted_rows))
    scale = max(np.sqrt(rows / per_fold), 1.0) if rows and per_fold > 0 else 1.0
    return {**params, "max_iter": max(1, int(round(float(np.mean(n_iter)) * scale))),
            "early_stopping": False}


def hgb_cost(params, n_features):
    """Iterations x tree depth (early stopping only makes it cheaper)."""
    return params.get("max_iter", 200) * np.log2(max(params.get("max_leaf_nodes", 31), 2))


def hgb_space(t):
    return {"learning_rate": t.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "max_iter": t.suggest_int("max_iter", 100, 500, step=50),
            "max_leaf_nodes": t.suggest_int("max_leaf_nodes", 8, 64, log=True),
            "min_samples_leaf": t.suggest_int("min_samples_leaf", 5, 100, log=True),
            "l2_regularization": t.suggest_float("l2_regularization", 1e-6, 10.0, log=True)}


# -- SVM and kNN -------------------------------------------------------------------------
def svm(params, task, seed):
    from sklearn.svm import SVC, SVR
    if task == "regression":
        return SVR(C=params.get("C", 1.0), gamma=params.get("gamma", "scale"))
    # probability=False: the tournament ranks on decision scores and the winner's
    # probabilities come from calibration, which is cheaper than Platt inside SVC.
    return SVC(C=params.get("C", 1.0), gamma=params.get("gamma", "scale"),
               class_weight=class_weight(params, task), random_state=seed)


def svm_space(t):
    return {"C": t.suggest_float("C", 1e-2, 1e2, log=True),
            "gamma": t.suggest_categorical("gamma", ["scale", 0.001, 0.01, 0.1])}


def knn(params, task, seed):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    cls = KNeighborsRegressor if task == "regression" else KNeighborsClassifier
    return cls(n_neighbors=params.get("n_neighbors", 15), weights=params.get("weights", "distance"),
               n_jobs=1)


def knn_space(t):
    return {"n_neighbors": t.suggest_int("n_neighbors", 3, 75, log=True),
            "weights": t.suggest_categorical("weights", ["uniform", "distance"])}


# -- LightGBM and XGBoost ------------------------------------------------------------------
#: LightGBM's first configuration: 300 rounds at learning rate 0.05, bagging and
#: feature sampling at 0.8, some L2 (a common strong default for tables; LightGBM's own
#: defaults are 100 rounds at 0.1 without sampling).
LIGHTGBM_DEFAULT = {"n_estimators": 300, "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
                    "subsample": 0.8, "colsample_bytree": 0.8, "reg_alpha": 1e-4, "reg_lambda": 1.0}


def lgbm(params, task, seed):
    import lightgbm
    leaf = params.get("min_child_samples", 20)
    kw = dict(n_estimators=params.get("n_estimators", 300), learning_rate=params.get("learning_rate", 0.05),
              num_leaves=params.get("num_leaves", 31), min_child_samples=leaf,
              subsample=params.get("subsample", 1.0), subsample_freq=1,
              colsample_bytree=params.get("colsample_bytree", 1.0),
              reg_alpha=params.get("reg_alpha", 0.0), reg_lambda=params.get("reg_lambda", 0.0),
              # a category needs this many rows to be split off alone (LightGBM's default, 100,
              # would keep every category of a small table together)
              min_data_per_group=leaf, cat_smooth=10.0,
              random_state=seed, num_threads=1, verbose=-1)
    if task == "regression":
        return lightgbm.LGBMRegressor(**kw)
    return lightgbm.LGBMClassifier(class_weight=class_weight(params, task), **kw)


def lgbm_space(t):
    """Ranges as FLAML and AutoGluon search them: rounds and leaves on a log scale,
    row and feature sampling, L1 and L2."""
    return {"n_estimators": t.suggest_int("n_estimators", 50, 1000, log=True),
            "learning_rate": t.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "num_leaves": t.suggest_int("num_leaves", 4, 128, log=True),
            "min_child_samples": t.suggest_int("min_child_samples", 3, 100, log=True),
            "subsample": t.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": t.suggest_float("colsample_bytree", 0.3, 1.0),
            "reg_alpha": t.suggest_float("reg_alpha", 1e-4, 10.0, log=True),
            "reg_lambda": t.suggest_float("reg_lambda", 1e-4, 10.0, log=True)}


def boost_cost(params, n_features):
    """Rounds x tree depth x share of features per tree."""
    return (params.get("n_estimators", 300) * np.log2(max(params.get("num_leaves", 31), 2))
            * params.get("colsample_bytree", 1.0))


def xgb(params, task, seed):
    import xgboost
    kw = dict(n_estimators=params.get("n_estimators", 300), learning_rate=params.get("learning_rate", 0.05),
              max_leaves=params.get("num_leaves", 31), grow_policy="lossguide", tree_method="hist",
              enable_categorical=True, min_child_weight=params.get("min_child_samples", 20) / 10,
              subsample=params.get("subsample", 1.0), colsample_bytree=params.get("colsample_bytree", 1.0),
              reg_alpha=params.get("reg_alpha", 0.0), reg_lambda=params.get("reg_lambda", 1.0),
              random_state=seed, nthread=1)
    return (xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier)(**kw)


# -- when a family applies ------------------------------------------------------------------
#: RBF SVMs scale quadratically or worse with rows: they compete only below this.
SVM_MAX_ROWS = 5_000
#: kNN predicts by scanning the training rows; above this it is too slow to search.
KNN_MAX_ROWS = 20_000


def any_task(task, n_rows, n_features, is_sparse):
    return True


def classification(task, n_rows, n_features, is_sparse):
    return task in CLASSIFICATION


def regression(task, n_rows, n_features, is_sparse):
    return task == "regression"


def small_for_svm(task, n_rows, n_features, is_sparse):
    return n_rows <= SVM_MAX_ROWS


def small_for_knn(task, n_rows, n_features, is_sparse):
    return n_rows <= KNN_MAX_ROWS
