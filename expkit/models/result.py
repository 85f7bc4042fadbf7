"""What a tournament returns: the winner, its evidence, and how to save it."""
from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .. import _lazy
from ..files import jsonable, versions, write_csv, write_json, write_png
from ..formatting import Table, best_columns, fmt
from .bundle import save_model
from .repeats import MAX_REPEATS

_HEADLINE = {"binary": "auroc", "multiclass": "auroc", "regression": "r2"}


@dataclass
class TournamentResult:
    """The outcome of one tournament (see :func:`expkit.tournament`).

    Attributes
    ----------
    task, target, winner, params : the task, target column, winning family and the parameters
        of the refitted winner (as searched, except what the family's refit hook fixes, e.g.
        histogram boosting's iterations)
    leaderboard : DataFrame, one row per family (rank = finish order), best CV ± std,
        out-of-fold metrics of the family's best trial (``oof_auroc``, ``oof_aupr``,
        ``oof_log_loss``, ``oof_brier``, ``oof_f1``; regression ``oof_r2``, ``oof_rmse``,
        ``oof_mae``), trial counts, fit time, best params
    trials : DataFrame, every trial of the study
    metric, direction, cv_score, cv_std : the ranking metric and the winner's CV score
    metrics : dict, hold-out metrics
    above_chance, chance_test : the verdict and its statistic, CI and p-value
    score_buckets : DataFrame, share of predictions and observed rate per score bucket
    calibration : dict or None, method and Brier/log loss before and after on the hold-out
    importance : DataFrame, permutation importance per raw field (hold-out)
    best_pipeline : sklearn Pipeline, raw DataFrame -> predictions / probabilities (the saved
        model: refitted on training + hold-out rows unless ``refit_full=False`` or the budget
        had no room, see ``refit``)
    holdout_pipeline : the model trained on the training rows only, whose hold-out scores
        give ``metrics`` (the same object as ``best_pipeline`` when there was no full refit)
    refit : dict, rows and which rows the saved model was trained on, and where the metrics come from
    budget_note : str or None, "budget too small: N of M families tried; about X s would try them all"
    ensemble : dict or None, what ensemble selection found: score, member weights, shipped or not
    raw_filter : DataFrame or None, the raw feature filter's report (``scoring_data=``)
    schema, sampling, timings, classes, threshold, features
    """

    task: str
    target: str
    winner: str
    params: dict
    leaderboard: pd.DataFrame
    trials: pd.DataFrame
    metric: str
    direction: str
    metrics: dict
    cv_score: float
    cv_std: float
    above_chance: bool
    chance_test: dict
    score_buckets: pd.DataFrame
    calibration: dict | None
    importance: pd.DataFrame
    best_pipeline: object
    schema: object
    sampling: dict
    timings: dict
    classes: list
    threshold: float
    explainer: object
    features: list
    holdout: tuple = field(repr=False, default=None)
    train_frame: pd.DataFrame = field(repr=False, default=None)
    label: str | None = None
    study_name: str | None = None
    seed: int = 0
    #: local wall-clock time the search started (comparable with trials' datetime_start)
    search_started: datetime | None = None
    budget_note: str | None = None
    raw_filter: pd.DataFrame | None = field(repr=False, default=None)
    ensemble: dict | None = None
    refit: dict | None = None
    holdout_pipeline: object = field(repr=False, default=None)
    #: the study's trials (optuna FrozenTrial), for :meth:`plot_search`
    study_trials: list | None = field(repr=False, default=None)

    # -- derived --------------------------------------------------------------------
    @property
    def positive_class(self):
        return self.classes[1] if self.task == "binary" else None

    @property
    def headline(self) -> tuple[str, float]:
        """(name, value) of the one hold-out metric tables show."""
        name = _HEADLINE[self.task]
        return name, self.metrics.get(name)

    def predict_scores(self, df: pd.DataFrame) -> np.ndarray:
        """Scores of raw rows (binary: positive-class probability; multiclass:
        class probabilities; regression: predictions)."""
        from .calibration import scores_of
        return scores_of(self.best_pipeline, df, self.task)

    def reasons(self, df: pd.DataFrame, k: int = 3) -> pd.DataFrame:
        """Top ``k`` fields behind each record's score (leave-one-field-out)."""
        return self.explainer.reasons(self.predict_scores, df.drop(columns=[self.target], errors="ignore"), k)

    def reference(self) -> dict:
        """Training reference statistics for drift checks (``expkit.drift.reference_profile``)."""
        from ..drift import reference_profile
        scores = None
        if self.holdout is not None and self.task == "binary":
            scores = self.holdout[1]
        return reference_profile(self.train_frame, self.schema, scores=scores)

    def card(self) -> dict:
        """The model card saved next to the model (JSON-able)."""
        return jsonable({
            "task": self.task, "target": self.target, "classes": list(self.classes),
            "positive_class": self.positive_class, "threshold": self.threshold,
            "schema": self.schema.to_dict(), "features": list(self.features),
            "metrics": self.metrics, "above_chance": self.above_chance, "chance_test": self.chance_test,
            "id_columns": self.schema.of_type("id"), "reference": self.reference(),
            "versions": versions(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "family": self.winner, "params": self.params, "metric": self.metric,
            "cv_score": self.cv_score, "cv_std": self.cv_std,
            "calibration": (self.calibration or {}).get("method"),
            "baseline": self.explainer.to_dict(), "tenant": self.label,
            "evaluation": self.evaluation(), "budget_note": self.budget_note,
            "raw_filter": self.dropped_fields(),
        })

    def evaluation(self) -> dict:
        """Which rows the saved model was trained on, and where its metrics come from."""
        refit = dict(self.refit or {})
        if not refit:
            return {}
        out = {"trained_on": f"{refit['on']} ({refit['rows']} rows)",
               "metrics_from": refit.get("metrics_from")}
        if refit["on"] != "training rows":
            out["note"] = ("metrics come from the hold-out of the model trained on the training rows only; "
                           "the saved model was then refit on training + hold-out rows")
        if refit.get("skipped"):
            out["note"] = refit["skipped"]
        return out

    def dropped_fields(self) -> dict:
        """``{field: reason}`` of the fields the raw feature filter dropped."""
        if self.raw_filter is None or not len(self.raw_filter):
            return {}
        gone = self.raw_filter[self.raw_filter["dropped"]]
        return dict(zip(gone["field"], gone["reason"]))

    # -- figures and saving -------------------------------------------------------------
    def figures(self, search: bool = True) -> dict:
        """``{name: matplotlib Figure}``: leaderboard, optimization history, the hold-out
        evaluation figures that fit the task (binary: ROC, precision-recall, calibration,
        cumulative gain and lift, confusion matrix at the threshold, precision/recall/F1 by
        threshold) and, with ``search``, :meth:`plot_search`'s. A tenant's figures name it."""
        from . import plots

        figs = {"leaderboard": plots.leaderboard(self.leaderboard, self.metric),
                "optimization_history": plots.optimization_history(self.trials, self.metric,
                                                                   self.direction)}
        y, scores, raw = self.holdout
        if self.task == "regression":
            figs["predicted_vs_observed"] = plots.predicted_vs_observed(y, scores)
        else:
            figs["roc"] = plots.roc(y, scores, self.classes)
            figs["precision_recall"] = plots.precision_recall(y, scores, self.classes)
            if self.task == "binary":
                figs["calibration"] = plots.calibration(y, scores, raw)
                figs["gain_lift"] = plots.gain_lift(y, scores)
                figs["threshold_metrics"] = plots.threshold_metrics(y, scores, self.threshold)
            figs["confusion_matrix"] = plots.confusion(y, scores, self.classes, self.threshold)
        figs["score_distribution"] = plots.score_distribution(self.score_buckets)
        figs["importance"] = plots.importance(self.importance)
        plots.titled(figs, self.label)
        if search:
            figs.update(self.plot_search())
        return figs

    def plot_search(self, family: str | None = None) -> dict:
        """What the search learnt about ``family``'s hyperparameters (default: the best single
        model's family): ``{"search_importances", "search_parallel_coordinate",
        "search_slice"}`` figures by Optuna's matplotlib views. With too few trials each
        figure says so. ``study.log`` in a run folder holds the same study for optuna-dashboard."""
        from . import plots
        from .search_insight import search_figures

        if family is None:
            ranked = self.leaderboard[(self.leaderboard["family"] != "ensemble")
                                      & (self.leaderboard["status"] == "complete")]
            family = ranked["family"].iloc[0] if len(ranked) else self.winner
        if not self.study_trials:
            return plots.titled({"search_importances": plots.message(
                "Search", "the study's trials were not kept with this result")}, self.label)
        return plots.titled(search_figures(self.study_trials, family, self.metric, self.direction), self.label)

    def summary(self) -> dict:
        """Metrics, verdict and settings as one JSON-able dict (metrics.json)."""
        return jsonable({"task": self.task, "target": self.target, "winner": self.winner,
                         "params": self.params, "metric": self.metric, "cv_score": self.cv_score,
                         "cv_std": self.cv_std, "holdout": self.metrics, "above_chance": self.above_chance,
                         "chance_test": self.chance_test, "calibration": self.calibration,
                         "sampling": self.sampling, "timings": self.timings, "tenant": self.label,
                         "study_name": self.study_name, "budget_note": self.budget_note,
                         "ensemble": self.ensemble, "evaluation": self.evaluation(),
                         "raw_filter": self.dropped_fields()})

    def save(self, directory) -> Path:
        """Write ``model/`` (skops + card), metrics.json, leaderboard.csv, trials.csv, figures/*.png."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_model(self, directory / "model")
        write_json(directory / "metrics.json", self.summary())
        write_csv(directory / "leaderboard.csv", self.leaderboard.assign(
            best_params=self.leaderboard["best_params"].map(lambda p: json.dumps(jsonable(p)))))
        write_csv(directory / "trials.csv",
                  self.trials.assign(params=self.trials["params"].map(lambda p: json.dumps(jsonable(p)))))
        figdir = directory / "figures"
        figdir.mkdir(exist_ok=True)
        for name, fig in self.figures().items():
            write_png(figdir / f"{name}.png", fig, dpi=100)
        return directory

    # -- display ---------------------------------------------------------------------
    def __repr__(self) -> str:
        name, value = self.headline
        text = (f"TournamentResult(task={self.task!r}, winner={self.winner!r}, "
                f"cv {self.metric}={self.cv_score:.4f}, hold-out {name}={value:.4f}, "
                f"above_chance={self.above_chance})")
        return text + (f"\n{self.budget_note}" if self.budget_note else "")

    def _repeats_note(self) -> str:
        """Says how many trials repeated a scored configuration (replayed, not fitted), and
        whether the search ended for it (its last MAX_REPEATS trials all repeats)."""
        if "repeat_of" not in self.trials or not self.trials["repeat_of"].notna().any():
            return ""
        repeated = self.trials.sort_values("number")["repeat_of"].notna().to_numpy()
        note = f" ({int(repeated.sum())} repeated an earlier configuration: replayed, not fitted again"
        if len(repeated) >= MAX_REPEATS and repeated[-MAX_REPEATS:].all():
            note += f"; the search ended early, as its last {MAX_REPEATS} proposals had all been scored"
        return note + ")"

    def _repr_html_(self) -> str:
        name, value = self.headline
        cv = f"{self.sampling['cv']}, " if self.sampling.get("cv") else ""  # e.g. "5-fold CV, "
        ct = self.chance_test
        verdict = ("above chance" if self.above_chance else "NOT above chance")
        colour = "#2a7d2a" if self.above_chance else "#b03030"
        metrics = ", ".join(f"{k} {fmt(v)}" for k, v in self.metrics.items()
                            if isinstance(v, float) and k != "n")
        shown = self.leaderboard.drop(columns=["best_params", "best_trial", "folds", "complete", "pruned", "failed"],
                                      errors="ignore").head(12)  # the counts stay in .leaderboard
        board = Table(shown, best=best_columns(list(shown.columns), self.metric))
        calib = ""
        if self.calibration and self.calibration.get("before"):
            b, a = self.calibration["before"], self.calibration["after"]
            calib = (f"<p><b>Calibration</b> ({html.escape(self.calibration['method'])}): Brier "
                     f"{b['brier']:.4f} → {a['brier']:.4f}, log loss {b['log_loss']:.4f} → "
                     f"{a['log_loss']:.4f}</p>")
        top = ", ".join(html.escape(str(f)) for f in self.importance["field"].head(5))
        notes = ""
        if self.budget_note:
            notes += f"<p style='color:#b05a00'><b>{html.escape(self.budget_note)}</b></p>"
        if self.ensemble and self.ensemble.get("shipped"):
            members = ", ".join(f"{html.escape(k)} ({v:.2f})" for k, v in self.ensemble["weights"].items())
            notes += f"<p><b>Ensemble</b> of {members}</p>"
        evaluation = self.evaluation()
        if evaluation.get("note"):
            notes += f"<p><i>{html.escape(evaluation['note'])}</i></p>"
        dropped = self.dropped_fields()
        if dropped:
            notes += ("<p><b>Raw feature filter</b> dropped: "
                      + "; ".join(f"{html.escape(str(k))} ({html.escape(str(v))})" for k, v in dropped.items())
                      + "</p>")
        return (f"<div><h4>Tournament{f' [{html.escape(self.label)}]' if self.label else ''}: "
                f"{html.escape(self.task)} on <code>{html.escape(self.target)}</code></h4>"
                f"<p><b>Winner</b>: {html.escape(self.winner)} (CV {self.metric} {fmt(self.cv_score)}"
                f"{'' if self.cv_std != self.cv_std else ' ± ' + fmt(self.cv_std)}); "
                f"<b>hold-out {name}</b> {fmt(value)} "
                f"<span style='color:{colour}'><b>{verdict}</b></span> "
                f"({html.escape(str(ct.get('method')))} CI {ct.get('ci_low', float('nan')):.3f}–"
                f"{ct.get('ci_high', float('nan')):.3f}, p={ct.get('p_value', float('nan')):.3g})</p>"
                f"{notes}<p>{html.escape(metrics)}</p>{calib}<p><b>Top fields</b>: {top}</p>"
                f"<p>{len(self.trials)} trials{self._repeats_note()} in {self.timings.get('search', 0):.1f}s search "
                f"({cv}{self.sampling['search_rows']} of {self.sampling['train_rows']} training rows)</p>"
                f"{board._repr_html_()}</div>")


@dataclass
class TenantTournamentResult:
    """One tournament per tenant (see :func:`expkit.tournament` with ``tenant=``).

    Attributes
    ----------
    winners : DataFrame
        tenant, rows, winner, metric, holdout, above_chance, fallback, reason, budget_note.
    results : Mapping
        tenant -> TournamentResult (fallback tenants map to the global result): a
        :class:`~expkit.models.result_store.ResultStore`, which keeps the results in
        files and reads each when asked, so a thousand tenants fit in memory.
    global_result : TournamentResult or None
        The model trained on all tenants, when some tenant needed it.
    """

    winners: pd.DataFrame
    results: Mapping
    global_result: TournamentResult | None
    tenant: str
    target: str
    task: str

    def __getitem__(self, tenant) -> TournamentResult:
        return self.results[tenant]

    def save(self, directory) -> Path:
        """Each tenant's result in ``directory/<tenant>/`` plus winners.csv."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_csv(directory / "winners.csv", self.winners)
        for name, result in self.results.items():
            if result is not self.global_result:
                result.save(directory / str(name))
        if self.global_result is not None:
            self.global_result.save(directory / "_global")
        return directory

    def __repr__(self) -> str:
        return f"TenantTournamentResult({len(self.results)} tenants, tenant={self.tenant!r})\n{self.winners}"

    def _repr_html_(self) -> str:
        n_fb = int(self.winners["fallback"].sum())
        return (f"<div><h4>Per-tenant tournaments on <code>{html.escape(self.target)}</code> by "
                f"<code>{html.escape(self.tenant)}</code></h4><p>{len(self.winners)} tenants, "
                f"{n_fb} using the global model</p>"
                f"{Table(self.winners, best={'holdout': 'max'})._repr_html_()}</div>")  # AUROC or R²


__all__ = ["TournamentResult", "TenantTournamentResult"]


#: Names that moved elsewhere (deprecated aliases for one release).
__getattr__ = _lazy.moved(__name__, {
    'jsonable': 'expkit.files',
    'versions': 'expkit.files',
})
