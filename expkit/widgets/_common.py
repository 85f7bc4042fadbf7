"""Small pieces shared by the expkit widgets: a display mixin, figure -> PNG,
and HTML tables styled for the JupyterLab light and dark themes."""
from __future__ import annotations

import html
import io

import ipywidgets as W

_TABLE_CSS = (
    "<style>.expkit-table{border-collapse:collapse;font-size:12px}"
    ".expkit-table th,.expkit-table td{padding:2px 8px;border-bottom:1px solid "
    "var(--jp-border-color2,#ddd);text-align:left}"
    ".expkit-table th{font-weight:600}.expkit-table tr.diff td{background:"
    "var(--jp-warn-color3,#fff3cd)}</style>"
)


class WidgetFront:
    """Mixin: an object with a ``.widget`` (an ipywidgets Box) displays as it."""

    widget: W.Box

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def figure_png(fig, dpi: int = 80) -> bytes:
    """Render a matplotlib Figure to PNG bytes (for an ``ipywidgets.Image``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def html_table(header, rows, row_classes=None) -> str:
    """An HTML table from a header and rows of already-escaped cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f'{_TABLE_CSS}<table class="expkit-table"><tr>{head}</tr>{"".join(body)}</table>'


def esc(value) -> str:
    """HTML-escape ``value`` after formatting floats compactly."""
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"  # NaN -> blank
    return html.escape("" if value is None else str(value))
