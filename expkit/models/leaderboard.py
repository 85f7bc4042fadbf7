"""The tables of a tournament: every trial, and one row per family (the leaderboard).

The leaderboard is honest about the budget: a family whose trials all stopped
before their first fold (or that never got a trial) is listed as ``"not tried
(budget)"`` and not ranked; a family cut at the deadline (or pruned) before any
trial finished shows its best partial cross-validation score with the folds it
took, ranked after the families with a full score; an ensemble of the best
configurations is a row of its own. :func:`with_oof_metrics` adds PyCaret's
columns (AUROC, AUPR, log loss, Brier, F1...) computed from the out-of-fold scores
the search kept for each row's best trial: no model is fitted again.
"""
from __future__ import annotations

import numpy as np
import optuna
import pandas as pd

from .evaluate import oof_metrics

NOT_TRIED = "not tried (budget)"
COLUMNS = ["rank", "family", "status", "best_cv", "cv_std", "folds", "trials", "complete", "pruned",
           "failed", "fit_time", "best_trial", "best_params"]


def trials_frame(study) -> pd.DataFrame:
    """One row per trial of ``study`` (enqueued trials that never started are left out).

    ``partial`` is the mean score over the folds done of a trial that did not finish;
    ``repeat_of`` the earlier trial whose configuration a trial repeated (it was not
    fitted again: see :mod:`.repeats`);
    ``worker`` (only when trials ran on a cluster) the host:pid that ran it.
    """
    rows = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.WAITING:  # enqueued, never started
            continue
        fam = t.params.get("family")
        steps = t.intermediate_values
        rows.append({
            "number": t.number, "family": fam, "state": t.state.name, "value": t.value,
            "partial": steps[max(steps)] if steps and t.state != optuna.trial.TrialState.COMPLETE else None,
            "cv_std": t.user_attrs.get("cv_std"),
            "folds_done": len(steps),
            "fit_time": t.user_attrs.get("fit_time"),
            "duration": t.duration.total_seconds() if t.duration else None,
            "datetime_start": t.datetime_start, "datetime_complete": t.datetime_complete,
            "params": {k.split(".", 1)[1]: v for k, v in t.params.items() if "." in k},
            "stopped": t.user_attrs.get("stopped"), "error": t.user_attrs.get("error"),
            "repeat_of": t.user_attrs.get("repeat_of"),
        })
    frame = pd.DataFrame(rows, columns=["number", "family", "state", "value", "partial", "cv_std", "folds_done",
                                        "fit_time", "duration", "datetime_start", "datetime_complete",
                                        "params", "stopped", "error", "repeat_of"])
    workers = [t.user_attrs.get("worker") for t in study.trials if t.state != optuna.trial.TrialState.WAITING]
    if any(workers):  # trials run on a cluster's workers (see cluster_search)
        frame["worker"] = workers
    return frame


