"""Metrics, the above-chance test, score buckets and calibration choice.

Score conventions used throughout the models package:

* binary: a 1-D array, the positive-class probability (or decision score);
* multiclass: an ``(n, k)`` array of class probabilities, columns in class order;
* regression: a 1-D array of predictions.

Class labels are passed as integer codes ``0..k-1`` (position in ``classes``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

from ..errors import ConfigError

_EPS = 1e-6


@dataclass(frozen=True)
class Metric:
    """A tournament metric: ``fn(y_codes, scores) -> float`` and its direction."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    tasks: tuple[str, ...]

    @property
    def direction(self) -> str:
        return "maximize" if self.greater_is_better else "minimize"


def _proba2d(scores: np.ndarray) -> np.ndarray:
    """Binary 1-D probabilities -> ``(n, 2)``; 2-D passes through."""
    s = np.asarray(scores, dtype=float)
    if s.ndim == 1:
        p = np.clip(s, _EPS, 1 - _EPS)
        return np.column_stack([1 - p, p])
    return s


def binary_auroc(y, s) -> float:
    """AUROC of scores ``s`` for 0/1 labels ``y`` as the Mann-Whitney statistic (ties count
    half, as in scikit-learn's ``roc_auc_score``), without its input checks: ensemble
    selection calls it thousands of times."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("Only one class present in y_true. ROC AUC score is not defined in that case.")
    ranks = stats.rankdata(np.asarray(s, dtype=float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auroc(y, s):
    s = np.asarray(s)
    if s.ndim == 1:
        return binary_auroc(y, s)
    return skm.roc_auc_score(y, _normalise(s), multi_class="ovr", average="macro",
                             labels=np.arange(s.shape[1]))


def _log_loss(y, s):
    p = _normalise(np.clip(_proba2d(s), _EPS, 1))
    return skm.log_loss(y, p, labels=np.arange(p.shape[1]))


def _rmse(y, s):
    return float(np.sqrt(skm.mean_squared_error(y, s)))


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("roc_auc", _auroc, True, ("binary", "multiclass")),
    Metric("average_precision", lambda y, s: skm.average_precision_score(y, s), True, ("binary",)),
    Metric("log_loss", _log_loss, False, ("binary", "multiclass")),
    Metric("accuracy", lambda y, s: skm.accuracy_score(y, (s >= 0.5).astype(int) if np.ndim(s) == 1
                                                      else np.argmax(s, axis=1)), True,
           ("binary", "multiclass")),
    Metric("rmse", _rmse, False, ("regression",)),
    Metric("mae", lambda y, s: skm.mean_absolute_error(y, s), False, ("regression",)),
    Metric("r2", lambda y, s: skm.r2_score(y, s), True, ("regression",)),
]}

_AUTO = {"binary": "roc_auc", "multiclass": "roc_auc", "regression": "r2"}


def resolve_metric(metric: str, task: str) -> Metric:
    """The :class:`Metric` for ``metric`` ("auto": AUROC for classification, R² for regression)."""
    name = _AUTO[task] if metric in (None, "auto") else metric
    m = METRICS.get(name)
    if m is None or task not in m.tasks:
        usable = [k for k, v in METRICS.items() if task in v.tasks]
        raise ConfigError(f"metric {metric!r} cannot rank a {task} tournament",
                          hint=f"use one of {', '.join(usable)} or 'auto'")
    return m


def _normalise(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 0, None)
    total = p.sum(axis=1, keepdims=True)
    return np.where(total > 0, p / np.where(total > 0, total, 1), 1.0 / p.shape[1])


# -- hold-out metrics --------------------------------------------------------------

def f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold that maximises F1 of the positive class."""
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    if len(thresholds) == 0:
        return 0.5
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def holdout_metrics(task: str, y: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """Hold-out metrics for ``task``.

    binary: auroc, aupr, log_loss, brier, accuracy, precision, recall, f1 (at
    ``threshold``), threshold, positive_rate, n; multiclass: auroc (macro
    one-vs-rest), log_loss, accuracy, f1_macro, n; regression: rmse, mae, r2, n.
    """
    y = np.asarray(y)
    out: dict = {}
    if task == "binary":
        p = np.asarray(scores, dtype=float)
        pred = (p >= threshold).astype(int)
        single = len(np.unique(y)) < 2
        out = {"auroc": float("nan") if single else float(skm.roc_auc_score(y, p)),
               "aupr": float("nan") if single else float(skm.average_precision_score(y, p)),
               "log_loss": float(_log_loss(y, p)),
               "brier": float(skm.brier_score_loss(y, np.clip(p, 0, 1))),
               "accuracy": float(skm.accuracy_score(y, pred)),
               "precision": float(skm.precision_score(y, pred, zero_division=0)),
               "recall": float(skm.recall_score(y, pred, zero_division=0)),
               "f1": float(skm.f1_score(y, pred, zero_division=0)),
               "threshold": float(threshold), "positive_rate": float(np.mean(y))}
    elif task == "multiclass":
        p = _normalise(scores)
        pred = np.argmax(p, axis=1)
        try:
            auc = float(_auroc(y, p))
        except ValueError:  # a class missing from the hold-out
            auc = float("nan")
        out = {"auroc": auc, "log_loss": float(_log_loss(y, p)),
               "accuracy": float(skm.accuracy_score(y, pred)),
               "f1_macro": float(skm.f1_score(y, pred, average="macro", zero_division=0))}
    else:
        out = {"rmse": _rmse(y, scores), "mae": float(skm.mean_absolute_error(y, scores)),
               "r2": float(skm.r2_score(y, scores))}
    out["n"] = int(len(y))
    return out


def oof_metrics(task: str, y: np.ndarray, scores: np.ndarray) -> dict:
    """Out-of-fold metrics of one configuration, for the leaderboard (PyCaret's columns).

    binary: auroc, aupr, log_loss, brier (NaN when the scores are not probabilities)
    and f1 at the threshold that maximises it (the rule that sets the winner's
    threshold); multiclass: auroc (macro one-vs-rest), log_loss, accuracy, f1_macro;
    regression: r2, rmse, mae.
    """
    y = np.asarray(y)
    s = np.asarray(scores, dtype=float)
    if task == "regression":
        return {"r2": float(skm.r2_score(y, s)), "rmse": _rmse(y, s),
                "mae": float(skm.mean_absolute_error(y, s))}
    proba = bool(np.all((s >= 0) & (s <= 1)))
    if task == "multiclass":
        p = _normalise(s)
        pred = np.argmax(p, axis=1)
        try:
            auc = float(_auroc(y, p))
        except ValueError:
            auc = float("nan")
        return {"auroc": auc, "log_loss": float(_log_loss(y, p)) if proba else float("nan"),
                "accuracy": float(skm.accuracy_score(y, pred)),
                "f1_macro": float(skm.f1_score(y, pred, average="macro", zero_division=0))}
    pred = (s >= f1_threshold(y, s)).astype(int)
    return {"auroc": binary_auroc(y, s), "aupr": float(skm.average_precision_score(y, s)),
            "log_loss": float(_log_loss(y, s)) if proba else float("nan"),
            "brier": float(skm.brier_score_loss(y, s)) if proba else float("nan"),
            "f1": float(skm.f1_score(y, pred, zero_division=0))}


# -- above chance ---------------------------------------------------------------

def delong(y: np.ndarray, p: np.ndarray, alpha: float = 0.05) -> dict:
    """AUROC with its DeLong confidence interval and one-sided p-value vs 0.5.

    Uses the fast midrank formulation (Sun & Xu, 2014).
    """
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    pos, neg = p[y], p[~y]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        return {"statistic": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "p_value": float("nan"), "method": "delong", "se": float("nan")}
    tx, ty = stats.rankdata(pos), stats.rankdata(neg)
    tz = stats.rankdata(np.concatenate([pos, neg]))
    auc = (tz[:m].sum() - m * (m + 1) / 2) / (m * n)
    v01 = (tz[:m] - tx) / n
    v10 = 1 - (tz[m:] - ty) / m
    se = float(np.sqrt(np.var(v01, ddof=1) / m + np.var(v10, ddof=1) / n))
    z = stats.norm.ppf(1 - alpha / 2)
    if se > 0:
        p_value = float(stats.norm.sf((auc - 0.5) / se))
    else:
        p_value = 0.0 if auc > 0.5 else 1.0
    return {"statistic": float(auc), "ci_low": float(max(0.0, auc - z * se)),
            "ci_high": float(min(1.0, auc + z * se)), "p_value": p_value, "method": "delong",
            "se": se}


def chance_test(task: str, y: np.ndarray, scores: np.ndarray, *, n_resamples: int = 200,
                seed: int = 0, alpha: float = 0.05) -> dict:
    """Is the model better than chance on the hold-out?

    binary: DeLong CI for AUROC, above chance when its lower bound > 0.5;
    multiclass: bootstrap CI for macro one-vs-rest AUROC, lower bound > 0.5;
    regression: permutation test of R² (p < ``alpha``, R² > 0), with a bootstrap CI.

    Returns a dict with statistic, ci_low, ci_high, p_value, method and
    ``above_chance`` (bool).
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    if task == "binary":
        out = delong(y, scores, alpha)
        out["above_chance"] = bool(out["ci_low"] > 0.5)
        return out
    if task == "multiclass":
        p = _normalise(scores)
        k = p.shape[1]
        stat = _auroc(y, p)
        boots = []
        for _ in range(n_resamples):
            idx = rng.integers(0, len(y), len(y))
            if len(np.unique(y[idx])) < k:
                continue
            boots.append(_auroc(y[idx], p[idx]))
        lo, hi = (np.quantile(boots, [alpha / 2, 1 - alpha / 2]) if boots else (np.nan, np.nan))
        p_value = float((1 + np.sum(np.asarray(boots) <= 0.5)) / (1 + len(boots)))
        return {"statistic": float(stat), "ci_low": float(lo), "ci_high": float(hi),
                "p_value": p_value, "method": f"bootstrap ({len(boots)} resamples)",
                "above_chance": bool(lo > 0.5)}
    pred = np.asarray(scores, dtype=float)
    y = y.astype(float)
    stat = _r2_rows(y[None, :], pred[None, :])[0]
    perms = np.stack([rng.permutation(y) for _ in range(n_resamples)])
    null = _r2_rows(perms, np.broadcast_to(pred, perms.shape))
    p_value = float((1 + np.sum(null >= stat)) / (1 + n_resamples))
    idx = rng.integers(0, len(y), (n_resamples, len(y)))
    lo, hi = np.quantile(_r2_rows(y[idx], pred[idx]), [alpha / 2, 1 - alpha / 2])
    return {"statistic": float(stat), "ci_low": float(lo), "ci_high": float(hi), "p_value": p_value,
            "method": f"permutation ({n_resamples}) of R²",
            "above_chance": bool(stat > 0 and p_value < alpha)}


def _r2_rows(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R² of each row pair of ``y`` and ``pred`` (vectorised resampling)."""
    ss_res = np.sum((y - pred) ** 2, axis=1)
    ss_tot = np.sum((y - y.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return 1 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)


# -- score distribution -----------------------------------------------------------

def score_buckets(task: str, y: np.ndarray, scores: np.ndarray, n: int = 10) -> pd.DataFrame:
    """Share of predictions and observed outcome per score bucket.

    Classification: ``n`` equal-width probability buckets of the positive-class
    probability (multiclass: of the top-class probability, where
    ``positive_rate`` is the share predicted correctly). Regression: prediction
    deciles with the mean prediction and mean observed value.
    """
    y = np.asarray(y)
    s = np.asarray(scores, dtype=float)
    if task == "regression":
        edges = np.unique(np.quantile(s, np.linspace(0, 1, n + 1)))
        idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
        rows = []
        for b in range(max(len(edges) - 1, 1)):
            mask = idx == b
            rows.append({"bucket": f"{edges[b]:.4g}-{edges[min(b + 1, len(edges) - 1)]:.4g}",
                         "share": float(mask.mean()),
                         "mean_prediction": float(s[mask].mean()) if mask.any() else np.nan,
                         "mean_observed": float(y[mask].mean()) if mask.any() else np.nan})
        return pd.DataFrame(rows)
    if task == "multiclass":
        p = _normalise(s)
        hit = (np.argmax(p, axis=1) == y).astype(float)
        s, y = p.max(axis=1), hit
    edges = np.linspace(0, 1, n + 1)
    idx = np.clip(np.floor(np.clip(s, 0, 1) * n).astype(int), 0, n - 1)
    rows = []
    for b in range(n):
        mask = idx == b
        rows.append({"bucket": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "share": float(mask.mean()),
                     "positive_rate": float(y[mask].mean()) if mask.any() else np.nan,
                     "n": int(mask.sum())})
    return pd.DataFrame(rows)


# -- calibration choice -------------------------------------------------------------

#: Calibration methods a tournament chooses among ("none": the model's own probabilities).
CALIBRATIONS = ("none", "sigmoid", "isotonic")


def calibration_input(s: np.ndarray, is_proba: bool) -> np.ndarray:
    """What a sigmoid calibrator is fitted on: the log-odds of probabilities (so that
    the identity map is one of its fits), decision scores as they are."""
    s = np.asarray(s, dtype=float)
    if not is_proba:
        return s
    p = np.clip(s, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _fit_calibrator(method: str, s: np.ndarray, y: np.ndarray):
    if method == "isotonic":
        return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y)
    return LogisticRegression(C=1e4).fit(s.reshape(-1, 1), y)


def _apply_calibrator(cal, s: np.ndarray) -> np.ndarray:
    if isinstance(cal, IsotonicRegression):
        return cal.predict(s)
    return cal.predict_proba(s.reshape(-1, 1))[:, 1]


def _calibrate_columns(method, s_fit, y_fit, s_apply, k, is_proba=True):
    """One-vs-rest calibration of each score column (binary: the single column)."""
    if method == "none":
        return s_apply if s_apply.ndim == 1 else _normalise(s_apply)
    if method == "sigmoid":
        s_fit, s_apply = calibration_input(s_fit, is_proba), calibration_input(s_apply, is_proba)
    if k == 2 and s_fit.ndim == 1:
        return _apply_calibrator(_fit_calibrator(method, s_fit, y_fit), s_apply)
    out = np.column_stack([
        _apply_calibrator(_fit_calibrator(method, s_fit[:, j], (y_fit == j).astype(int)), s_apply[:, j])
        if len(np.unique(y_fit == j)) == 2 else np.full(len(s_apply), float(np.mean(y_fit == j)))
        for j in range(k)])
    return _normalise(out)


def _quality(y, p) -> dict:
    p2 = _proba2d(p)
    onehot = np.eye(p2.shape[1])[y]
    return {"brier": float(np.mean(np.sum((p2 - onehot) ** 2, axis=1)) / (2 if p2.shape[1] == 2 else 1)),
            "log_loss": float(_log_loss(y, p))}


def choose_calibration(scores: np.ndarray, y: np.ndarray, n_classes: int,
                       methods=CALIBRATIONS, is_proba: bool = True,
                       seed: int = 0, groups=None) -> tuple[str, np.ndarray, dict]:
    """Pick the calibration method on out-of-fold validation scores.

    Each method is fitted on 4/5 of the validation scores and judged on the
    remaining fifth (5-fold) by log loss, the proper score of probabilities
    (Brier reported too). ``"none"`` (the scores as they are; only when they are
    probabilities, ``is_proba``) is judged the same way and listed first, so a
    calibrator is chosen only when it lowers the log loss: already calibrated
    scores keep ``"none"``, and of two calibrators the worse is never picked.
    ``groups`` (e.g. the row of each score when folds were repeated) keeps the scores
    of a group in the same fifth, so no calibrator is judged on a row it was fitted on.

    Returns
    -------
    method : str
    calibrated : ndarray
        Cross-validated calibrated scores of the chosen method (used to pick
        the decision threshold without touching the hold-out).
    table : dict
        ``{method: {"brier", "log_loss"}}`` for every method judged.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(y).astype(int)
    methods = [m for m in methods if is_proba or m != "none"]
    unknown = [m for m in methods if m not in CALIBRATIONS]
    if unknown or not methods:
        raise ConfigError(f"calibration methods {unknown or methods} are not known",
                          hint=f"use some of {', '.join(CALIBRATIONS)}")
    counts = np.bincount(y, minlength=n_classes)
    folds = min(5, int(counts[counts > 0].min())) if n_classes else 5
    if groups is not None:
        splitter = (StratifiedGroupKFold(max(folds, 2), shuffle=True, random_state=seed)
                    if folds >= 2 else GroupKFold(2))
    else:
        splitter = (StratifiedKFold(max(folds, 2), shuffle=True, random_state=seed)
                    if folds >= 2 else KFold(2, shuffle=True, random_state=seed))
    table: dict = {}
    preds = {}
    for method in methods:
        out = np.zeros_like(s, dtype=float)
        for tr, te in splitter.split(s, y, groups):
            out[te] = _calibrate_columns(method, s[tr], y[tr], s[te], n_classes, is_proba)
        preds[method] = out
        table[method] = _quality(y, out)
    best = methods[0]
    for method in methods[1:]:  # strictly better only: the simpler method wins ties
        if table[method]["log_loss"] < table[best]["log_loss"]:
            best = method
    return best, preds[best], table


__all__ = ["METRICS", "Metric", "resolve_metric", "holdout_metrics", "oof_metrics", "f1_threshold", "delong",
           "chance_test", "score_buckets", "choose_calibration", "CALIBRATIONS", "calibration_input"]
