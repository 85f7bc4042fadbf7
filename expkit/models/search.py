"""The search engine of a tournament: one Optuna study over families and hyperparameters.

:class:`Search` featurizes each cross-validation fold once (:meth:`Search.folds`;
every trial reuses the matrices), enqueues each family's default configuration,
then lets TPE propose configurations: ``family`` is the first choice and each
family's parameters are conditional on it (:class:`Prefixed`). Trials report per-fold
scores and a median pruner stops weak ones early. No fold starts when its expected
time would cross the deadline (see :meth:`Search.fit_score`); the study stops at the
deadline, after ``n_trials``, or when no configuration can start any more.
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
from sklearn.model_selection import KFold, StratifiedKFold

from .. import sql
from ..errors import ConfigError, TournamentError
from . import families as registry
from .calibration import scores_of

log = logging.getLogger(__name__)

#: Trials in a row not started because their first fold would cross the deadline
#: after which the search ends.
MAX_SKIPPED = 10


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


@dataclass
class Fold:
    """One cross-validation fold, featurized once: every trial reuses its matrices."""

    valid: np.ndarray  # positions in the search sample
    X_train: object
    y_train: np.ndarray
    X_valid: object
    y_valid: np.ndarray


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
    deadline : float
        ``time.monotonic()`` after which no fold starts (``inf`` without a budget).
    imbalance : dict
        ``searched`` (class_weight is searched) and ``default`` (of the default configurations).
    train_rows : int
        Rows of the final fit (families' refit hooks scale to them).
    label : str or None
        Tenant label (in the study name and the progress bar).
    progress : bool
    """

    def __init__(self, cfg, *, target, task, metric, classes, schema, seed, n_jobs, deadline, imbalance,
                 train_rows, label=None, progress=False):
        self.cfg, self.target = cfg, target
        self.task, self.metric, self.classes, self.schema = task, metric, classes, schema
        self.seed, self.n_jobs, self.deadline = seed, n_jobs, deadline
        self.imbalance, self._train_rows, self.label, self.progress = imbalance, train_rows, label, progress
        self.study_name = None
        self._oof: dict[int, np.ndarray] = {}
        self._fold_seconds: dict[str, float] = {}  # slowest fold (fit+predict) per family
        self._seconds_per_cost: dict[str, float] = {}  # the same per unit of Family.cost
        self._skipped = 0  # trials in a row not started for the deadline
        self._out_of_time = False  # set when no family's fold fits in the time left
        self._have_winner = False
        self._best_value = None

    def splitter(self, n_rows, ys):
        """The cross-validation splitter (``cv``: "auto", a number of folds or a splitter)."""
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

    def folds(self, Xs, ys) -> list[Fold]:
        """Fit the Featurizer inside each training fold once; every trial reuses the matrices."""
        from ..features import Featurizer

        folds = []
        for tr, va in self.splitter(len(Xs), ys).split(Xs, ys):
            feat = Featurizer(schema=self.schema, random_state=self.seed)
            Xa = feat.fit_transform(Xs.iloc[tr], ys[tr])
            folds.append(Fold(va, Xa, ys[tr], feat.transform(Xs.iloc[va]), ys[va]))
        return folds

    def fit_score(self, family, params, folds, trial=None):
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

    def run(self, fams, folds, fingerprint):
        """Optimize the study over ``fams`` on ``folds`` until the deadline or ``n_trials``."""
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log and bar say enough
        try:
            return self._study(fams, folds, fingerprint)
        finally:
            optuna.logging.set_verbosity(verbosity)

    def _study(self, fams, folds, fingerprint):
        cfg = self.cfg
        names = [f.name for f in fams]
        key = json.dumps({"data": fingerprint, "target": self.target, "task": self.task, "seed": self.seed,
                          "metric": self.metric.name, "families": names, "cv": str(cfg.cv),
                          "holdout": cfg.holdout, "rows": cfg.max_search_rows, "tenant": self.label},
                         sort_keys=True, default=str)
        self.study_name = f"expkit-{self.target}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=self.seed, multivariate=True, group=True,
                                                 n_startup_trials=max(10, len(names)))
            study = optuna.create_study(
                storage=storage(cfg.storage), sampler=sampler, study_name=self.study_name,
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
            params = family.space(Prefixed(trial, family.name))
            if balanced and family.class_weight:
                params["class_weight"] = trial.suggest_categorical(f"{family.name}.class_weight",
                                                                   [None, "balanced"])
            try:
                scores, fit_time, oof, final = self.fit_score(family, params, folds, trial)
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

    def oof_of(self, family, params, folds, best):
        """Out-of-fold scores of trial ``best`` (refitted on the folds if it came from a
        resumed study)."""
        oof = self._oof.get(best.number)
        if oof is None:  # the winner came from an earlier (resumed) run
            _, _, oof, _ = self.fit_score(family, params, folds)
        return oof


def _better(value, best, metric) -> bool:
    if best is None:
        return True
    return value > best if metric.greater_is_better else value < best


def family_params(family, trial_params) -> dict:
    """The parameters ``family.space`` produced for a finished trial's values."""
    fixed = optuna.trial.FixedTrial(trial_params)
    params = family.space(Prefixed(fixed, family.name))
    cw = trial_params.get(f"{family.name}.class_weight", "__absent__")
    if cw != "__absent__":
        params["class_weight"] = cw
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


def _progress_bar(enabled, total, label):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"tournament{f' [{label}]' if label else ''}", unit="trial",
                leave=True)
