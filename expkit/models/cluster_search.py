"""One tournament's trials in parallel on the workers of an engine (a Dask cluster).

:class:`ClusterSearch` is a :class:`~expkit.models.search.Search` whose trials run on
the workers, one trial per call, as many at once as there are workers. The study stays
in the calling process: it asks the study for each configuration (``study.ask``; the
TPE sampler lies about running trials so that parallel ones differ) and tells it each
result (``study.tell``), so every trial of every worker is in the one study, in the
storage ``storage=`` names (any Optuna storage: nothing else writes to it).

The search rows are sent once to every worker (:meth:`~expkit.engine.Engine.broadcast`);
each worker featurizes the folds at its first trial and keeps them for the next ones
(built once per worker, not per trial). A worker stops a trial between folds when the
next fold would cross the deadline, and cuts it when it is worse than the median of the
finished trials at that fold, or of its family's when that is lower (the study's
pruner, :mod:`.pruning`, evaluated where the trial runs). The client starts no trial
after the deadline, so the budget holds for the whole call. Model families must be
importable on the workers (the built-in ones are).
"""
from __future__ import annotations

import collections
import contextlib
import os
import secrets
import socket
import time

import numpy as np
import optuna

from . import evaluate, pruning
from . import families as registry
from .repeats import Seen, replay
from .search import Search

#: Fold caches a worker keeps (searches of different calls); the oldest goes first.
CACHED_SEARCHES = 2
_CACHE: collections.OrderedDict = collections.OrderedDict()


