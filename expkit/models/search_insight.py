"""What the search learnt about one family's hyperparameters (optuna-dashboard's views).

The study's space is conditional (``family`` first, then ``<family>.<param>``), so
Optuna's views of one family are drawn on an in-memory study of that family's
finished trials with the prefix taken off (:func:`family_study`):
hyperparameter importances, parallel coordinates and slices, by
:mod:`optuna.visualization.matplotlib`. Too few trials, or no parameter that
varied, give a figure that says so instead of an error.
"""
from __future__ import annotations

import warnings

import matplotlib
import optuna

from . import plots

#: Finished trials of a family below which a view says there are too few (importances
#: of a handful of trials are noise).
MIN_TRIALS = {"importances": 5, "parallel_coordinate": 2, "slice": 2}
#: The views drawn, by name.
VIEWS = ("importances", "parallel_coordinate", "slice")
#: Parameters shown (the most important first): more make the axes unreadable.
MAX_PARAMS = {"parallel_coordinate": 5, "slice": 4}
_TITLES = {"importances": "Hyperparameter importances", "parallel_coordinate": "Parallel coordinates",
           "slice": "Slices"}


def family_study(trials, family: str, direction: str = "maximize"):
    """An in-memory study of ``family``'s complete trials, parameters without the prefix."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory"
    try:
        study = optuna.create_study(direction=direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    prefix = f"{family}."
    for t in trials:
        if t.state != optuna.trial.TrialState.COMPLETE or t.params.get("family") != family:
            continue
        dists = {k[len(prefix):]: d for k, d in t.distributions.items() if k.startswith(prefix)}
        params = {k[len(prefix):]: v for k, v in t.params.items() if k.startswith(prefix)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=t.value))
    return study


def search_figures(trials, family: str, metric: str, direction: str = "maximize") -> dict:
    """``{"search_importances", "search_parallel_coordinate", "search_slice"}``: figures of
    ``family``'s trials (see the module docstring); each says why when it cannot be drawn.

    Parameters
    ----------
    trials : list of optuna.trial.FrozenTrial
        The tournament study's trials.
    family : str
    metric : str
        The ranking metric (the axis label of the score).
    direction : {"maximize", "minimize"}
    """
    study = family_study(trials, family, direction)
    n = len(study.trials)
    varied = sorted({k for t in study.trials for k in t.params
                     if len({repr(u.params.get(k)) for u in study.trials}) > 1})
    ranked = _ranked(study, varied) if n >= MIN_TRIALS["parallel_coordinate"] else varied
    out = {}
    for view in VIEWS:
        title = f"{_TITLES[view]}: {family} ({n} trial{'s' if n != 1 else ''})"
        why = None
        if n < MIN_TRIALS[view]:
            why = (f"{family} finished {n} trial{'s' if n != 1 else ''}; this view needs at least "
                   f"{MIN_TRIALS[view]}\n(raise the budget or n_trials)")
        elif not varied:
            why = f"no hyperparameter of {family} varied over its {n} trials"
        params = varied if view == "importances" else ranked[:MAX_PARAMS[view]]
        out[f"search_{view}"] = plots.message(title, why) if why else _draw(view, study, params, metric, title)
    return out


def _ranked(study, params) -> list:
    """``params`` most important first (Optuna's default evaluator), as they are when that fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            importances = optuna.importance.get_param_importances(study, params=params)
        except Exception:  # e.g. too few trials for the evaluator
            return list(params)
    return [*importances, *[p for p in params if p not in importances]]


def _draw(view, study, params, metric, title):
    from matplotlib import pyplot as plt
    from optuna.visualization import matplotlib as ovm

    # optuna's views draw with pyplot and set a style sheet: keep both to this call
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if view == "importances":
                drawn = ovm.plot_param_importances(study, params=params)
            elif view == "parallel_coordinate":
                drawn = ovm.plot_parallel_coordinate(study, params=params, target_name=metric)
            else:
                drawn = ovm.plot_slice(study, params=params, target_name=metric)
        except Exception as exc:  # optuna refuses some studies (e.g. one value everywhere)
            return plots.message(title, f"Optuna could not draw this view: {exc}")
        ax = drawn.flat[0] if hasattr(drawn, "flat") else drawn
        fig = ax.figure
        plt.close(fig)  # the caller shows or saves it; nothing left in pyplot's state
    for axes in fig.axes:  # optuna titles its axes: one title, ours, over the figure
        axes.set_title("", loc="left")
        axes.set_title("")
    fig.suptitle(title)
    if view == "parallel_coordinate":
        fig.set_size_inches(max(6.4, 1.3 * len(params) + 2.5), 4.8)
    elif view == "slice":
        fig.set_size_inches(3.2 * len(params) + 1.0, 3.6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if view == "importances":  # long parameter names stay inside the figure
            fig.tight_layout()
    return fig


__all__ = ["family_study", "search_figures", "MIN_TRIALS", "VIEWS"]
