"""Matplotlib figures for tournaments and models.

Every function returns a :class:`matplotlib.figure.Figure` built without
``pyplot``, so nothing depends on the interactive backend or leaks global
state; notebooks display the figures, ``fig.savefig`` writes them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn import metrics as skm

_SIZE = (6.0, 4.0)


def _figure(title: str, size=_SIZE):
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    return fig, ax


def leaderboard(board: pd.DataFrame, metric: str) -> Figure:
    """Best cross-validated score (± std over folds) per model family."""
    fig, ax = _figure("Leaderboard (cross-validation)")
    board = board.dropna(subset=["best_cv"]).iloc[::-1]
    ax.barh(board["family"], board["best_cv"], xerr=board["cv_std"].fillna(0), color="#4c72b0",
            capsize=3)
    if len(board):
        lo = float((board["best_cv"] - board["cv_std"].fillna(0)).min())
        hi = float((board["best_cv"] + board["cv_std"].fillna(0)).max())
        pad = max((hi - lo) * 0.15, 1e-3)
        ax.set_xlim(lo - pad, hi + pad)
    ax.set_xlabel(metric)
    return fig


def optimization_history(trials: pd.DataFrame, metric: str, direction: str = "maximize") -> Figure:
    """Each finished trial's CV score, coloured by family, with the best so far."""
    fig, ax = _figure("Optimization history")
    done = trials[trials["state"] == "COMPLETE"].sort_values("number")
    for fam, part in done.groupby("family", sort=False):
        ax.scatter(part["number"], part["value"], s=18, label=fam)
    if len(done):
        best = done["value"].cummax() if direction == "maximize" else done["value"].cummin()
        ax.step(done["number"], best, where="post", color="black", lw=1.2, label="best so far")
        ax.legend(fontsize=7, loc="best")
        ax.set_xlim(-0.5, max(int(done["number"].max()), 1) + 0.5)  # one trial: not an axis around 0
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    return fig


