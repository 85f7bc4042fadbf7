"""A configuration the search has already scored is replayed, not fitted again, both
in the local search and when trials run on an engine's workers."""
from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from sklearn.naive_bayes import BernoulliNB

from expkit import engine
from expkit.models import families
from expkit.models.repeats import MAX_REPEATS
from expkit.models.tournament import tournament

from .test_tournament import FAST, make

FOLD_ROWS = 100  # make()'s 160 rows: 128 for the search, about 85 in a training fold of 3
fits: collections.Counter = collections.Counter()  # (tag, fold or final fit) -> fits


class CountingNB(BernoulliNB):
    def fit(self, X, y, sample_weight=None):
        fits[(getattr(self, "tag", None), "fold" if X.shape[0] < FOLD_ROWS else "final")] += 1
        return super().fit(X, y, sample_weight)


def counting_nb(params, task, seed):
    est = CountingNB()
    est.tag = params["tag"]
    return est


class InThisProcess(engine.Engine):
    """Two worker threads of this process: the cluster search's code path, with a family
    registered here visible to its workers."""

    kind = "test"
    n_workers = 2

    def __init__(self):
        self._pool = ThreadPoolExecutor(self.n_workers)

    def submit(self, fn, /, *args, **kwargs):
        return self._pool.submit(fn, *args, **kwargs)

    def close(self):
        self._pool.shutdown()


@pytest.fixture
def two_configurations():
    """A family with exactly two configurations (tag "a" or "b"; tree view: no bucket choice).
    They score the same, so the median pruner cuts neither: every trial completes (a repeat
    of a pruned configuration is fitted again, as the pruner's median moves)."""
    families.register_family("two_nb", counting_nb, lambda t: {"tag": t.suggest_categorical("tag", ["a", "b"])},
                             default={"tag": "a"}, view="tree")
    fits.clear()
    yield
    families.unregister_family("two_nb")


def check_replayed(r, n_trials):
    trials = r.trials.set_index("number")
    assert len(trials) == n_trials and (trials["state"] == "COMPLETE").all()
    fitted = trials[trials["repeat_of"].isna()]
    repeats = trials[trials["repeat_of"].notna()]
    # each configuration was fitted once (3 folds), every later proposal of it replayed
    assert {k: v for k, v in fits.items() if k[1] == "fold"} == {("a", "fold"): 3, ("b", "fold"): 3}
    assert len(fitted) == 2 and len(repeats) == n_trials - 2
    for number, row in repeats.iterrows():
        first = trials.loc[int(row["repeat_of"])]
        assert first["repeat_of"] is None or pd.isna(first["repeat_of"])
        assert int(row["repeat_of"]) < number and row["params"] == first["params"]
        assert row["value"] == first["value"] and row["fit_time"] == first["fit_time"]
        assert row["folds_done"] == first["folds_done"] == 3  # the pruner saw every fold
    best = r.leaderboard.set_index("family").loc["two_nb"]
    assert best["trials"] == n_trials and np.isfinite(best["best_cv"])
    assert best["best_trial"] in fitted.index  # the trial that was fitted, whose out-of-fold scores are kept
    assert best["fit_time"] == pytest.approx(fitted["fit_time"].sum())  # replays took no fitting time
    assert r.best_pipeline.predict_proba(make("binary").head(3)).shape == (3, 2)
    assert f"{n_trials} trials ({n_trials - 2} repeated an earlier configuration" in r._repr_html_()
    assert "ended early" not in r._repr_html_()  # n_trials ended it


def test_a_repeated_configuration_is_replayed_not_refitted(two_configurations):
    r = tournament(make("binary"), "y", n_trials=8, families=["two_nb"], **FAST)
    check_replayed(r, 8)


def test_trials_on_workers_replay_repeats_too(two_configurations):
    with InThisProcess() as eng:
        r = tournament(make("binary"), "y", n_trials=8, families=["two_nb"], cluster=eng,
                       **{k: v for k, v in FAST.items() if k != "n_jobs"})
    assert "worker" in r.trials.columns
    check_replayed(r, 8)


def test_a_search_that_only_repeats_itself_ends_before_the_deadline(two_configurations):
    r = tournament(make("binary"), "y", budget=30, families=["two_nb"], **FAST)
    trials = r.trials.sort_values("number")
    tail = trials["repeat_of"].notna().to_numpy()[::-1]
    streak = int(np.argmin(tail)) if not tail.all() else len(tail)
    assert streak == MAX_REPEATS  # the last MAX_REPEATS proposals repeated, and then it stopped
    assert len(trials) < 2 * MAX_REPEATS and r.timings["search"] < 10
    assert r.budget_note is None  # not a budget too small: nothing new was left to try
    assert f"the search ended early, as its last {MAX_REPEATS} proposals had all been scored" in r._repr_html_()
    r.trials.loc[r.trials["number"].idxmax(), "repeat_of"] = None  # the last trial fitted: not a converged search
    assert "repeated an earlier configuration" in r._repr_html_() and "ended early" not in r._repr_html_()
