"""Tournaments on small generated data, Titanic and the demo leads (few trials, n_jobs=1)."""
from __future__ import annotations

import gc
import logging
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import expkit
from expkit.errors import ConfigError, FeatureError, TargetError
from expkit.models import families
from expkit.models.tournament import Tournament, detect_task, tournament

FAST = dict(n_jobs=1, progress=False, cv=3, seed=0)


def make(task: str, n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "colour": rng.choice(["red", "green", "blue"], n),
                       "noise": rng.uniform(size=n)})
    signal = 1.5 * df["x1"] + (df["colour"] == "red") * 1.5 + rng.normal(scale=0.5, size=n)
    if task == "binary":
        df["y"] = np.where(signal > 0.5, "yes", "no")
    elif task == "multiclass":
        df["y"] = pd.cut(signal, [-np.inf, -0.5, 1.0, np.inf], labels=["lo", "mid", "hi"]).astype(str)
    else:
        df["y"] = 3 * signal + 10
    return df


@pytest.fixture(scope="module")
def binary():
    df = make("binary")
    return df, tournament(df, "y", n_trials=4, families=["logistic", "knn"], **FAST)


def test_binary_result_holds_everything(binary):
    df, r = binary
    assert r.task == "binary" and r.classes == ["no", "yes"] and r.positive_class == "yes"
    assert r.winner in ("logistic", "knn")
    # each family's default configuration is tried first
    first = r.trials.sort_values("number").head(2)
    assert list(first["family"]) == ["logistic", "knn"]
    # (small data: a linear family's default leaves the numeric buckets out; the search tries both)
    assert first.iloc[0]["params"] == {**families.get_family("logistic").default, "buckets": False}
    assert len(r.trials) == 4
    families_only = r.leaderboard[r.leaderboard["family"] != "ensemble"]
    assert list(families_only["family"]) == ["logistic", "knn"] or list(families_only["family"]) == ["knn", "logistic"]
    assert r.leaderboard.loc[0, "rank"] == 1 and r.leaderboard.loc[0, "family"] == r.winner
    assert set(r.leaderboard["status"]) <= {"complete", "ensemble (not better than the best single model)",
                                            "ensemble (shipped)"}
    assert {"best_cv", "cv_std", "trials", "fit_time", "best_params"} <= set(r.leaderboard)
    assert r.cv_score == pytest.approx(r.leaderboard.loc[0, "best_cv"])
    for key in ("auroc", "aupr", "log_loss", "brier", "accuracy", "precision", "recall", "f1", "threshold"):
        assert key in r.metrics
    assert r.metrics["auroc"] > 0.85 and r.above_chance and r.chance_test["ci_low"] > 0.5
    assert len(r.score_buckets) == 10 and r.score_buckets["share"].sum() == pytest.approx(1)
    assert r.calibration["method"] in ("none", "sigmoid", "isotonic")
    assert set(r.calibration["before"]) == {"brier", "log_loss"} and r.calibration["after"]["brier"] < 0.25
    assert set(r.importance["field"]) == {"x1", "x2", "colour", "noise"}
    assert r.importance.iloc[0]["field"] in ("x1", "colour")
    assert r.sampling["search_rows"] == r.sampling["train_rows"] == 128 and not r.sampling["sampled"]
    assert {"prepare", "search", "refit", "evaluate", "insights"} <= set(r.timings)


def test_best_pipeline_takes_raw_frame_and_explains(binary):
    df, r = binary
    raw = df.drop(columns="y").head(7)
    proba = r.best_pipeline.predict_proba(raw)
    assert proba.shape == (7, 2) and np.allclose(proba.sum(1), 1)
    assert set(r.best_pipeline.predict(raw)) <= {"yes", "no"}
    reasons = r.reasons(df.head(5), k=2)
    assert list(reasons.columns) == ["score", "reason_1", "impact_1", "reason_2", "impact_2"]
    assert np.allclose(reasons["score"], proba[:5, 1])
    assert reasons["reason_1"].isin(["x1", "x2", "colour", "noise"]).all()
    assert (reasons["impact_1"].abs() >= reasons["impact_2"].abs()).all()