def roc(y: np.ndarray, scores: np.ndarray, classes=None) -> Figure:
    """ROC curve (one-vs-rest per class when ``scores`` is 2-D)."""
    fig, ax = _figure("ROC curve")
    for label, yy, ss in _one_vs_rest(y, scores, classes):
        fpr, tpr, _ = skm.roc_curve(yy, ss)
        ax.plot(fpr, tpr, label=f"{label} (AUC {skm.auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def precision_recall(y: np.ndarray, scores: np.ndarray, classes=None) -> Figure:
    """Precision-recall curve (one-vs-rest per class when ``scores`` is 2-D)."""
    fig, ax = _figure("Precision-recall curve")
    for label, yy, ss in _one_vs_rest(y, scores, classes):
        precision, recall, _ = skm.precision_recall_curve(yy, ss)
        ax.plot(recall, precision, label=f"{label} (AP {skm.average_precision_score(yy, ss):.3f})")
        ax.axhline(np.mean(yy), ls=":", color="grey", lw=1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="best")
    return fig


def calibration(y: np.ndarray, after: np.ndarray, before: np.ndarray | None = None,
                n_bins: int = 10) -> Figure:
    """Reliability curve of the positive-class probability, before and after calibration."""
    fig, ax = _figure("Calibration")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    for name, p in (("before", before), ("after", after)):
        if p is None:
            continue
        prob_true, prob_pred = _reliability(y, np.clip(p, 0, 1), n_bins)
        ax.plot(prob_pred, prob_true, marker="o", label=name)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed rate")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _reliability(y, p, n_bins):
    idx = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    keep = [b for b in range(n_bins) if np.any(idx == b)]
    return (np.array([np.mean(y[idx == b]) for b in keep]),
            np.array([np.mean(p[idx == b]) for b in keep]))


def score_distribution(buckets: pd.DataFrame) -> Figure:
    """Share of predictions per score bucket and the observed rate in each."""
    fig, ax = _figure("Score distribution")
    x = np.arange(len(buckets))
    ax.bar(x, buckets["share"], color="#4c72b0", label="share of predictions")
    ax.set_xticks(x, buckets["bucket"], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of predictions")
    rate_col = "positive_rate" if "positive_rate" in buckets else "mean_observed"
    ax2 = ax.twinx()
    ax2.plot(x, buckets[rate_col], color="#dd8452", marker="o", label=rate_col.replace("_", " "))
    ax2.set_ylabel(rate_col.replace("_", " "))
    if rate_col == "positive_rate":
        ax2.set_ylim(0, 1.02)
    return fig


def importance(table: pd.DataFrame, top: int = 20) -> Figure:
    """Permutation importance per raw input field (top ``top``)."""
    table = table.head(top).iloc[::-1]
    fig, ax = _figure("Field importance (permutation, hold-out)",
                      size=(6.0, max(2.5, 0.3 * len(table) + 1)))
    ax.barh(table["field"], table["importance"],
            xerr=table["std"] if "std" in table else None, color="#55a868", capsize=2)
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel("drop in hold-out score when the field is shuffled")
    return fig


def predicted_vs_observed(y: np.ndarray, pred: np.ndarray) -> Figure:
    """Regression: predictions against observed values on the hold-out."""
    fig, ax = _figure("Predicted vs observed")
    ax.scatter(y, pred, s=10, alpha=0.5)
    lo, hi = float(min(np.min(y), np.min(pred))), float(max(np.max(y), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=1)
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted")
    return fig


def gain_lift(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> Figure:
    """Cumulative gain and lift by decile of the positive-class score (binary): the share of
    all positives found in the top x% of scores, and how many times the base rate that is."""
    y = np.asarray(y).astype(int)
    order = np.argsort(-np.asarray(p, dtype=float), kind="stable")
    found = np.cumsum(y[order]) / max(y.sum(), 1)
    share = np.arange(1, len(y) + 1) / len(y)
    fig = Figure(figsize=(9.0, 3.8), layout="constrained")
    gain, lift = fig.subplots(1, 2)
    gain.set_title("Cumulative gain")
    gain.plot(np.r_[0, share], np.r_[0, found], label="model")
    gain.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="random")
    gain.plot([0, y.mean(), 1], [0, 1, 1], ls=":", color="#2a7d2a", lw=1, label="perfect")
    gain.set_xlabel("share of rows, highest scores first")
    gain.set_ylabel("share of positives found")
    gain.legend(fontsize=8, loc="lower right")
    cuts = np.linspace(0, len(y), n_bins + 1).astype(int)[1:]
    cuts = cuts[cuts > 0]
    lifts = found[cuts - 1] / share[cuts - 1]
    lift.set_title("Lift")
    lift.bar(np.arange(1, len(cuts) + 1) * (100 // n_bins), lifts, width=100 / n_bins * 0.8, color="#4c72b0")
    lift.axhline(1, ls="--", color="grey", lw=1)
    lift.set_xlabel("top % of rows by score")
    lift.set_ylabel("lift (x the base rate)")
    return fig


def confusion(y: np.ndarray, scores: np.ndarray, classes, threshold: float = 0.5) -> Figure:
    """Confusion matrix of the hold-out at the decision threshold (binary) or the most
    likely class (multiclass), counts with the share of each true class."""
    s = np.asarray(scores, dtype=float)
    pred = (s >= threshold).astype(int) if s.ndim == 1 else np.argmax(s, axis=1)
    labels = [str(c) for c in classes]
    title = f"Confusion matrix (threshold {threshold:.3g})" if s.ndim == 1 else "Confusion matrix"
    fig, ax = _figure(title, size=(5.2, 4.2))
    matrix = skm.confusion_matrix(y, pred, labels=np.arange(len(labels)))
    skm.ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=ax, cmap="Blues", colorbar=False,
                                                                   values_format=",d")
    ax.set_title(title)
    return fig


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float | None = None) -> Figure:
    """Precision, recall and F1 of the positive class against the decision threshold (binary),
    with the chosen threshold marked."""
    fig, ax = _figure("Precision, recall and F1 by threshold")
    precision, recall, cuts = skm.precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    for name, values in (("precision", precision), ("recall", recall), ("F1", f1)):
        ax.plot(cuts, values, label=name)
    if threshold is not None:
        ax.axvline(threshold, ls="--", color="black", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("threshold")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="best")
    return fig


def message(title: str, text: str) -> Figure:
    """A figure that says why there is nothing to plot."""
    fig, ax = _figure(title, size=(6.0, 2.0))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10)
    return fig


def titled(figs: dict, label) -> dict:
    """``figs`` with `` · <label>`` after each title (axes and figure): a tenant's figures."""
    if label:
        for fig in figs.values():
            for ax in fig.axes:
                if ax.get_title():
                    ax.set_title(f"{ax.get_title()} · {label}")
            if fig.get_suptitle():
                fig.suptitle(f"{fig.get_suptitle()} · {label}")
    return figs


def _one_vs_rest(y, scores, classes):
    scores = np.asarray(scores)
    if scores.ndim == 1:
        yield (str(classes[1]) if classes is not None else "positive"), np.asarray(y), scores
        return
    for j in range(scores.shape[1]):
        yy = (np.asarray(y) == j).astype(int)
        if 0 < yy.sum() < len(yy):
            yield (str(classes[j]) if classes is not None else str(j)), yy, scores[:, j]


__all__ = ["leaderboard", "optimization_history", "roc", "precision_recall", "calibration",
           "score_distribution", "importance", "predicted_vs_observed", "gain_lift", "confusion",
           "threshold_metrics", "message", "titled"]
