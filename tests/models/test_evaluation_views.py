"""Evaluation at PyCaret's level: out-of-fold metrics per family, gain/lift, confusion matrix
and threshold curves, figures named for their tenant, numbers for people; search views."""
from __future__ import annotations

import re

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from sklearn import metrics as skm

from expkit.formatting import Table
from expkit.models.evaluate import f1_threshold, oof_metrics
from expkit.models.insights import Explainer
from expkit.models.leaderboard import with_oof_metrics
from expkit.models.tournament import tournament

FAST = dict(n_jobs=1, progress=False, cv=3, seed=0)


def make(n=200, seed=0, task="binary"):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "colour": rng.choice(["red", "green", "blue"], n),
                       "tenant": np.repeat(["acme", "globex"], n // 2)})
    signal = 1.5 * df["x1"] + (df["colour"] == "red") * 1.5 + rng.normal(scale=0.8, size=n)
    if task == "binary":
        df["y"] = np.where(signal > 0.5, "yes", "no")
    elif task == "multiclass":
        df["y"] = pd.cut(signal, [-np.inf, -0.5, 1.0, np.inf], labels=["lo", "mid", "hi"]).astype(str)
    else:
        df["y"] = 3 * signal + 10
    return df


@pytest.fixture(scope="module")
def binary():
    return tournament(make().drop(columns="tenant"), "y", n_trials=8, families=["logistic", "knn"], **FAST)


def test_oof_metrics_are_the_sklearn_ones():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.uniform(size=300) * 0.7, 0, 1)
    m = oof_metrics("binary", y, p)
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert m["aupr"] == pytest.approx(skm.average_precision_score(y, p))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-4)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert m["f1"] == pytest.approx(skm.f1_score(y, p >= f1_threshold(y, p)))
    # decision scores are no probabilities: no log loss or Brier for them
    assert np.isnan(oof_metrics("binary", y, p * 4 - 2)["brier"])
    assert set(oof_metrics("regression", y * 1.0, p)) == {"r2", "rmse", "mae"}


def test_leaderboard_oof_columns_come_from_the_kept_scores():
    y = np.array([0, 1, 0, 1, 1, 0])
    board = pd.DataFrame({"rank": [1, 2, pd.NA], "family": ["a", "b", "c"],
                          "status": ["complete", "complete", "not tried (budget)"],
                          "best_cv": [0.9, 0.8, np.nan], "cv_std": [0.1, 0.1, np.nan],
                          "best_trial": [4, 7, None]})
    good, bad = np.array([.1, .9, .2, .8, .7, .3]), np.array([.6, .4, .5, .3, .6, .4])
    out = with_oof_metrics(board, {4: good, 7: bad, 9: good}, y, "binary")
    assert list(out.columns[:5]) == ["rank", "family", "status", "best_cv", "cv_std"]
    assert list(out.columns[5:10]) == ["oof_auroc", "oof_aupr", "oof_log_loss", "oof_brier", "oof_f1"]
    assert out.loc[0, "oof_auroc"] == 1.0 and out.loc[1, "oof_auroc"] < 0.5
    assert out.loc[0, "oof_brier"] == pytest.approx(skm.brier_score_loss(y, good))
    assert out.iloc[2][["oof_auroc", "oof_brier"]].isna().all()  # not tried: blank


def test_tournament_leaderboard_has_several_oof_metrics(binary):
    board = binary.leaderboard
    complete = board[board["status"] == "complete"]
    for col in ("oof_auroc", "oof_aupr", "oof_log_loss", "oof_brier", "oof_f1"):
        assert complete[col].notna().all(), col
    # pooled out-of-fold AUROC is close to the mean of the folds' AUROC
    assert (complete["oof_auroc"] - complete["best_cv"]).abs().max() < 0.05
    assert ((complete["oof_brier"] > 0) & (complete["oof_brier"] < 0.25)).all()


def test_result_html_is_for_people(binary):
    html = binary._repr_html_()
    table = html[html.index("<table"):]
    assert table.count("<tr>") == len(binary.leaderboard) + 1
    head = re.findall(r"<th>(.*?)</th>", table)
    assert head[0] == "rank" and "" not in head and "best_trial" not in head  # no pandas index column
    assert "class='num best'" in table  # the best of each score column in bold
    numbers = re.findall(r"(?<![\w.#-])\d+\.\d+", re.sub(r"<style>.*?</style>", "", html))
    assert numbers and all(len(n.replace(".", "").lstrip("0")) <= 4 for n in numbers), numbers  # rounded


