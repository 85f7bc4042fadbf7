"""ipywidgets front ends over the same functions the CLI and templates use.

==================  ==========================================================
``Explorer``        target, per-column types (override them), distributions
``TournamentPanel`` families, budget, metric, tenant; Run / Stop; live leaderboard
``RunBrowser``      filter runs, compare params and metrics, open their reports
==================  ==========================================================

Pure Python (ipywidgets 8, no custom JavaScript): they work in JupyterLab 4,
and every button can be pressed from code (``panel.run_button.click()``).
"""
import importlib

_WHERE = {"Explorer": "explorer", "TournamentPanel": "tournament_panel", "RunBrowser": "run_browser"}

__all__ = list(_WHERE)


def __getattr__(name: str):
    # lazy, like ``expkit`` itself: the RunBrowser needs no model code
    if name not in _WHERE:
        raise AttributeError(f"module 'expkit.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
