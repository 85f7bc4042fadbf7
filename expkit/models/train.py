"""One tournament on one table: prepare, search, refit, calibrate, evaluate, explain.

:class:`Training` checks the target and detects the task, splits off a stratified
hold-out, draws a stratified search sample when the training part is large, runs the
:class:`~expkit.models.search.Search`, refits the winner on all training rows,
calibrates its probabilities (isotonic or sigmoid, chosen on out-of-fold scores),
evaluates it once on the hold-out and explains it, and returns a
:class:`~expkit.models.result.TournamentResult`.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import optuna
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from ..data import fingerprint, sample, split
from ..errors import TargetError, TournamentError
from . import evaluate
from . import families as registry
from .calibration import CalibratedModel, scores_of
from .insights import Explainer, field_importance
from .leaderboard import leaderboard, trials_frame
from .result import TournamentResult
from .search import Search, family_params

log = logging.getLogger(__name__)

#: Above this many training rows the search runs on a stratified sample.
MAX_SEARCH_ROWS = 20_000
#: Fewest labelled rows a tournament accepts.
MIN_ROWS = 20
#: Integer targets with more distinct values than this are treated as regression.
MAX_CLASSES = 20
#: Below this share of the rarest class, class weighting is searched.
IMBALANCE_SHARE = 0.35


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


@dataclass
class _Data:
    """The prepared table: features, labels, task and classes."""

    X: pd.DataFrame
    y: np.ndarray          # original labels / values
    task: str
    classes: list = field(default_factory=list)
    dropped: int = 0


def prepare(df: pd.DataFrame, target: str, task: str, drop=()) -> _Data:
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
        if not missing.any():
            raise TargetError(f"the table has only {len(df)} row{'s' if len(df) != 1 else ''}; "
                              f"a tournament needs at least {MIN_ROWS}",
                              hint="load more rows or pool tenants")
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


def codes(values: np.ndarray, classes: list) -> np.ndarray:
    """Class codes 0..k-1: the position of each label in the sorted ``classes``."""
    return np.searchsorted(np.asarray(classes, dtype=object), np.asarray(values, dtype=object)).astype(int)


class Training:
    """One tournament on one table (one tenant); :meth:`execute` returns its result."""

    def __init__(self, cfg, df, schema, target, *, budget, drop, label, progress, n_jobs):
        self.cfg = cfg
        self.target = target
        self.df = df
        self.schema = schema
        self.budget = budget
        self.drop = tuple(drop)
        self.label = label
        self.progress = progress
        self.n_jobs = n_jobs
        self.seed = cfg.seed
        self.timings: dict[str, float] = {}
        self.search = None

    def execute(self) -> TournamentResult:
        from joblib import effective_n_jobs
        from threadpoolctl import threadpool_limits

        # OpenMP/BLAS threads capped at our cores: oversubscribed OpenMP
        # (histogram boosting) is ~10x slower on a busy machine.
        with threadpool_limits(limits=max(int(effective_n_jobs(self.n_jobs)), 1)):
            return self._execute()

    def _execute(self) -> TournamentResult:
        cfg = self.cfg
        data = prepare(self.df, self.target, cfg.task, self.drop)
        self.task = data.task
        self.metric = evaluate.resolve_metric(cfg.metric, self.task)
        classification = self.task != "regression"
        self.schema = self.schema.select(data.X.columns)
        frame = data.X.assign(**{self.target: data.y})
        train, test = split(frame, self.target, holdout=cfg.holdout, seed=self.seed,
                            stratify=True)
        search = sample(train, cfg.max_search_rows, target=self.target if classification else None,
                        seed=self.seed)
        self.classes = data.classes
        def enc(s):
            return codes(s.to_numpy(), self.classes) if classification else s.to_numpy(dtype=float)

        Xtr, ytr, ytr_codes = (train.drop(columns=[self.target]), train[self.target].to_numpy(),
                               enc(train[self.target]))
        Xte, yte_codes = test.drop(columns=[self.target]), enc(test[self.target])
        Xs, ys = search.drop(columns=[self.target]), enc(search[self.target])
        self.imbalance = self._imbalance(ys)

        t0, started = time.monotonic(), datetime.now()
        self.deadline = t0 + self.budget if self.budget else float("inf")
        search_engine = Search(cfg, target=self.target, task=self.task, metric=self.metric, classes=self.classes,
                               schema=self.schema, seed=self.seed, n_jobs=self.n_jobs,
                               deadline=self.deadline, imbalance=self.imbalance,
                               train_rows=len(Xtr), label=self.label, progress=self.progress)
        self.search = search_engine
        folds = search_engine.folds(Xs, ys)
        self.timings["prepare"] = time.monotonic() - t0
        n_features = folds[0].X_train.shape[1]
        density = folds[0].X_train.nnz / max(np.prod(folds[0].X_train.shape), 1) \
            if hasattr(folds[0].X_train, "nnz") else 1.0
        fams = registry.select(cfg.families, self.task, len(Xs), n_features, density < 0.5)
        study = search_engine.run(fams, folds, fingerprint=fingerprint(frame))
        self.timings["search"] = time.monotonic() - t0

        trials = trials_frame(study)
        board = leaderboard(trials, self.metric)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            errors = trials["error"].dropna().unique().tolist() if "error" in trials else []
            raise TournamentError("no trial finished" + (f"; errors: {errors[:3]}" if errors else
                                                         " within the budget"),
                                  hint="raise the budget or check the families' errors")
        best = study.best_trial
        family = registry.get_family(best.params["family"])
        params = family_params(family, best.params)
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

        sampling = {"rows": int(len(self.df)), "dropped_missing_target": data.dropped,
                    "train_rows": int(len(train)), "holdout_rows": int(len(test)),
                    "search_rows": int(len(search)), "sampled": bool(len(search) < len(train)),
                    "method": "stratified" if classification else "random",
                    "cv_folds": len(folds), "n_features": int(n_features),
                    "families": [f.name for f in fams], "imbalance": dict(self.imbalance,
                                                                          winner=params.get("class_weight"))}
        return TournamentResult(
            task=self.task, target=self.target, winner=family.name, params=fit_params,
            leaderboard=board, trials=trials, metric=self.metric.name,
            direction=self.metric.direction, metrics=metrics,
            cv_score=float(best.value), cv_std=float(best.user_attrs.get("cv_std", np.nan)),
            above_chance=above, chance_test=chance, score_buckets=buckets, calibration=calib,
            importance=importance, best_pipeline=pipeline, schema=self.schema, sampling=sampling,
            timings=dict(self.timings), classes=list(self.classes), threshold=threshold,
            explainer=explainer, features=list(feat.get_feature_names_out()),
            holdout=(yte_codes, scores, raw_scores), train_frame=Xtr,
            label=self.label, study_name=search_engine.study_name, seed=self.seed, search_started=started)

    def _imbalance(self, ys) -> dict:
        if self.task == "regression":
            return {"minority_share": None, "searched": False, "default": None}
        share = float(np.bincount(ys).min() / len(ys))
        searched = share < IMBALANCE_SHARE
        return {"minority_share": share, "searched": searched,
                "default": "balanced" if share < 0.2 else None,
                "rule": f"class_weight searched (None or 'balanced') when the rarest class is "
                        f"< {IMBALANCE_SHARE:.0%} of rows; defaults use 'balanced' below 20%"}

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
                threshold = evaluate.f1_threshold(ys, self.search.oof_of(family, params, folds, best))
            return Pipeline([("features", feat), ("model", est)]), None, threshold, feat
        oof = self.search.oof_of(family, params, folds, best)
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
