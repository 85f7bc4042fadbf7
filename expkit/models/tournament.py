"""The model tournament: one Optuna study over families and hyperparameters.

:func:`tournament` (or :class:`Tournament` inside pipelines) takes a table and
its target and

1. checks the target, detects the task and splits off a stratified hold-out;
2. draws a stratified search sample when the training part is large;
3. fits the Featurizer inside each cross-validation training fold ONCE and
   caches the fold matrices, which every trial then reuses;
4. runs one Optuna study: ``family`` is the first choice, each family's
   parameters are conditional on it; every family's default configuration is
   enqueued first, then TPE searches; trials report per-fold scores and a
   median pruner stops weak ones early;
5. stops at the wall-clock budget (no trial starts after the deadline; a trial
   running past it is stopped between folds) or after ``n_trials``;
6. refits the winner on all training rows, calibrates its probabilities
   (isotonic or sigmoid, chosen on out-of-fold validation scores), evaluates
   it once on the hold-out and explains it.

With ``tenant=`` the same runs once per tenant; small tenants get the global
model, flagged as a fallback.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

from ..errors import ConfigError, ExpkitError, TargetError, TournamentError
from . import evaluate
from . import families as registry
from .calibration import CalibratedModel, scores_of
from .insights import Explainer, field_importance
from .result import TenantTournamentResult, TournamentResult

log = logging.getLogger(__name__)

#: Trials in a row not started because their first fold would cross the deadline
#: after which the search ends.
MAX_SKIPPED = 10
#: Above this many training rows the search runs on a stratified sample.
MAX_SEARCH_ROWS = 20_000
#: Fewest labelled rows a tournament accepts.
MIN_ROWS = 20
#: Tenants below these counts get the global model (fallback).
TENANT_MIN_ROWS = 50
TENANT_MIN_MINORITY = 10
#: Integer targets with more distinct values than this are treated as regression.
MAX_CLASSES = 20
#: Below this share of the rarest class, class weighting is searched.
IMBALANCE_SHARE = 0.35

_CALIBRATE = ("auto", "sigmoid", "isotonic", None, False)


# -- the public entry points ----------------------------------------------------------

class Tournament:
    """A model tournament as an object (same parameters as :func:`tournament`).

    ``fit(data)`` runs it and stores the outcome in ``result_``
    (a :class:`TournamentResult`, or :class:`TenantTournamentResult` with
    ``tenant=``); ``predict_proba``/``predict`` delegate to the winner's pipeline.
    """

    def __init__(self, target, *, task="auto", budget=60, n_trials=None, families="auto",
                 metric="auto", cv="auto", holdout=0.2, calibrate="auto", tenant=None,
                 budget_total=None, seed=0, n_jobs=-1, storage=None, schema=None, progress=True,
                 callbacks=None, max_search_rows=MAX_SEARCH_ROWS):
        self.target = target
        self.task = task
        self.budget = budget
        self.n_trials = n_trials
        self.families = families
        self.metric = metric
        self.cv = cv
        self.holdout = holdout
        self.calibrate = calibrate
        self.tenant = tenant
        self.budget_total = budget_total
        self.seed = seed
        self.n_jobs = n_jobs
        self.storage = storage
        self.schema = schema
        self.progress = progress
        self.callbacks = callbacks
        self.max_search_rows = max_search_rows

    # ------------------------------------------------------------------------------
    def fit(self, data, y=None):
        """Run the tournament on ``data`` (DataFrame or path holding the target column)."""
        self._validate()
        df = _as_frame(data)
        schema = _schema(df, self.target, self.schema)
        if self.tenant is None:
            self.result_ = self._run(df, schema, budget=self.budget)
        else:
            self.result_ = self._run_tenants(df, schema)
        return self

    def predict_proba(self, X):
        return self.result_.best_pipeline.predict_proba(X)

    def predict(self, X):
        return self.result_.best_pipeline.predict(X)

    # ------------------------------------------------------------------------------
    def _validate(self):
        if not isinstance(self.target, str) or not self.target:
            raise ConfigError(f"target={self.target!r} must be a column name")
        if self.task not in ("auto", *registry.TASKS):
            raise ConfigError(f"task={self.task!r} is not known",
                              hint=f"use 'auto' or one of {', '.join(registry.TASKS)}")
        for name in ("budget", "budget_total"):
            value = getattr(self, name)
            if value is None and name == "budget_total":
                continue
            if value is None and self.n_trials is not None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"{name}={value!r} must be a positive number of seconds",
                                  hint="e.g. budget=60 for one minute of search")
        if self.n_trials is not None and (isinstance(self.n_trials, bool)
                                          or not isinstance(self.n_trials, (int, np.integer))
                                          or self.n_trials < 1):
            raise ConfigError(f"n_trials={self.n_trials!r} must be a positive whole number or None")
        if not (isinstance(self.holdout, float) and 0 < self.holdout < 1):
            raise ConfigError(f"holdout={self.holdout!r} must be a share of rows in (0, 1)",
                              hint="e.g. holdout=0.2")
        if self.calibrate not in _CALIBRATE:
            raise ConfigError(f"calibrate={self.calibrate!r} is not known",
                              hint="use 'auto', 'sigmoid', 'isotonic' or None")
        if self.tenant is not None and self.tenant == self.target:
            raise ConfigError("tenant and target are the same column")

    def _run(self, df, schema, *, budget, drop=(), label=None, progress=None, n_jobs=None):
        return _Run(self, df, schema, budget=budget, drop=drop, label=label,
                    progress=self.progress if progress is None else progress,
                    n_jobs=self.n_jobs if n_jobs is None else n_jobs).execute()

    def _run_tenants(self, df, schema):
        from joblib import Parallel, delayed

        if self.tenant not in df.columns:
            raise ConfigError(f"tenant column {self.tenant!r} is not in the table",
                              hint=f"columns are: {', '.join(map(str, df.columns[:30]))}")
        if self.target not in df.columns:
            raise TargetError(f"target column {self.target!r} is not in the table",
                              hint=f"columns are: {', '.join(map(str, df.columns[:30]))}")
        labelled = df[df[self.target].notna()]
        task = self.task if self.task != "auto" else detect_task(labelled[self.target])
        plan, fallback = [], {}
        for name, part in labelled.groupby(self.tenant, sort=True, dropna=False):
            reason = _too_small(part[self.target], task)
            (fallback.__setitem__(name, reason) if reason else plan.append(name))
        n_runs = len(plan) + bool(fallback)
        budget = self.budget if self.budget_total is None else self.budget_total / max(n_runs, 1)
        n_jobs = _cores(self.n_jobs)
        outer = min(n_jobs, len(plan)) if len(plan) > 1 else 1
        inner = max(n_jobs // max(outer, 1), 1)

        def one(name):
            part = df[df[self.tenant] == name]
            try:
                return name, self._run(part, schema, budget=budget, drop=(self.tenant,), label=str(name),
                                       progress=self.progress and outer == 1, n_jobs=inner), None
            except ExpkitError as exc:
                return name, None, f"tournament failed: {exc}"

        if outer > 1:
            done = Parallel(n_jobs=outer)(delayed(one)(name) for name in plan)
        else:
            done = [one(name) for name in plan]
        results = {}
        for name, result, error in done:
            if result is None:
                fallback[name] = error
            else:
                results[name] = result
        global_result = None
        if fallback:
            log.info("training the global model for %d fallback tenant(s)", len(fallback))
            global_result = self._run(df, schema, budget=budget, label="global")
            for name in fallback:
                results[name] = global_result
        rows = []
        for name in sorted(results, key=str):
            r = results[name]
            n = int((labelled[self.tenant] == name).sum())
            rows.append({"tenant": name, "rows": n, "winner": r.winner, "metric": r.headline[0],
                         "holdout": r.headline[1], "above_chance": r.above_chance,
                         "fallback": name in fallback, "reason": fallback.get(name)})
        winners = pd.DataFrame(rows, columns=["tenant", "rows", "winner", "metric", "holdout",
                                              "above_chance", "fallback", "reason"])
        return TenantTournamentResult(winners=winners, results=results, global_result=global_result,
                                      tenant=self.tenant, target=self.target, task=task)


def tournament(data, target, *, task="auto", budget=60, n_trials=None, families="auto",
               metric="auto", cv="auto", holdout=0.2, calibrate="auto", tenant=None,
               budget_total=None, seed=0, n_jobs=-1, storage=None, schema=None, progress=True,
               callbacks=None):
    """Run a time-budgeted tournament of model families and return the winner.

    Parameters
    ----------
    data : DataFrame or path
        The table, target column included.
    target : str
        The column to predict.
    task : {"auto", "binary", "multiclass", "regression"}
        Detected from the target by default.
    budget : float
        Wall-clock seconds for the search (featurizing the folds included);
        the final refit, calibration and evaluation are timed separately.
        With ``tenant=`` the budget is per tenant unless ``budget_total`` is given.
    n_trials : int, optional
        Stop after this many trials in the study (counting trials resumed from
        ``storage``), whichever of budget and n_trials comes first.
    families : "auto" or list of str
        Model families (see :func:`expkit.models.families.families`); "auto"
        takes every registered family that applies to the task and data size.
    metric : str
        Ranking metric ("auto": AUROC for classification, R² for regression;
        see :data:`expkit.models.evaluate.METRICS`).
    cv : "auto", int or sklearn splitter
        "auto": 5 folds (3 above 5,000 search rows), stratified for classification.
    holdout : float
        Share of rows held out for the one final evaluation.
    calibrate : {"auto", "sigmoid", "isotonic", None}
        Probability calibration of a classification winner.
    tenant : str, optional
        Column naming the tenant: one tournament per tenant.
    budget_total : float, optional
        With ``tenant=``: seconds for all tenants together (split evenly).
    seed : int
    n_jobs : int
        Cores for estimators (and for tenants run in parallel); -1 = all.
    storage : path, optional
        Journal file for the Optuna study; a rerun with the same data and
        settings resumes the study.
    schema : Schema or dict, optional
        Semantic types (a dict is taken as overrides of the inferred schema).
    progress : bool
        Show a progress bar (a widget in notebooks).
    callbacks : list of callables, optional
        ``callback(study, trial)`` after each trial; may call ``study.stop()``.

    Returns
    -------
    TournamentResult or TenantTournamentResult

    Raises
    ------
    TargetError, ConfigError, FeatureError, TournamentError
    """
    return Tournament(target, task=task, budget=budget, n_trials=n_trials, families=families,
                      metric=metric, cv=cv, holdout=holdout, calibrate=calibrate, tenant=tenant,
                      budget_total=budget_total, seed=seed, n_jobs=n_jobs, storage=storage,
                      schema=schema, progress=progress, callbacks=callbacks).fit(data).result_


# -- helpers -----------------------------------------------------------------------

def detect_task(y: pd.Series) -> str:
    """binary, multiclass or regression, from a target's values (missing ignored).

    Non-numeric or boolean targets are classes; numeric targets are regression
    when they hold fractions or more than :data:`MAX_CLASSES` distinct values.
    """
    y = y.dropna()
    n_unique = y.nunique()
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        return "binary" if n_unique <= 2 else "multiclass"
    values = y.to_numpy(dtype=float)
    if n_unique <= 2:
        return "binary"
    if np.any(values != np.round(values)) or n_unique > MAX_CLASSES:
        return "regression"
    return "multiclass"


def _too_small(y: pd.Series, task: str) -> str | None:
    """Why a tenant cannot have its own tournament, or None when it can."""
    if len(y) < TENANT_MIN_ROWS:
        return f"{len(y)} labelled rows (< {TENANT_MIN_ROWS})"
    if task != "regression":
        counts = y.value_counts()
        if len(counts) < 2:
            return "a single class"
        if counts.min() < TENANT_MIN_MINORITY:
            return f"{int(counts.min())} rows of the rarest class (< {TENANT_MIN_MINORITY})"
    return None


def _as_frame(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    from ..data import load
    return load(data)


def _schema(df, target, schema):
    from ..schema import Schema, infer
    if isinstance(schema, Schema):
        return schema
    if target not in df.columns:
        raise TargetError(f"target column {target!r} is not in the table",
                          hint=f"columns are: {', '.join(map(str, df.columns[:30]))}")
    return infer(df, target=target, overrides=schema)


def _cores(n_jobs) -> int:
    from joblib import effective_n_jobs
    return max(int(effective_n_jobs(n_jobs)), 1)


class _Prefixed:
    """A trial whose ``suggest_*`` names get ``<family>.`` in front (conditional space)."""

    def __init__(self, trial, prefix: str):
        self._trial = trial
        self._prefix = prefix

    def suggest_float(self, name, *args, **kwargs):
        return self._trial.suggest_float(f"{self._prefix}.{name}", *args, **kwargs)

    def suggest_int(self, name, *args, **kwargs):
        return self._trial.suggest_int(f"{self._prefix}.{name}", *args, **kwargs)

    def suggest_categorical(self, name, *args, **kwargs):
        return self._trial.suggest_categorical(f"{self._prefix}.{name}", *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._trial, name)


@dataclass
class _Fold:
    valid: np.ndarray  # positions in the search sample
    X_train: object
    y_train: np.ndarray
    X_valid: object
    y_valid: np.ndarray


@dataclass
class _Data:
    """The prepared table: features, labels, task and classes."""

    X: pd.DataFrame
    y: np.ndarray          # original labels / values
    task: str
    classes: list = field(default_factory=list)
    dropped: int = 0


def _prepare(df: pd.DataFrame, target: str, task: str, drop=()) -> _Data:
    """Check the target, drop unlabelled rows, detect the task, list the classes."""
    if target not in df.columns:
        raise TargetError(f"target column {target!r} is not in the table",
                          hint=f"columns are: {', '.join(map(str, df.columns[:30]))}")
    y_raw = df[target]
    missing = y_raw.isna()
    if missing.all():
        raise TargetError(f"target column {target!r} is missing in all {len(df)} rows",
                          hint="check the column name and that labels were loaded")
    if missing.any():
        log.warning("dropped %d of %d rows whose target %r is missing", int(missing.sum()), len(df),
                    target)
        df = df[~missing]
        y_raw = y_raw[~missing]
    if len(df) < MIN_ROWS:
        raise TargetError(f"only {len(df)} rows have a value of target {target!r}; "
                          f"a tournament needs at least {MIN_ROWS}",
                          hint="label more rows or pool tenants")
    task = detect_task(y_raw) if task == "auto" else task
    X = df.drop(columns=[target, *[c for c in drop if c in df.columns]])
    if X.shape[1] == 0:
        raise TargetError(f"the table has no input columns besides target {target!r}",
                          hint="add feature columns")
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y_raw):
            raise TargetError(f"target {target!r} is not numeric, so it cannot be a regression target",
                              hint="use task='auto' or a classification task")
        y = y_raw.to_numpy(dtype=float)
        return _Data(X, y, task, [], int(missing.sum()))
    classes = sorted(pd.unique(y_raw).tolist())
    if len(classes) < 2:
        raise TargetError(f"target {target!r} has a single class ({classes[0]!r}) in every labelled row",
                          hint="a model needs at least two classes; check the filter that built the table")
    if task == "binary" and len(classes) > 2:
        raise TargetError(f"task='binary' but target {target!r} has {len(classes)} classes",
                          hint="use task='multiclass' or 'auto'")
    return _Data(X, y_raw.to_numpy(), "binary" if len(classes) == 2 else "multiclass", classes,
                 int(missing.sum()))


def _codes(values: np.ndarray, classes: list) -> np.ndarray:
    """Class codes 0..k-1: the position of each label in the sorted ``classes``."""
    return np.searchsorted(np.asarray(classes, dtype=object), np.asarray(values, dtype=object)).astype(int)


class _Run:
    """One tournament on one table (one tenant)."""

    def __init__(self, cfg: Tournament, df, schema, *, budget, drop, label, progress, n_jobs):
        self.cfg = cfg
        self.df = df
        self.schema = schema
        self.budget = budget
        self.drop = tuple(drop)
        self.label = label
        self.progress = progress
        self.n_jobs = n_jobs
        self.seed = cfg.seed
        self.timings: dict[str, float] = {}
        self._oof: dict[int, np.ndarray] = {}
        self._fold_seconds: dict[str, float] = {}  # slowest fold (fit+predict) per family
        self._seconds_per_cost: dict[str, float] = {}  # the same per unit of Family.cost
        self._skipped = 0  # trials in a row not started for the deadline
        self._out_of_time = False  # set when no family's fold fits in the time left

    # ------------------------------------------------------------------------------
    def execute(self) -> TournamentResult:
        from threadpoolctl import threadpool_limits

        # OpenMP/BLAS threads capped at our cores: oversubscribed OpenMP
        # (histogram boosting) is ~10x slower on a busy machine.
        with threadpool_limits(limits=_cores(self.n_jobs)):
            return self._execute()

    def _execute(self) -> TournamentResult:
        from ..data import sample, split

        cfg = self.cfg
        data = _prepare(self.df, cfg.target, cfg.task, self.drop)
        self.task = data.task
        self.metric = evaluate.resolve_metric(cfg.metric, self.task)
        classification = self.task != "regression"
        self.schema = self.schema.select(data.X.columns)
        frame = data.X.assign(**{cfg.target: data.y})
        train, test = split(frame, cfg.target, holdout=cfg.holdout, seed=self.seed,
                            stratify=True)
        search = sample(train, cfg.max_search_rows, target=cfg.target if classification else None,
                        seed=self.seed)
        self.classes = data.classes
        def enc(s):
            return _codes(s.to_numpy(), self.classes) if classification else s.to_numpy(dtype=float)

        Xtr, ytr, ytr_codes = (train.drop(columns=[cfg.target]), train[cfg.target].to_numpy(),
                               enc(train[cfg.target]))
        Xte, yte_codes = test.drop(columns=[cfg.target]), enc(test[cfg.target])
        Xs, ys = search.drop(columns=[cfg.target]), enc(search[cfg.target])
        self.imbalance = self._imbalance(ys)
        self._train_rows = len(Xtr)  # the final fit's rows (the refit hooks scale to them)

        t0, started = time.monotonic(), datetime.now()
        self.deadline = t0 + self.budget if self.budget else float("inf")
        folds = self._folds(Xs, ys)
        self.timings["prepare"] = time.monotonic() - t0
        n_features = folds[0].X_train.shape[1]
        density = folds[0].X_train.nnz / max(np.prod(folds[0].X_train.shape), 1) \
            if hasattr(folds[0].X_train, "nnz") else 1.0
        fams = registry.select(cfg.families, self.task, len(Xs), n_features, density < 0.5)
        study = self._search(fams, folds, ys, fingerprint=_fingerprint(frame))
        self.timings["search"] = time.monotonic() - t0

        trials = _trials_frame(study)
        board = _leaderboard(trials, self.metric)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            errors = trials["error"].dropna().unique().tolist() if "error" in trials else []
            raise TournamentError("no trial finished" + (f"; errors: {errors[:3]}" if errors else
                                                         " within the budget"),
                                  hint="raise the budget or check the families' errors")
        best = study.best_trial
        family = registry.get_family(best.params["family"])
        params = _family_params(family, best.params)
        # what the final fit uses: the family's refit hook may fix what the folds learned
        # (histogram boosting: its iterations); a study from before the hook: as searched
        fit_params = best.user_attrs.get("refit_params", params)

        # -- refit, calibrate ------------------------------------------------------
        t = time.monotonic()
        pipeline, calib, threshold, feat = self._refit(family, params, fit_params, folds, ys, best,
                                                       Xtr, ytr, ytr_codes)
        self.timings["refit"] = time.monotonic() - t

        # -- evaluate once on the hold-out -------------------------------------------
        t = time.monotonic()
        scores = scores_of(pipeline, Xte, self.task)
        metrics = evaluate.holdout_metrics(self.task, yte_codes, scores, threshold=threshold)
        chance = evaluate.chance_test(self.task, yte_codes, scores, seed=self.seed)
        above = chance.pop("above_chance")
        buckets = evaluate.score_buckets(self.task, yte_codes, scores)
        raw_scores = None
        if calib is not None:
            raw_fn = calib.pop("_raw_holdout", None)
            raw_scores = raw_fn(Xte) if raw_fn is not None else None
            calib["before"] = _prob_quality(yte_codes, raw_scores) if raw_scores is not None else None
            calib["after"] = _prob_quality(yte_codes, scores)
        self.timings["evaluate"] = time.monotonic() - t

        t = time.monotonic()
        importance = field_importance(lambda d: scores_of(pipeline, d, self.task), Xte, yte_codes,
                                      self.metric, seed=self.seed)
        explainer = Explainer.from_frame(Xtr, self.schema.types)
        self.timings["insights"] = time.monotonic() - t

        cv_row = board.iloc[0]
        sampling = {"rows": int(len(self.df)), "dropped_missing_target": data.dropped,
                    "train_rows": int(len(train)), "holdout_rows": int(len(test)),
                    "search_rows": int(len(search)), "sampled": bool(len(search) < len(train)),
                    "method": "stratified" if classification else "random",
                    "cv_folds": len(folds), "n_features": int(n_features),
                    "families": [f.name for f in fams], "imbalance": dict(self.imbalance,
                                                                          winner=params.get("class_weight"))}
        return TournamentResult(
            task=self.task, target=cfg.target, winner=family.name, params=fit_params,
            leaderboard=board, trials=trials, metric=self.metric.name,
            direction=self.metric.direction, metrics=metrics,
            cv_score=float(best.value), cv_std=float(best.user_attrs.get("cv_std", np.nan)),
            above_chance=above, chance_test=chance, score_buckets=buckets, calibration=calib,
            importance=importance, best_pipeline=pipeline, schema=self.schema, sampling=sampling,
            timings=dict(self.timings), classes=list(self.classes), threshold=threshold,
            explainer=explainer, features=list(feat.get_feature_names_out()),
            holdout=(yte_codes, scores, raw_scores), train_frame=Xtr,
            label=self.label, study_name=self.study_name, seed=self.seed, search_started=started)

    # ------------------------------------------------------------------------------
    def _imbalance(self, ys) -> dict:
        if self.task == "regression":
            return {"minority_share": None, "searched": False, "default": None}
        share = float(np.bincount(ys).min() / len(ys))
        searched = share < IMBALANCE_SHARE
        return {"minority_share": share, "searched": searched,
                "default": "balanced" if share < 0.2 else None,
                "rule": f"class_weight searched (None or 'balanced') when the rarest class is "
                        f"< {IMBALANCE_SHARE:.0%} of rows; defaults use 'balanced' below 20%"}

    def _splitter(self, n_rows, ys):
        cv = self.cfg.cv
        if not (cv == "auto" or isinstance(cv, (int, np.integer))):
            if not hasattr(cv, "split"):
                raise ConfigError(f"cv={cv!r} is not usable",
                                  hint="use 'auto', a number of folds or an sklearn splitter")
            return cv
        k = (5 if n_rows <= 5000 else 3) if cv == "auto" else int(cv)
        if k < 2:
            raise ConfigError(f"cv={cv!r} must be at least 2 folds")
        if self.task != "regression":
            k = max(2, min(k, int(np.bincount(ys).min())))
            return StratifiedKFold(k, shuffle=True, random_state=self.seed)
        return KFold(k, shuffle=True, random_state=self.seed)

    def _folds(self, Xs, ys) -> list[_Fold]:
        """Fit the Featurizer inside each training fold once; every trial reuses the matrices."""
        from ..features import Featurizer

        folds = []
        for tr, va in self._splitter(len(Xs), ys).split(Xs, ys):
            feat = Featurizer(schema=self.schema, random_state=self.seed)
            Xa = feat.fit_transform(Xs.iloc[tr], ys[tr])
            folds.append(_Fold(va, Xa, ys[tr], feat.transform(Xs.iloc[va]), ys[va]))
        return folds

    def _fit_score(self, family, params, folds, trial=None):
        """Cross-validated score of one configuration; reports per fold to ``trial``.

        With a ``trial``, a fold is not started when its expected duration would
        cross the deadline, once some trial has finished: a long trial is stopped
        between folds. The expected duration is the previous fold of this trial, else
        this family's slowest fold so far per unit of its cost hint times this
        configuration's cost (a forest of 400 trees trying every feature is not
        expected to be as quick as the default's 200 trying a few), else (a family
        not timed yet) the slowest fold of any family: a conservative guess, so an
        untried heavy family does not start a long first fold just before the deadline.
        """
        scores, fit_time, fitted = [], 0.0, []
        oof = np.zeros((sum(len(f.valid) for f in folds),) + ((len(self.classes),)
                                                                if self.task == "multiclass" else ()))
        cost = family.relative_cost(params, folds[0].X_train.shape[1])
        per_cost = self._seconds_per_cost.get(family.name)
        expected = per_cost * cost if per_cost is not None else max(self._fold_seconds.values(), default=0.0)
        for i, fold in enumerate(folds):
            now = time.monotonic()
            if trial is not None and self._have_winner and now + expected >= self.deadline:
                trial.set_user_attr("stopped", "deadline")
                trial.set_user_attr("fit_time", fit_time)
                self._skipped = self._skipped + 1 if i == 0 else 0
                if (now + min(self._fold_seconds.values(), default=0.0) >= self.deadline
                        or self._skipped >= MAX_SKIPPED):
                    # not even the quickest family's fold fits, or the sampler keeps proposing
                    # configurations that do not: stop rather than open empty trials until the end
                    self._out_of_time = True
                raise optuna.TrialPruned()
            self._skipped = 0
            est = family.build(params, self.task, self.seed, self.n_jobs)
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.filterwarnings("ignore", message=".*(did not converge|max_iter).*")
                est.fit(fold.X_train, fold.y_train)
            s = scores_of(est, fold.X_valid, self.task)
            expected = time.perf_counter() - t
            if family.refit is not None:
                fitted.append(est)
            fit_time += expected
            # a family's slowest fold so far: its configurations differ a lot in cost
            # (e.g. saga vs lbfgs logistic), so its next first fold is expected to be as slow
            self._fold_seconds[family.name] = max(expected, self._fold_seconds.get(family.name, 0.0))
            self._seconds_per_cost[family.name] = max(expected / cost,
                                                      self._seconds_per_cost.get(family.name, 0.0))
            oof[fold.valid] = s
            scores.append(float(self.metric.fn(fold.y_valid, s)))
            if not np.isfinite(scores[-1]):
                raise TournamentError(f"{family.name} gave a non-finite {self.metric.name}")
            if trial is not None:
                trial.report(float(np.mean(scores)), i)
                if trial.should_prune():
                    trial.set_user_attr("fit_time", fit_time)
                    raise optuna.TrialPruned()
        final = dict(params)
        if family.refit is not None:
            final = family.refit(final, fitted, [len(f.y_train) for f in folds], self._train_rows)
        return scores, fit_time, oof, final

    def _search(self, fams, folds, ys, fingerprint):
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log and bar say enough
        try:
            return self._study(fams, folds, ys, fingerprint)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _study(self, fams, folds, ys, fingerprint):
        cfg = self.cfg
        names = [f.name for f in fams]
        key = json.dumps({"data": fingerprint, "target": cfg.target, "task": self.task, "seed": self.seed,
                          "metric": self.metric.name, "families": names, "cv": str(cfg.cv),
                          "holdout": cfg.holdout, "rows": cfg.max_search_rows, "tenant": self.label},
                         sort_keys=True, default=str)
        self.study_name = f"expkit-{cfg.target}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.seed, multivariate=True, group=True,
                                                 n_startup_trials=max(10, len(names)))
            study = optuna.create_study(
                storage=_storage(cfg.storage), sampler=sampler, study_name=self.study_name,
                pruner=optuna.pruners.MedianPruner(n_startup_trials=len(names), n_warmup_steps=0),
                direction=self.metric.direction, load_if_exists=True)
        finished = [t for t in study.trials if t.state.is_finished()]
        self._have_winner = any(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
        seen = {t.params.get("family") for t in study.trials}
        balanced = self.imbalance["searched"]
        for fam in fams:
            if fam.name in seen:
                continue
            params = {"family": fam.name, **{f"{fam.name}.{k}": v for k, v in fam.default.items()}}
            if balanced and fam.class_weight:
                params[f"{fam.name}.class_weight"] = self.imbalance["default"]
            study.enqueue_trial(params, skip_if_exists=True)

        def objective(trial):
            family = registry.get_family(trial.suggest_categorical("family", names))
            params = family.space(_Prefixed(trial, family.name))
            if balanced and family.class_weight:
                params["class_weight"] = trial.suggest_categorical(f"{family.name}.class_weight",
                                                                   [None, "balanced"])
            try:
                scores, fit_time, oof, final = self._fit_score(family, params, folds, trial)
            except optuna.TrialPruned:
                raise
            except Exception as exc:  # a family failing must not end the tournament
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
                raise
            trial.set_user_attr("cv_std", float(np.std(scores)))
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("fit_time", fit_time)
            trial.set_user_attr("refit_params", final)
            value = float(np.mean(scores))
            if not self._have_winner or _better(value, self._best_value, self.metric):
                self._oof = {trial.number: oof}
                self._best_value = value
            self._have_winner = True
            return value

        self._best_value = study.best_value if self._have_winner else None
        remaining = None
        if cfg.n_trials is not None:
            remaining = max(int(cfg.n_trials) - len(finished), 0)
        timeout = max(self.deadline - time.monotonic(), 0.0) if np.isfinite(self.deadline) else None
        if timeout == 0.0 and not self._have_winner:
            log.warning("featurizing the folds used the whole budget; running one trial to get a winner")
            remaining, timeout = 1, None
        bar = _progress_bar(self.progress, remaining, self.label)

        def tick(study, trial):
            if time.monotonic() >= self.deadline or self._out_of_time:
                study.stop()
            if bar is not None:
                bar.update(1)
                if self._have_winner:
                    bar.set_postfix_str(f"best {self.metric.name}={study.best_value:.4f} "
                                        f"({study.best_trial.params['family']})")

        if remaining != 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                try:
                    study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(Exception,),
                                   callbacks=[tick, *(cfg.callbacks or [])])
                finally:
                    if bar is not None:
                        bar.close()
        return study

    def _refit(self, family, params, fit_params, folds, ys, best, Xtr, ytr, ytr_codes):
        """Winner (``fit_params``) on all training rows; calibrated classifier; decision threshold.
        ``params`` are the searched ones, for out-of-fold scores of a resumed study's winner."""
        from ..features import Featurizer

        feat = Featurizer(schema=self.schema, random_state=self.seed)
        X_all = feat.fit_transform(Xtr, ytr_codes)
        est = family.build(fit_params, self.task, self.seed, self.n_jobs)
        method = self.cfg.calibrate
        has_proba = hasattr(est, "predict_proba")
        if self.task != "regression" and not method and not has_proba:
            log.info("%s has no predict_proba; calibrating with sigmoid to get probabilities", family.name)
            method = "sigmoid"
        if self.task == "regression" or not method:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est.fit(X_all, ytr if self.task != "regression" else ytr_codes)
            threshold = 0.5
            if self.task == "binary":
                threshold = evaluate.f1_threshold(ys, self._oof_of(family, params, folds, best))
            return Pipeline([("features", feat), ("model", est)]), None, threshold, feat
        oof = self._oof_of(family, params, folds, best)
        methods = ("sigmoid", "isotonic") if method == "auto" else (method,)
        chosen, calibrated_oof, table = evaluate.choose_calibration(
            oof, ys, len(self.classes), methods=methods, is_proba=has_proba, seed=self.seed)
        # the winner is fitted once on all training rows; its calibrators are fitted on the
        # out-of-fold scores of the search, the same ones the method was chosen on
        model = CalibratedModel(est, method=chosen, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_all, ytr, oof_scores=oof, oof_y=ys)
        threshold = evaluate.f1_threshold(ys, calibrated_oof) if self.task == "binary" else 0.5
        calib = {"method": chosen, "validation": table, "chosen_on": "out-of-fold search scores",
                 "fitted_on": "out-of-fold search scores"}
        base = model.estimator_
        pipeline = Pipeline([("features", feat), ("model", model)])
        if has_proba:
            calib["_raw_holdout"] = _RawScores(feat, base, self.task)
        return pipeline, calib, threshold, feat

    def _oof_of(self, family, params, folds, best):
        oof = self._oof.get(best.number)
        if oof is None:  # the winner came from an earlier (resumed) run
            _, _, oof, _ = self._fit_score(family, params, folds)
        return oof


