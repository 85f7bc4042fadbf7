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


#: The value of "(none)" in a column dropdown: ipywidgets shows an empty box for a None
#: value (None means "no selection" to it), so "(none)" needs a value of its own.
NO_COLUMN = ""


def column_dropdown(columns, value=None, **kwargs) -> W.Dropdown:
    """A dropdown of ``columns`` with "(none)" first; a None value shows as "(none)"."""
    dd = W.Dropdown(options=[("(none)", NO_COLUMN)] + [(str(c), c) for c in columns if c != NO_COLUMN],
                    value=NO_COLUMN if value is None else value, **kwargs)
    dd.observe(lambda change: setattr(dd, "value", NO_COLUMN) if change["new"] is None else None,
               names="value")
    return dd


def column_value(dd: W.Dropdown):
    """The column chosen in a :func:`column_dropdown`, None for "(none)"."""
    return None if dd.value in (None, NO_COLUMN) else dd.value


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
