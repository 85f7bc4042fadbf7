"""CalibratedModel: one fit of the estimator, calibrators on out-of-fold scores, ranking kept."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

import expkit
from expkit.models import families
from expkit.models.calibration import CalibratedModel, scores_of


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(3000, n_features=8, n_informative=4, random_state=0)
    return X[:2000], y[:2000], X[2000:], y[2000:]


def test_isotonic_keeps_the_ranking_and_improves_brier(data):
    Xtr, ytr, Xte, yte = data
    forest = RandomForestClassifier(50, min_samples_leaf=20, random_state=0)
    raw = forest.fit(Xtr, ytr).predict_proba(Xte)[:, 1]
    model = CalibratedModel(forest, method="isotonic").fit(Xtr, ytr)
    p = model.predict_proba(Xte)
    assert p.shape == (1000, 2) and np.allclose(p.sum(axis=1), 1)
    # isotonic's flat steps would tie raw scores that differ; the tie-break keeps every order
    assert roc_auc_score(yte, p[:, 1]) == pytest.approx(roc_auc_score(yte, raw), abs=1e-12)
    assert len(np.unique(p[:, 1])) == len(np.unique(raw))
    assert brier_score_loss(yte, p[:, 1]) < brier_score_loss(yte, raw)
    assert set(model.predict(Xte)) <= {0, 1}


def test_given_out_of_fold_scores_the_estimator_is_fitted_once(data):
    Xtr, ytr, Xte, _ = data
    fits = []

    class Counting(LogisticRegression):
        def fit(self, X, y, **kw):
            fits.append(len(X))
            return super().fit(X, y, **kw)

    oof = np.clip(LogisticRegression().fit(Xtr, ytr).predict_proba(Xtr)[:, 1], 0, 1)
    model = CalibratedModel(Counting(), method="sigmoid").fit(Xtr, ytr, oof_scores=oof, oof_y=ytr)
    assert fits == [2000]
    assert model.predict_proba(Xte).shape == (1000, 2)
    fits.clear()
    CalibratedModel(Counting(), cv=3).fit(Xtr, ytr)  # without them: 3 folds, then all rows
    assert len(fits) == 4 and fits[-1] == 2000


def test_multiclass_and_string_labels():
    X, y = make_classification(900, n_features=6, n_informative=4, n_classes=3, random_state=1)
    labels = np.array(["a", "b", "c"])[y]
    model = CalibratedModel(LogisticRegression(max_iter=500)).fit(X, labels)
    p = model.predict_proba(X)
    assert p.shape == (900, 3) and np.allclose(p.sum(axis=1), 1)
    assert list(model.classes_) == ["a", "b", "c"] and (model.predict(X) == labels).mean() > 0.6
    s = scores_of(model, X, "multiclass")
    assert s.shape == (900, 3)


def test_tournament_refits_the_winner_once():
    """The search's out-of-fold scores calibrate the winner: no extra fits per calibration fold."""
    fits = []

    class Counting(LogisticRegression):
        def fit(self, X, y, **kw):
            fits.append(X.shape[0])
            return super().fit(X, y, **kw)

    families.register_family("counting", lambda p, task, seed: Counting(max_iter=500),
                             lambda t: {}, applies=lambda task, n, p, s: task != "regression")
    try:
        df = expkit.datasets.leads(600, n_tenants=1, seed=3)
        r = expkit.tournament(df, "converted", families=["counting"], n_trials=1, cv=3, progress=False,
                              n_jobs=1, calibrate="isotonic")
    finally:
        families.unregister_family("counting")
    # 3 cross-validation folds, one fit on the training rows (evaluated on the hold-out), one on
    # training + hold-out rows (the saved model): never one per calibration fold
    assert fits == [320, 320, 320, 480, 600]
    assert r.calibration["method"] == "isotonic" and r.calibration["after"]["brier"] > 0
    assert isinstance(r.best_pipeline.named_steps["model"], CalibratedModel)
    _, scores, raw = r.holdout
    assert roc_auc_score(r.holdout[0], scores) == pytest.approx(roc_auc_score(r.holdout[0], raw), abs=1e-12)
    assert isinstance(pd.DataFrame(r.leaderboard), pd.DataFrame)
