"""When a trial of the search stops early: the median rule, judged within its family too.

Optuna's median pruner stops a trial at a fold when its running score is worse than
the median of the complete trials at that fold. In a search over several families
that median is the leading family's: on an 800-row table where logistic regression
leads, 24-25 of 26 trials of each boosting family were cut after their first fold, so
TPE never saw a good boosting configuration and their best CV stayed near the defaults'
(0.881-0.888; 0.898 once they were tuned). A family that starts behind was never
tuned, and so never caught up or added anything to an ensemble.

:func:`thresholds` therefore judges a trial against the lower of two medians: all
complete trials', and its own family's. A family whose own median is above the
overall one (the leader's) is pruned exactly as before. A family's first :data:`FAMILY_STARTUP`
complete trials run to their end. TPE still decides how many trials each family gets;
a weak family's configurations are now compared among themselves, so those the
search keeps are its good ones. :class:`FamilyMedianPruner` is the rule as an Optuna
pruner; a cluster search hands the same thresholds to its workers.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import optuna

#: A family's complete trials before its own median can prune one of its trials.
FAMILY_STARTUP = 2

_COMPLETE = (optuna.trial.TrialState.COMPLETE,)


def thresholds(complete, family: str, greater_is_better: bool, n_startup: int) -> dict | None:
    """``{fold: score}``: a trial of ``family`` is pruned at a fold when its best running
    score there is worse than this. None while nothing may be pruned (fewer than
    ``n_startup`` complete trials in all, or fewer than :data:`FAMILY_STARTUP` of this
    family).

    Parameters
    ----------
    complete : list of optuna.trial.FrozenTrial
        The study's complete trials (their ``intermediate_values`` are the running
        mean scores after each fold).
    """
    mine = [t for t in complete if t.params.get("family") == family]
    if len(complete) < n_startup or len(mine) < FAMILY_STARTUP:
        return None
    pick = min if greater_is_better else max  # the more lenient of the two medians
    overall, own = _medians(complete), _medians(mine)
    return {step: pick(median, own[step]) if step in own else median for step, median in overall.items()}


def for_study(study, family: str, n_startup: int) -> dict | None:
    """:func:`thresholds` of ``family`` from the complete trials of ``study``."""
    return thresholds(study.get_trials(deepcopy=False, states=_COMPLETE), family,
                      study.direction == optuna.study.StudyDirection.MAXIMIZE, n_startup)


def should_prune(scores, threshold: float | None, greater_is_better: bool) -> bool:
    """Whether a trial with these running ``scores`` (one per fold so far) is pruned at
    ``threshold``: its best score is worse than it."""
    if threshold is None:
        return False
    best = max(scores) if greater_is_better else min(scores)
    return best < threshold if greater_is_better else best > threshold


class FamilyMedianPruner(optuna.pruners.BasePruner):
    """The median pruner, with a trial judged within its family too (see :mod:`.pruning`).

    Parameters
    ----------
    n_startup_trials : int
        Complete trials in the study before any trial is pruned.
    """

    def __init__(self, n_startup_trials: int):
        self.n_startup_trials = n_startup_trials

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        limits = for_study(study, trial.params.get("family"), self.n_startup_trials)
        if limits is None:
            return False
        values = [v for v in trial.intermediate_values.values() if np.isfinite(v)]
        if not values:
            return True  # no finite score yet (as Optuna's median pruner)
        return should_prune(values, limits.get(step), study.direction == optuna.study.StudyDirection.MAXIMIZE)


def _medians(trials) -> dict:
    steps = defaultdict(list)
    for t in trials:
        for step, value in t.intermediate_values.items():
            if np.isfinite(value):
                steps[step].append(value)
    return {step: float(np.median(values)) for step, values in steps.items()}


__all__ = ["FamilyMedianPruner", "thresholds", "for_study", "should_prune", "FAMILY_STARTUP"]