def test_figures_html_and_save(binary, tmp_path):
    _, r = binary
    figs = r.figures()
    assert {"leaderboard", "optimization_history", "roc", "precision_recall", "calibration",
            "score_distribution", "importance"} <= set(figs)
    assert all(isinstance(f, Figure) for f in figs.values())
    html = r._repr_html_()
    assert r.winner in html and "above chance" in html
    out = r.save(tmp_path / "run")
    assert (out / "model" / "model.skops").is_file() and (out / "model" / "card.json").is_file()
    assert (out / "metrics.json").is_file() and (out / "leaderboard.csv").is_file()
    assert (out / "figures" / "roc.png").stat().st_size > 1000


def test_multiclass_and_regression():
    m = tournament(make("multiclass"), "y", n_trials=2, families=["logistic", "knn"], **FAST)
    assert m.task == "multiclass" and m.classes == ["hi", "lo", "mid"]
    assert {"auroc", "log_loss", "accuracy"} <= set(m.metrics) and m.metrics["auroc"] > 0.8
    assert m.best_pipeline.predict_proba(make("multiclass").head(3)).shape == (3, 3)
    r = tournament(make("regression"), "y", n_trials=2, families=["ridge", "knn"], **FAST)
    assert r.task == "regression" and r.calibration is None
    assert {"rmse", "mae", "r2"} <= set(r.metrics) and r.metrics["r2"] > 0.7
    assert r.above_chance and r.chance_test["method"].startswith("permutation")
    assert "predicted_vs_observed" in r.figures()


def test_detect_task():
    assert detect_task(pd.Series([0, 1, 1])) == "binary"
    assert detect_task(pd.Series(["a", "b", "c"])) == "multiclass"
    assert detect_task(pd.Series([1, 2, 3, 4])) == "multiclass"
    assert detect_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert detect_task(pd.Series(range(100))) == "regression"


@pytest.mark.slow
def test_titanic():
    df = expkit.datasets.titanic()
    r = tournament(df, "Survived", n_trials=2, families=["logistic"], **FAST)
    assert r.winner == "logistic" and r.metrics["auroc"] > 0.8 and r.above_chance
    assert "Sex" in r.importance.iloc[:3]["field"].tolist()


def test_budget_is_honoured():
    df = make("binary", n=300)
    budget = 3.0
    r = tournament(df, "y", budget=budget, families=["logistic", "knn", "random_forest"], **FAST)
    assert r.timings["search"] <= budget * 1.1 + 1.5  # overshoot bounded by one fold fit
    deadline = r.search_started + timedelta(seconds=budget)
    assert (r.trials["datetime_start"] <= deadline).all()
    assert len(r.trials) >= 3


def test_untried_heavy_family_does_not_start_just_before_the_deadline():
    """A family not timed yet is expected to be as slow as the slowest fold so far: after a slow
    family, a second one is not started when one such fold would cross the deadline."""
    import time

    from sklearn.linear_model import LogisticRegression

    class Slow(LogisticRegression):
        def fit(self, X, y, **kw):
            time.sleep(1.5)
            return super().fit(X, y, **kw)

    for name in ("slow_a", "slow_b"):
        families.register_family(name, lambda p, task, seed: Slow(), lambda t: {},
                                 applies=lambda task, n, p, s: task != "regression")
    try:
        budget = 3.5  # logistic ~0 s, then slow_a's two folds end at ~3 s; slow_b would end at ~4.5 s
        r = tournament(make("binary", n=200), "y", budget=budget, families=["logistic", "slow_a", "slow_b"],
                       **{**FAST, "cv": 2})
    finally:
        for name in ("slow_a", "slow_b"):
            families.unregister_family(name)
    assert r.timings["search"] <= budget * 1.1
    b = r.trials[r.trials["family"] == "slow_b"]
    assert (b["state"] != "COMPLETE").all() and (b["fit_time"].fillna(0) == 0).all()


