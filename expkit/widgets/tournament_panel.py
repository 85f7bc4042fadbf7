"""``TournamentPanel``: launch a tournament, watch it, stop it, read the verdict."""
from __future__ import annotations

import logging
import threading
import time

import ipywidgets as W
import pandas as pd

from ..errors import ConfigError, ExpkitError, TargetError
from ..models import evaluate, plots
from ..models import families as families_mod
from ..models.leaderboard import leaderboard, trials_frame
from ..models.result import TenantTournamentResult
from ..models.tournament import detect_task, tournament
from ._common import WidgetFront, column_dropdown, column_value, esc, figure_png, html_table

log = logging.getLogger(__name__)

_KEY_FIGURES = ("roc", "calibration", "importance")


class TournamentPanel(WidgetFront):
    """Run :func:`expkit.tournament` from a form, with live progress and a Stop button.

    The search runs in a background thread so the notebook stays responsive and
    Stop works; ``run(block=True)`` runs it in the calling thread instead, and
    ``wait()`` joins a background run (both useful in tests and scripts).

    Parameters
    ----------
    df : pandas.DataFrame
    target : str
        The label column.
    tenant : str, optional
        Preselected tenant column (one tournament per value). The panel runs the
        tenants one after another (``n_jobs=1``) so that it can watch them.
    schema : Explorer, Schema or dict, optional
        Types to use. Pass the ``Explorer`` itself to use its overrides as they are
        when Run is pressed; ``explorer.schema`` is a copy taken now.
    budget : int, default 60
        Seconds for the search (the slider's start value).
    n_trials : int, optional
        Stop after this many trials (0 or None: only the budget limits).
    callbacks : list of callables(study, trial), optional
        Extra Optuna callbacks, run before the panel's own.
    seed : int, default 0
    **tournament_kwargs
        Passed on to :func:`expkit.tournament` (e.g. ``holdout``, ``n_jobs``).

    Attributes
    ----------
    task : str
        binary, multiclass or regression (from the target's values).
    result : TournamentResult or TenantTournamentResult or None
        Set when a run finishes (also after Stop: the best so far).
    error : Exception or None
        Set when a run failed; the panel shows its message.
    trials : list of dict
        One record (study, number, family, state, value) per finished trial
        seen by the panel's callback.
    board : pandas.DataFrame
        The live leaderboard (best trial per family) of the current study.
    figures : dict
        ``{name: matplotlib Figure}`` shown when done: ROC, calibration and
        importance; per tenant, each tenant's importance.

    Examples
    --------
    >>> panel = TournamentPanel(df, target="converted", budget=30)   # doctest: +SKIP
    >>> panel            # tick families, press Run; Stop keeps the best so far
    >>> panel.result     # once it is done
    """

    def __init__(self, df: pd.DataFrame, target: str, *, tenant: str | None = None,
                 schema=None, budget: int = 60, n_trials: int | None = None,
                 callbacks=None, seed: int = 0, **tournament_kwargs):
        if target not in df.columns:
            raise TargetError(f"target {target!r} is not a column of the table",
                              hint=f"columns: {', '.join(map(str, df.columns[:20]))}")
        if tenant is not None and tenant not in df.columns:
            raise ConfigError(f"tenant column {tenant!r} is not a column of the table",
                              hint="pass one of the table's columns or None")
        self.df, self.target, self.schema = df, target, schema
        self.task = tournament_kwargs.pop("task", "auto")
        if self.task == "auto":
            self.task = detect_task(df[target])
        self.seed = seed
        self.extra_callbacks = list(callbacks or [])
        self.tournament_kwargs = tournament_kwargs
        self.result = None
        self.error: Exception | None = None
        self.trials: list[dict] = []
        self.board = pd.DataFrame()
        self.figures: dict = {}
        self.studies: list[str] = []
        self._stop_requested = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._searching = False
        self._lock = threading.Lock()
        self._build(tenant, budget, n_trials)

    # -- public API ----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def tenant_column(self) -> str | None:
        """The tenant column chosen in the form (None: one tournament on all rows)."""
        return column_value(self.tenant)

    @property
    def current_schema(self):
        """The schema a run uses now: an Explorer's current ``.schema`` when the panel was
        given the Explorer itself (so overrides made later count), else ``schema`` as given."""
        from .explorer import Explorer

        return self.schema.schema if isinstance(self.schema, Explorer) else self.schema

    def schema_note(self) -> str:
        """`` &middot; types from the Explorer (1 override: spend categorical)`` when the
        panel follows an Explorer: which types a run uses, said in the status line."""
        from .explorer import Explorer

        if not isinstance(self.schema, Explorer):
            return ""
        o = self.schema.overrides
        listed = ", ".join(f"{esc(c)} {esc(t)}" for c, t in list(o.items())[:4]) + (", ..." if len(o) > 4 else "")
        return (f" &middot; types from the Explorer ({len(o)} override{'s' if len(o) != 1 else ''}"
                + (f": {listed}" if o else "") + ")")

    @property
    def families(self) -> list[str]:
        """The ticked families."""
        return [name for name, box in self.family_boxes.items() if box.value]

    def run(self, block: bool = False):
        """Start the tournament with the current form values.

        Parameters
        ----------
        block : bool, default False
            Run in the calling thread and return the result (errors are raised);
            otherwise start a background thread and return at once.
        """
        if self.running:
            raise ConfigError("a tournament is already running in this panel",
                              hint="press Stop or call wait() first")
        if not self.families:
            raise ConfigError("no model family is ticked", hint="tick at least one family")
        self.result, self.error, self.trials, self.studies = None, None, [], []
        self.board, self.figures = pd.DataFrame(), {}
        self._stop_requested.clear()
        self._done.clear()
        self._searching = True
        self._started = time.monotonic()
        self._set_running(True)
        if block:
            self._work(raise_errors=True)
            return self.result
        self._thread = threading.Thread(target=self._work, name="expkit-tournament-panel",
                                        daemon=True)
        self._thread.start()
        threading.Thread(target=self._tick, name="expkit-panel-clock", daemon=True).start()
        return None

    def stop(self) -> None:
        """End the search after the running trial; the best so far is kept."""
        if self.running:
            self._stop_requested.set()
            self.status.value = "<b>stopping</b> after the running trial&hellip;"

    def wait(self, timeout: float | None = None):
        """Wait for a background run to finish and return its result."""
        self._done.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    # -- building ------------------------------------------------------------------
    def _build(self, tenant, budget, n_trials):
        n_rows, n_cols = self.df.shape
        names = [name for name, fam in families_mod.families().items()
                 if fam.applies(self.task, n_rows, n_cols, False)]
        self.family_boxes = {n: W.Checkbox(value=True, description=n, indent=False,
                                           layout=W.Layout(width="auto", margin="0 12px 0 0"))
                             for n in names}
        self.budget = W.IntSlider(value=int(budget), min=5, max=max(600, int(budget)), step=5,
                                  description="budget (s)", continuous_update=False)
        metrics = [name for name, m in evaluate.METRICS.items() if self.task in m.tasks]
        self.metric = W.Dropdown(options=["auto", *metrics], value="auto", description="metric")
        cols = [c for c in self.df.columns if c != self.target]
        self.tenant = column_dropdown(cols, tenant, description="tenant")
        self.n_trials = W.BoundedIntText(value=int(n_trials or 0), min=0, max=100000,
                                         description="n_trials", tooltip="0: until the budget")
        self.run_button = W.Button(description="Run", button_style="success", icon="play")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop",
                                    disabled=True)
        self.search_button = W.Button(description="Search views", icon="line-chart", disabled=True,
                                      tooltip="what the search learnt about the hyperparameters")
        self.run_button.on_click(self._on_run_click)
        self.stop_button.on_click(lambda _b: self.stop())
        self.search_button.on_click(lambda _b: self.show_search())
        self.progress = W.FloatProgress(value=0.0, min=0.0, max=1.0, description="",
                                        layout=W.Layout(width="420px"))
        self.status = W.HTML(f"{esc(self.task)} target <b>{esc(self.target)}</b>: ready")
        self.leaderboard = W.HTML()
        self.verdict = W.HTML()
        self.figure_box = W.HBox()
        self.search_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.widget = W.VBox([
            W.HTML("<b>families</b>"), W.HBox(list(self.family_boxes.values())),
            W.HBox([self.budget, self.n_trials]),
            W.HBox([self.metric, self.tenant]),
            W.HBox([self.run_button, self.stop_button, self.search_button, self.progress]),
            self.status, self.leaderboard, self.verdict, self.figure_box, self.search_box,
        ])

    def _on_run_click(self, _button):
        try:
            self.run()
        except ExpkitError as exc:  # e.g. no family ticked: say so in the panel
            self.status.value = f"<span style='color:#c00'>{esc(exc)}</span>"

    def _set_running(self, running: bool):
        for w in (*self.family_boxes.values(), self.budget, self.metric, self.tenant,
                  self.n_trials, self.run_button):
            w.disabled = running
        self.stop_button.disabled = not running
        if running:
            self.progress.value = 0.0
            self.progress.bar_style = ""
            self.leaderboard.value = self.verdict.value = ""
            self.figure_box.children = self.search_box.children = ()
            self.search_button.disabled = True
            self.status.value = "starting&hellip;" + self.schema_note()

    # -- the run -------------------------------------------------------------------
    def _work(self, raise_errors=False):
        kwargs = dict(self.tournament_kwargs)
        if self.tenant_column is not None:
            kwargs["n_jobs"] = 1  # tenants in this process, where the callbacks can reach us
        try:
            result = tournament(
                self.df, self.target, task=self.task, budget=self.budget.value,
                n_trials=self.n_trials.value or None, families=self.families,
                metric=self.metric.value, tenant=self.tenant_column, schema=self.current_schema,
                seed=self.seed, progress=False,
                callbacks=[*self.extra_callbacks, self._on_trial], **kwargs)
        except Exception as exc:  # shown in the panel; raised again in block mode
            with self._lock:
                self._searching = False
            self.error = exc
            if not isinstance(exc, ExpkitError):
                log.exception("tournament failed")
            self.status.value = f"<span style='color:#c00'><b>failed:</b> {esc(exc)}</span>"
            self.progress.bar_style = "danger"
            self._finish()
            if raise_errors:
                raise
        else:
            with self._lock:
                self._searching = False
            self.result = result
            self._show_result()
            self._finish()

    def _finish(self):
        self._set_running(False)
        self._done.set()

    def _on_trial(self, study, trial):
        """Optuna callback: record the trial, refresh the view, honour Stop."""
        record = {"study": study.study_name, "number": trial.number,
                  "family": trial.params.get("family"), "state": trial.state.name,
                  "value": trial.value}
        with self._lock:
            if study.study_name not in self.studies:
                self.studies.append(study.study_name)
            self.trials.append(record)
            self.board = leaderboard(trials_frame(study),
                                      evaluate.resolve_metric(self.metric.value, self.task))
            self._show_leaderboard()
            self._update_progress()
        if self._stop_requested.is_set():
            study.stop()

    def _tick(self):
        while not self._done.wait(1.0):
            with self._lock:
                self._update_progress()

    def _update_progress(self):
        """Progress from finished trials and elapsed time (call with the lock held)."""
        if not self._searching:
            return
        elapsed = time.monotonic() - self._started
        n_groups = self.df[self.tenant_column].nunique() if self.tenant_column else 1
        shares = [min(1.0, elapsed / (self.budget.value * n_groups))]
        if self.n_trials.value:
            shares.append(len(self.trials) / (self.n_trials.value * n_groups))
        self.progress.value = min(0.99, max(shares))
        done = sum(t["state"] == "COMPLETE" for t in self.trials)
        self.status.value = (f"running: {len(self.trials)} trials ({done} complete), "
                             + elapsed_text(elapsed, self.budget.value, n_groups)
                             + (" &middot; stopping&hellip;" if self._stop_requested.is_set()
                                else "") + self.schema_note())

    # -- views ---------------------------------------------------------------------
    def _show_leaderboard(self):
        board = self.board[["rank", "family", "best_cv", "cv_std", "trials", "complete", "pruned",
                            "failed", "fit_time"]]
        rows = [[esc(v) for v in row] for row in board.itertuples(index=False)]
        where = ""
        if self.tenant_column is not None:
            where = f", tenant {len(self.studies)} of {self.df[self.tenant_column].nunique()}"
        metric = evaluate.resolve_metric(self.metric.value, self.task).name
        self.leaderboard.value = (f"<b>leaderboard</b> (CV {esc(metric)}{where})"
                                  + html_table(list(board.columns), rows))

    def _show_result(self):
        res = self.result
        self.progress.value = 1.0
        self.progress.bar_style = "success"
        stopped = " (stopped early: best so far)" if self._stop_requested.is_set() else ""
        self.status.value = (f"done in {time.monotonic() - self._started:.0f} s, "
                             f"{len(self.trials)} trials{stopped}"
                             + "".join(f"<br><b style='color:#b05a00'>{esc(note)}</b>" for note in budget_notes(res)))
        self.leaderboard.value = ""  # the verdict holds the final leaderboard
        self.verdict.value = res._repr_html_()
        if isinstance(res, TenantTournamentResult):  # why the winners differ
            figs = {f"importance [{name}]": plots.importance(r.importance)
                    for name, r in list(res.results.items())[:4]}
        else:
            figs = {k: f for k, f in res.figures(search=False).items() if k in _KEY_FIGURES}
        self.figures = figs
        self.figure_box.children = [W.Image(value=figure_png(f), format="png",
                                            layout=W.Layout(max_width="330px"))
                                    for f in figs.values()]
        self.search_button.disabled = isinstance(res, TenantTournamentResult)

    def show_search(self) -> dict:
        """Show (and return) what the search learnt about the winning family's
        hyperparameters: importances, parallel coordinates and slices (the Search views
        button; :meth:`expkit.TournamentResult.plot_search`). Drawn on request, so a run
        does not wait for them."""
        if self.result is None or isinstance(self.result, TenantTournamentResult):
            return {}
        figs = self.result.plot_search()
        self.figures.update(figs)
        self.search_box.children = [W.Image(value=figure_png(f), format="png",
                                            layout=W.Layout(max_width="500px"))
                                    for f in figs.values()]
        return figs


def elapsed_text(elapsed: float, budget: float, n_tenants: int = 1) -> str:
    """``12 s of 30 s``; with tenants the budget is each tenant's, and said so."""
    if n_tenants <= 1:
        return f"{elapsed:.0f} s of {budget:.0f} s"
    return f"{elapsed:.0f} s (budget {budget:.0f} s per tenant, {n_tenants} tenants)"


def budget_notes(res) -> list[str]:
    """The "budget too small" messages of a result (one per tenant that had one)."""
    if isinstance(res, TenantTournamentResult):
        notes = res.winners[res.winners["budget_note"].notna()]
        return [f"[{name}] {note}" for name, note in zip(notes["tenant"], notes["budget_note"]) if note]
    return [res.budget_note] if res.budget_note else []
