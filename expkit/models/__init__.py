"""Model tournaments, evaluation, insights and model files.

- :mod:`expkit.models.families`: the registry of model families (``register_family``).
- :mod:`expkit.models.tournament`: ``tournament(...)`` and ``Tournament``.
- :mod:`expkit.models.evaluate`: metrics, above-chance test, score buckets, calibration choice.
- :mod:`expkit.models.calibration`: `scores_of` and the calibrated winner (`CalibratedModel`).
- :mod:`expkit.models.insights`: field importance and per-record reasons.
- :mod:`expkit.models.bundle`: ``save_model`` / ``load_model`` (skops + model card).

The function is reached as ``expkit.tournament`` or
``expkit.models.tournament.tournament``; this package binds no name
``tournament`` so the submodule stays reachable.
"""
from .bundle import ModelBundle, load_model, save_model
from .families import register_family
from .result import TenantTournamentResult, TournamentResult

__all__ = ["register_family", "save_model", "load_model", "ModelBundle", "TournamentResult",
           "TenantTournamentResult"]
