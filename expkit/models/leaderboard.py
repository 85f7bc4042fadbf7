"""The tables of a tournament: every trial, and one row per family (the leaderboard)."""
from __future__ import annotations

import numpy as np
import optuna
import pandas as pd


def trials_frame(study) -> pd.DataFrame:
    """One row per trial of ``study`` (enqueued trials that never started are left out)."""
    rows = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.WAITING:  # enqueued, never started
            continue
        fam = t.params.get("family")
        rows.append({
            "number": t.number, "family": fam, "state": t.state.name, "value": t.value,
            "cv_std": t.user_attrs.get("cv_std"),
            "folds_done": len(t.intermediate_values),
            "fit_time": t.user_attrs.get("fit_time"),
            "duration": t.duration.total_seconds() if t.duration else None,
            "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
            "params": {k.split(".", 1)[1]: v for k, v in t.params.items() if "." in k},
            "stopped": t.user_attrs.get("stopped"), "error": t.user_attrs.get("error"),
        })
    return pd.DataFrame(rows, columns=["number", "family", "state", "value", "cv_std", "folds_done",
                                       "fit_time", "duration", "datetime_start", "datetime_complete",
                                       "params", "stopped", "error"])


def leaderboard(trials: pd.DataFrame, metric) -> pd.DataFrame:
    """One row per family: best CV score ± std, trials, fit time, best params; best first."""
    rows = []
    for fam, part in trials.dropna(subset=["family"]).groupby("family", sort=False):
        done = part[part["state"] == "COMPLETE"]
        best = None
        if len(done):
            best = done.loc[done["value"].idxmax() if metric.greater_is_better else done["value"].idxmin()]
        rows.append({"family": fam, "best_cv": best["value"] if best is not None else np.nan,
                     "cv_std": best["cv_std"] if best is not None else np.nan,
                     "trials": len(part), "complete": len(done),
                     "pruned": int((part["state"] == "PRUNED").sum()),
                     "failed": int((part["state"] == "FAIL").sum()),
                     "fit_time": float(part["fit_time"].fillna(0).sum()),
                     "best_trial": int(best["number"]) if best is not None else None,
                     "best_params": best["params"] if best is not None else None})
    board = pd.DataFrame(rows, columns=["family", "best_cv", "cv_std", "trials", "complete", "pruned",
                                        "failed", "fit_time", "best_trial", "best_params"])
    board = board.sort_values("best_cv", ascending=not metric.greater_is_better, na_position="last",
                              kind="stable").reset_index(drop=True)
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board