@pytest.mark.filterwarnings("ignore:.*sleepy.units.*:UserWarning")  # the default lies outside the space
def test_a_dear_configuration_of_a_timed_family_does_not_start_just_before_the_deadline():
    """The family's cost hint scales its timed folds: a configuration 40x dearer than the
    default is expected to take 40x as long, so it is not started with too little time left."""
    import time

    from sklearn.linear_model import LogisticRegression

    class Sleepy(LogisticRegression):
        def __init__(self, units=1):
            super().__init__()
            self.units = units

        def fit(self, X, y, **kw):
            time.sleep(0.1 * self.units)
            return super().fit(X, y, **kw)

    families.register_family("sleepy", lambda p, task, seed: Sleepy(p["units"]),
                             lambda t: {"units": t.suggest_int("units", 40, 40)}, default={"units": 1},
                             cost=lambda p, n_features: p["units"])
    try:
        budget = 3.0  # the default's folds take ~0.1 s each; a 40-unit fold would take 4 s
        r = tournament(make("binary", n=200), "y", budget=budget, families=["sleepy"], **{**FAST, "cv": 2})
    finally:
        families.unregister_family("sleepy")
    assert r.timings["search"] <= budget * 1.1
    dear = r.trials[r.trials["params"].map(lambda p: p.get("units")) == 40]
    assert len(dear) >= 1 and (dear["stopped"] == "deadline").all() and (dear["fit_time"] == 0).all()
    # and the search ends instead of opening empty trials until the deadline
    from expkit.models.search import MAX_SKIPPED
    assert len(dear) <= MAX_SKIPPED


def test_builtin_cost_hints_rank_dear_configurations():
    """The hints the budget rule scales by: saga over lbfgs, forests trying every feature,
    more boosting iterations; a failing hint counts as 1."""
    cost = lambda name, p, n=4096: families.get_family(name).relative_cost(p, n)  # noqa: E731
    assert cost("logistic", {"C": 1.0, "l1_ratio": 0.5}) >= 20 * cost("logistic", {"C": 1.0, "l1_ratio": 0.0})
    assert cost("logistic", {"C": 100.0, "l1_ratio": 1.0}) > cost("logistic", {"C": 0.01, "l1_ratio": 1.0})
    default = {"n_estimators": 200, "max_features": "sqrt"}
    assert cost("random_forest", {"n_estimators": 400, "max_features": 1.0}) > 100 * cost("random_forest", default)
    assert cost("hist_gradient_boosting", {"max_iter": 500, "max_leaf_nodes": 64}) > \
        2 * cost("hist_gradient_boosting", {"max_iter": 200, "max_leaf_nodes": 31})
    broken = families.Family("broken", None, None, cost=lambda p, n: 1 / 0)
    assert broken.relative_cost({}, 3) == 1.0 and families.Family("none", None, None).relative_cost({}, 3) == 1.0


def test_resume_from_storage(tmp_path):
    df = make("binary")
    store = tmp_path / "study.log"
    kw = dict(families=["logistic", "knn"], storage=store, **FAST)
    first = tournament(df, "y", n_trials=3, **kw)
    assert store.is_file() and len(first.trials) == 3
    second = tournament(df, "y", n_trials=5, **kw)
    assert second.study_name == first.study_name
    assert len(second.trials) == 5
    pd.testing.assert_series_equal(second.trials["datetime_start"].head(3),
                                   first.trials["datetime_start"], check_names=False)


