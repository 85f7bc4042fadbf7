"""The search engine of a tournament: one Optuna study over families and hyperparameters.

:meth:`Search.folds` featurizes each cross-validation fold once and keeps every
feature view a family needs (``"linear"`` with and without numeric buckets,
``"tree"``); every trial reuses those matrices. :meth:`Search.fit_score` is one
trial: one configuration fitted and scored on every fold. :meth:`Search.run`
enqueues each family's default configuration, then lets TPE propose
configurations: ``family`` is the first choice and each family's parameters are
conditional on it (:class:`Prefixed`). Trials report per-fold scores and a median
pruner stops weak ones early, judging a trial within its family too (see
:mod:`.pruning`). No fold starts when its expected time would cross
the deadline (see :meth:`Search.fit_score`); the study stops at the deadline,
after ``n_trials``, or when no configuration can start any more. The deadline is
the end of the whole call minus what the rest of it is expected to take
(``reserve``), re-estimated after every trial.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from sklearn.exceptions import ConvergenceWarning

from .. import sql
from ..errors import ConfigError, TournamentError
from . import families as registry
from .calibration import scores_of
from .folds import Fold, splitter
from .pruning import FamilyMedianPruner
from .repeats import MAX_REPEATS, Seen, replay

log = logging.getLogger(__name__)

#: Trials in a row not started because their first fold would cross the deadline
#: after which the search ends.
MAX_SKIPPED = 10
#: Out-of-fold predictions kept (the best trials'), the candidates of an ensemble.
MAX_OOF = 30
#: Below this many search rows a linear family's default configuration has no
#: numeric buckets (they fit noise on a few hundred rows); the search tries both.
BUCKETS_MIN_ROWS = 3000


class Prefixed:
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


def view_key(family, params) -> str:
    """The feature view a configuration learns from: ``tree``, ``linear`` or ``linear-nobuckets``."""
    if family.view == "tree":
        return "tree"
    return "linear" if params.get("buckets", True) else "linear-nobuckets"


def view_settings(key: str) -> tuple[str, bool]:
    """(view, buckets) of a view key."""
    return ("linear", False) if key == "linear-nobuckets" else (key, True)


@dataclass
class Outcome:
    """What one configuration gave on every fold."""

    scores: list
    fit_time: float
    oof: np.ndarray
    refit_params: dict       # the final fit's parameters on the training rows
    refit_params_full: dict  # ... and on training + hold-out rows


class Search:
    """One study on one table's search rows.

    Parameters
    ----------
    cfg : Tournament
        Settings (cv, storage, n_trials, callbacks, holdout, max_search_rows).
    target : str
        The label column's name (part of the study's name).
    task, metric, classes, schema, seed, n_jobs
        What the training step resolved for this table.
    end : float
        ``time.monotonic()`` at which the whole call should be over (``inf`` without a budget).
    imbalance : dict
        ``searched`` (class_weight is searched) and ``default`` (of the default configurations).
    rows : tuple of int
        Rows of the final fits (training; training + hold-out): families' refit hooks scale to them.
    reserve : callable, optional
        ``reserve(search) -> seconds`` the rest of the call needs after the search; the
        search's deadline is ``end`` minus it, updated after every trial.
    label : str or None
        Tenant label (part of the study name).
    progress : progress.Bar or None
        The bar told of each finished trial.
    """

    def __init__(self, cfg, *, target, task, metric, classes, schema, seed, n_jobs, end, imbalance,
                 rows, reserve=None, label=None, progress=None):
        self.cfg, self.target = cfg, target
        self.task, self.metric, self.classes, self.schema = task, metric, classes, schema
        self.seed, self.n_jobs, self.end = seed, n_jobs, end
        self.imbalance, self.rows, self.label, self.progress = imbalance, rows, label, progress
        self.reserve = reserve
        self.deadline = end
        self.study_name = None
        self.study = None
        self.oof: dict[int, tuple] = {}  # trial number -> (value, out-of-fold scores); see _keep_oof
        self._oof_family: dict[int, str] = {}
        self.featurize_seconds: list[float] = []  # per fold
        self.fold_rows = 0  # training rows of a fold (mean)
        self.search_rows = 0  # rows of the search sample
        self.n_features = 0  # columns of the linear view
        self.ran_out_of_time = False  # whether the time (not n_trials or a callback) ended the search
        self._fold_seconds: dict[str, float] = {}  # slowest fold (fit+predict) per family
        self._seconds_per_cost: dict[str, float] = {}  # the same per unit of Family.cost
        self._skipped = 0  # trials in a row not started for the deadline
        self._out_of_time = False  # set when no family's fold fits in the time left
        self._have_winner = False
        self._best_value = None
        self.seen = Seen()  # complete trials by configuration: a repeat is replayed, not refitted
        self._repeats = 0  # proposals in a row that repeated a scored configuration

    # -- folds -------------------------------------------------------------------------
    def folds(self, Xs, ys, keys=("linear", "linear-nobuckets", "tree")) -> list[Fold]:
        """Fit one Featurizer inside each training fold and keep the views ``keys``
        (see :func:`view_key`); every trial reuses the matrices."""
        from ..features import Featurizer

        folds = []
        for tr, va in splitter(self.cfg.cv, len(Xs), ys, self.task, self.seed).split(Xs, ys):
            t = time.perf_counter()
            feat = Featurizer(schema=self.schema, view="all", random_state=self.seed)
            Xa = feat.fit_transform(Xs.iloc[tr], ys[tr])
            Xv = feat.transform(Xs.iloc[va])
            views = {key: (feat.view_output(Xa, *view_settings(key)), feat.view_output(Xv, *view_settings(key)))
                     for key in keys}
            folds.append(Fold(va, ys[tr], ys[va], views))
            self.featurize_seconds.append(time.perf_counter() - t)
        self.fold_rows = float(np.mean([len(f.y_train) for f in folds]))
        self.search_rows = len(Xs)
        self.n_features = folds[0].X_train(keys[0]).shape[1]
        return folds

    # -- one configuration -------------------------------------------------------------
    def expected_fold_seconds(self, family, params, n_features) -> float:
        """How long one fold of this configuration is expected to take: this family's
        slowest fold so far per unit of its cost hint times this configuration's cost,
        else (a family not timed yet) the slowest fold of any family."""
        per_cost = self._seconds_per_cost.get(family.name)
        if per_cost is not None:
            return per_cost * family.relative_cost(params, n_features)
        return max(self._fold_seconds.values(), default=0.0)

    def fit_score(self, family, params, folds, trial=None) -> Outcome:
        """Cross-validated score of one configuration; reports per fold to ``trial``.

        With a ``trial``, a fold is not started when its expected duration would
        cross the deadline, once some trial has finished: a long trial is stopped
        between folds. The expected duration is the previous fold of this trial, else
        :meth:`expected_fold_seconds` (a forest of 400 trees trying every feature is
        not expected to be as quick as the default's 200 trying a few; an untried heavy
        family does not start a long first fold just before the deadline).
        """
        key = view_key(family, params)
        scores, fit_time, fitted = [], 0.0, []
        # the folds' validation scores one after another (see folds.OutOfFold)
        oof = np.zeros((sum(len(f.valid) for f in folds),) + ((len(self.classes),)
                                                                if self.task == "multiclass" else ()))
        start = 0
        cost = family.relative_cost(params, folds[0].X_train(key).shape[1])
        expected = self.expected_fold_seconds(family, params, folds[0].X_train(key).shape[1])
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
                est.fit(fold.X_train(key), fold.y_train)
            s = scores_of(est, fold.X_valid(key), self.task)
            expected = time.perf_counter() - t
            if family.refit is not None:
                fitted.append(est)
            fit_time += expected
            # a family's slowest fold so far: its configurations differ a lot in cost
            # (e.g. saga vs lbfgs logistic), so its next first fold is expected to be as slow
            self._fold_seconds[family.name] = max(expected, self._fold_seconds.get(family.name, 0.0))
            self._seconds_per_cost[family.name] = max(expected / cost,
                                                      self._seconds_per_cost.get(family.name, 0.0))
            oof[start:start + len(s)] = s
            start += len(s)
            scores.append(float(self.metric.fn(fold.y_valid, s)))
            if not np.isfinite(scores[-1]):
                raise TournamentError(f"{family.name} gave a non-finite {self.metric.name}")
            if trial is not None:
                trial.report(float(np.mean(scores)), i)
                if trial.should_prune():
                    trial.set_user_attr("fit_time", fit_time)
                    raise optuna.TrialPruned()
        final, full = dict(params), dict(params)
        if family.refit is not None:
            rows = [len(f.y_train) for f in folds]
            final = family.refit(dict(params), fitted, rows, self.rows[0])
            full = family.refit(dict(params), fitted, rows, self.rows[1])
        return Outcome(scores, fit_time, oof, final, full)

    # -- the study ---------------------------------------------------------------------
    def run(self, fams, folds, fingerprint):
        """Optimize the study over ``fams`` on ``folds`` until the deadline or ``n_trials``."""
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log and bar say enough
        try:
            return self._study(fams, folds, fingerprint)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def update_deadline(self) -> float:
        """The search's deadline: the end of the call minus the expected rest (``reserve``)."""
        if self.reserve is not None and np.isfinite(self.end):
            self.deadline = self.end - max(float(self.reserve(self)), 0.0)
        return self.deadline

    def open_study(self, names, fingerprint, constant_liar: bool = False):
        """Create (or resume) the study of this search over the families ``names``; its
        name holds the data's ``fingerprint`` and the settings (a rerun resumes it).
        ``constant_liar``: trials run in parallel (the sampler avoids proposing what runs)."""
        cfg = self.cfg
        key = json.dumps({"data": fingerprint, "target": self.target, "task": self.task, "seed": self.seed,
                          "metric": self.metric.name, "families": names, "cv": str(cfg.cv),
                          "holdout": cfg.holdout, "rows": cfg.max_search_rows, "tenant": self.label},
                         sort_keys=True, default=str)
        self.study_name = f"expkit-{self.target}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.seed, multivariate=True, group=True,
                                                 n_startup_trials=max(10, len(names)), constant_liar=constant_liar)
            self.study = optuna.create_study(
                storage=storage(cfg.storage), sampler=sampler, study_name=self.study_name,
                pruner=FamilyMedianPruner(n_startup_trials=len(names)),
                direction=self.metric.direction, load_if_exists=True)
        return self.study

    def _study(self, fams, folds, fingerprint):
        cfg = self.cfg
        names = [f.name for f in fams]
        study = self.open_study(names, fingerprint)
        finished = [t for t in study.trials if t.state.is_finished()]
        self._have_winner = any(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
        self.seen = Seen.of(study)
        self._enqueue_defaults(study, fams, len(folds[0].y_train) + len(folds[0].y_valid))

        def objective(trial):
            family = registry.get_family(trial.suggest_categorical("family", names))
            params = self.suggest(trial, family)
            earlier = self.seen.get(trial.params)
            if earlier is not None:
                self._repeats += 1
                return replay(trial, earlier)
            self._repeats = 0
            try:
                out = self.fit_score(family, params, folds, trial)
            except optuna.TrialPruned:
                raise
            except Exception as exc:  # a family failing must not end the tournament
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
                raise
            trial.set_user_attr("cv_std", float(np.std(out.scores)))
            trial.set_user_attr("fold_scores", out.scores)
            trial.set_user_attr("fit_time", out.fit_time)
            trial.set_user_attr("refit_params", out.refit_params)
            trial.set_user_attr("refit_params_full", out.refit_params_full)
            value = float(np.mean(out.scores))
            self.seen.remember(trial.number, trial.params, value,
                               [(i, float(np.mean(out.scores[:i + 1]))) for i in range(len(out.scores))],
                               trial.user_attrs)
            self._keep_oof(trial.number, value, out.oof, family.name)
            if not self._have_winner or _better(value, self._best_value, self.metric):
                self._best_value = value
            self._have_winner = True
            return value

        self._best_value = study.best_value if self._have_winner else None
        remaining = None
        if cfg.n_trials is not None:
            remaining = max(int(cfg.n_trials) - len(finished), 0)
        self.update_deadline()
        timeout = max(self.end - time.monotonic(), 0.0) if np.isfinite(self.end) else None
        if self.deadline <= time.monotonic() and not self._have_winner:
            log.warning("featurizing the folds used the whole budget; running one trial to get a winner")
            remaining, timeout = 1, None
        bar = self.progress
        done = len(finished)
        if bar is not None and done:  # a resumed study
            bar.trial(done, study.best_value if self._have_winner else None,
                      study.best_trial.params["family"] if self._have_winner else None)

        def tick(study, trial):
            nonlocal done
            self.update_deadline()
            if time.monotonic() >= self.deadline or self._out_of_time or self.converged():
                study.stop()
            if bar is not None:
                done += 1
                best = study.best_trial if self._have_winner else None
                bar.trial(done, best.value if best else None, best.params["family"] if best else None)

        if remaining != 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_trials=remaining, timeout=timeout, catch=(Exception,),
                               callbacks=[tick, *(cfg.callbacks or [])])
        self.ran_out_of_time = self._out_of_time or time.monotonic() >= self.deadline
        return study

    def converged(self) -> bool:
        """Whether the last :data:`~.repeats.MAX_REPEATS` proposals all repeated scored
        configurations (the search then ends: it has nothing new to try)."""
        return self._repeats >= MAX_REPEATS

    def _enqueue_defaults(self, study, fams, n_rows):
        seen = {t.params.get("family") for t in study.trials}
        for fam in fams:
            if fam.name in seen:
                continue
            params = {"family": fam.name, **{f"{fam.name}.{k}": v for k, v in fam.default.items()}}
            if self.imbalance["searched"] and fam.class_weight:
                params[f"{fam.name}.class_weight"] = self.imbalance["default"]
            if fam.view == "linear":
                params[f"{fam.name}.buckets"] = n_rows >= BUCKETS_MIN_ROWS
            study.enqueue_trial(params, skip_if_exists=True)

    def suggest(self, trial, family) -> dict:
        """A configuration of ``family``: its space, plus class weights on imbalanced data
        and (linear view) whether numeric buckets are in."""
        params = family.space(Prefixed(trial, family.name))
        if self.imbalance["searched"] and family.class_weight:
            params["class_weight"] = trial.suggest_categorical(f"{family.name}.class_weight",
                                                               [None, "balanced"])
        if family.view == "linear":
            params["buckets"] = trial.suggest_categorical(f"{family.name}.buckets", [False, True])
        return params

    def _keep_oof(self, number, value, oof, family):
        """Keep the out-of-fold scores of the best :data:`MAX_OOF` trials, and always each
        family's best (an ensemble's diversity)."""
        self.oof[number] = (value, oof)
        self._oof_family[number] = family
        if len(self.oof) > MAX_OOF:
            sign = 1 if self.metric.greater_is_better else -1
            best_of = {}
            for n, (v, _) in self.oof.items():
                fam = self._oof_family[n]
                if fam not in best_of or sign * v > sign * self.oof[best_of[fam]][0]:
                    best_of[fam] = n
            keep = set(best_of.values())
            worst = min((n for n in self.oof if n not in keep), key=lambda n: sign * self.oof[n][0])
            del self.oof[worst]

    def oof_of(self, family, params, folds, trial):
        """Out-of-fold scores of a finished ``trial`` (refitted on the folds if it came from a
        resumed study or its scores were not kept)."""
        kept = self.oof.get(trial.user_attrs.get("repeat_of", trial.number))
        if kept is None:
            return self.fit_score(family, params, folds).oof
        return kept[1]


