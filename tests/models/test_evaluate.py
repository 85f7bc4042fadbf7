"""Unit tests of the families registry, metrics, chance test, buckets, calibration choice, plots."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score

from expkit.errors import ConfigError
from expkit.models import evaluate, families, plots

# -- families ---------------------------------------------------------------------

def test_builtin_families_cover_tasks_and_sizes():
    fams = families.families()
    assert {"logistic", "random_forest", "extra_trees", "hist_gradient_boosting", "svm", "knn",
            "ridge", "elastic_net"} <= set(fams)
    binary = [f.name for f in families.select("auto", "binary", 1000, 50, True)]
    assert "logistic" in binary and "svm" in binary and "ridge" not in binary
    big = [f.name for f in families.select("auto", "binary", 50_000, 50, True)]
    assert "svm" not in big and "knn" not in big
    reg = [f.name for f in families.select("auto", "regression", 1000, 50, True)]
    assert {"ridge", "elastic_net", "random_forest"} <= set(reg) and "logistic" not in reg
    with pytest.raises(ConfigError, match="do not handle"):
        families.select(["logistic"], "regression", 100, 5, True)
    with pytest.raises(ConfigError, match="unknown model family"):
        families.select(["nope"], "binary", 100, 5, True)


def test_register_family_validates_and_replaces():
    from sklearn.naive_bayes import BernoulliNB
    fam = families.register_family("nb_test", lambda p, task, seed: BernoulliNB(alpha=p["alpha"]),
                                   lambda t: {"alpha": t.suggest_float("alpha", 0.1, 2)},
                                   default={"alpha": 1.0})
    try:
        assert families.get_family("nb_test") is fam
        with pytest.raises(ConfigError, match="already registered"):
            families.register_family("nb_test", fam.factory, fam.space)
        families.register_family("nb_test", fam.factory, fam.space, replace=True)
        with pytest.raises(ConfigError):
            families.register_family("bad.name", fam.factory, fam.space)
    finally:
        families.unregister_family("nb_test")
    assert "nb_test" not in families.families()


def test_dense_top_k_selects_informative_columns():
    from scipy import sparse
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    X = rng.normal(size=(300, 50))
    X[:, 7] += 3 * y
    sel = families.DenseTopK(k=5).fit(sparse.csr_matrix(X), y)
    out = sel.transform(sparse.csr_matrix(X))
    assert isinstance(out, np.ndarray) and out.shape == (300, 5) and 7 in sel.support_


# -- metrics ----------------------------------------------------------------------

def test_resolve_metric_and_errors():
    assert evaluate.resolve_metric("auto", "binary").name == "roc_auc"
    assert evaluate.resolve_metric("auto", "regression").name == "r2"
    assert evaluate.resolve_metric("rmse", "regression").direction == "minimize"
    with pytest.raises(ConfigError, match="cannot rank"):
        evaluate.resolve_metric("rmse", "binary")


def test_holdout_metrics_binary_and_f1_threshold():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.6, 0.7, 0.8, 0.9, 0.3, 0.4])
    t = evaluate.f1_threshold(y, p)
    m = evaluate.holdout_metrics("binary", y, p, threshold=t)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert set(m) >= {"auroc", "aupr", "log_loss", "brier", "accuracy", "precision", "recall", "f1",
                      "threshold"}
    assert m["f1"] >= evaluate.holdout_metrics("binary", y, p, threshold=0.5)["f1"]


def test_holdout_metrics_multiclass_and_regression():
    y = np.array([0, 1, 2, 0, 1, 2])
    p = np.eye(3)[y] * 0.7 + 0.1
    m = evaluate.holdout_metrics("multiclass", y, p)
    assert m["auroc"] == 1.0 and m["accuracy"] == 1.0
    r = evaluate.holdout_metrics("regression", np.array([1.0, 2, 3]), np.array([1.0, 2, 4]))
    assert r["rmse"] == pytest.approx(np.sqrt(1 / 3)) and r["mae"] == pytest.approx(1 / 3)


def test_delong_matches_auc_and_detects_chance():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = y + rng.normal(scale=0.8, size=400)
    out = evaluate.chance_test("binary", y, good)
    assert out["statistic"] == pytest.approx(roc_auc_score(y, good))
    assert out["ci_low"] > 0.5 and out["above_chance"] and out["method"] == "delong"
    noise = evaluate.chance_test("binary", y, rng.normal(size=400))
    assert not noise["above_chance"] and noise["ci_low"] < 0.5 < noise["ci_high"]


def test_chance_test_regression_and_multiclass():
    rng = np.random.default_rng(1)
    y = rng.normal(size=200)
    good = evaluate.chance_test("regression", y, y + rng.normal(scale=0.5, size=200))
    bad = evaluate.chance_test("regression", y, rng.normal(size=200))
    assert good["above_chance"] and good["p_value"] < 0.05
    assert not bad["above_chance"]
    yc = rng.integers(0, 3, 150)
    p = np.eye(3)[yc] + rng.uniform(0, 0.8, (150, 3))
    mc = evaluate.chance_test("multiclass", yc, p / p.sum(1, keepdims=True), n_resamples=50)
    assert mc["above_chance"] and mc["method"].startswith("bootstrap")


def test_score_buckets_shares_and_rates():
    y = np.array([0, 0, 1, 1, 1])
    p = np.array([0.05, 0.15, 0.55, 0.95, 0.99])
    b = evaluate.score_buckets("binary", y, p)
    assert len(b) == 10 and b["share"].sum() == pytest.approx(1.0)
    assert b.loc[9, "share"] == pytest.approx(0.4) and b.loc[9, "positive_rate"] == 1.0
    assert b.loc[0, "positive_rate"] == 0.0 and np.isnan(b.loc[3, "positive_rate"])
    r = evaluate.score_buckets("regression", np.arange(100.0), np.arange(100.0))
    assert r["share"].sum() == pytest.approx(1.0) and "mean_observed" in r


def _outcomes(p, seed=0):
    return (np.random.default_rng(seed + 1).uniform(size=len(p)) < p).astype(int)


def test_choose_calibration_fixes_miscalibrated_scores():
    true_p = np.random.default_rng(0).uniform(size=2000)
    y = _outcomes(true_p)
    skewed = true_p ** 3  # systematically too low
    method, calibrated, table = evaluate.choose_calibration(skewed, y, 2)
    assert method in ("sigmoid", "isotonic")
    assert table[method]["log_loss"] < table["none"]["log_loss"] - 0.02
    assert calibrated.shape == y.shape


def test_already_calibrated_scores_keep_none():
    """Calibrating scores that are already probabilities only adds noise: "none" is kept."""
    for seed in range(3):
        true_p = np.random.default_rng(seed).uniform(0.02, 0.98, size=3000)
        method, calibrated, table = evaluate.choose_calibration(true_p, _outcomes(true_p, seed), 2)
        assert method == "none" and set(table) == {"none", "sigmoid", "isotonic"}
        np.testing.assert_array_equal(calibrated, true_p)


def test_the_worse_calibration_is_never_picked():
    """The choice is the lowest out-of-fold log loss: sigmoid where isotonic overfits (few rows,
    a smooth distortion), isotonic where the distortion is no sigmoid (a step)."""
    rng = np.random.default_rng(0)
    true_p = rng.uniform(size=120)
    smooth = 1 / (1 + np.exp(-(3 * np.log(true_p / (1 - true_p)) + 1)))  # too confident, shifted
    method, _, table = evaluate.choose_calibration(smooth, _outcomes(true_p), 2)
    assert method == "sigmoid" and table["sigmoid"]["log_loss"] < table["isotonic"]["log_loss"]

    # judged by log loss, not Brier: on 150 rows isotonic's steps reach 0 and 1 (a Brier score
    # as good as the sigmoid's, a log loss far worse)
    true_p = np.random.default_rng(2).uniform(size=150)
    method, _, table = evaluate.choose_calibration(np.clip(true_p ** 2, 0.001, 0.999), _outcomes(true_p, 2), 2)
    assert table["isotonic"]["brier"] < table["sigmoid"]["brier"]
    assert method == "sigmoid" and table["sigmoid"]["log_loss"] < table["isotonic"]["log_loss"] - 0.05

    s = rng.uniform(0.01, 0.99, size=6000)
    plateau = np.where(s < 0.3, 0.1, np.where(s < 0.9, 0.5, 0.9))  # monotone, but no sigmoid of s
    method, _, table = evaluate.choose_calibration(s, _outcomes(plateau), 2)
    assert method == "isotonic" and table["isotonic"]["log_loss"] < table["sigmoid"]["log_loss"]


def test_models_without_probabilities_are_never_left_uncalibrated():
    rng = np.random.default_rng(0)
    decision = rng.normal(size=500)
    y = _outcomes(1 / (1 + np.exp(-2 * decision)))
    method, calibrated, table = evaluate.choose_calibration(decision, y, 2, is_proba=False)
    assert method in ("sigmoid", "isotonic") and "none" not in table
    assert ((calibrated >= 0) & (calibrated <= 1)).all()


def test_plots_return_figures():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    p = np.clip(y * 0.5 + rng.uniform(0, 0.5, 100), 0, 1)
    figs = [plots.roc(y, p), plots.precision_recall(y, p), plots.calibration(y, p, p ** 2),
            plots.score_distribution(evaluate.score_buckets("binary", y, p)),
            plots.importance(pd.DataFrame({"field": ["a", "b"], "importance": [0.2, 0.1], "std": [0, 0]})),
            plots.predicted_vs_observed(p, p)]
    assert all(isinstance(f, Figure) and f.axes for f in figs)