class ClusterSearch(Search):
    """A :class:`Search` whose trials run on ``engine``'s workers (see the module docs)."""

    def __init__(self, engine, cfg, **kwargs):
        super().__init__(cfg, **kwargs)
        self.engine = engine
        self.workers: collections.Counter = collections.Counter()  # trials per worker
        self.built = None  # on a worker: which build of the folds its trials use
        self._rows = None

    def folds(self, Xs, ys, keys=("linear", "linear-nobuckets", "tree")):
        self._rows = (Xs, ys)
        return super().folds(Xs, ys, keys)

    def run(self, fams, folds, fingerprint):
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        token = secrets.token_hex(8)
        try:
            return self._spread(fams, folds, fingerprint, token)
        finally:
            optuna.logging.set_verbosity(verbosity)
            with contextlib.suppress(Exception):
                self.engine.ask_workers(forget, token)

    def _spread(self, fams, folds, fingerprint, token):
        cfg, eng = self.cfg, self.engine
        names = [f.name for f in fams]
        study = self.open_study(names, fingerprint, constant_liar=True)
        finished = [t for t in study.trials if t.state.is_finished()]
        self._have_winner = any(t.state == optuna.trial.TrialState.COMPLETE for t in finished)
        self._best_value = study.best_value if self._have_winner else None
        self.seen = Seen.of(study)
        self._enqueue_defaults(study, fams, len(folds[0].y_train) + len(folds[0].y_valid))
        remaining = None if cfg.n_trials is None else max(int(cfg.n_trials) - len(finished), 0)
        self.update_deadline()
        if self.deadline <= time.monotonic() and not self._have_winner:
            remaining, self.deadline = 1, float("inf")  # one trial, to have a winner
        spec = eng.broadcast({"token": token, "settings": self._settings(), "keys": list(folds[0].views),
                              "X": self._rows[0], "y": self._rows[1]})
        running: dict = {}
        started = 0
        try:
            while True:
                self.update_deadline()
                while (len(running) < eng.n_workers and (remaining is None or started < remaining)
                       and time.monotonic() < self.deadline and not self._out_of_time and not self.converged()):
                    trial = study.ask()
                    family = registry.get_family(trial.suggest_categorical("family", names))
                    params = self.suggest(trial, family)
                    started += 1
                    if self._replayed(study, trial) or self.seen.wait_for(trial.params, trial):
                        self._repeats += 1
                        self._show(study)
                        continue
                    self._repeats = 0
                    self.seen.fitting(trial.params)
                    left = self.deadline - time.monotonic() if np.isfinite(self.deadline) else None
                    # as locally, one trial runs to its end while there is no winner; the others keep the deadline
                    first = not self._have_winner and not any(f for _, _, f in running.values())
                    future = eng.submit(run_trial, spec, family.name, params, left, not first,
                                        pruning.for_study(study, family.name, len(names)),
                                        (dict(self._fold_seconds), dict(self._seconds_per_cost)))
                    running[future] = (trial, family, first)
                if not running:
                    break
                done, _ = eng.wait(list(running), timeout=1.0, first=True)
                for future in done:
                    trial, family, _ = running.pop(future)
                    try:
                        outcome = eng.result(future)
                    except Exception as exc:  # noqa: BLE001 - a lost worker fails its trial only
                        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
                    self._tell(study, trial, family, outcome)
        finally:
            for trial in [*(t for t, _, _ in running.values()), *self.seen.abandon()]:
                with contextlib.suppress(Exception):  # interrupted: no trial left running in the study
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.ran_out_of_time = self._out_of_time or time.monotonic() >= self.deadline
        return study

    def _settings(self) -> dict:
        """What a worker needs to rebuild this search (no engine, storage or callbacks)."""
        return dict(cv=self.cfg.cv, target=self.target, task=self.task, metric=self.metric.name,
                    classes=self.classes, schema=self.schema, seed=self.seed, imbalance=self.imbalance,
                    rows=self.rows)

    def _replayed(self, study, trial) -> bool:
        """Whether ``trial`` repeats a complete trial's configuration: then it is told that
        trial's outcome (see :mod:`.repeats`) and no worker fits it again."""
        earlier = self.seen.get(trial.params)
        if earlier is None:
            return False
        try:
            study.tell(trial, replay(trial, earlier))
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return True

    def _tell(self, study, trial, family, outcome) -> None:
        for step, value in outcome.get("reports", []):
            trial.report(value, step)
        for name, value in outcome.get("attrs", {}).items():
            trial.set_user_attr(name, value)
        if "worker" in outcome:
            trial.set_user_attr("worker", outcome["worker"])
            self.workers[outcome["worker"]] += 1
        for name, seconds in outcome.get("fold_seconds", {}).items():
            self._fold_seconds[name] = max(seconds, self._fold_seconds.get(name, 0.0))
        for name, seconds in outcome.get("per_cost", {}).items():
            self._seconds_per_cost[name] = max(seconds, self._seconds_per_cost.get(name, 0.0))
        self._out_of_time = self._out_of_time or outcome.get("out_of_time", False)
        status = outcome["status"]
        if status == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif status == "failed":
            trial.set_user_attr("error", outcome["error"])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            value = outcome["value"]
            self.seen.remember(trial.number, trial.params, value, outcome.get("reports", []), outcome.get("attrs", {}))
            study.tell(trial, value)
            self._keep_oof(trial.number, value, outcome["oof"], family.name)
            if not self._have_winner or (value > self._best_value if self.metric.greater_is_better
                                         else value < self._best_value):
                self._best_value = value
            self._have_winner = True
        for twin in self.seen.fitted(trial.params):  # proposed again while it was being fitted
            self._settle_twin(study, twin, trial.number, outcome)
        self._show(study)

    def _settle_twin(self, study, twin, number, outcome) -> None:
        """Tell ``twin`` the outcome of trial ``number``, which had the same configuration."""
        if outcome["status"] == "complete":
            self._replayed(study, twin)
            return
        twin.set_user_attr("repeat_of", number)
        if outcome["status"] == "pruned":
            study.tell(twin, state=optuna.trial.TrialState.PRUNED)
        else:
            twin.set_user_attr("error", outcome["error"])
            study.tell(twin, state=optuna.trial.TrialState.FAIL)

    def _show(self, study) -> None:
        if self.progress is not None:  # the bar counts finished trials here too
            best = study.best_trial if self._have_winner else None
            done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
            self.progress.trial(done, best.value if best else None, best.params["family"] if best else None)

    # -- on a worker ------------------------------------------------------------------
    @classmethod
    def on_worker(cls, spec) -> tuple["ClusterSearch", list]:
        """The search and folds of ``spec`` in this worker: built at its first trial, then kept."""
        token = spec["token"]
        if token in _CACHE:
            return _CACHE[token]
        s = spec["settings"]
        search = cls(None, _Settings(s["cv"]), target=s["target"], task=s["task"],
                     metric=evaluate.resolve_metric(s["metric"], s["task"]), classes=s["classes"],
                     schema=s["schema"], seed=s["seed"], n_jobs=1, end=float("inf"),
                     imbalance=s["imbalance"], rows=s["rows"])
        folds = search.folds(spec["X"], spec["y"], keys=tuple(spec["keys"]))
        search.built = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"  # which build of the folds
        _CACHE[token] = (search, folds)
        while len(_CACHE) > CACHED_SEARCHES:
            _CACHE.popitem(last=False)
        return search, folds

    def trial_here(self, folds, family_name, params, seconds_left, have_winner, limits, timings) -> dict:
        """One configuration on the kept folds, within ``seconds_left`` (``have_winner``
        False: to its end); ``timings`` are the slowest folds seen by every worker so far.
        Returns what the study is told."""
        self.deadline = float("inf") if seconds_left is None else time.monotonic() + seconds_left
        self._have_winner = have_winner
        for mine, theirs in zip((self._fold_seconds, self._seconds_per_cost), timings):
            for name, seconds in theirs.items():
                mine[name] = max(seconds, mine.get(name, 0.0))
        self._out_of_time = False
        trial = _WorkerTrial(limits, self.metric.greater_is_better)
        out = {"worker": f"{socket.gethostname()}:{os.getpid()}", "attrs": {"folds_built": self.built}}
        try:
            result = self.fit_score(registry.get_family(family_name), params, folds, trial)
        except optuna.TrialPruned:
            out["status"] = "pruned"
        except Exception as exc:  # noqa: BLE001 - a family failing fails its trial only
            out.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        else:
            trial.attrs.update(cv_std=float(np.std(result.scores)), fold_scores=result.scores,
                               fit_time=result.fit_time, refit_params=result.refit_params,
                               refit_params_full=result.refit_params_full)
            out.update(status="complete", value=float(np.mean(result.scores)), oof=result.oof)
        out["attrs"].update(trial.attrs)
        out.update(reports=trial.reports, fold_seconds=dict(self._fold_seconds),
                   per_cost=dict(self._seconds_per_cost), out_of_time=self._out_of_time)
        return out


