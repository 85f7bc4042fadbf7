"""``RunBrowser``: filter and sort the runs of the index, compare several, open their reports."""
from __future__ import annotations

from pathlib import Path

import ipywidgets as W
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import runs as runs_mod
from ..errors import ExpkitError
from ..paths import href
from ._common import WidgetFront, esc, figure_png, html_table

_FILTERS = ("template", "tenant", "status")
_ALL = "(all)"
_NEWEST = "created (newest first)"
#: The columns of the run table (name in the table -> header).
_COLUMNS = {"run_id": "run", "template": "template", "tenant": "tenant", "status": "status",
            "created": "created (UTC)", "winner": "winner", "metric": "metric"}


class RunBrowser(WidgetFront):
    """Browse the run index like MLflow's runs table: filter by template, tenant,
    status and by conditions on metrics and parameters, sort by any of them,
    compare runs (differences first) with their ROC and calibration curves overlaid.

    Parameters
    ----------
    runs_dir : str or Path, optional
        The runs folder (default: ``$EXPKIT_RUNS``, else ``runs/`` at the project
        root); the browser says which folder it reads.
    max_rows : int, default 200
        The table and the list show the first ``max_rows`` runs that pass the
        filters (narrow them to see others).
    where : str, optional
        Initial conditions, e.g. ``"auroc > 0.8 and budget >= 30"`` (see
        :func:`expkit.runs.select`).
    sort : str, optional
        Initial sort, e.g. ``"auroc desc"``.

    Attributes
    ----------
    runs : pandas.DataFrame
        Every run of the index with its parameters and metrics
        (``expkit.runs.list(fields=True)``), newest first.
    filtered : pandas.DataFrame
        The runs that pass the filters, in the chosen order.
    comparison : pandas.DataFrame
        Params and metrics of the selected runs side by side (one column per
        run) with a ``differs`` column; rows that differ come first.
    curves : dict
        ``{"roc": Figure, "calibration": Figure}`` of the compared runs that saved
        hold-out scores (binary tasks).
    """

    def __init__(self, runs_dir=None, *, max_rows: int = 200, where: str | None = None,
                 sort: str | None = None):
        self.runs_dir = runs_mod.runs_dir(runs_dir)
        self._given_dir = runs_dir
        self.max_rows = int(max_rows)
        self.runs = pd.DataFrame()
        self.filtered = pd.DataFrame()
        self.comparison = pd.DataFrame()
        self.curves: dict = {}
        self.error: str | None = None
        self._build(where or "", sort)
        self.refresh()

    # -- public API ----------------------------------------------------------------
    def refresh(self, _=None) -> None:
        """Reload the runs from the index and re-apply the filters."""
        self.runs = runs_mod.list(runs_dir=self._given_dir, fields=True)
        for name, dd in self.dropdowns.items():
            values = sorted({str(v) for v in self.runs.get(name, pd.Series(dtype=str)).dropna()})
            keep = dd.value if dd.value in values else _ALL
            dd.options = [_ALL, *values]
            dd.value = keep
        names = [c for c in _COLUMNS if c != "run_id"] + sorted(
            {_short(c) for c in self.runs.columns if str(c).startswith(("metrics.", "params."))})
        keep = self.sort.value
        self.sort.options = [_NEWEST, *dict.fromkeys(names)]
        self.sort.value = keep if keep in self.sort.options else _NEWEST
        self._apply_filters()

    def compare(self, run_ids=None) -> pd.DataFrame:
        """Params and metrics of ``run_ids`` (default: the selected runs) side by side."""
        run_ids = list(self.select.value if run_ids is None else run_ids)
        self.comparison = (runs_mod.compare(run_ids, runs_dir=self.runs_dir)
                           if len(run_ids) >= 2 else pd.DataFrame())
        if not self.comparison.empty:
            self.comparison = self.comparison.sort_values("differs", ascending=False, kind="stable")
        self.curves = _curve_figures(run_ids, self.runs_dir) if len(run_ids) >= 2 else {}
        self._show_comparison()
        return self.comparison

    def report_path(self, run_id: str) -> Path:
        """Where the report of ``run_id`` is (it exists once the run has finished)."""
        return self.runs_dir / run_id / "report.html"

    # -- building ------------------------------------------------------------------
    def _build(self, where, sort):
        self.folder = W.HTML()
        self.dropdowns = {name: W.Dropdown(options=[_ALL], value=_ALL, description=name,
                                           layout=W.Layout(width="220px"))
                          for name in _FILTERS}
        for dd in self.dropdowns.values():
            dd.observe(lambda _c: self._apply_filters(), names="value")
        self.refresh_button = W.Button(description="Refresh", icon="refresh",
                                       layout=W.Layout(width="100px"))
        self.refresh_button.on_click(self.refresh)
        self.where = W.Text(value=where, description="where",
                            placeholder="e.g. auroc > 0.8 and budget >= 30",
                            continuous_update=False, layout=W.Layout(width="460px"))
        self.where.observe(lambda _c: self._apply_filters(), names="value")
        self.sort = W.Dropdown(options=[_NEWEST], value=_NEWEST, description="sort by",
                               layout=W.Layout(width="300px"))
        self.descending = W.Checkbox(value=True, description="descending", indent=False,
                                     layout=W.Layout(width="110px"))
        self._initial_sort = sort
        for w in (self.sort, self.descending):
            w.observe(lambda _c: self._apply_filters(), names="value")
        self.table = W.HTML()
        self.select = W.SelectMultiple(options=[], rows=8, description="compare",
                                       layout=W.Layout(width="640px"))
        self.select.observe(lambda _c: self.compare(), names="value")
        self.only_differences = W.Checkbox(value=True, description="only what differs",
                                           indent=False)
        self.only_differences.observe(lambda _c: self._show_comparison(), names="value")
        self.compare_view = W.HTML()
        self.curve_box = W.HBox()
        self.widget = W.VBox([
            self.folder,
            W.HBox([*self.dropdowns.values(), self.refresh_button]),
            W.HBox([self.where, self.sort, self.descending]),
            self.table, self.select, self.only_differences, self.compare_view, self.curve_box,
        ])

    # -- views ---------------------------------------------------------------------
    def _sort_text(self) -> str | None:
        if self._initial_sort:  # the constructor's sort, applied once the options exist
            text, self._initial_sort = self._initial_sort, None
            name = text.lstrip("-").split()[0] if text.strip() else ""
            if name in self.sort.options:
                self.sort.value = name
                self.descending.value = text.startswith("-") or text.lower().endswith(" desc")
            return text
        if self.sort.value == _NEWEST:
            return None
        return f"{self.sort.value} {'desc' if self.descending.value else 'asc'}"

    def _apply_filters(self):
        df = self.runs
        for name, dd in self.dropdowns.items():
            if dd.value != _ALL and name in df:
                df = df[df[name].astype(str) == dd.value]
        self.error = None
        try:
            df = runs_mod.select(df, where=self.where.value, sort=self._sort_text()) if len(df) else df
        except ExpkitError as exc:  # a condition that cannot be read: say so, show all
            self.error = str(exc)
        self.filtered = df
        self.folder.value = self._folder_text()
        extra = [c for c in df.columns if c not in self.runs.columns]  # named in where/sort
        header = [*_COLUMNS.values(), *map(esc, extra), "report"]
        rows = []
        shown = df.head(self.max_rows)
        for r in shown.to_dict("records"):
            report = self.report_path(r["run_id"])
            link = (f'<a href="{esc(href(report))}" target="_blank" title="{esc(report)}">report</a>'
                    if report.exists() else "")
            rows.append([esc(r["run_id"]), esc(r["template"]), esc(r["tenant"]), esc(r["status"]),
                         esc(_when(r["created"])), esc(r["winner"]), esc(_metric_text(r)),
                         *(esc(r[c]) for c in extra), link])
        more = f" (first {len(shown)} shown)" if len(shown) < len(df) else ""
        problem = (f"<br><span style='color:#c00'>{esc(self.error)}</span>" if self.error else "")
        self.table.value = (f"<b>{len(df)}</b> of {len(self.runs)} runs{more}{problem}"
                            + html_table(header, rows))
        keep = [v for v in self.select.value if v in set(shown["run_id"])] if len(shown) else []
        self.select.options = [(f"{r.run_id}  [{r.status}]", r.run_id)
                               for r in shown.itertuples(index=False)]
        self.select.value = keep

    def _folder_text(self) -> str:
        line = esc(self.runs.folder_line()) if hasattr(self.runs, "folder_line") else esc(self.runs_dir)
        if len(self.runs):
            return f"<small>{line}</small>"
        return (f"<small>{line}</small><br><b>No runs here yet.</b> Runs appear after "
                "<code>expkit run TEMPLATE</code> or <code>expkit demo</code> in this project; "
                "for another folder use <code>RunBrowser(runs_dir=...)</code> or set "
                "<code>EXPKIT_RUNS</code>.")

    def _show_comparison(self):
        cmp = self.comparison
        if cmp.empty:
            self.compare_view.value = ("<i>select two or more runs to compare them</i>"
                                       if len(self.select.value) == 1 else "")
            self.curve_box.children = ()
            return
        runs = [c for c in cmp.columns if c != "differs"]
        shown = cmp[cmp["differs"]] if self.only_differences.value else cmp
        rows = [[esc(key), *(_cell(key, shown.at[key, c]) for c in runs),
                 "&#8800;" if shown.at[key, "differs"] else ""] for key in shown.index]
        classes = ["diff" if d else "" for d in shown["differs"]]
        same = int((~cmp["differs"]).sum())
        note = (f" &middot; {same} identical rows hidden" if self.only_differences.value and same
                else "")
        self.compare_view.value = (f"<b>comparison</b> ({int(cmp['differs'].sum())} differences"
                                   f"{note})" + html_table(["", *map(esc, runs), ""], rows, classes))
        self.curve_box.children = [W.Image(value=figure_png(f), format="png",
                                           layout=W.Layout(max_width="420px"))
                                   for f in self.curves.values()]


