"""Any scikit-learn splitter works as ``cv``, repeated ones and those that are not a
partition included: out-of-fold scores keep each fold's slice, so every yardstick
(ensemble, calibration, leaderboard) sees what the fold scores saw."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold, ShuffleSplit, StratifiedKFold

from expkit import schema
from expkit.models import ensemble, evaluate, families
from expkit.models.folds import Fold, OutOfFold, splitter
from expkit.models.search import Search
from expkit.models.tournament import Tournament, tournament

from .test_tournament import make

REPEATED = RepeatedStratifiedKFold(n_splits=3, n_repeats=2, random_state=0)


def _folds(cv, n=200):
    y = np.arange(n) % 2
    return [Fold(va, y[tr], y[va]) for tr, va in splitter(cv, n, y, "binary", 0).split(np.zeros(n), y)]


def test_the_layout_keeps_each_fold_and_each_repeat():
    folds = _folds(REPEATED)
    layout = OutOfFold.of(folds)
    assert layout.repeats == 2 and len(layout.rows) == 2 * 200 and len(layout.slots) == 6
    for fold, slot in zip(folds, layout.slots):
        assert np.array_equal(layout.rows[slot], fold.valid) and np.array_equal(layout.y[slot], fold.y_valid)
    assert np.array_equal(np.bincount(layout.groups()), np.full(200, 2))
    assert layout.describe() == "3-fold CV repeated 2 times"
    plain = OutOfFold.of(_folds("auto"))
    assert plain.repeats == 1 and plain.groups() is None and plain.describe() == "5-fold CV"
    assert OutOfFold.of(_folds(ShuffleSplit(4, test_size=0.3, random_state=0))).describe() == "4 CV splits"


def test_calibration_keeps_a_rows_repeats_together():
    """Scores that say nothing of the labels, the same for a row in both repeats: judged
    with a row's repeats on both sides, isotonic memorizes the rows and looks better than
    it is; with them kept together it does not, and is not picked."""
    rng = np.random.default_rng(0)
    n = 400
    y, scores = rng.integers(0, 2, n), rng.uniform(0.3, 0.7, n)
    s3, y3, rows = np.tile(scores, 3), np.tile(y, 3), np.tile(np.arange(n), 3)
    leaky, _, table_leaky = evaluate.choose_calibration(s3, y3, 2)
    fair, _, table_fair = evaluate.choose_calibration(s3, y3, 2, groups=rows)
    assert leaky == "isotonic"  # what happens without groups
    assert fair != "isotonic"
    assert table_fair["isotonic"]["log_loss"] > table_leaky["isotonic"]["log_loss"] + 0.02


def test_fold_slices_of_the_out_of_fold_scores_give_each_folds_score():
    """The ensemble selection scores a blend per fold slice: for one configuration that
    must give exactly the fold scores the trial reported, repeats included."""
    df = make("binary", n=240)
    X, y = df.drop(columns=["y"]), (df["y"] == "yes").astype(int).to_numpy()
    search = Search(Tournament(cv=REPEATED), target="y", task="binary",
                    metric=evaluate.resolve_metric("auto", "binary"), classes=["no", "yes"],
                    schema=schema.infer(X), seed=0, n_jobs=1, end=np.inf,
                    imbalance={"searched": False, "default": None}, rows=(240, 300))
    folds = search.folds(X, y)
    layout = OutOfFold.of(folds)
    logistic = families.get_family("logistic")
    out = search.fit_score(logistic, dict(logistic.default), folds)
    assert len(out.scores) == 6 and out.oof.shape == layout.y.shape
    assert [roc_auc_score(layout.y[slot], out.oof[slot]) for slot in layout.slots] == pytest.approx(out.scores)
    weights, score = ensemble.select({"only": out.oof}, layout.y, search.metric, folds=layout.slots)
    assert weights == {"only": 1.0} and score == pytest.approx(np.mean(out.scores))


@pytest.mark.parametrize("cv", [REPEATED, ShuffleSplit(4, test_size=0.3, random_state=0), 4],
                         ids=["repeated", "shuffle-split", "four-folds"])
def test_a_tournament_takes_any_splitter(cv):
    """Repeated folds and splits that are not a partition used to fail with a raw
    ValueError (the out-of-fold scores were laid out by row)."""
    r = tournament(make("binary", n=240), "y", n_trials=4, families=["logistic", "knn"], n_jobs=1,
                   progress=False, seed=0, cv=cv)
    n_folds = cv if isinstance(cv, int) else cv.get_n_splits()
    complete = r.trials[r.trials["state"] == "COMPLETE"]
    assert complete["folds_done"].eq(n_folds).all() and r.sampling["cv_folds"] == n_folds
    assert str(r.leaderboard["folds"].dtype) == "Int64"  # a count: shown as 6, not 6.0
    best = complete.loc[complete["value"].idxmax()]
    single = r.leaderboard[r.leaderboard["family"] == best["family"]].iloc[0]
    assert single["best_cv"] == pytest.approx(best["value"]) and np.isfinite(single["oof_auroc"])
    if r.ensemble:  # judged against the best single on the same yardstick: its CV score
        assert r.ensemble["best_single"] == pytest.approx(best["value"])
    assert r.metrics["auroc"] > 0.8 and r.calibration
    assert r.sampling["cv"] in r._repr_html_()


def test_the_default_is_five_stratified_folds():
    assert isinstance(splitter("auto", 300, np.arange(300) % 2, "binary", 0), StratifiedKFold)
    assert splitter("auto", 6000, np.arange(6000) % 2, "binary", 0).get_n_splits() == 3


def test_calibration_is_judged_in_row_order():
    """Laid out by fold, the scores are judged in row order, so a plain K-fold search
    chooses its calibration on the same inner folds as before the layout changed."""
    from expkit.models import winner

    folds = _folds("auto", n=300)
    layout = OutOfFold.of(folds)
    rng = np.random.default_rng(1)
    by_row = np.clip(0.5 + 0.3 * (np.arange(300) % 2 - 0.5) + rng.normal(0, 0.2, 300), 0.01, 0.99)
    choice = winner.Choice([], [], by_row[layout.rows], 0.0)
    method, calibrated, table = winner.calibrate(choice, layout, task="binary", n_classes=2, setting="auto",
                                                 has_proba=True, seed=0)
    expected = evaluate.choose_calibration(by_row, np.arange(300) % 2, 2, seed=0)
    assert method == expected[0] and table == expected[2]
    assert np.allclose(calibrated, expected[1][layout.rows])  # back in the layout's order


@pytest.mark.parametrize("cv", ["five", "5", 1, object()])
def test_an_unusable_cv_is_a_clear_error(cv):
    from expkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"cv=.*(not usable|at least 2 folds)"):
        splitter(cv, 100, np.arange(100) % 2, "binary", 0)
