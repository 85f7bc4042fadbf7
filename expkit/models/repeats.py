"""Configurations the search has already scored, so a repeat is not fitted again.

TPE narrows its proposals as a study goes on, and on discrete spaces (a forest's
``n_estimators`` in steps of 50, ``max_features`` among a few choices) it proposes
the very same configuration again: in a 120 s tournament on an 800-row table, 9 of
146 trials repeated an earlier one and took 12 s of the search (optuna/optuna#2021).
Fits are seeded, so a repeat would score exactly what the first one did. The
search therefore replays it instead: the same per-fold reports (the pruner sees what
a refit would have shown it), the same attributes, the same value, and
``repeat_of`` naming the trial that was fitted. The sampler's history is what it
would have been; only the time is saved. When trials run in parallel, a proposal
of a configuration still being fitted waits for that fit's outcome (complete,
pruned or failed) rather than fitting it on a second worker. A repeat of a pruned
configuration is fitted again: the pruner's median has moved since.

A search whose last :data:`MAX_REPEATS` proposals were all repeats has converged on
configurations it knows, and ends (on a small discrete space it would otherwise
open replayed trials until the deadline).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import optuna

#: Proposals in a row that repeat a scored configuration after which the search ends.
MAX_REPEATS = 20
#: The attributes of a complete trial a repeat carries over (its fit time is the
#: configuration's, which the budget plan reads to estimate a final fit).
CARRIED = ("cv_std", "fold_scores", "fit_time", "refit_params", "refit_params_full")


def key(params: dict) -> str:
    """A configuration as a hashable key (every parameter the trial suggested)."""
    return json.dumps(params, sort_keys=True, default=str)


@dataclass
class Scored:
    """What a complete trial gave: enough to replay it on a repeat."""

    number: int
    value: float
    reports: list  # (fold, mean score so far)
    attrs: dict


class Seen:
    """The complete trials of a study by configuration, and (trials run in parallel) the
    configurations being fitted with the trials that wait for their outcome."""

    def __init__(self):
        self._by_key: dict[str, Scored] = {}
        self._waiting: dict[str, list] = {}  # configuration being fitted -> trials repeating it

    @classmethod
    def of(cls, study) -> Seen:
        """The complete trials already in ``study`` (a resumed one)."""
        seen = cls()
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            seen.remember(t.number, t.params, t.value, sorted(t.intermediate_values.items()), t.user_attrs)
        return seen

    def remember(self, number, params, value, reports, attrs) -> None:
        """Record a complete trial (the first of a configuration stays the one named)."""
        self._by_key.setdefault(key(params), Scored(
            number, float(value), [(int(s), float(v)) for s, v in reports],
            {k: attrs[k] for k in CARRIED if k in attrs}))

    def get(self, params) -> Scored | None:
        """The complete trial with exactly these parameters, if any."""
        return self._by_key.get(key(params))

    def fitting(self, params) -> None:
        """A trial with these parameters is being fitted."""
        self._waiting.setdefault(key(params), [])

    def wait_for(self, params, trial) -> bool:
        """Whether these parameters are being fitted; then ``trial`` waits for that outcome."""
        twins = self._waiting.get(key(params))
        if twins is None:
            return False
        twins.append(trial)
        return True

    def fitted(self, params) -> list:
        """The trials that waited for these parameters' fit (which has ended)."""
        return self._waiting.pop(key(params), [])

    def abandon(self) -> list:
        """Every waiting trial (the search is interrupted)."""
        twins = [t for ts in self._waiting.values() for t in ts]
        self._waiting.clear()
        return twins


def replay(trial, scored: Scored) -> float:
    """Give ``trial`` (a repeat of ``scored``) the reports, attributes and value the first
    one had; pruned (``optuna.TrialPruned``) where a refit would have been pruned."""
    trial.set_user_attr("repeat_of", scored.number)
    for step, value in scored.reports:
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    for name, value in scored.attrs.items():
        trial.set_user_attr(name, value)
    return scored.value