def test_user_family_competes_like_builtins():
    from sklearn.naive_bayes import BernoulliNB
    families.register_family(
        "bernoulli_nb", lambda p, task, seed: BernoulliNB(alpha=p["alpha"]),
        lambda t: {"alpha": t.suggest_float("alpha", 0.01, 10, log=True)}, default={"alpha": 1.0},
        applies=lambda task, n_rows, n_features, sparse: task != "regression")
    try:
        assert "bernoulli_nb" in [f.name for f in families.select("auto", "binary", 100, 5, True)]
        r = tournament(make("binary"), "y", n_trials=4, families=["bernoulli_nb", "logistic"], **FAST)
        row = r.leaderboard.set_index("family").loc["bernoulli_nb"]
        assert row["complete"] >= 1 and np.isfinite(row["best_cv"])
        only = tournament(make("binary"), "y", n_trials=2, families=["bernoulli_nb"], **FAST)
        assert only.winner == "bernoulli_nb" and only.best_pipeline.predict_proba(make("binary")).shape[1] == 2
    finally:
        families.unregister_family("bernoulli_nb")


def test_refit_hook_gets_the_fold_estimators_and_sets_the_final_fit():
    """A family's refit hook sees the estimators fitted on the folds; the winner is refitted
    with what it returns (recorded in ``result.params``)."""
    from sklearn.naive_bayes import BernoulliNB
    calls = []

    def refit(params, fold_estimators, fold_rows, rows):
        calls.append(([type(e).__name__ for e in fold_estimators], fold_rows, rows))
        return {**params, "alpha": 0.5}

    families.register_family("nb_refit", lambda p, task, seed: BernoulliNB(alpha=p["alpha"]),
                             lambda t: {"alpha": t.suggest_float("alpha", 2.0, 10.0)},
                             default={"alpha": 3.0}, refit=refit)
    try:
        r = tournament(make("binary"), "y", n_trials=2, families=["nb_refit"], **FAST)
    finally:
        families.unregister_family("nb_refit")
    # two calls per trial (the final fit on the training rows, and on training + hold-out rows),
    # one estimator per fold, with the folds' and the final fit's rows
    assert calls == [(["BernoulliNB"] * 3, [85, 85, 86], 128), (["BernoulliNB"] * 3, [85, 85, 86], 160)] * 2
    assert r.params["alpha"] == 0.5 and r.best_pipeline["model"].estimator_.alpha == 0.5
    assert r.leaderboard.set_index("family").loc["nb_refit", "best_params"]["alpha"] >= 2.0


def test_boosting_winner_trains_on_every_row_for_as_many_iterations_as_its_folds():
    """Histogram boosting early-stops on 10% of each fold; the final fit keeps every
    training row and runs the folds' mean iteration count instead of holding out again."""
    df = make("binary", n=400)
    r = tournament(df, "y", n_trials=1, families=["hist_gradient_boosting"], **FAST)
    model = r.best_pipeline["model"].estimator_
    assert model.early_stopping is False and r.params["early_stopping"] is False
    assert model.n_iter_ == model.max_iter == r.params["max_iter"]
    assert r.params["max_iter"] < 200  # the folds stopped early: the default 200 was not reached
    # the model evaluated on the hold-out had fewer rows, so a few iterations fewer
    assert r.holdout_pipeline["model"].estimator_.max_iter <= model.max_iter
    assert r.leaderboard.iloc[0]["best_params"]["max_iter"] == 200  # the leaderboard keeps the searched value


def test_boosting_refit_scales_the_folds_iterations_to_the_final_rows():
    from types import SimpleNamespace

    def fold(n_iter, early=True):
        return SimpleNamespace(n_iter_=n_iter, early_stopping=early, validation_fraction=0.1)

    refit = families.get_family("hist_gradient_boosting").refit
    params = {"learning_rate": 0.1, "max_iter": 300}
    # folds of 1,000 rows boost on 900 (10% early-stopping hold-out); 3,600 final rows: x2
    out = refit(params, [fold(50), fold(70)], [1000, 1000], 3600)
    assert out == {"learning_rate": 0.1, "max_iter": 120, "early_stopping": False}
    # without early stopping in the folds they boosted on all their rows: 4x the rows, x2
    assert refit(params, [fold(100, early=False)], [900], 3600)["max_iter"] == 200
    # never fewer iterations than the folds ran
    assert refit(params, [fold(40)], [1000], 500)["max_iter"] == 40