class _Settings:
    """The settings a worker's search reads (``cv``)."""

    def __init__(self, cv):
        self.cv = cv


class _WorkerTrial:
    """Stands for the study's trial where the trial runs: keeps its reports and
    attributes for the study, and prunes as the study's pruner would."""

    def __init__(self, limits, greater_is_better):
        self.limits = limits
        self.greater = greater_is_better
        self.reports: list = []
        self.attrs: dict = {}

    def report(self, value, step) -> None:
        self.reports.append((step, float(value)))

    def set_user_attr(self, name, value) -> None:
        self.attrs[name] = value

    def should_prune(self) -> bool:
        if not self.limits or not self.reports:
            return False
        return pruning.should_prune([v for _, v in self.reports], self.limits.get(self.reports[-1][0]),
                                    self.greater)


def run_trial(spec, family_name, params, seconds_left, have_winner, limits, timings) -> dict:
    """One trial on a worker (see :meth:`ClusterSearch.trial_here`)."""
    from threadpoolctl import threadpool_limits

    search, folds = ClusterSearch.on_worker(spec)
    with threadpool_limits(limits=1):  # one thread per fit, as in a local tournament
        return search.trial_here(folds, family_name, params, seconds_left, have_winner, limits, timings)


def forget(token) -> None:
    """Drop a finished search's folds from this worker."""
    _CACHE.pop(token, None)