class _RawScores:
    """Uncalibrated hold-out scores of the refitted winner, computed on demand."""

    def __init__(self, feat, model, task):
        self.feat, self.model, self.task = feat, model, task

    def __call__(self, X):
        return scores_of(self.model, self.feat.transform(X), self.task)


def _prob_quality(y, scores) -> dict:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        return {"brier": float(np.mean((np.clip(scores, 0, 1) - y) ** 2)),
                "log_loss": float(evaluate.METRICS["log_loss"].fn(y, scores))}
    onehot = np.eye(scores.shape[1])[y]
    return {"brier": float(np.mean(np.sum((scores - onehot) ** 2, axis=1))),
            "log_loss": float(evaluate.METRICS["log_loss"].fn(y, scores))}


def _better(value, best, metric) -> bool:
    if best is None:
        return True
    return value > best if metric.greater_is_better else value < best


def _family_params(family, trial_params) -> dict:
    """The parameters ``family.space`` produced for a finished trial's values."""
    fixed = optuna.trial.FixedTrial(trial_params)
    params = family.space(_Prefixed(fixed, family.name))
    cw = trial_params.get(f"{family.name}.class_weight", "__absent__")
    if cw != "__absent__":
        params["class_weight"] = cw
    return params


def _storage(path):
    if path is None:
        return None
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _fingerprint(df) -> str:
    from ..data import fingerprint
    return fingerprint(df)


