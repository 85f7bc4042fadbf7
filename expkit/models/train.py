"""One tournament on one table: prepare, search, choose, refit, calibrate, evaluate, explain.

:class:`Training` checks the target and detects the task, splits off a stratified
hold-out, draws a stratified search sample when the training part is large, runs the
:class:`~expkit.models.search.Search`, chooses the winner (the best configuration or an
ensemble of the best, :mod:`~expkit.models.winner`), refits it on all training rows,
calibrates its probabilities (none, sigmoid or isotonic, chosen on out-of-fold scores),
evaluates it once on the hold-out, refits it on training + hold-out rows (the saved
model; ``refit_full=False`` keeps the training-rows model) and explains it with the
time left, all within the budget (:mod:`~expkit.models.budget`); it returns a
:class:`~expkit.models.result.TournamentResult`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import optuna
import pandas as pd

from ..data import fingerprint, sample, split
from ..errors import TargetError, TournamentError
from . import evaluate, winner
from . import families as registry
from .budget import INSIGHTS_SECONDS, Plan, too_small
from .calibration import scores_of
from .cluster_search import ClusterSearch
from .folds import OutOfFold
from .insights import Explainer, field_importance
from .leaderboard import NOT_TRIED, leaderboard, trials_frame, with_oof_metrics
from .progress import Bar
from .repeats import MAX_REPEATS
from .result import TournamentResult
from .search import Search

log = logging.getLogger(__name__)

#: Above this many training rows the search runs on a stratified sample.
MAX_SEARCH_ROWS = 20_000
#: Fewest labelled rows a tournament accepts.
MIN_ROWS = 20
#: Integer targets with more distinct values than this are treated as regression.
MAX_CLASSES = 20
#: The insights' least time: the refit on every row is skipped when it would leave less.
MIN_INSIGHTS_SECONDS = INSIGHTS_SECONDS[0]
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
    """One tournament on one table (one tenant); :meth:`execute` returns its result.

    ``started`` is the ``time.monotonic()`` at which the call began (the budget counts
    from there); ``raw_filter`` the report of the raw feature filter, if one ran.
    """

    def __init__(self, cfg, df, schema, target, *, budget, drop, label, progress, n_jobs, started=None,
                 raw_filter=None, engine=None):
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
        self.started = time.monotonic() if started is None else started
        self.raw_filter = raw_filter
        self.engine = engine  # trials on its workers (ClusterSearch) when given
        self.timings: dict[str, float] = {}
        self.search = None
        self.bar = None

    def execute(self) -> TournamentResult:
        from threadpoolctl import threadpool_limits

        # one OpenMP/BLAS thread per fit: OpenMP threads waiting for each other on a busy
        # machine made histogram boosting 15-50x slower than one thread (see estimators.py)
        with threadpool_limits(limits=1):
            try:
                result = self._execute()
            except BaseException:
                if self.bar is not None:
                    self.bar.close(finished=False)
                raise
        if self.bar is not None:
            self.bar.close()
        return result

    def _lap(self, name, since) -> float:
        now = time.monotonic()
        self.timings[name] = now - since
        return now

    def _execute(self) -> TournamentResult:
        cfg = self.cfg
        end = self.started + self.budget if self.budget else float("inf")
        data = prepare(self.df, self.target, cfg.task, self.drop)
        self.task = data.task
        self.metric = evaluate.resolve_metric(cfg.metric, self.task)
        if self.progress:
            self.bar = Bar(budget=self.budget, n_trials=cfg.n_trials, started=self.started,
                           metric=self.metric.name, label=self.label)
        classification = self.task != "regression"
        self.schema = self.schema.select(data.X.columns)
        frame = data.X.assign(**{self.target: data.y})
        train, test = split(frame, self.target, holdout=cfg.holdout, seed=self.seed, stratify=True)
        search_rows = sample(train, cfg.max_search_rows, target=self.target if classification else None,
                             seed=self.seed)
        self.classes = data.classes

        def enc(s):
            return codes(s.to_numpy(), self.classes) if classification else s.to_numpy(dtype=float)

        Xtr, ytr, ytr_codes = train.drop(columns=[self.target]), train[self.target].to_numpy(), enc(train[self.target])
        Xte, yte, yte_codes = test.drop(columns=[self.target]), test[self.target].to_numpy(), enc(test[self.target])
        Xs, ys = search_rows.drop(columns=[self.target]), enc(search_rows[self.target])
        self.imbalance = self._imbalance(ys)
        refit_full = bool(getattr(cfg, "refit_full", True))
        plan = Plan(self.budget, (len(Xtr), len(Xtr) + len(Xte)), refit_full)

        t, started = self._lap("prepare", self.started), datetime.now()
        settings = dict(target=self.target, task=self.task, metric=self.metric, classes=self.classes,
                        schema=self.schema, seed=self.seed, n_jobs=self.n_jobs, end=end, imbalance=self.imbalance,
                        rows=plan.rows, reserve=plan.reserve, label=self.label, progress=self.bar)
        search = Search(cfg, **settings) if self.engine is None else ClusterSearch(self.engine, cfg, **settings)
        self.search = search
        folds = search.folds(Xs, ys)
        self.timings["featurize"] = time.monotonic() - t
        linear = folds[0].X_train("linear")
        density = linear.nnz / max(np.prod(linear.shape), 1)
        fams = registry.select(cfg.families, self.task, len(Xs), linear.shape[1], density < 0.5)
        needed = {"tree"} if any(f.view == "tree" for f in fams) else set()
        needed |= {"linear", "linear-nobuckets"} if any(f.view == "linear" for f in fams) else set()
        for fold in folds:  # views no competing family learns from
            fold.views = {k: v for k, v in fold.views.items() if k in needed}
        study = search.run(fams, folds, fingerprint=fingerprint(frame))
        t = self._lap("search", t)
        if search.converged():
            log.info("the search ended: its last %d proposals were configurations it had scored", MAX_REPEATS)
        if self.bar is not None:
            self.bar.stage("ensemble, refit, evaluation")

        trials = trials_frame(study)
        if not any(tr.state == optuna.trial.TrialState.COMPLETE for tr in study.trials):
            errors = trials["error"].dropna().unique().tolist() if "error" in trials else []
            raise TournamentError("no trial finished" + (f"; errors: {errors[:3]}" if errors else
                                                         " within the budget"),
                                  hint="raise the budget or check the families' errors")
        layout = OutOfFold.of(folds)  # which row and label each out-of-fold score is of
        choice = winner.choose(search, study, folds, layout, plan=plan, end=end,
                               ensemble=getattr(cfg, "ensemble", True))
        t = self._lap("ensemble", t)
        board = leaderboard(trials, self.metric, families=[f.name for f in fams], n_folds=len(folds),
                            ensemble=choice.ensemble)
        if not search.ran_out_of_time:
            board["status"] = board["status"].replace(NOT_TRIED, "not tried (stopped)")
        shipped = len(choice.members) > 1
        board = with_oof_metrics(board, {n: kept[1] for n, kept in search.oof.items()}, layout.y, self.task,
                                 ensemble_oof=choice.oof if shipped else None)
        note = self._budget_note(search, fams, board, len(folds))

        # -- refit on the training rows, calibrate, evaluate once on the hold-out ------------
        has_proba = winner.has_proba(choice, self.task)
        method, calibrated_oof, table = winner.calibrate(choice, layout, task=self.task, n_classes=len(self.classes),
                                                         setting=cfg.calibrate, has_proba=has_proba, seed=self.seed)
        threshold = evaluate.f1_threshold(layout.y, calibrated_oof) if self.task == "binary" else 0.5
        common = dict(task=self.task, schema=self.schema, seed=self.seed, n_jobs=self.n_jobs, method=method,
                      oof_y=layout.y)
        member_trials = [m.trial for m in choice.members]
        self.timings["refit_estimate"] = sum(plan.refit_seconds(search, tr) for tr in member_trials)
        pipeline = winner.fit(choice, Xtr, ytr, ytr_codes, **common)
        t = self._lap("refit", t)
        scores = scores_of(pipeline, Xte, self.task)
        metrics = evaluate.holdout_metrics(self.task, yte_codes, scores, threshold=threshold)
        chance = evaluate.chance_test(self.task, yte_codes, scores, seed=self.seed)
        above = chance.pop("above_chance")
        buckets = evaluate.score_buckets(self.task, yte_codes, scores)
        raw = winner.raw_scores(pipeline, Xte, self.task)
        calib = None
        if method is not None:
            calib = {"method": method, "validation": table, "chosen_on": "out-of-fold search scores (log loss)",
                     "fitted_on": "out-of-fold search scores",
                     "before": _prob_quality(yte_codes, raw) if raw is not None else None,
                     "after": _prob_quality(yte_codes, scores)}
        t = self._lap("evaluate", t)

        # -- the saved model sees every row ---------------------------------------------------
        production, refit = pipeline, {"rows": len(Xtr), "on": "training rows"}
        if refit_full:  # before the insights, which take what is left
            left = end - time.monotonic() - MIN_INSIGHTS_SECONDS
            needed_s = sum(plan.refit_seconds(search, tr, full=True) for tr in member_trials)
            self.timings["refit_full_estimate"] = needed_s
            if needed_s <= left or not np.isfinite(end):
                X_all = pd.concat([Xtr, Xte])
                production = winner.fit(choice, X_all, np.concatenate([ytr, yte]),
                                        np.concatenate([ytr_codes, yte_codes]), full=True, **common)
                refit = {"rows": len(X_all), "on": "training + hold-out rows"}
            else:
                refit["skipped"] = (f"refit on every row skipped: it needs about {needed_s:.2f} s and "
                                    f"{max(left, 0):.2f} s of the budget are left; the saved model is "
                                    f"the one trained on the {len(Xtr)} training rows (a larger budget refits it)")
                log.warning(refit["skipped"])
        refit["metrics_from"] = f"the hold-out ({len(Xte)} rows) of the model trained on the {len(Xtr)} training rows"
        t = self._lap("refit_full", t)

        # -- insights with the time left ---------------------------------------------------------
        seconds = None if not np.isfinite(end) else max(end - time.monotonic(), 0.0)
        importance = field_importance(lambda d: scores_of(pipeline, d, self.task), Xte, yte_codes,
                                      self.metric, seed=self.seed, seconds=seconds)
        explainer = Explainer.from_frame(Xtr, self.schema.types)
        self._lap("insights", t)
        self.timings["total"] = time.monotonic() - self.started

        sampling = {"rows": int(len(self.df)), "dropped_missing_target": data.dropped,
                    "train_rows": int(len(train)), "holdout_rows": int(len(test)),
                    "search_rows": int(len(search_rows)), "sampled": bool(len(search_rows) < len(train)),
                    "method": "stratified" if classification else "random",
                    "cv_folds": len(folds), "cv": layout.describe(), "n_features": int(linear.shape[1]),
                    "families": [f.name for f in fams], "importance": importance.attrs.get("plan"),
                    "imbalance": dict(self.imbalance, winner=choice.members[0].fit.get("class_weight"))}
        full = refit["on"] != "training rows"

        def fitted(m):  # the saved model's parameters
            return m.fit_full if full else m.fit

        params = (fitted(choice.members[0]) if len(choice.members) == 1 else
                  {"members": {m.label: {"weight": w, **fitted(m)} for m, w in zip(choice.members, choice.weights)}})
        full_frame = pd.concat([Xtr, Xte]) if full else Xtr
        return TournamentResult(
            task=self.task, target=self.target, winner=choice.name, params=params,
            leaderboard=board, trials=trials, metric=self.metric.name,
            direction=self.metric.direction, metrics=metrics,
            cv_score=float(choice.score), cv_std=float(choice.members[0].trial.user_attrs.get("cv_std", np.nan))
            if len(choice.members) == 1 else float("nan"),
            above_chance=above, chance_test=chance, score_buckets=buckets, calibration=calib,
            importance=importance, best_pipeline=production, schema=self.schema, sampling=sampling,
            timings=dict(self.timings), classes=list(self.classes), threshold=threshold,
            explainer=explainer, features=winner.feature_names(production),
            holdout=(yte_codes, scores, raw), train_frame=full_frame,
            label=self.label, study_name=search.study_name, seed=self.seed, search_started=started,
            budget_note=note, raw_filter=self.raw_filter, ensemble=choice.ensemble, refit=refit,
            holdout_pipeline=pipeline, study_trials=study.get_trials(deepcopy=False))

    def _budget_note(self, search, fams, board, n_folds) -> str | None:
        """The too-small-budget message, when the budget ended the search before every
        family had a full cross-validated score."""
        if not self.budget or not search.ran_out_of_time:
            return None
        rows = board.set_index("family")
        tried = [f for f in fams if f.name in rows.index and rows.loc[f.name, "status"] == "complete"]
        n_features = search.n_features
        missing = sum(n_folds * search.expected_fold_seconds(f, dict(f.default), n_features)
                      for f in fams if f not in tried)
        note = too_small(len(tried), len(fams), self.budget, self.budget + missing)
        if note:
            log.warning("%s%s", f"[{self.label}] " if self.label else "", note)
        return note

    def _imbalance(self, ys) -> dict:
        if self.task == "regression":
            return {"minority_share": None, "searched": False, "default": None}
        share = float(np.bincount(ys).min() / len(ys))
        searched = share < IMBALANCE_SHARE
        return {"minority_share": share, "searched": searched,
                "default": "balanced" if share < 0.2 else None,
                "rule": f"class_weight searched (None or 'balanced') when the rarest class is "
                        f"< {IMBALANCE_SHARE:.0%} of rows; defaults use 'balanced' below 20%"}


def _prob_quality(y, scores) -> dict:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 1:
        return {"brier": float(np.mean((np.clip(scores, 0, 1) - y) ** 2)),
                "log_loss": float(evaluate.METRICS["log_loss"].fn(y, scores))}
    onehot = np.eye(scores.shape[1])[y]
    return {"brier": float(np.mean(np.sum((scores - onehot) ** 2, axis=1))),
            "log_loss": float(evaluate.METRICS["log_loss"].fn(y, scores))}
