"""What the tournament ships: per-family views, ensembles, the refit on every row, an
honest leaderboard and budget, the raw feature filter (small data, few trials)."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from expkit.models import ensemble, families, load_model
from expkit.models.budget import TOLERANCE, importance_plan, too_small
from expkit.models.bundle import trust_types
from expkit.models.leaderboard import NOT_TRIED
from expkit.models.tournament import tournament

FAST = dict(n_jobs=1, progress=False, cv=3, seed=0)


def two_signals(n=600, seed=0):
    """y depends on a and b alike, plus a categorical; c is noise."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n),
                       "colour": rng.choice(["red", "green", "blue"], n)})
    logit = 1.2 * df["a"] + 1.2 * df["b"] + 0.8 * (df["colour"] == "red")
    df["y"] = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return df


class Recorder(LogisticRegression):
    """A logistic regression that records what it was fitted on."""

    seen: list = []

    def __init__(self, tag="", columns=None, C=1.0):
        super().__init__(C=C, max_iter=500)
        self.tag = tag
        self.columns = columns

    def _cut(self, X):
        if self.columns is None:
            return X
        X = X.to_numpy() if isinstance(X, pd.DataFrame) else X
        return X[:, self.columns]

    def fit(self, X, y, **kw):
        Recorder.seen.append((self.tag, type(X), X.shape, X))
        return super().fit(self._cut(X), y, **kw)

    def decision_function(self, X):  # predict_proba goes through it
        return super().decision_function(self._cut(X))


@pytest.fixture
def registered():
    names = []

    def register(name, factory, **kw):
        families.register_family(name, factory, kw.pop("space", lambda t: {}),
                                 applies=lambda task, n, p, s: task != "regression", **kw)
        names.append(name)

    Recorder.seen = []
    yield register
    for name in names:
        families.unregister_family(name)


def test_a_tree_family_gets_no_buckets_and_a_linear_one_does(registered):
    """Trees learn from values and category codes; linear models from scaled values, one-hot
    pivots and (when the search turns them on) label-aware buckets."""
    registered("rec_tree", lambda p, task, seed: Recorder("tree"), view="tree")
    registered("rec_linear", lambda p, task, seed: Recorder(f"linear-{p['buckets']}"),
               space=lambda t: {"C": t.suggest_float("C", 0.5, 2.0)})
    r = tournament(two_signals(), "y", n_trials=6, families=["rec_tree", "rec_linear"], ensemble=False,
                   **{**FAST, "seed": 3})
    seen = {}
    for tag, kind, shape, X in Recorder.seen:
        seen.setdefault(tag, (kind, shape, X))
    kind, shape, X = seen["tree"]
    # a, b, c as values, colour as one code column (native categorical): nothing else
    assert kind is pd.DataFrame and shape[1] == 4
    assert [str(t) for t in X.dtypes] == ["float32", "float32", "float32", "category"]
    assert {"linear-True", "linear-False"} <= set(seen), "the search tries buckets on and off"
    assert all(seen[t][0] is sp.csr_matrix for t in ("linear-True", "linear-False"))
    # without buckets: 3 values + 3 colours + OTHER (dropped as constant); with them, more
    assert seen["linear-False"][1][1] == 6 and seen["linear-True"][1][1] > 6
    lineage = r.best_pipeline["features"].lineage_
    if r.winner == "rec_tree":
        assert "bucket" not in set(lineage["transform"]) and "ordinal" in set(lineage["transform"])
    else:
        assert "ordinal" not in set(lineage["transform"])


def test_ensemble_ships_when_better_out_of_fold(registered, tmp_path):
    """Two models that each see one of two equally strong signals: their average is
    clearly better out of fold, so the ensemble wins, is calibrated, saved and loaded."""
    registered("only_a", lambda p, task, seed: Recorder("a", columns=[0]))
    registered("only_b", lambda p, task, seed: Recorder("b", columns=[1]))
    df = two_signals(800)
    r = tournament(df, "y", n_trials=2, families=["only_a", "only_b"], **FAST)
    assert r.winner == "ensemble" and r.ensemble["shipped"]
    assert set(r.ensemble["weights"]) == {"only_a #0", "only_b #1"}
    assert sum(r.ensemble["weights"].values()) == pytest.approx(1)
    best_single = r.leaderboard.set_index("family").loc[["only_a", "only_b"], "best_cv"].max()
    assert r.cv_score > best_single + ensemble.MIN_GAIN and r.ensemble["best_single"] == best_single
    top = r.leaderboard.iloc[0]
    assert top["family"] == "ensemble" and top["rank"] == 1 and top["status"] == "ensemble (shipped)"
    assert r.metrics["auroc"] > 0.8
    proba = r.best_pipeline.predict_proba(df.drop(columns="y").head(5))
    assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1)
    trust_types(f"{Recorder.__module__}.Recorder")  # the test's own estimator; EnsembleModel is trusted
    bundle = load_model(r.save(tmp_path / "run") / "model")
    np.testing.assert_allclose(bundle.predict_proba(df.head(5)), proba)


