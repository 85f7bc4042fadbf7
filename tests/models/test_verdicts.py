"""The decisions a model's verdict rests on, each with a case that tells the right rule
from a plausible wrong one: the above-chance verdict reads the CI's lower bound (not the
point AUROC), and the calibration choice never takes the worse method."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from expkit.models import evaluate


def _weak_signal(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, 0.15 * y + rng.normal(size=n)


def test_above_chance_needs_the_lower_bound_of_the_ci_above_half():
    # a point AUROC above 0.5 whose 95% CI still holds 0.5: not above chance
    y, s = _weak_signal(200, seed=2)
    out = evaluate.chance_test("binary", y, s)
    assert out["statistic"] > 0.57 and 0.49 < out["ci_low"] < 0.5, out
    assert out["p_value"] < 0.05  # a one-sided test alone would call it above chance
    assert out["above_chance"] is False
    # the same signal on many rows: the whole CI is above 0.5
    y, s = _weak_signal(6000, seed=3)
    out = evaluate.chance_test("binary", y, s)
    assert out["ci_low"] > 0.5 and out["above_chance"] is True


def test_above_chance_multiclass_also_reads_the_lower_bound():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 90)
    p = rng.dirichlet([1, 1, 1], 90) + 0.04 * np.eye(3)[y]
    out = evaluate.chance_test("multiclass", y, p / p.sum(1, keepdims=True), n_resamples=200)
    assert out["statistic"] > 0.5 > out["ci_low"], out
    assert out["above_chance"] is False


def _sigmoid_shaped(n: int, seed: int):
    """Raw scores whose true probability is a logistic curve of the score: sigmoid
    calibration is the right model, isotonic overfits its steps on few rows."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    y = (rng.random(n) < expit(2.5 * s)).astype(int)
    return expit(s), y


def _step_shaped(n: int, seed: int):
    """True probability jumps from 0.1 to 0.9 in the middle of the score range and is
    flat elsewhere: no sigmoid fits it, isotonic does."""
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    truth = np.where(s < 0.45, 0.1, np.where(s < 0.55, 0.5, 0.9)) ** np.where(s > 0.9, 6, 1)
    y = (rng.random(n) < truth).astype(int)
    return s, y


@pytest.mark.parametrize("make,n,expected", [(_sigmoid_shaped, 150, "sigmoid"),
                                             (_step_shaped, 6000, "isotonic")])
def test_calibration_picks_the_method_with_the_lower_brier(make, n, expected):
    scores, y = make(n, seed=0)
    best, calibrated, table = evaluate.choose_calibration(scores, y, 2)
    briers = {m: table[m]["brier"] for m in ("sigmoid", "isotonic")}
    assert abs(briers["sigmoid"] - briers["isotonic"]) > 1e-4, briers  # the choice matters here
    assert best == expected == min(briers, key=briers.get), briers
    assert table[best]["brier"] == min(briers.values())
