"""Small pieces shared by the expkit widgets: a display mixin, figure -> PNG,
and HTML tables (:mod:`expkit.formatting`, styled for JupyterLab's light and dark themes)."""
from __future__ import annotations

import html
import io

import ipywidgets as W

from .. import formatting


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
    """An HTML table from header labels and rows of already-escaped cell HTML."""
    columns = list(range(len(header)))
    return formatting.html_table([dict(zip(columns, row)) for row in rows], columns, header=header,
                                 row_classes=row_classes, escape=False)


def esc(value) -> str:
    """HTML-escape ``value`` formatted for people (:func:`expkit.formatting.fmt`)."""
    return html.escape(formatting.fmt(value))