def test_ensemble_is_not_shipped_when_not_better(registered):
    """A model with the signal and one with noise: the best single model wins; the ensemble
    row says it was not better."""
    registered("all", lambda p, task, seed: Recorder("all"))
    registered("noise", lambda p, task, seed: Recorder("noise", columns=[2]))
    r = tournament(two_signals(800), "y", n_trials=2, families=["all", "noise"], **FAST)
    assert r.winner == "all" and (r.ensemble is None or not r.ensemble["shipped"])
    assert "ensemble (shipped)" not in set(r.leaderboard["status"])
    assert r.leaderboard.iloc[0]["family"] == "all"


def test_ensemble_selection_with_replacement():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    a = y + rng.normal(scale=1.0, size=2000)
    b = y + rng.normal(scale=1.0, size=2000)
    noise = rng.normal(size=2000)
    from expkit.models.evaluate import resolve_metric
    auc = resolve_metric("auto", "binary")
    weights, score = ensemble.select({"a": a, "b": b, "noise": noise}, y, auc)
    assert set(weights) == {"a", "b"} and score > auc.fn(y, a) + 0.02
    weights, score = ensemble.select({"a": a, "noise": noise}, y, auc)
    assert weights == {"a": 1.0} and score == pytest.approx(auc.fn(y, a))
    # members that do not fit in the time left are not picked
    weights, _ = ensemble.select({"a": a, "b": b}, y, auc, fits=lambda members: len(members) < 2)
    assert weights == {"a": 1.0}


def test_saved_model_is_refit_on_every_row_and_the_card_says_so(registered):
    registered("rows", lambda p, task, seed: Recorder("rows"))
    df = two_signals(500)
    r = tournament(df, "y", n_trials=1, families=["rows"], **FAST)
    fits = [shape[0] for tag, _, shape, _ in Recorder.seen]
    assert fits == [266, 267, 267, 400, 500]  # 3 folds, the training rows, then every row
    card = r.card()
    assert card["evaluation"]["trained_on"] == "training + hold-out rows (500 rows)"
    assert "hold-out (100 rows) of the model trained on the 400 training rows" in card["evaluation"]["metrics_from"]
    assert "metrics come from the hold-out of the model trained on the training rows only" in \
        card["evaluation"]["note"]
    assert r.best_pipeline is not r.holdout_pipeline
    assert r.summary()["evaluation"] == card["evaluation"]

    Recorder.seen = []
    kept = tournament(df, "y", n_trials=1, families=["rows"], refit_full=False, **FAST)
    assert [shape[0] for tag, _, shape, _ in Recorder.seen] == [266, 267, 267, 400]
    assert kept.best_pipeline is kept.holdout_pipeline
    assert kept.card()["evaluation"]["trained_on"] == "training rows (400 rows)"


def test_a_refit_on_every_row_that_does_not_fit_the_budget_is_skipped_and_said(registered, monkeypatch):
    """When the refit on every row would overrun the budget, the saved model is the
    train-only one and the card says why, with both figures."""
    from expkit.models.budget import Plan

    estimate = Plan.refit_seconds
    monkeypatch.setattr(Plan, "refit_seconds", lambda self, search, trial, full=False:
                        3600.0 if full else estimate(self, search, trial))
    registered("rows", lambda p, task, seed: Recorder("rows"))
    r = tournament(two_signals(500), "y", budget=5, families=["rows"], **FAST)
    assert [shape[0] for tag, _, shape, _ in Recorder.seen][-1] == 400  # no fit on all 500 rows
    assert r.best_pipeline is r.holdout_pipeline
    evaluation = r.card()["evaluation"]
    assert evaluation["trained_on"] == "training rows (400 rows)"
    assert "refit on every row skipped: it needs about 3600.00 s" in evaluation["note"]
    assert "the one trained on the 400 training rows" in evaluation["note"]


def test_the_whole_call_keeps_to_the_budget_on_small_data():
    """Featurizing, search, ensemble, both refits, calibration, evaluation and insights
    together end within the budget + 10% (the search stops early by what the rest needs)."""
    budget = 6.0
    t = time.monotonic()
    r = tournament(two_signals(400), "y", budget=budget, **{**FAST, "cv": "auto"})
    elapsed = time.monotonic() - t
    assert elapsed <= budget * (1 + TOLERANCE) + 0.5, r.timings
    assert r.timings["total"] <= elapsed and r.timings["search"] < budget
    assert {"featurize", "search", "ensemble", "refit", "evaluate", "refit_full", "insights"} <= set(r.timings)
    assert len(r.trials) >= 3


