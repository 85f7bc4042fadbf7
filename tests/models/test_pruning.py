"""A trial is pruned against the lower of the overall median and its family's median, in
the local search and on an engine's workers alike."""
from __future__ import annotations

import numpy as np
import optuna
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from expkit.models import families
from expkit.models.cluster_search import _WorkerTrial
from expkit.models.pruning import FAMILY_STARTUP, FamilyMedianPruner, thresholds
from expkit.models.tournament import tournament

from .test_repeats import InThisProcess
from .test_tournament import FAST, make

FAMILIES = ["leader", "behind", "new"]


def study_with(scores: dict, direction: str = "maximize") -> optuna.Study:
    """A study whose complete trials of each family scored ``scores[family]`` on fold 0."""
    study = optuna.create_study(direction=direction, pruner=FamilyMedianPruner(n_startup_trials=3))
    dist = {"family": optuna.distributions.CategoricalDistribution(FAMILIES)}
    for family, values in scores.items():
        for v in values:
            study.add_trial(optuna.trial.create_trial(params={"family": family}, distributions=dist, value=v,
                                                      intermediate_values={0: v}))
    return study


def complete(study) -> list:
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def pruned(study, family: str, score: float) -> bool:
    """Whether a new trial of ``family`` scoring ``score`` on fold 0 is pruned, by the
    study's pruner and by a worker given the cluster search's thresholds (both must agree)."""
    study.enqueue_trial({"family": family})
    trial = study.ask()
    trial.suggest_categorical("family", FAMILIES)
    trial.report(score, 0)
    here = trial.should_prune()
    study.tell(trial, state=optuna.trial.TrialState.FAIL)  # not counted by later calls
    greater = study.direction == optuna.study.StudyDirection.MAXIMIZE
    worker = _WorkerTrial(thresholds(complete(study), family, greater, 3), greater)  # what a worker is sent
    worker.report(score, 0)
    assert worker.should_prune() == here
    return here


def test_a_family_behind_is_judged_against_its_own_median():
    study = study_with({"leader": [0.90, 0.91, 0.92, 0.93], "behind": [0.80, 0.82, 0.84]})
    # overall median 0.90, the family behind's 0.82
    assert not pruned(study, "behind", 0.85)   # below the overall median, above its family's: goes on
    assert pruned(study, "behind", 0.81)       # below its own family's median
    assert pruned(study, "leader", 0.89)       # the leader is judged as before: by the overall median
    assert not pruned(study, "leader", 0.905)


def test_a_family_with_too_few_complete_trials_is_not_pruned():
    study = study_with({"leader": [0.90, 0.91, 0.92, 0.93], "new": [0.60] * (FAMILY_STARTUP - 1)})
    assert not pruned(study, "new", 0.50)
    assert thresholds(complete(study), "new", True, 3) is None
    # nor anything before the study's start-up trials are complete
    assert not pruned(study_with({"leader": [0.90], "behind": [0.50, 0.60]}), "leader", 0.10)


def test_a_smaller_is_better_metric_keeps_the_higher_median():
    study = study_with({"leader": [1.0, 1.1, 1.2, 1.3], "behind": [2.0, 2.2, 2.4]}, direction="minimize")
    assert not pruned(study, "behind", 2.1)
    assert pruned(study, "behind", 2.3)
    assert pruned(study, "leader", 1.35)  # the overall median (1.3), as before
    assert not pruned(study, "leader", 1.25)
    assert thresholds(complete(study), "behind", False, 3) == {0: pytest.approx(2.2)}


class NoisyLogistic(BaseEstimator, ClassifierMixin):
    """Logistic regression whose probabilities are mixed with seeded noise: always behind
    plain logistic regression, and the worse the more ``mix``."""

    def __init__(self, mix=0.5):
        self.mix = mix

    def fit(self, X, y):
        self.model_ = LogisticRegression(max_iter=500).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        p = self.model_.predict_proba(X)[:, 1]
        noise = np.random.default_rng(0).uniform(size=len(p))
        p = (1 - self.mix) * p + self.mix * noise
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]


@pytest.fixture
def behind():
    families.register_family("behind", lambda params, task, seed: NoisyLogistic(params["mix"]),
                             lambda t: {"mix": t.suggest_float("mix", 0.2, 0.95)}, default={"mix": 0.9},
                             view="tree")
    yield
    families.unregister_family("behind")


def check_tuned(r):
    trials = r.trials[r.trials["family"] == "behind"].sort_values("number")
    done = trials[trials["state"] == "COMPLETE"]
    assert len(done) >= FAMILY_STARTUP + 1, r.trials[["number", "family", "state", "value"]]
    # the family behind was tuned: it found configurations better than its default
    assert done["value"].max() > done["value"].iloc[0] + 0.02
    assert done["value"].max() < r.leaderboard.set_index("family").loc["logistic", "best_cv"]  # still behind


def test_a_family_behind_the_leader_is_tuned_not_cut_after_one_fold(behind):
    check_tuned(tournament(make("binary", n=300), "y", n_trials=40, families=["logistic", "behind"], **FAST))


def test_workers_prune_as_the_study_would(behind):
    with InThisProcess() as eng:
        r = tournament(make("binary", n=300), "y", n_trials=40, families=["logistic", "behind"], cluster=eng,
                       **{k: v for k, v in FAST.items() if k != "n_jobs"})
    check_tuned(r)