def test_tournament_class_and_stop_callback():
    seen = []

    def stop(study, trial):  # what a widget's Stop button does
        seen.append(trial.number)
        study.stop()

    t = Tournament("y", n_trials=5, families=["logistic", "knn"], callbacks=[stop], **FAST)
    assert t.fit(make("binary")) is t
    assert seen == [0] and len(t.result_.trials) == 1
    assert t.predict_proba(make("binary").head(4)).shape == (4, 2)
    assert expkit.tournament is tournament and expkit.Tournament is Tournament


# -- bad input ------------------------------------------------------------------------

def test_bad_inputs_raise_expkit_errors(caplog):
    df = make("binary", n=60)
    kw = dict(n_trials=1, families=["logistic"], **FAST)
    with pytest.raises(TargetError, match="not in the table"):
        tournament(df, "nope", **kw)
    with pytest.raises(TargetError, match="single class"):
        tournament(df.assign(y="yes"), "y", **kw)
    with pytest.raises(TargetError, match="missing in all"):
        tournament(df.assign(y=None), "y", **kw)
    with pytest.raises(TargetError, match="at least 20"):
        tournament(df.head(15), "y", **kw)
    for budget in (0, -5):
        with pytest.raises(ConfigError, match="budget"):
            tournament(df, "y", budget=budget, families=["logistic"], **FAST)
    leak = pd.DataFrame({"copy": df["y"], "y": df["y"]})
    with pytest.raises(FeatureError):
        tournament(leak, "y", **kw)
    holes = df.copy()
    holes.loc[:4, "y"] = None
    with caplog.at_level(logging.WARNING, logger="expkit.models.tournament"):
        r = tournament(holes, "y", **kw)
    assert "dropped 5 of 60 rows" in caplog.text and r.sampling["dropped_missing_target"] == 5


# -- per tenant ---------------------------------------------------------------------

@pytest.mark.slow
def test_per_tenant_with_fallback():
    leads = expkit.datasets.leads(n_rows=600, n_tenants=3, seed=0)
    tiny = leads[leads["tenant"] == "acme"].head(30).assign(tenant="tiny")
    df = pd.concat([leads, tiny], ignore_index=True)
    res = tournament(df, "converted", tenant="tenant", n_trials=1, families=["logistic"],
                     **dict(FAST, cv=2))
    w = res.winners.set_index("tenant")
    assert set(w.index) == {"acme", "globex", "initech", "tiny"}
    assert w.loc["tiny", "fallback"] and "30 labelled rows" in w.loc["tiny", "reason"]
    assert not w.loc[["acme", "globex", "initech"], "fallback"].any()
    assert res.results["tiny"] is res.global_result
    assert res.results["acme"] is not res.results["globex"]
    assert w.loc["acme", "rows"] == (leads["tenant"] == "acme").sum()
    assert "tenant" not in res.results["acme"].importance["field"].tolist()
    assert "tiny" in res._repr_html_()


@pytest.mark.slow
def test_per_tenant_results_stay_in_files_not_in_memory(monkeypatch):
    """Thousands of tenants fit: the caller holds the winners table, not every tenant's result."""
    from expkit.models import result_store
    from expkit.models.result import TournamentResult

    def held():  # results alive that this test made
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, TournamentResult) and id(o) not in earlier]

    monkeypatch.setattr(result_store, "CACHED", 1)
    earlier = {id(o) for o in gc.get_objects() if isinstance(o, TournamentResult)}
    df = expkit.datasets.leads(n_rows=600, n_tenants=3, seed=0)
    res = tournament(df, "converted", tenant="tenant", n_trials=1, families=["logistic"], **dict(FAST, cv=2))
    assert len(held()) <= 1  # (fit read one for classes_)
    assert len(list(res.results.folder.glob("*.pkl"))) == 3
    w = res.winners.set_index("tenant")
    for name in ["acme", "globex", "initech"]:  # read back on access, one at a time
        r = res[name]
        assert (r.winner, r.headline[1]) == (w.loc[name, "winner"], w.loc[name, "holdout"])
    assert len(held()) == 1