def _better(value, best, metric) -> bool:
    if best is None:
        return True
    return value > best if metric.greater_is_better else value < best


def family_params(family, trial_params) -> dict:
    """The parameters :meth:`Search.suggest` produced for a finished trial's values."""
    fixed = optuna.trial.FixedTrial(trial_params)
    params = family.space(Prefixed(fixed, family.name))
    for name in ("class_weight", "buckets"):
        value = trial_params.get(f"{family.name}.{name}", "__absent__")
        if value != "__absent__":
            params[name] = value
    return params


def storage(spec):
    """The Optuna storage of ``storage=``: None (in memory); a database URL (``sqlite:///study.db``,
    ``postgresql://user@host/db``; credentials as in :mod:`expkit.sql`); an Optuna storage
    object as it is; else a journal file at that path."""
    if spec is None or isinstance(spec, optuna.storages.BaseStorage):
        return spec
    if sql.is_url(str(spec)):
        return _rdb_storage(str(spec))
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def _rdb_storage(url: str, attempts: int = 5):
    """An RDBStorage; creating its tables is retried, as processes starting together on an
    empty PostgreSQL database collide in its catalog (a unique violation on pg_type)."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    target = sql.engine_url(url).render_as_string(hide_password=False)
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(target, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts - 1:
                raise ConfigError(f"cannot open the study storage {sql.redact(url)}: {exc.orig}",
                                  hint="check the URL, the server and the user's rights") from None
            time.sleep(0.2 * (attempt + 1))

