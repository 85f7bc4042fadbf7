"""``RunBrowser``: filter the runs of the index, compare several, open their reports."""
from __future__ import annotations

import os
from pathlib import Path

import ipywidgets as W
import pandas as pd

from .. import runs as runs_mod
from ._common import WidgetFront, esc, html_table

_FILTERS = ("template", "tenant", "status")
_ALL = "(all)"


class RunBrowser(WidgetFront):
    """Browse the run index: filter by template, tenant and status; compare runs.

    Parameters
    ----------
    runs_dir : str or Path, optional
        The runs folder (default: ``$EXPKIT_RUNS`` or ``./runs``).
    max_rows : int, default 200
        The table and the list show the newest ``max_rows`` runs that pass the
        filters (narrow them to see older ones).

    Attributes
    ----------
    runs : pandas.DataFrame
        Every run of the index (``expkit.runs.list()``), newest first.
    filtered : pandas.DataFrame
        The runs that pass the filters.
    comparison : pandas.DataFrame
        Params and metrics of the selected runs side by side (one column per
        run) with a ``differs`` column.
    """

    def __init__(self, runs_dir=None, *, max_rows: int = 200):
        self.runs_dir = runs_mod.runs_dir(runs_dir)
        self.max_rows = int(max_rows)
        self.runs = pd.DataFrame()
        self.filtered = pd.DataFrame()
        self.comparison = pd.DataFrame()
        self._build()
        self.refresh()

    # -- public API ----------------------------------------------------------------
    def refresh(self, _=None) -> None:
        """Reload the runs from the index and re-apply the filters."""
        self.runs = runs_mod.list(runs_dir=self.runs_dir)
        for name, dd in self.dropdowns.items():
            values = sorted({str(v) for v in self.runs.get(name, pd.Series(dtype=str)).dropna()})
            keep = dd.value if dd.value in values else _ALL
            dd.options = [_ALL, *values]
            dd.value = keep
        self._apply_filters()

    def compare(self, run_ids=None) -> pd.DataFrame:
        """Params and metrics of ``run_ids`` (default: the selected runs) side by side."""
        run_ids = list(self.select.value if run_ids is None else run_ids)
        self.comparison = (runs_mod.compare(run_ids, runs_dir=self.runs_dir)
                           if len(run_ids) >= 2 else pd.DataFrame())
        self._show_comparison()
        return self.comparison

    def report_path(self, run_id: str) -> Path:
        """Where the report of ``run_id`` is (it exists once the run has finished)."""
        return self.runs_dir / run_id / "report.html"

    # -- building ------------------------------------------------------------------
    def _build(self):
        self.dropdowns = {name: W.Dropdown(options=[_ALL], value=_ALL, description=name,
                                           layout=W.Layout(width="240px"))
                          for name in _FILTERS}
        for dd in self.dropdowns.values():
            dd.observe(lambda _c: self._apply_filters(), names="value")
        self.refresh_button = W.Button(description="Refresh", icon="refresh",
                                       layout=W.Layout(width="100px"))
        self.refresh_button.on_click(self.refresh)
        self.table = W.HTML()
        self.select = W.SelectMultiple(options=[], rows=8, description="compare",
                                       layout=W.Layout(width="640px"))
        self.select.observe(lambda _c: self.compare(), names="value")
        self.compare_view = W.HTML()
        self.widget = W.VBox([
            W.HBox([*self.dropdowns.values(), self.refresh_button]),
            self.table, self.select, self.compare_view,
        ])

    # -- views ---------------------------------------------------------------------
    def _apply_filters(self):
        df = self.runs
        for name, dd in self.dropdowns.items():
            if dd.value != _ALL and name in df:
                df = df[df[name].astype(str) == dd.value]
        self.filtered = df
        header = ["run", "template", "tenant", "status", "created (UTC)", "winner", "metric",
                  "report"]
        rows = []
        shown = df.head(self.max_rows)
        for r in shown.itertuples(index=False):
            report = self.report_path(r.run_id)
            link = (f'<a href="{esc(_href(report))}" target="_blank">report</a>'
                    if report.exists() else "")
            rows.append([esc(r.run_id), esc(r.template), esc(r.tenant), esc(r.status),
                         esc(_when(r.created)), esc(r.winner), esc(_metric_text(r)), link])
        more = f" (newest {len(shown)} shown)" if len(shown) < len(df) else ""
        self.table.value = (f"<b>{len(df)}</b> of {len(self.runs)} runs{more}"
                            + html_table(header, rows))
        keep = [v for v in self.select.value if v in set(shown["run_id"])] if len(shown) else []
        self.select.options = [(f"{r.run_id}  [{r.status}]", r.run_id)
                               for r in shown.itertuples(index=False)]
        self.select.value = keep

    def _show_comparison(self):
        cmp = self.comparison
        if cmp.empty:
            self.compare_view.value = ("<i>select two or more runs to compare them</i>"
                                       if len(self.select.value) == 1 else "")
            return
        runs = [c for c in cmp.columns if c != "differs"]
        rows = [[esc(key), *(esc(cmp.at[key, c]) for c in runs), "&#8800;" if cmp.at[key, "differs"] else ""]
                for key in cmp.index]
        classes = ["diff" if d else "" for d in cmp["differs"]]
        self.compare_view.value = ("<b>comparison</b> (differences highlighted)"
                                   + html_table(["", *map(esc, runs), ""], rows, classes))


def _metric_text(r) -> str:
    if r.metric is None or pd.isna(r.metric):
        return ""
    return f"{r.metric_name} {r.metric:.3f}"


def _when(iso) -> str:
    """'2024-05-01T14:03:22+00:00' -> '2024-05-01 14:03:22' (times are UTC)."""
    return "" if not iso else str(iso).replace("T", " ").removesuffix("+00:00")


def _href(path: Path) -> str:
    """A link JupyterLab can open: relative to the working directory when inside it."""
    try:
        return Path(os.path.relpath(path, Path.cwd())).as_posix() if \
            path.resolve().is_relative_to(Path.cwd().resolve()) else path.resolve().as_uri()
    except ValueError:  # another drive on Windows
        return path.resolve().as_uri()
