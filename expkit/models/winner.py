"""The winner of a tournament: the best configuration, or an ensemble of the best ones,
refitted on all rows of a part of the table and calibrated.

:func:`choose` takes the best trial, then runs greedy ensemble selection
(:func:`expkit.models.ensemble.select`) over the out-of-fold predictions of the best
trials; the ensemble wins only when its out-of-fold score beats the best single
configuration's (by :data:`~expkit.models.ensemble.MIN_GAIN`) and its final fits fit
in the time left. :func:`calibrate` chooses the calibration on the winner's
out-of-fold scores; :func:`fit` builds and fits the pipeline (raw rows in) on given
rows, the same way for the model evaluated on the hold-out and for the one refitted
on every row.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline

from . import ensemble as ens
from . import evaluate
from . import families as registry
from .budget import EVALUATE_SECONDS, INSIGHTS_SECONDS
from .calibration import CalibratedModel, scores_of
from .search import family_params, view_key, view_settings

log = logging.getLogger(__name__)

#: Most candidates ensemble selection picks from: each family's best trial, then the best others.
ENSEMBLE_CANDIDATES = 16


@dataclass
class Member:
    """One configuration of the winner."""

    family: object       # registry.Family
    trial: object        # optuna FrozenTrial
    params: dict         # as searched
    fit: dict            # the final fit's parameters on the training rows
    fit_full: dict       # ... on training + hold-out rows

    @property
    def key(self) -> str:
        return view_key(self.family, self.params)

    @property
    def label(self) -> str:
        return f"{self.family.name} #{self.trial.number}"


@dataclass
class Choice:
    """The winner: one member, or several with weights (an ensemble)."""

    members: list
    weights: list
    oof: np.ndarray
    score: float
    ensemble: dict | None = None  # what the ensemble selection found (for the leaderboard)

    @property
    def name(self) -> str:
        return "ensemble" if len(self.members) > 1 else self.members[0].family.name


def member(trial) -> Member:
    family = registry.get_family(trial.params["family"])
    params = family_params(family, trial.params)
    fit = trial.user_attrs.get("refit_params", params)
    return Member(family, trial, params, fit, trial.user_attrs.get("refit_params_full", fit))


def choose(search, study, folds, layout, *, plan, end, ensemble: bool = True) -> Choice:
    """The best trial, or an ensemble of the best trials when it is better out of fold
    and its final fits fit before ``end`` (``time.monotonic()``); ``layout`` is the
    :class:`~expkit.models.folds.OutOfFold` of ``folds``."""
    best = member(study.best_trial)
    oof = search.oof_of(best.family, best.params, folds, best.trial)
    single = Choice([best], [1.0], oof, float(best.trial.value))
    if not ensemble or search.task not in ("binary", "multiclass", "regression"):
        return single
    done = {t.number: t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    sign = 1 if search.metric.greater_is_better else -1
    ranked = sorted((n for n in search.oof if n in done), key=lambda n: -sign * search.oof[n][0])
    # each family's best first (diversity is what an ensemble gains from), then the next best
    family_best = list({done[n].params["family"]: n for n in reversed(ranked)}.values())
    ranked = sorted(family_best, key=lambda n: -sign * search.oof[n][0]) + \
        [n for n in ranked if n not in family_best]
    members = {}
    for number in ranked:
        m = member(done[number])
        if search.task != "regression" and not hasattr(m.family.build(m.params, search.task, 0, 1),
                                                         "predict_proba"):
            continue  # decision scores do not average with probabilities
        members[number] = m
        if len(members) == ENSEMBLE_CANDIDATES:
            break
    if best.trial.number not in members or len(members) < 2:
        return single
    candidates = {n: search.oof[n][1] for n in [best.trial.number, *[n for n in members if n != best.trial.number]]}

    def fits(numbers) -> bool:
        if not np.isfinite(end):
            return True
        left = end - time.monotonic() - EVALUATE_SECONDS - INSIGHTS_SECONDS[0]
        return plan.final_seconds(search, [members[n].trial for n in numbers]) <= left

    weights, score = ens.select(candidates, layout.y, search.metric, fits=fits, folds=layout.slots)
    if len(weights) < 2:
        return single
    gain = sign * (score - single.score)
    info = {"score": score, "weights": {members[n].label: w for n, w in weights.items()},
            "shipped": gain > ens.MIN_GAIN, "best_single": single.score}
    if not info["shipped"]:
        single.ensemble = info
        return single
    log.info("ensemble of %d configurations: out-of-fold %s %.4f (best single %.4f)", len(weights),
             search.metric.name, score, single.score)
    return Choice([members[n] for n in weights], list(weights.values()), ens.blend(candidates, weights),
                  score, info)


def calibrate(choice: Choice, layout, *, task, n_classes, setting, has_proba, seed):
    """(method or None, calibrated out-of-fold scores, table of methods) for the winner;
    ``layout`` (:class:`~expkit.models.folds.OutOfFold`) says which row each score is of.

    ``setting`` is the tournament's ``calibrate``: "auto" chooses among
    :data:`~expkit.models.evaluate.CALIBRATIONS` on out-of-fold log loss; a method name
    takes it; None/False leaves the scores as they are (models without
    ``predict_proba`` still get a sigmoid, to have probabilities).
    """
    if task == "regression":
        return None, choice.oof, None
    method = setting
    if not method and not has_proba:
        log.info("%s has no predict_proba; calibrating with sigmoid to get probabilities", choice.name)
        method = "sigmoid"
    if not method:
        return None, choice.oof, None
    methods = evaluate.CALIBRATIONS if method == "auto" else (method,)
    # judged in row order (a row's repeats side by side): the same inner folds as when the
    # scores were laid out by row, so a plain K-fold search calibrates as it always did
    order = np.argsort(layout.rows, kind="stable")
    groups = layout.groups()
    chosen, calibrated, table = evaluate.choose_calibration(
        choice.oof[order], layout.y[order], n_classes, methods=methods, is_proba=has_proba, seed=seed,
        groups=None if groups is None else groups[order])
    back = np.empty_like(calibrated)
    back[order] = calibrated
    return chosen, back, table


def has_proba(choice: Choice, task) -> bool:
    return all(hasattr(m.family.build(m.params, task, 0, 1), "predict_proba") for m in choice.members)


def fit(choice: Choice, X, y, y_codes, *, task, schema, seed, n_jobs, method, oof_y, full=False) -> Pipeline:
    """The winner's pipeline (raw rows in), fitted on ``X, y`` (``y_codes``: class codes),
    calibrated by ``method`` on the out-of-fold scores (``oof_y``: their labels);
    ``full`` takes the parameters the refit hooks set for training + hold-out rows."""
    from ..features import Featurizer

    def features(key):
        view, buckets = view_settings(key)
        return Featurizer(schema=schema, view=view, buckets=buckets, random_state=seed)

    def estimator(m):
        return m.family.build(m.fit_full if full else m.fit, task, seed, n_jobs)

    target = y if task != "regression" else y_codes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(choice.members) == 1:
            m = choice.members[0]
            feat = features(m.key)
            X_model, steps = feat.fit_transform(X, y_codes), [("features", feat)]
            est = estimator(m)
        else:
            keys = list(dict.fromkeys(m.key for m in choice.members))
            est = ens.EnsembleModel([features(k) for k in keys],
                                    [(keys.index(m.key), estimator(m)) for m in choice.members],
                                    list(choice.weights), task=task)
            X_model, steps = X, []
        if method is None:
            model = est.fit(X_model, target)
        else:
            model = CalibratedModel(est, method=method, random_state=seed)
            model.fit(X_model, y, oof_scores=choice.oof, oof_y=oof_y)
    return Pipeline([*steps, ("model", model)])


def feature_names(pipeline) -> list:
    """The features the pipeline's model sees (an ensemble: every member view's)."""
    if "features" in pipeline.named_steps:
        return list(pipeline.named_steps["features"].get_feature_names_out())
    model = pipeline.named_steps["model"]
    model = getattr(model, "estimator_", model)
    return list(model.get_feature_names_out())


def raw_scores(pipeline, X, task):
    """Uncalibrated scores (probabilities) of a calibrated pipeline, else None."""
    model = pipeline.named_steps["model"]
    if not isinstance(model, CalibratedModel) or not getattr(model, "logit_", False):
        return None
    features = pipeline[:-1].transform(X) if len(pipeline) > 1 else X
    return scores_of(model.estimator_, features, task)


__all__ = ["Choice", "Member", "choose", "calibrate", "fit", "has_proba", "feature_names", "raw_scores"]