def _progress_bar(enabled, total, label):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"tournament{f' [{label}]' if label else ''}", unit="trial",
                leave=True)


def _trials_frame(study) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.WAITING:  # enqueued, never started
            continue
        fam = t.params.get("family")
        rows.append({
            "number": t.number, "family": fam, "state": t.state.name, "value": t.value,
            "cv_std": t.user_attrs.get("cv_std"),
            "folds_done": len(t.intermediate_values),
            "fit_time": t.user_attrs.get("fit_time"),
            "duration": t.duration.total_seconds() if t.duration else None,
            "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
            "params": {k.split(".", 1)[1]: v for k, v in t.params.items() if "." in k},
            "stopped": t.user_attrs.get("stopped"), "error": t.user_attrs.get("error"),
        })
    return pd.DataFrame(rows, columns=["number", "family", "state", "value", "cv_std", "folds_done",
                                       "fit_time", "duration", "datetime_start", "datetime_complete",
                                       "params", "stopped", "error"])


def _leaderboard(trials: pd.DataFrame, metric) -> pd.DataFrame:
    """One row per family: best CV score ± std, trials, fit time, best params; best first."""
    rows = []
    for fam, part in trials.dropna(subset=["family"]).groupby("family", sort=False):
        done = part[part["state"] == "COMPLETE"]
        best = None
        if len(done):
            best = done.loc[done["value"].idxmax() if metric.greater_is_better else done["value"].idxmin()]
        rows.append({"family": fam, "best_cv": best["value"] if best is not None else np.nan,
                     "cv_std": best["cv_std"] if best is not None else np.nan,
                     "trials": len(part), "complete": len(done),
                     "pruned": int((part["state"] == "PRUNED").sum()),
                     "failed": int((part["state"] == "FAIL").sum()),
                     "fit_time": float(part["fit_time"].fillna(0).sum()),
                     "best_trial": int(best["number"]) if best is not None else None,
                     "best_params": best["params"] if best is not None else None})
    board = pd.DataFrame(rows, columns=["family", "best_cv", "cv_std", "trials", "complete", "pruned",
                                        "failed", "fit_time", "best_trial", "best_params"])
    board = board.sort_values("best_cv", ascending=not metric.greater_is_better, na_position="last",
                              kind="stable").reset_index(drop=True)
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board


__all__ = ["tournament", "Tournament", "detect_task", "scores_of", "MAX_SEARCH_ROWS"]
