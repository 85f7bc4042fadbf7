"""Model tournaments, evaluation, insights and model files.

- :mod:`expkit.models.families`: the registry of model families (``register_family``).
- :mod:`expkit.models.tournament`: ``tournament(...)`` and ``Tournament`` (the public front,
  per tenant), over :mod:`~expkit.models.train` (one table: split, search, refit, evaluate),
  :mod:`~expkit.models.search` (the Optuna study) and :mod:`~expkit.models.leaderboard`.
- :mod:`expkit.models.evaluate`: metrics, above-chance test, score buckets, calibration choice.
- :mod:`expkit.models.calibration`: `scores_of` and the calibrated winner (`CalibratedModel`).
- :mod:`expkit.models.insights`: field importance and per-record reasons.
- :mod:`expkit.models.plots`: evaluation and search figures.
- :mod:`expkit.models.bundle`: ``save_model`` / ``load_model`` (skops + model card).

The function is reached as ``expkit.tournament`` or
``expkit.models.tournament.tournament``; this package binds no name
``tournament`` so the submodule stays reachable.
"""
from .. import _lazy

#: public name -> (module, attribute); imported on first use, so that reading a model card
#: (for scoring) does not import scikit-learn before it is needed
_LAZY = {
    "ModelBundle": ("expkit.models.bundle", "ModelBundle"),
    "load_model": ("expkit.models.bundle", "load_model"),
    "save_model": ("expkit.models.bundle", "save_model"),
    "register_family": ("expkit.models.families", "register_family"),
    "TournamentResult": ("expkit.models.result", "TournamentResult"),
    "TenantTournamentResult": ("expkit.models.result", "TenantTournamentResult"),
}


def __getattr__(name):
    return _lazy.attribute(globals(), _LAZY, name, __name__)


__all__ = ["register_family", "save_model", "load_model", "ModelBundle", "TournamentResult",
           "TenantTournamentResult"]
