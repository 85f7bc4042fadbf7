"""expkit: explore a table, transmogrify it, run model tournaments (per tenant if
you like), execute notebook templates as runs, promote, score and monitor.

The public API is short; each name is documented where it is defined:

========================  ===================================================
``load(source)``          read CSV/TSV/Parquet/JSON lines/DataFrame, or a database table or query
``sql``                   database sources and tables scores are written to (``TableWriter``)
``schema.infer(df)``      semantic type per column, with evidence
``profile(df, target)``   column profiles and warnings (HTML in notebooks)
``Transmogrifier``        automatic per-type feature engineering (sklearn)
``SanityChecker``         drop label leakers and useless features (sklearn)
``tournament(df, target)`` Optuna-driven model tournament, per tenant if asked
``Run``                   the run a notebook executes in (``Run.current()``)
``runs``                  the run index (``expkit.runs.list()``)
``score(df, app=...)``    batch scoring with the production model
``monitor()``             fleet KPIs, schedules, drift and alerts
``schedules``             what runs when (``schedules.yaml``); ``expkit schedule run-due`` starts it
``datasets``              bundled demo data (``leads``, ``titanic``)
========================  ===================================================

Submodules are imported lazily so ``import expkit`` stays fast. The modules
behind ``profile`` and ``monitor`` are ``expkit.profiling`` and
``expkit.monitoring``: a submodule named like a package attribute would
replace that attribute on first import. The package layout follows the data
flow (see ``docs/design.md``): data, schema, profiling, drift, features, models,
templates, run/runs, execute, registry/promote, scoring, monitoring, cli, widgets.
"""
from __future__ import annotations

from . import _lazy

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "load": ("expkit.data", "load"),
    "schema": ("expkit.schema", None),
    "profile": ("expkit.profiling", "profile"),
    "Transmogrifier": ("expkit.features", "Transmogrifier"),
    "SanityChecker": ("expkit.features", "SanityChecker"),
    "tournament": ("expkit.models.tournament", "tournament"),
    "Tournament": ("expkit.models.tournament", "Tournament"),
    "register_family": ("expkit.models.families", "register_family"),
    "load_model": ("expkit.models.bundle", "load_model"),
    "Run": ("expkit.run", "Run"),
    "runs": ("expkit.runs", None),
    "score": ("expkit.scoring", "score"),
    "monitor": ("expkit.monitoring", "monitor"),
    "datasets": ("expkit.datasets", None),
    "sql": ("expkit.sql", None),
    "schedules": ("expkit.schedules", None),
    "errors": ("expkit.errors", None),
    "widgets": ("expkit.widgets", None),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    return _lazy.attribute(globals(), _LAZY, name, __name__)


def __dir__():
    return __all__
