"""The budget is the whole call: what the steps after the search are expected to take.

A tournament with ``budget=B`` should be over ``B`` seconds after it was called
(schema inference, featurizing the folds, the search, the ensemble, the refit on
the training rows, calibration, the hold-out evaluation, the refit on every row and
the insights together; :data:`TOLERANCE` over at most). The search therefore stops
early by what comes after it, which :class:`Plan` estimates from the current best
trial: its folds' fit time and the folds' featurizing time, scaled to the rows of
the two final fits. The insights take what is left (:func:`importance_plan`).
:func:`too_small` words the message when the budget did not let every family run.
"""
from __future__ import annotations

import math

import numpy as np
import optuna

#: How far past the budget a call may end (the target: budget + 10%).
TOLERANCE = 0.10
#: A fit's time grows about linearly with rows (measured: a fold's fit and featurizing
#: scaled linearly estimated the final fits 1.3-1.6x too long at exponent 1.15 on adult
#: and bank marketing, since a fold's time also holds the scoring of its validation rows).
ROWS_EXPONENT = 1.0
#: Seconds of one metric evaluation per out-of-fold row (AUROC ranks: ~3 ms per 10,000 rows on a busy machine).
SECONDS_PER_ROW_METRIC = 3e-7
#: The hold-out evaluation (scores, DeLong test, buckets) on top of the final fits.
EVALUATE_SECONDS = 0.2
#: Time kept for an ensemble: the final fits of the best trial of this many families ...
ENSEMBLE_FAMILIES = 3
#: ... but at most this share of the budget (more members than that only if time is left).
ENSEMBLE_SHARE = 0.2
#: Share of the budget kept for the insights (permutation importance), within these bounds (s).
INSIGHTS_SHARE = 0.05
INSIGHTS_SECONDS = (0.3, 15.0)


def fold_seconds(trial) -> float | None:
    """Mean fit (+ predict) time of one fold of a finished or cut trial."""
    folds = len(trial.intermediate_values)
    fit = trial.user_attrs.get("fit_time")
    if not folds or fit is None:
        return None
    return float(fit) / folds


def scaled(seconds: float, fold_rows: float, rows: int) -> float:
    """``seconds`` measured on ``fold_rows`` rows, scaled to ``rows``."""
    if not fold_rows:
        return seconds
    return seconds * max(rows / fold_rows, 1.0) ** ROWS_EXPONENT


class Plan:
    """What the steps after the search need, re-estimated as the search goes.

    Parameters
    ----------
    budget : float or None
        Seconds for the whole call.
    rows : tuple of int
        Training rows and training + hold-out rows (the two final fits).
    refit_full : bool
        Whether the model is refitted on every row after the evaluation.
    """

    def __init__(self, budget, rows, refit_full: bool):
        self.budget = budget
        self.rows = rows
        self.refit_full = refit_full

    def insights_seconds(self) -> float:
        if not self.budget:
            return 0.0
        lo, hi = INSIGHTS_SECONDS
        return float(np.clip(INSIGHTS_SHARE * self.budget, lo, hi))

    def refit_seconds(self, search, trial, full: bool = False) -> float:
        """Featurizing and fitting ``trial``'s configuration on the training rows (``full``:
        training + hold-out rows), estimated from its folds: a fold's fit (and scoring of
        its validation rows) scaled by rows, and a fold's featurizing (fit on its training
        rows, transform of its validation rows: all search rows) likewise."""
        rows = self.rows[1 if full else 0]
        fold = scaled(fold_seconds(trial) or 0.0, search.fold_rows, rows)
        feat = float(np.mean(search.featurize_seconds)) if search.featurize_seconds else 0.0
        return fold + scaled(feat, search.search_rows, rows)

    def final_seconds(self, search, trials) -> float:
        """The two final fits of an ensemble of ``trials`` (one trial: the single model)."""
        fits = [self.refit_seconds(search, t) for t in trials]
        if self.refit_full:
            fits += [self.refit_seconds(search, t, full=True) for t in trials]
        return float(sum(fits))

    @staticmethod
    def leaders(search, families: int = ENSEMBLE_FAMILIES) -> list:
        """The best finished trial of each of the best ``families`` families, best first."""
        study = search.study
        if study is None:
            return []
        sign = 1 if search.metric.greater_is_better else -1
        best: dict = {}
        for t in study.trials:
            if t.state == optuna.trial.TrialState.COMPLETE:
                fam = t.params.get("family")
                if fam not in best or sign * t.value > sign * best[fam].value:
                    best[fam] = t
        return sorted(best.values(), key=lambda t: -sign * t.value)[:families]

    def reserve(self, search) -> float:
        """Seconds to keep after the search: the current best trial's final fits, the
        ensemble selection, the hold-out evaluation and the insights, plus half a fold
        (the last fold of the search may end a little past its deadline)."""
        leaders = self.leaders(search)
        if not leaders:
            feat = float(np.mean(search.featurize_seconds)) if search.featurize_seconds else 0.0
            fits = scaled(feat, search.search_rows, self.rows[0]) * (2 if self.refit_full else 1)
        else:
            best, others = leaders[0], leaders[1:]
            fits = self.final_seconds(search, [best]) + 0.5 * (fold_seconds(best) or 0.0)
            if others and self.budget:  # room for an ensemble, within a share of the budget
                fits += min(self.final_seconds(search, others), ENSEMBLE_SHARE * self.budget)
        # greedy selection: ~300 metric evaluations on the out-of-fold rows
        selection = 300 * search.fold_rows * 1.5 * SECONDS_PER_ROW_METRIC
        return fits + selection + EVALUATE_SECONDS + self.insights_seconds()


def importance_plan(seconds: float, predict_seconds: float, rows: int, fields: int,
                    max_rows: int = 2000, repeats: int = 3, min_rows: int = 200) -> dict:
    """Rows, repeats and fields of a permutation importance that fits in ``seconds``,
    given that scoring ``rows`` rows once takes ``predict_seconds``.

    Full (``repeats`` shuffles of every field on up to ``max_rows`` rows) when it fits;
    else fewer repeats, then fewer rows (down to ``min_rows``), then fewer fields.
    """
    rows = min(rows, max_rows)
    per_row = predict_seconds / max(rows, 1)
    for r in range(repeats, 0, -1):
        if fields * r * rows * per_row <= seconds:
            return {"rows": rows, "repeats": r, "fields": fields}
    fit_rows = int(seconds / max(fields * per_row, 1e-12))
    if fit_rows >= min(min_rows, rows):
        return {"rows": min(fit_rows, rows), "repeats": 1, "fields": fields}
    rows = min(min_rows, rows)
    return {"rows": rows, "repeats": 1, "fields": max(0, min(fields, int(seconds / max(rows * per_row, 1e-12))))}


def too_small(tried: int, total: int, budget: float, needed: float) -> str | None:
    """``budget too small: N of M families tried; about X s would try them all`` (None when all were)."""
    if tried >= total:
        return None
    about = 5 * math.ceil(max(needed, budget + 1) / 5)
    return f"budget too small: {tried} of {total} families tried; about {about:.0f} s would try them all"


__all__ = ["Plan", "TOLERANCE", "importance_plan", "too_small", "fold_seconds", "scaled"]
