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
import importlib

#: public name -> submodule; imported on first use, so that reading a model card (for
#: scoring) does not import scikit-learn before it is needed
_LAZY = {"ModelBundle": "bundle", "load_model": "bundle", "save_model": "bundle",
         "register_family": "families", "TournamentResult": "result",
         "TenantTournamentResult": "result"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["register_family", "save_model", "load_model", "ModelBundle", "TournamentResult",
           "TenantTournamentResult"]
