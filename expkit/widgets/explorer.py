"""``Explorer``: look at a table column by column, fix inferred types, pick the target."""
from __future__ import annotations

import ipywidgets as W
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import schema as schema_mod
from ..errors import SchemaError, TargetError
from ..formatting import fmt
from ..profiling import profile
from ._common import WidgetFront, column_dropdown, column_value, esc, figure_png

_CATEGORY_LIKE = ("binary", "categorical", "id", "constant", "email", "url", "phone")
_TOP = 15


class Explorer(WidgetFront):
    """Explore a table: target, per-column type overrides, distributions.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    target : str, optional
        The label column, preselected in the target dropdown.
    schema : Schema or dict, optional
        Start from this schema (it must cover every column), or from the
        inferred one with these ``{column: type}`` overrides.
    page_size : int, default 25
        Column rows shown per page; only one page of rows exists as widgets,
        so a table with thousands of columns stays responsive.

    Attributes
    ----------
    widget : ipywidgets.VBox
        What the notebook displays.
    overrides : dict
        ``{column: type}`` chosen in the type dropdowns.
    figure : matplotlib.figure.Figure or None
        The figure of the selected column.

    Examples
    --------
    >>> ex = Explorer(df, target="converted")          # doctest: +SKIP
    >>> ex.set_type("web_visits", "categorical")       # or use the dropdown
    >>> expkit.tournament(df, "converted", schema=ex.schema)
    """

    def __init__(self, df: pd.DataFrame, target: str | None = None, *, schema=None,
                 page_size: int = 25):
        if target is not None and target not in df.columns:
            raise TargetError(f"target {target!r} is not a column of the table",
                              hint=f"columns: {', '.join(map(str, df.columns[:20]))}")
        self.df = df
        self.page_size = int(page_size)
        if isinstance(schema, schema_mod.Schema):
            missing = [c for c in df.columns if c not in schema]
            if missing:
                raise SchemaError(f"the schema has no type for column(s) {missing[:10]}",
                                  hint="pass a schema of this table, or a {column: type} dict")
            self._base = schema
        else:
            self._base = schema_mod.infer(df, target=target, overrides=schema)
        self.overrides: dict[str, str] = {}
        self._stats = _column_stats(df, target, self._base)
        self.selected: str | None = None
        self.figure: Figure | None = None
        self.page = 0
        self._matching = list(df.columns)
        self._row_cols: list[str | None] = []
        self._syncing = False
        self._build(target)
        self._show_page()

    # -- public state --------------------------------------------------------------
    @property
    def target(self) -> str | None:
        """The column chosen as target (None when none is)."""
        return column_value(self.target_dd)

    @property
    def schema(self) -> schema_mod.Schema:
        """The inferred schema with the overrides and the chosen target applied."""
        out = self._base.override(self.overrides)
        out.target = self.target
        return out

    @property
    def n_pages(self) -> int:
        return max(1, -(-len(self._matching) // self.page_size))

    @property
    def visible_columns(self) -> list[str]:
        """The columns on the current page (after the filter)."""
        return [c for c in self._row_cols if c is not None]

    def set_type(self, column: str, type_: str) -> None:
        """Override the type of ``column`` (same as choosing it in its dropdown)."""
        if column not in self._base:
            raise SchemaError(f"column {column!r} is not in the table",
                              hint="use one of Explorer.df.columns")
        if type_ not in schema_mod.TYPES:
            raise SchemaError(f"unknown type {type_!r} for column {column!r}",
                              hint=f"use one of {', '.join(schema_mod.TYPES)}")
        if type_ == self._base[column].type:
            self.overrides.pop(column, None)
        else:
            self.overrides[column] = type_
        self._show_page()
        if column == self.selected:
            self.select(column)

    def select(self, column: str) -> None:
        """Show the distribution of ``column`` (and its relation to the target)."""
        if column not in self._base:
            raise SchemaError(f"column {column!r} is not in the table",
                              hint="use one of Explorer.df.columns")
        self.selected = column
        self.figure = _column_figure(self.df, column, self.schema[column].type, self.target)
        self.plot.value = figure_png(self.figure)
        self.plot.layout.display = ""
        stats = self._stats.loc[column]
        self.detail_title.value = (
            f"<b>{esc(column)}</b> &middot; {esc(self.schema[column].type)} "
            f"&middot; <i>{esc(self.schema[column].evidence)}</i><br>"
            f"filled {stats['fill_rate']:.0%}, {int(stats['distinct'])} distinct"
            + (f" &middot; <span style='color:#b35900'>{esc(stats['warnings'])}</span>"
               if stats["warnings"] else ""))
        self._restyle_rows()

    def next_page(self, _=None) -> None:
        self.page = min(self.page + 1, self.n_pages - 1)
        self._show_page()

    def prev_page(self, _=None) -> None:
        self.page = max(self.page - 1, 0)
        self._show_page()

    # -- building ------------------------------------------------------------------
    def _build(self, target):
        cols = list(self.df.columns)
        self.target_dd = column_dropdown(cols, target, description="target",
                                         layout=W.Layout(width="280px"))
        self.target_dd.observe(self._on_target, names="value")
        self.filter = W.Text(placeholder="filter columns by name or type",
                             layout=W.Layout(width="240px"))
        self.filter.observe(self._on_filter, names="value")
        self.prev_button = W.Button(description="◀ prev", layout=W.Layout(width="70px"))
        self.next_button = W.Button(description="next ▶", layout=W.Layout(width="70px"))
        self.prev_button.on_click(self.prev_page)
        self.next_button.on_click(self.next_page)
        self.page_label = W.HTML()
        header = W.HTML(
            "<div style='display:flex;font-weight:600;font-size:12px'>"
            "<span style='width:190px'>column</span><span style='width:130px'>type</span>"
            "<span style='width:70px'>filled</span><span style='width:70px'>distinct</span>"
            f"<span style='width:90px' title=\"{_ASSOCIATION_HELP}\">"
            "<span style='border-bottom:1px dotted'>vs target</span></span><span>warnings</span></div>")
        self.rows = []
        for i in range(self.page_size):
            name = W.Button(layout=W.Layout(width="185px"), tooltip="show this column")
            name.on_click(lambda _b, i=i: self._on_row_click(i))
            typ = W.Dropdown(options=schema_mod.TYPES, layout=W.Layout(width="125px"))
            typ.observe(lambda ch, i=i: self._on_type(i, ch["new"]), names="value")
            fill, distinct, assoc, warn = (W.HTML(layout=W.Layout(width=w))
                                           for w in ("65px", "65px", "85px", "auto"))
            self.rows.append((W.HBox([name, typ, fill, distinct, assoc, warn]), name, typ, fill,
                               distinct, assoc, warn))
        self.rows_box = W.VBox([r[0] for r in self.rows])
        self.detail_title = W.HTML("<i>click a column to see its distribution</i>")
        self.plot = W.Image(format="png", layout=W.Layout(display="none", max_width="720px"))
        self.widget = W.VBox([
            W.HBox([self.target_dd, self.filter]),
            W.HBox([self.prev_button, self.next_button, self.page_label]),
            header, self.rows_box,
            W.VBox([self.detail_title, self.plot]),
        ])

    # -- events --------------------------------------------------------------------
    def _on_target(self, change):
        if change["new"] is None:  # becomes "(none)" next
            return
        self._stats = _column_stats(self.df, self.target, self._base)
        self._show_page()
        if self.selected is not None:
            self.select(self.selected)

    def _on_filter(self, change):
        text = (change["new"] or "").strip().lower()
        types = self.schema.types
        self._matching = [c for c in self.df.columns
                          if not text or text in str(c).lower() or types[c] == text]
        self.page = 0
        self._show_page()

    def _on_row_click(self, i):
        if self._row_cols[i] is not None:
            self.select(self._row_cols[i])

    def _on_type(self, i, new):
        col = self._row_cols[i] if i < len(self._row_cols) else None
        if self._syncing or col is None:
            return
        self.set_type(col, new)

    # -- rendering -----------------------------------------------------------------
    def _show_page(self):
        self.page = min(self.page, self.n_pages - 1)
        start = self.page * self.page_size
        page_cols = self._matching[start:start + self.page_size]
        self._row_cols = page_cols + [None] * (self.page_size - len(page_cols))
        types = self.schema.types
        self._syncing = True
        try:
            for (box, name, typ, fill, distinct, assoc, warn), col in zip(self.rows,
                                                                          self._row_cols):
                if col is None:
                    box.layout.display = "none"
                    continue
                box.layout.display = ""
                stats = self._stats.loc[col]
                name.description = str(col) + ("  (target)" if col == self.target else "")
                typ.value = types[col]
                fill.value = f"{stats['fill_rate']:.0%}"
                distinct.value = str(int(stats["distinct"]))
                assoc.value = _association_text(stats["association"], stats["association_metric"])
                warn.value = f"<span style='color:#b35900'>{esc(stats['warnings'])}</span>"
        finally:
            self._syncing = False
        self._restyle_rows()
        self.page_label.value = (f"page {self.page + 1} of {self.n_pages} &middot; "
                                 f"{len(self._matching)} of {self.df.shape[1]} columns")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.n_pages - 1

    def _restyle_rows(self):
        for (_box, name, typ, *_), col in zip(self.rows, self._row_cols):
            name.button_style = "info" if col is not None and col == self.selected else ""
            typ.style.description_width = "0px"
            typ.layout.border = ("1px solid #e69500" if col in self.overrides else "")


def _column_stats(df: pd.DataFrame, target, schema) -> pd.DataFrame:
    """fill_rate, distinct, association and warnings (kinds) per column, from the profile."""
    frame = profile(df, target=target, schema=schema).to_frame()
    return frame[["fill_rate", "distinct", "association", "association_metric", "warnings"]]


#: What the "vs target" column shows (its header's tooltip).
_ASSOCIATION_HELP = ("association with the target. AUC for numbers against a binary target: "
                     "0.5 none, 1 perfect (either direction). Cramér's V (V) for categories and eta "
                     "for numbers against a multi-class target: 0 none, 1 perfect. |Spearman| (rho) "
                     "against a numeric target: 0 none, 1 perfect.")
_SHORT_METRIC = {"AUC": "AUC", "Cramer's V": "V", "eta": "eta", "|Spearman|": "rho"}


def _association_text(value, metric) -> str:
    """``0.62 AUC``, ``0.31 V``: the value with its measure, whose scales differ."""
    if pd.isna(value):
        return ""
    name = _SHORT_METRIC.get(metric, metric or "")
    return (f"{value:.2f} <span style='color:#777;font-size:11px' title='{esc(metric)}'>"
            f"{esc(name)}</span>")


def _target_values(y: pd.Series):
    """A numeric series whose mean per group is 'the target' and its label."""
    y = y.dropna()
    values = pd.unique(y)
    if len(values) <= 2:
        positive = sorted(values, key=str)[-1]
        return (y == positive).astype(float), f"share with {y.name} = {positive}"
    if pd.api.types.is_numeric_dtype(y):
        return y.astype(float), f"mean of {y.name}"
    top = y.value_counts().index[0]
    return (y == top).astype(float), f"share with {y.name} = {top}"


def _column_figure(df: pd.DataFrame, column: str, type_: str, target: str | None) -> Figure:
    """Distribution of ``column`` for its semantic type, and the target per group."""
    with_target = target is not None and target != column
    fig = Figure(figsize=(9 if with_target else 4.8, 3.0))
    axes = fig.subplots(1, 2 if with_target else 1, squeeze=False)[0]
    values = _values(df[column], type_)
    labelled = type_ in _CATEGORY_LIKE
    if labelled:
        counts = values.value_counts().iloc[:_TOP][::-1]  # biggest on top
        axes[0].barh([_label(v) for v in counts.index], counts.values, color="#4c72b0")
        axes[0].set_xlabel("rows")
    else:
        present = values.dropna()
        bins = 30
        if _skewed(present):  # log-spaced bins, or one bar holds everything
            bins = np.geomspace(present.min(), present.max(), bins + 1)
            axes[0].set_xscale("log")
        axes[0].hist(present, bins=bins, color="#4c72b0")
        axes[0].set_ylabel("rows")
        if type_ == "date":
            axes[0].tick_params(axis="x", labelrotation=30)
    axes[0].set_title(f"{column} ({type_})", fontsize=10)
    if with_target:
        y, label = _target_values(df[target])
        groups = values if labelled else _bins(values)
        by = y.groupby(groups.reindex(y.index), observed=True).mean()
        by = by.reindex(counts.index) if labelled else by.sort_index()
        axes[1].barh([_label(v) for v in by.index], by.values, color="#dd8452")
        axes[1].axvline(float(y.mean()), color="grey", ls="--", lw=1)
        axes[1].set_xlabel(label)
        axes[1].set_title(f"{target} by {column}", fontsize=10)
    for ax in axes:
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def _values(x: pd.Series, type_: str) -> pd.Series:
    """What to plot: numbers, dates, text lengths (words), or labels with '(missing)'
    (the domain of an email or URL)."""
    if type_ in ("numeric", "integer"):
        return schema_mod.parse_numeric(x)
    if type_ == "date":
        return schema_mod.parse_dates(x)
    if type_ == "text":
        return x.astype("string").str.split().str.len().astype("Float64").astype(float)
    labels = x.astype("string")
    if type_ == "email":
        labels = labels.str.rsplit("@", n=1).str[-1].str.lower()
    elif type_ == "url":
        labels = labels.str.replace(r"^\w+://", "", regex=True).str.split("/").str[0].str.lower()
    return labels.fillna("(missing)").astype(str)


def _skewed(present: pd.Series) -> bool:
    """Positive, strongly right-skewed numbers (e.g. amounts of money)."""
    if not pd.api.types.is_numeric_dtype(present) or len(present) < 3 or present.min() <= 0:
        return False
    return bool(present.skew() > 2)


def _bins(values: pd.Series) -> pd.Series:
    """Ordered groups of a numeric or date series: its values if few, else <= 10 quantile bins."""
    if pd.api.types.is_datetime64_any_dtype(values):
        months = values.dt.to_period("M")
        return months if months.nunique() <= 15 else values.dt.to_period("Q")
    if values.nunique() <= 10:
        return values
    return pd.qcut(values, q=10, duplicates="drop")


def _label(v) -> str:
    if isinstance(v, pd.Interval):
        return f"{fmt(float(v.left))} .. {fmt(float(v.right))}"
    if isinstance(v, float):
        return fmt(v)
    return str(v)[:30]