def test_the_search_leaves_room_for_what_follows_it(registered):
    """With slow fits the final fits take a good share of a small budget: the search stops
    early by what they need, so the whole call still ends within the budget + 10%."""
    import time as clock

    class Steady(LogisticRegression):
        def fit(self, X, y, **kw):
            clock.sleep(0.3)
            return super().fit(X, y, **kw)

    registered("steady", lambda p, task, seed: Steady(C=p["C"]), space=lambda t: {"C": t.suggest_float("C", 0.1, 10)})
    budget = 4.0
    t = time.monotonic()
    r = tournament(two_signals(300), "y", budget=budget, families=["steady"], ensemble=False, **FAST)
    elapsed = time.monotonic() - t
    assert elapsed <= budget * (1 + TOLERANCE), r.timings
    assert r.refit["on"] == "training + hold-out rows" and len(r.trials) >= 2
    assert r.timings["refit"] >= 0.3 and r.timings["refit_full"] >= 0.3


def test_not_tried_families_and_the_too_small_budget_message(registered):
    """A family that never started a fold is "not tried (budget)" and not ranked; a family cut
    at the deadline shows its partial score with its folds; the result says the budget was
    too small and about how much would try every family."""
    import time as clock

    class Slow(LogisticRegression):
        def fit(self, X, y, **kw):
            clock.sleep(1.5)
            return super().fit(X, y, **kw)

    registered("slow_a", lambda p, task, seed: Slow())
    registered("slow_b", lambda p, task, seed: Slow())
    # logistic and featurizing take well under a second; slow_a's first fold then ends after
    # about 2 s, and its second would end past the deadline; slow_b would not end in time at all
    r = tournament(two_signals(300), "y", budget=3.0, families=["logistic", "slow_a", "slow_b"],
                   ensemble=False, **{**FAST, "cv": 2})
    board = r.leaderboard.set_index("family")
    assert board.loc["logistic", "rank"] == 1 and board.loc["logistic", "status"] == "complete"
    assert board.loc["slow_b", "status"] == NOT_TRIED and pd.isna(board.loc["slow_b", "rank"])
    assert np.isnan(board.loc["slow_b", "best_cv"])
    cut = board.loc["slow_a"]
    assert cut["status"] == "partial: cut at the deadline after 1 of 2 folds" and cut["rank"] == 2
    assert cut["folds"] == 1 and 0.5 < cut["best_cv"] <= 1
    note = r.budget_note
    assert note.startswith("budget too small: 1 of 3 families tried; about ") and note.endswith(
        " s would try them all")
    needed = float(note.split("about ")[1].split(" s")[0])
    assert needed >= 3.0 + 3 * 1.5  # at least the slow families' missing folds
    assert note in repr(r) and note in r._repr_html_() and r.summary()["budget_note"] == note
    assert r.card()["budget_note"] == note


def test_budget_helpers():
    assert too_small(6, 6, 30, 30) is None
    assert too_small(1, 6, 10, 41.2) == "budget too small: 1 of 6 families tried; about 45 s would try them all"
    full = importance_plan(10.0, 0.01, 1000, 20)
    assert full == {"rows": 1000, "repeats": 3, "fields": 20}
    fewer = importance_plan(0.4, 0.01, 1000, 20)
    assert fewer["repeats"] == 2
    rows = importance_plan(0.05, 0.01, 1000, 20)
    assert rows["repeats"] == 1 and 200 <= rows["rows"] < 1000 and rows["fields"] == 20
    fields = importance_plan(0.001, 0.01, 1000, 20)
    assert fields["rows"] == 200 and fields["fields"] < 20


def test_raw_feature_filter_drops_a_drifted_field_with_its_reason():
    df = two_signals(600)
    scoring = df.drop(columns="y").sample(300, random_state=1)
    scoring["c"] = scoring["c"] + 6.0          # another unit: every value outside the training range
    scoring["b"] = np.nan                       # no longer filled
    r = tournament(df, "y", n_trials=1, families=["logistic"], scoring_data=scoring, **FAST)
    report = r.raw_filter.set_index("field")
    assert bool(report.loc["c", "dropped"]) and "distribution moved: JS divergence" in report.loc["c", "reason"]
    assert report.loc["c", "js_divergence"] > 0.5
    assert bool(report.loc["b", "dropped"]) and "fill rate" in report.loc["b", "reason"]
    assert not report.loc["a", "dropped"] and not report.loc["colour", "dropped"]
    assert set(r.schema.features) == {"a", "colour"}
    assert set(r.dropped_fields()) == {"b", "c"} and r.card()["raw_filter"] == r.dropped_fields()
    assert "Raw feature filter" in r._repr_html_()
    assert r.best_pipeline.predict_proba(scoring.drop(columns=["b", "c"])).shape == (300, 2)
