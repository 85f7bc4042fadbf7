"""Cross-validation folds of a search, and where their out-of-fold scores sit.

:func:`splitter` turns the tournament's ``cv`` setting into a scikit-learn
splitter: ``"auto"`` is 5 folds (3 above 5,000 search rows), stratified for
classification; a number is that many folds; any splitter is used as given,
repeated ones (``RepeatedStratifiedKFold``) included.

A configuration's out-of-fold scores are the folds' validation scores one after
another (:class:`OutOfFold`), so each fold's slice holds exactly what its score
was computed from; with repeated folds a row is there once per repeat. The
ensemble selection scores a blend per fold slice, as a cross-validated score is,
and the calibration is chosen with a row's repeats kept on the same side.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from ..errors import ConfigError


def splitter(cv, n_rows: int, y: np.ndarray, task: str, seed: int):
    """The cross-validation splitter for ``cv`` ("auto", a number of folds or an
    sklearn splitter) on ``n_rows`` rows with labels (class codes) or values ``y``."""
    if not (cv == "auto" or isinstance(cv, (int, np.integer))):
        if isinstance(cv, str) or not hasattr(cv, "split"):  # a str has .split too
            raise ConfigError(f"cv={cv!r} is not usable",
                              hint="use 'auto', a number of folds or an sklearn splitter")
        return cv
    k = (5 if n_rows <= 5000 else 3) if cv == "auto" else int(cv)
    if k < 2:
        raise ConfigError(f"cv={cv!r} must be at least 2 folds")
    if task != "regression":
        k = max(2, min(k, int(np.bincount(y).min())))
        return StratifiedKFold(k, shuffle=True, random_state=seed)
    return KFold(k, shuffle=True, random_state=seed)


@dataclass
class Fold:
    """One cross-validation fold, featurized once: every trial reuses its matrices."""

    valid: np.ndarray  # positions in the search sample
    y_train: np.ndarray
    y_valid: np.ndarray
    views: dict = field(default_factory=dict)  # view key -> (X_train, X_valid)

    def X_train(self, key: str = "linear"):
        return self.views[key][0]

    def X_valid(self, key: str = "linear"):
        return self.views[key][1]


@dataclass
class OutOfFold:
    """The layout of out-of-fold scores: the folds' validation rows one after another."""

    rows: np.ndarray   # the search row of each entry (a row appears once per repeat)
    y: np.ndarray      # its label or value
    slots: list        # each fold's entries, as slices

    @classmethod
    def of(cls, folds: list[Fold]) -> OutOfFold:
        ends = np.cumsum([len(f.valid) for f in folds])
        return cls(np.concatenate([f.valid for f in folds]), np.concatenate([f.y_valid for f in folds]),
                   [slice(int(e - len(f.valid)), int(e)) for f, e in zip(folds, ends)])

    @property
    def repeats(self) -> int:
        """How many times each row was validated (1, or the repeats of repeated folds)."""
        return int(np.bincount(self.rows).max()) if len(self.rows) else 0

    def describe(self) -> str:
        """"5-fold CV", "5-fold CV repeated 3 times", or "10 CV splits" (not a partition)."""
        counts = np.bincount(self.rows)
        n = len(self.slots)
        if not len(counts) or counts.min() != counts.max() or n % counts.max():
            return f"{n} CV splits"
        repeats = int(counts.max())
        return f"{n // repeats}-fold CV" + (f" repeated {repeats} times" if repeats > 1 else "")

    def groups(self) -> np.ndarray | None:
        """The row of each entry when rows repeat (to keep a row's repeats together), else None."""
        return self.rows if self.repeats > 1 else None


__all__ = ["splitter", "Fold", "OutOfFold"]