def test_binary_evaluation_figures(binary):
    figs = binary.figures(search=False)
    y, scores, _ = binary.holdout
    cm = figs["confusion_matrix"].axes[0]
    counts = [int(t.get_text().replace(",", "")) for t in cm.texts]
    pred = (scores >= binary.threshold).astype(int)
    assert counts == skm.confusion_matrix(y, pred).ravel().tolist()
    assert f"threshold {binary.threshold:.3g}" in cm.get_title()
    gain, lift = figs["gain_lift"].axes
    model = gain.get_lines()[0]
    assert model.get_ydata()[-1] == pytest.approx(1.0) and model.get_ydata()[0] == 0
    top = lift.patches[0].get_height()  # the top decile finds more positives than the base rate
    assert top > 1.2
    curves = figs["threshold_metrics"].axes[0]
    labels = [line.get_label() for line in curves.get_lines()]
    assert labels[:3] == ["precision", "recall", "F1"]
    assert curves.get_lines()[3].get_xdata()[0] == pytest.approx(binary.threshold)


def test_multiclass_confusion_and_regression_figures():
    m = tournament(make(task="multiclass").drop(columns="tenant"), "y", n_trials=2, families=["logistic"], **FAST)
    figs = m.figures(search=False)
    assert len(figs["confusion_matrix"].axes[0].texts) == 9 and "gain_lift" not in figs
    r = tournament(make(task="regression").drop(columns="tenant"), "y", n_trials=2, families=["ridge"], **FAST)
    assert {"oof_r2", "oof_rmse", "oof_mae"} <= set(r.leaderboard.columns)
    assert r.leaderboard.loc[0, "oof_r2"] > 0.5
    assert "confusion_matrix" not in r.figures(search=False)


def test_tenant_figures_name_the_tenant():
    res = tournament(make(240), "y", tenant="tenant", n_trials=2, families=["logistic"], **FAST)
    assert re.findall(r"<th>(.*?)</th>", res._repr_html_())[0] == "tenant"  # no pandas index
    for name, r in res.results.items():
        for key, fig in r.figures().items():
            titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
            titles += [fig.get_suptitle()] if fig.get_suptitle() else []  # the search views
            assert titles and all(t.endswith(f"· {name}") for t in titles), (key, titles)


def test_reason_impacts_below_noise_are_zero():
    df = pd.DataFrame({"x": np.linspace(-2, 2, 6), "z": np.arange(6.0)})

    def predict(d):
        return 1 / (1 + np.exp(-d["x"].to_numpy())) + 1e-9 * d["z"].to_numpy()

    reasons = Explainer({"x": 0.0, "z": 100.0}).reasons(predict, df, k=2)
    assert (reasons["reason_2"] == "z").all() and (reasons["impact_2"] == 0.0).all()
    assert (reasons["impact_1"].abs() > 0.05).all()


def test_table_shows_no_index_and_rounded_numbers():
    t = Table(pd.DataFrame({"a": [1.23456789, 1.428167e-08], "b": [1234567, 2]}, index=[5, 6]))
    html = t._repr_html_()
    assert "1.235" in html and "1.43e-08" in html and "1,234,567" in html and ">5<" not in html
    assert "index" in Table(pd.DataFrame({"a": [1]}), index=True)._repr_html_()
    assert repr(t).splitlines()[0].split() == ["a", "b"]


# -- the search's views --------------------------------------------------------------
def test_plot_search_with_one_trial_says_why():
    r = tournament(make().drop(columns="tenant"), "y", n_trials=1, families=["logistic"], **FAST)
    figs = r.plot_search()
    assert set(figs) == {"search_importances", "search_parallel_coordinate", "search_slice"}
    for fig in figs.values():
        text = " ".join(t.get_text() for ax in fig.axes for t in ax.texts)
        assert "logistic finished 1 trial" in text and "raise the budget or n_trials" in text


def test_plot_search_draws_optunas_views_of_one_family():
    style = dict(matplotlib.rcParams)
    r = tournament(make().drop(columns="tenant"), "y", n_trials=16, families=["logistic"], **FAST)
    done = int((r.trials["state"] == "COMPLETE").sum())
    assert done >= 5
    figs = r.plot_search("logistic")
    importances = figs["search_importances"].axes[0]
    assert len(importances.patches) >= 2 and not importances.texts[0].get_text().startswith("logistic finished")
    names = {t.get_text() for t in importances.get_yticklabels()}
    assert names <= {"C", "l1_ratio", "buckets", "class_weight", "penalty", "solver"} and names
    assert figs["search_importances"].get_suptitle() == f"Hyperparameter importances: logistic ({done} trials)"
    assert len(figs["search_parallel_coordinate"].axes) >= 3
    assert figs["search_slice"].get_suptitle().startswith("Slices: logistic")
    # the slices show the most important parameters first
    top = max(importances.patches, key=lambda bar: bar.get_width())
    first = [t.get_text() for t in importances.get_yticklabels()][importances.patches.index(top)]
    assert figs["search_slice"].axes[0].get_xlabel() == first
    assert plt.get_fignums() == []  # nothing left open in pyplot
    assert dict(matplotlib.rcParams) == style  # optuna's style sheet does not leak
    r.label = "acme"  # a tenant's search views name it
    assert r.plot_search()["search_slice"].get_suptitle().endswith("· acme")
    assert "search_slice" in r.figures()
