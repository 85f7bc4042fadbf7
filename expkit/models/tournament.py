"""The model tournament: the public front, alone or one per tenant.

:func:`tournament` (and the scikit-learn estimator :class:`Tournament`) takes a
table and its target and runs a time-budgeted tournament of model families
(:mod:`expkit.models.train` for one table, :mod:`expkit.models.search` for the
Optuna study). With ``tenant=`` it runs once per tenant; tenants too small for a
tournament of their own get a model trained on every tenant, flagged as a fallback.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ..errors import ConfigError, TargetError
from . import evaluate
from . import families as registry
from .calibration import scores_of
from .result import TournamentResult
from .tenants import TENANT_MIN_MINORITY, TENANT_MIN_ROWS, run_tenants
from .train import MAX_SEARCH_ROWS, Training, detect_task

log = logging.getLogger(__name__)

_CALIBRATE = ("auto", "sigmoid", "isotonic", None, False)


class Tournament(BaseEstimator):
    """A model tournament as a scikit-learn estimator (parameters as :func:`tournament`).

    ``Tournament(budget=30).fit(X, y)`` runs the tournament on the features ``X`` and
    labels ``y``; ``Tournament(target="converted").fit(df)`` takes them from one table.
    The outcome is in ``result_`` (a :class:`~expkit.models.result.TournamentResult`,
    or a :class:`~expkit.models.result.TenantTournamentResult` with ``tenant=``);
    ``predict_proba``, ``predict`` and ``score`` use the calibrated winner (with
    ``tenant=``, each row goes to its tenant's winner). ``get_params``,
    ``set_params`` and ``sklearn.base.clone`` work as for any estimator.

    Attributes
    ----------
    result_ : TournamentResult or TenantTournamentResult
    target_ : str
        The label column's name (``target``, else ``y.name``, else ``"target"``).
    task_ : str
        binary, multiclass or regression.
    classes_ : ndarray
        The classes (classification only).
    feature_names_in_ : ndarray
        The input columns seen in ``fit`` (target and tenant excluded).
    """

    def __init__(self, target=None, *, task="auto", budget=60, n_trials=None, families="auto",
                 metric="auto", cv="auto", holdout=0.2, calibrate="auto", tenant=None,
                 budget_total=None, seed=0, n_jobs=-1, storage=None, schema=None, progress=True,
                 callbacks=None, max_search_rows=MAX_SEARCH_ROWS, refit_full=True, ensemble=True,
                 scoring_data=None, cluster=None):
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
        self.refit_full = refit_full
        self.ensemble = ensemble
        self.scoring_data = scoring_data
        self.cluster = cluster

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X, y=None):
        """Run the tournament.

        Parameters
        ----------
        X : DataFrame, path or array
            The table (with the ``target`` column when ``y`` is None) or the features.
        y : array-like, optional
            The labels, one per row of ``X``.

        Returns
        -------
        self
        """
        started = time.monotonic()  # the budget counts from here: the whole call
        self._validate(y)
        df, target = self._frame(X, y)
        schema = _schema(df, target, self.schema)
        df, report = self._raw_filter(df, schema, target)
        if self.tenant is None and self.cluster is not None:
            from .. import engine

            with engine.session(self.cluster) as eng:
                self.result_ = self._run(df, schema, target, budget=self.budget, started=started, raw_filter=report,
                                         engine=eng)
        elif self.tenant is None:
            self.result_ = self._run(df, schema, target, budget=self.budget, started=started, raw_filter=report)
        else:
            self.result_ = self._run_tenants(df, schema, target, report)
        self.target_ = target
        self.task_ = self.result_.task
        if self.task_ != "regression":
            self.classes_ = np.asarray(self._first_result().classes)
        self.feature_names_in_ = np.asarray([c for c in df.columns if c not in (target, self.tenant)],
                                            dtype=object)
        return self

    def _frame(self, X, y) -> tuple[pd.DataFrame, str]:
        """The table with the labels in it, and the label column's name."""
        df = _as_frame(X)
        if y is None:
            return df, self.target
        target = self.target or getattr(y, "name", None) or "target"
        if target in df.columns:
            raise ConfigError(f"X already has a column {target!r}, the name given to the labels y",
                              hint="pass target='...' with another name, or fit(table) without y")
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(df):
            raise TargetError(f"y has shape {labels.shape}, X has {len(df)} rows",
                              hint="pass one label per row of X")
        return df.assign(**{target: labels}), target

    def _raw_filter(self, df, schema, target):
        """The table without the fields the raw feature filter drops (``scoring_data``), and its report."""
        if self.scoring_data is None:
            return df, None
        from ..features.raw_filter import raw_feature_filter

        scoring = _as_frame(self.scoring_data)
        fields = [c for c in df.columns if c not in (target, self.tenant)]
        report = raw_feature_filter(df[fields], scoring, schema.select(fields))
        gone = report.loc[report["dropped"], "field"].tolist()
        for _, row in report[report["dropped"]].iterrows():
            log.warning("raw feature filter: dropped %r: %s", row["field"], row["reason"])
        if len(gone) == len(fields):
            raise ConfigError("the raw feature filter dropped every field: the scoring data differ from the "
                              "training data in all of them", hint="check scoring_data (see the report in the "
                              "warnings) or leave it out")
        return df.drop(columns=gone), report

    def _first_result(self) -> TournamentResult:
        r = self.result_
        return r if isinstance(r, TournamentResult) else next(iter(r.results.values()))

    # -- predicting ------------------------------------------------------------------
    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of the calibrated winner (classification only)."""
        check_is_fitted(self, "result_")
        if self.task_ == "regression":
            raise ConfigError("a regression tournament has no class probabilities", hint="use predict()")
        return self._apply(X, lambda r, part: np.asarray(r.best_pipeline.predict_proba(part)))

    def predict(self, X) -> np.ndarray:
        """Labels at the winner's decision threshold (binary), the most likely class
        (multiclass) or the predicted value (regression)."""
        check_is_fitted(self, "result_")

        def one(r, part):
            s = r.predict_scores(part)
            if r.task == "binary":
                return np.where(s >= r.threshold, r.classes[1], r.classes[0])
            if r.task == "multiclass":
                return np.asarray(r.classes)[np.argmax(s, axis=1)]
            return s
        return self._apply(X, one)

    def score(self, X, y) -> float:
        """The tournament's ranking metric (e.g. AUROC, R²) of the winner on ``(X, y)``."""
        check_is_fitted(self, "result_")
        r = self._first_result()
        metric = evaluate.resolve_metric(r.metric, r.task)
        labels = np.asarray(y)
        if r.task != "regression":
            labels = np.searchsorted(np.asarray(r.classes, dtype=object), labels.astype(object))
        scores = self._apply(X, lambda res, part: scores_of(res.best_pipeline, part, res.task))
        return float(metric.fn(labels, scores))

    def _apply(self, X, fn) -> np.ndarray:
        """``fn(result, rows)`` over the rows of ``X``, by tenant when there are tenants."""
        df = _as_frame(X)
        if isinstance(self.result_, TournamentResult):
            return fn(self.result_, df)
        if self.tenant not in df.columns:
            raise ConfigError(f"X has no tenant column {self.tenant!r} to route rows by")
        parts, order = [], []
        for name, idx in df.groupby(self.tenant, sort=False, dropna=False).indices.items():
            result = self.result_.results.get(name, self.result_.global_result)
            if result is None:
                raise ConfigError(f"tenant {name!r} had no rows in fit and there is no global model",
                                  hint="fit with rows of that tenant")
            parts.append(fn(result, df.iloc[idx].drop(columns=[self.tenant])))
            order.append(idx)
        out = np.concatenate(parts)
        result = np.empty_like(out)
        result[np.concatenate(order)] = out
        return result

    # -- validation and the runs -------------------------------------------------------
    def _validate(self, y):
        if self.target is not None and (not isinstance(self.target, str) or not self.target):
            raise ConfigError(f"target={self.target!r} must be a column name")
        if self.target is None and y is None:
            raise ConfigError("give the labels: fit(X, y), or target='column' and fit(table)",
                              hint="e.g. Tournament(target='converted').fit(df)")
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
        if self.tenant is not None and self.tenant == self.target and self.target is not None:
            raise ConfigError("tenant and target are the same column")
        if self.cluster is not None and self.tenant is None and self.callbacks:
            raise ConfigError("callbacks= cannot follow a tournament whose trials run on a cluster's workers",
                              hint="leave out callbacks (or cluster=); stop it by budget or n_trials")

    def _run(self, df, schema, target, *, budget, drop=(), label=None, progress=None, n_jobs=None, started=None,
             raw_filter=None, engine=None):
        return Training(self, df, schema, target, budget=budget, drop=drop, label=label,
                        progress=self.progress if progress is None else progress,
                        n_jobs=self.n_jobs if n_jobs is None else n_jobs, started=started,
                        raw_filter=raw_filter, engine=engine).execute()

    def _run_tenants(self, df, schema, target, raw_filter=None):
        return run_tenants(self, self._run, df, schema, target, raw_filter)


def tournament(data, target, *, task="auto", budget=60, n_trials=None, families="auto",
               metric="auto", cv="auto", holdout=0.2, calibrate="auto", tenant=None,
               budget_total=None, seed=0, n_jobs=-1, storage=None, schema=None, progress=True,
               callbacks=None, refit_full=True, ensemble=True, scoring_data=None, cluster=None):
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
        Wall-clock seconds for the whole call: featurizing, the search, the
        ensemble, the refits, calibration, evaluation and insights (the search stops
        early by what the rest is expected to take; insights scale down with the time
        left). With ``tenant=`` the budget is per tenant unless ``budget_total`` is given.
        When it did not let every family run, the result says so (``budget_note``).
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
        Any splitter works, e.g. ``RepeatedStratifiedKFold`` for a steadier score on a
        small table, at the price of fewer trials in a budget.
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
    storage : path, database URL or optuna storage, optional
        Where the Optuna study is kept: a journal file (a path), a database URL
        (``sqlite:///study.db``, ``postgresql://user@host/db``) or an Optuna
        storage object; a rerun with the same data and settings resumes the study.
    schema : Schema or dict, optional
        Semantic types (a dict is taken as overrides of the inferred schema).
    progress : bool
        Show a progress bar (a widget in notebooks) that fills against the budget (or
        ``n_trials``), with trials done, the best score so far, time left and the tenant.
    callbacks : list of callables, optional
        ``callback(study, trial)`` after each trial; may call ``study.stop()``.
    refit_full : bool
        After the hold-out evaluation, refit the winner on training + hold-out rows
        (the saved model); its metrics are those of the training-rows model on the
        hold-out, as the model card says. False keeps the training-rows model.
    ensemble : bool
        Let a greedy ensemble of the best configurations win when it is better out of fold.
    scoring_data : DataFrame or path, optional
        Rows the model will score: fields whose fill rate or distribution differ too
        much from the training data are dropped before training (the raw feature
        filter; report in ``result.raw_filter``).
    cluster : str, distributed.Client or Engine, optional
        Where the work runs (see :mod:`expkit.engine`): a Dask scheduler address
        (``tcp://host:8786``), ``"local:N"`` (a LocalCluster of N processes), a
        ``distributed.Client`` or an engine. With ``tenant=``, each tenant's tournament
        is one call, its rows sent once to its worker, a few calls per worker in flight.
        Without it, the trials of the one tournament run in parallel on the workers
        (one study in this process; see :mod:`expkit.models.cluster_search`). None: this
        machine.

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
                      schema=schema, progress=progress, callbacks=callbacks, refit_full=refit_full,
                      ensemble=ensemble, scoring_data=scoring_data, cluster=cluster).fit(data).result_


# -- helpers -----------------------------------------------------------------------
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


__all__ = ["tournament", "Tournament", "detect_task", "TENANT_MIN_ROWS", "TENANT_MIN_MINORITY"]