def fitted(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that fitted their configuration (not replays of an earlier trial)."""
    return trials[trials["repeat_of"].isna()] if "repeat_of" in trials else trials


def leaderboard(trials: pd.DataFrame, metric, families=None, n_folds=None, ensemble=None) -> pd.DataFrame:
    """One row per family: status, best CV score ± std, folds, trials, fit time (of the
    trials that fitted: a replayed repeat took none), best params.

    Parameters
    ----------
    trials : DataFrame
        :func:`trials_frame` of the study.
    metric : evaluate.Metric
    families : list of str, optional
        Every family that competed (those without a trial get a "not tried" row).
    n_folds : int, optional
        Cross-validation folds (for the folds column of complete rows).
    ensemble : dict, optional
        ``{"score", "weights": {label: weight}, "shipped": bool}`` of the ensemble.

    Returns
    -------
    DataFrame
        Ranked rows first (best first; families with only partial scores after the
        complete ones), then unranked ones (rank <NA>).
    """
    sign = 1.0 if metric.greater_is_better else -1.0
    names = list(dict.fromkeys([*(families or []), *trials["family"].dropna()]))
    rows = []
    for fam in names:
        part = trials[trials["family"] == fam]
        done = part[part["state"] == "COMPLETE"]
        started = part[part["folds_done"] > 0]
        row = {"family": fam, "trials": len(part), "complete": len(done),
               "pruned": int((part["state"] == "PRUNED").sum()), "failed": int((part["state"] == "FAIL").sum()),
               "fit_time": float(fitted(part)["fit_time"].fillna(0).sum()), "best_cv": np.nan, "cv_std": np.nan,
               "folds": None, "best_trial": None, "best_params": None}
        if len(done):
            best = done.loc[(sign * done["value"]).idxmax()]
            row.update(status="complete", best_cv=best["value"], cv_std=best["cv_std"], folds=n_folds,
                       best_trial=int(best["number"]), best_params=best["params"], _order=0)
        elif len(started):
            best = started.loc[(sign * started["partial"].astype(float)).idxmax()]
            how = "cut at the deadline" if best["stopped"] == "deadline" else "pruned"
            of = f" of {n_folds}" if n_folds else ""
            row.update(status=f"partial: {how} after {int(best['folds_done'])}{of} folds", best_cv=best["partial"],
                       folds=int(best["folds_done"]), best_trial=int(best["number"]),
                       best_params=best["params"], _order=1)
        elif row["failed"]:
            error = part["error"].dropna()
            row.update(status="failed" + (f": {error.iloc[0]}" if len(error) else ""), _order=2)
        else:
            row.update(status=NOT_TRIED, _order=3)
        rows.append(row)
    if ensemble and ensemble.get("weights"):
        rows.append({"family": "ensemble", "trials": 0, "complete": 1, "pruned": 0, "failed": 0,
                     "fit_time": 0.0, "best_cv": ensemble["score"], "cv_std": np.nan, "folds": n_folds,
                     "best_trial": None, "best_params": {"members": dict(ensemble["weights"])},
                     "status": "ensemble (shipped)" if ensemble.get("shipped")
                     else "ensemble (not better than the best single model)",
                     "_order": 0 if ensemble.get("shipped") else 0.5})
    board = pd.DataFrame(rows, columns=[*COLUMNS[1:], "_order"])
    if board.empty:
        return pd.DataFrame(columns=COLUMNS)
    board["_key"] = -sign * board["best_cv"].astype(float)
    if ensemble and ensemble.get("weights") and not ensemble.get("shipped") and "best_single" in ensemble:
        # a gain too small to ship it: ranked just after the model that won
        board.loc[board["family"] == "ensemble", "_key"] = -sign * float(ensemble["best_single"])
    board["_first"] = (board["family"] == "ensemble").astype(int)  # the ensemble ranks after a model it ties
    board.loc[board["_order"] == 0.5, "_order"] = 0
    board = board.sort_values(["_order", "_key", "_first"], na_position="last", kind="stable")
    ranked = (board["_order"] <= 1).to_numpy()
    board.insert(0, "rank", pd.array(np.where(ranked, np.cumsum(ranked), 0), dtype="Int64"))
    board.loc[~ranked, "rank"] = pd.NA
    for column in ("folds", "best_trial"):  # counts and numbers: 5, not 5.0 beside a blank
        board[column] = pd.array(board[column], dtype="Int64")
    return board.drop(columns=["_order", "_key", "_first"]).reset_index(drop=True)[COLUMNS]


def with_oof_metrics(board: pd.DataFrame, oof: dict, y: np.ndarray, task: str,
                     ensemble_oof: np.ndarray | None = None) -> pd.DataFrame:
    """``board`` with ``oof_<metric>`` columns after ``cv_std`` (:func:`evaluate.oof_metrics`).

    Parameters
    ----------
    oof : dict
        ``{trial number: out-of-fold scores}`` the search kept.
    y : ndarray
        Labels (class codes) of the search rows, in the order of the scores.
    ensemble_oof : ndarray, optional
        Out-of-fold scores of the ensemble row.

    Rows without kept scores (partial, not tried, a resumed study's) get blanks.
    """
    rows = []
    for _, row in board.iterrows():
        scores = ensemble_oof if row["family"] == "ensemble" else oof.get(
            None if pd.isna(row["best_trial"]) else int(row["best_trial"]))
        complete = row["status"] == "complete" or str(row["status"]).startswith("ensemble")
        rows.append(oof_metrics(task, y, scores) if scores is not None and complete else {})
    extra = pd.DataFrame(rows, index=board.index).add_prefix("oof_")
    at = list(board.columns).index("cv_std") + 1
    return pd.concat([board.iloc[:, :at], extra, board.iloc[:, at:]], axis=1)
