"""Numbers and tables formatted for people: one place for reports, widgets and the CLI.

:func:`fmt` turns any value into short text (thousands separators for counts and
large numbers, four significant digits otherwise, blanks for missing values);
:func:`html_table` and :func:`text_table` lay records out with it. HTML tables use
JupyterLab's theme colours, with plain fallbacks for reports opened in a browser.
"""
from __future__ import annotations

import datetime as dt
import html
import math
from typing import Iterable, Mapping, Sequence

#: Styles of :func:`html_table` (JupyterLab theme variables, light fallbacks).
TABLE_CSS = (
    "<style>.expkit-table{border-collapse:collapse;font-size:12px;margin:.3em 0 1em}"
    ".expkit-table th,.expkit-table td{padding:2px 8px;border-bottom:1px solid "
    "var(--jp-border-color2,#ddd);text-align:left}"
    ".expkit-table th{font-weight:600}.expkit-table td.num{text-align:right}"
    ".expkit-table tr.diff td,.expkit-table tr.warning td{background:var(--jp-warn-color3,#fff3cd)}"
    ".expkit-table tr.alert td{background:var(--jp-error-color3,#f8d7da)}"
    ".expkit-table td.best{font-weight:700;background:var(--jp-success-color3,#e6f4ea)}</style>"
)


#: Score columns whose best value tables show in bold, and which way is best (a column
#: also counts when its name ends with ``_<name>``, e.g. ``oof_auroc``).
BEST = {"auroc": "max", "roc_auc": "max", "aupr": "max", "average_precision": "max", "f1": "max",
        "f1_macro": "max", "accuracy": "max", "balanced_accuracy": "max", "r2": "max", "log_loss": "min",
        "brier": "min", "rmse": "min", "mae": "min"}


def best_columns(columns, metric: str | None = None) -> dict:
    """``{column: "max" | "min"}`` of the score columns among ``columns`` (:data:`BEST`);
    ``best_cv`` goes the way of the ranking ``metric`` (default: higher is better)."""
    best = {c: how for c in columns for name, how in BEST.items()
            if str(c) == name or str(c).endswith(f"_{name}")}
    if "best_cv" in columns:
        best["best_cv"] = next((how for n, how in BEST.items() if str(metric or "").endswith(n)), "max")
    return best


def missing(value) -> bool:
    """None, NaN, NaT or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT, pd.NA -> True
    except (TypeError, ValueError):
        return False


def fmt(value, missing_text: str = "") -> str:
    """``value`` as short text: counts and numbers of 1,000 or more with thousands
    separators, other numbers with 4 significant digits (scientific only below 0.001),
    times to the minute, missing values as ``missing_text``."""
    if missing(value):
        return missing_text
    if isinstance(value, bool):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.2e}"
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return f"{value:%Y-%m-%d %H:%M}"
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or (
        hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf")


def html_table(records: Sequence[Mapping] | Iterable, columns: Sequence | None = None, *,
               row_classes: Sequence[str | None] | None = None, escape: bool = True,
               header: Sequence[str] | None = None, best: Mapping[str, str] | None = None) -> str:
    """An HTML table of ``records`` (dicts, or a DataFrame) with :func:`fmt` cells.

    ``row_classes`` gives each row a CSS class (``alert``, ``warning``, ``diff``);
    ``escape=False`` takes cells (and ``header`` labels) that are already HTML;
    ``header`` labels the columns (default: their names); ``best`` maps columns to
    ``"max"`` or ``"min"``: the best number of each is shown in bold (class ``best``).
    """
    if hasattr(records, "to_dict"):  # a DataFrame
        columns = list(columns or records.columns)
        records = records.to_dict("records")
    records = list(records)
    columns = list(columns or (records[0].keys() if records else []))
    if not records and header is None:
        return "<p><i>none</i></p>"
    labels = header if header is not None else [html.escape(str(c)) for c in columns]
    top = {}
    for c, how in (best or {}).items():
        values = [r.get(c) for r in records if _is_number(r.get(c)) and not missing(r.get(c))]
        if values:
            top[c] = max(values) if how == "max" else min(values)
    head = "".join(f"<th>{h}</th>" for h in labels)
    body = []
    for i, rec in enumerate(records):
        cells = []
        for c in columns:
            v = rec.get(c)
            text = fmt(v) if escape or not isinstance(v, str) else v
            text = html.escape(text) if escape else text
            if _is_number(v):
                winner = c in top and not missing(v) and v == top[c]
                cells.append(f"<td class='num{' best' if winner else ''}'>{text}</td>")
            else:
                cells.append(f"<td>{text}</td>")
        cls = row_classes[i] if row_classes else None
        body.append((f"<tr class='{cls}'>" if cls else "<tr>") + "".join(cells) + "</tr>")
    return f"{TABLE_CSS}<table class='expkit-table'><tr>{head}</tr>{''.join(body)}</table>"


def text_table(records: Sequence[Mapping], columns: Sequence[str], missing_text: str = "-") -> str:
    """A plain-text table (left-aligned columns) for the terminal."""
    cells = [[fmt(r.get(c), missing_text) for c in columns] for r in records]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


class Table:
    """A DataFrame (or records) shown for people: :func:`html_table` in notebooks (best per
    score column in bold with ``best=``), :func:`text_table` elsewhere; ``index=True``
    keeps the DataFrame's index as the first column."""

    def __init__(self, data, columns: Sequence | None = None, *, best: Mapping[str, str] | None = None,
                 index: bool = False):
        if hasattr(data, "reset_index") and index:
            data = data.reset_index()
        self.records = data.to_dict("records") if hasattr(data, "to_dict") else list(data)
        self.columns = list(columns or (data.columns if hasattr(data, "columns")
                                        else (self.records[0].keys() if self.records else [])))
        self.best = best

    def _repr_html_(self) -> str:
        return html_table(self.records, self.columns, best=self.best)

    def __repr__(self) -> str:
        return text_table(self.records, [str(c) for c in self.columns])