def _curve_figures(run_ids, runs_dir) -> dict:
    """ROC and calibration curves of the runs that saved binary hold-out scores, overlaid."""
    from sklearn import metrics as skm

    curves = runs_mod.holdout_scores(run_ids, runs_dir)
    if not curves:
        return {}
    roc, cal = Figure(figsize=(5, 4), layout="constrained"), Figure(figsize=(5, 4), layout="constrained")
    ax_roc, ax_cal = roc.add_subplot(), cal.add_subplot()
    for label, frame in curves.items():
        y, score = frame["y"].to_numpy(), frame["score"].to_numpy()
        fpr, tpr, _ = skm.roc_curve(y, score)
        ax_roc.plot(fpr, tpr, label=f"{label} (AUROC {skm.auc(fpr, tpr):.3f})")
        edges = np.linspace(0, 1, 11)
        bucket = np.clip(np.digitize(score, edges[1:-1]), 0, 9)
        used = [b for b in range(10) if np.any(bucket == b)]
        ax_cal.plot([score[bucket == b].mean() for b in used], [y[bucket == b].mean() for b in used],
                    marker="o", label=label)
    ax_roc.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax_roc.set(title="ROC curves (hold-out)", xlabel="false positive rate", ylabel="true positive rate")
    ax_cal.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect")
    ax_cal.set(title="Calibration (hold-out)", xlabel="predicted probability", ylabel="observed rate")
    for ax in (ax_roc, ax_cal):
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "upper left")
    return {"roc": roc, "calibration": cal}


def _short(column: str) -> str:
    """``metrics.holdout.auroc`` -> ``auroc``; ``params.budget`` -> ``budget``."""
    parts = str(column).split(".")
    if parts[0] == "metrics" and len(parts) == 3 and parts[1] == "holdout":
        return parts[2]
    return ".".join(parts[1:]) if parts[0] in ("metrics", "params") else column


def _metric_text(r) -> str:
    value = r.get("metric")
    if value is None or pd.isna(value):
        return ""
    return f"{r.get('metric_name')} {value:.3f}"


def _when(iso) -> str:
    """'2024-05-01T14:03:22+00:00' -> '2024-05-01 14:03:22' (times are UTC)."""
    return "" if not iso else str(iso).replace("T", " ").removesuffix("+00:00")


def _cell(key: str, value) -> str:
    """A comparison cell: digests shortened to 12 characters (the whole one on hover)."""
    if isinstance(value, str) and key.endswith(("fingerprint", "hash")) and len(value) > 12:
        return f"<span title='{esc(value)}'>{esc(value[:12])}…</span>"
    return esc(value)
