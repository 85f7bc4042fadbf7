"""report.html: a run's executed notebook for people (code hidden), fully offline.

The page opens with what a reader looks for first: the run's parameters, its status
(and the failing cell), the verdict (winner, hold-out metric, above chance or not)
and the leaderboard, with the run's files; then the notebook's outputs as details.
It is nbconvert's ``lab`` template without the scripts that template loads from
CDNs (require.js, MathJax, mermaid, widget managers): figures are embedded, styles
inline, so the page opens offline from disk or from a Jupyter server's ``files/``
URL. Wide outputs scroll inside their cell, so the page reads at 1,280 px.
"""
from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Mapping

import nbformat
import pandas as pd

from .files import write_text
from .formatting import best_columns, fmt, html_table

log = logging.getLogger(__name__)
_NBCONVERT_LOG = logging.getLogger(__name__ + ".nbconvert")  # quiet: warns about image alt text
_NBCONVERT_LOG.setLevel(logging.ERROR)

#: Styles of the report: readable at 1,280 px (wide tables scroll in their cell).
CSS = """
main{max-width:1180px;margin:0 auto;padding:0 16px}
.jp-OutputArea-output{overflow-x:auto;max-width:100%}
.jp-OutputArea-output img{max-width:100%;height:auto}
.jp-RenderedHTMLCommon table{font-size:12px}
.expkit-head{font:13px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:16px 0 24px}
.expkit-head h1{font-size:20px;margin:0 0 4px}.expkit-head h2{font-size:15px;margin:18px 0 6px}
.expkit-head .scroll{overflow-x:auto}
.expkit-head table.expkit-table{margin:4px 0 8px}
.expkit-head table.expkit-table th,.expkit-head table.expkit-table td{text-align:left}
.expkit-head table.expkit-table td.num{text-align:right}
.expkit-params{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:2px 18px}
.expkit-params span{overflow-wrap:anywhere}.expkit-params b{font-weight:600;color:#555}
.expkit-status{padding:1px 7px;border-radius:9px;color:#fff;font-weight:600}
.expkit-ok{background:#2a7d2a}.expkit-bad{background:#b03030}.expkit-mid{background:#8a6d00}
.expkit-table td.best{font-weight:700;background:#e6f4ea}
"""
# nbconvert's lab page without external scripts; the rest of the template as it is
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">""" + CSS + """</style>{%- endblock extra_css -%}
"""
#: Leaderboard columns not shown in the report's opening (leaderboard.csv keeps them).
_HIDDEN = ("best_params", "best_trial", "folds", "complete", "pruned", "failed")


def write(run, error: Mapping | None = None, status: str | None = None) -> Path:
    """Write ``report.html`` of ``run`` (a :class:`expkit.run.Run`); ``status`` is the
    run's ending status when the report is written before run.json records it.

    Only writing the file can fail (:class:`~expkit.errors.WriteError`).

    When the notebook cannot be rendered, the report still opens with the run's
    parameters and status and says why the notebook is missing.
    """
    target = run.dir / "report.html"
    try:
        body = render(run, error, status)
    except Exception as exc:  # the report must exist even when the notebook does not
        log.warning("run %s: could not export the notebook (%s)", run.id, exc)
        message = (error or {}).get("message", "")
        body = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(run.id)}</title>"
                f"<style>{CSS}</style></head><body><main>{_safe_header(run, error, status)}"
                f"<pre>{html.escape(str(message))}</pre>"
                f"<p>The notebook could not be rendered: {html.escape(str(exc))}</p></main></body></html>")
    return write_text(target, body)


def render(run, error: Mapping | None = None, status: str | None = None) -> str:
    """The report page of ``run``: the opening (:func:`header`) then the notebook, code hidden."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(run.dir / "notebook.ipynb"), as_version=4)
    opening = nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(
        "display_data", data={"text/html": header(run, error, status)})])
    nb.cells.insert(0, opening)
    exporter = HTMLExporter(template_name="lab", template_file="expkit_report.html.j2",
                            extra_loaders=[DictLoader({"expkit_report.html.j2": _TEMPLATE})],
                            exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, log=_NBCONVERT_LOG)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": run.id}})
    return body


def _safe_header(run, error, status=None) -> str:
    try:
        return header(run, error, status)
    except Exception as exc:  # a broken run.json must not cost the report
        log.warning("run %s: no report header (%s)", run.id, exc)
        return f"<h1>{html.escape(run.id)}</h1>"


def header(run, error: Mapping | None = None, status: str | None = None) -> str:
    """The report's opening: title and status, error, parameters, verdict, leaderboard, files."""
    meta = run.meta
    metrics = run.metrics
    status = status or meta.get("status") or "running"
    error = error or meta.get("error")
    kind = {"succeeded": "ok", "failed": "bad", "interrupted": "bad"}.get(status, "mid")
    when = str(meta.get("started") or meta.get("created") or "")[:19].replace("T", " ")
    parts = [f"<h1>{html.escape(str(meta.get('template', 'run')))}"
             + (f" &middot; {html.escape(str(meta['tenant']))}" if meta.get("tenant") else "") + "</h1>",
             f"<p><span class='expkit-status expkit-{kind}'>{html.escape(status)}</span> "
             f"run <code>{html.escape(run.id)}</code>, started {html.escape(when)} UTC"
             + (f", {fmt(meta['duration'])} s" if meta.get("duration") is not None else "") + "</p>"]
    if error and error.get("message"):
        where = ""
        if error.get("cell") is not None:
            where = f"cell {error['cell']}" + (f" (In [{error['execution_count']}])"
                                                 if error.get("execution_count") is not None else "") + ": "
        parts.append(f"<p style='color:#b03030'><b>{html.escape(where + str(error['message']))}</b></p>")
    params = {k: v for k, v in (meta.get("params") or {}).items() if k != "run_dir"}
    if params:
        cells = "".join(f"<span><b>{html.escape(str(k))}</b> {html.escape(_short(v) or 'None')}</span>"
                        for k, v in params.items())
        parts += ["<h2>Parameters</h2>", f"<div class='expkit-params'>{cells}</div>"]
    verdict = verdict_html(metrics)
    if verdict:
        parts += ["<h2>Verdict</h2>", verdict]
    board = _leaderboard(run.dir / "leaderboard.csv", metrics)
    if board:
        parts += ["<h2>Leaderboard</h2>", f"<div class='scroll'>{board}</div>"]
    files = [p for p in ("notebook.ipynb", "metrics.json", "leaderboard.csv", "trials.csv",
                         "model", "figures", "study.log") if (run.dir / p).exists()]
    if files:
        links = ", ".join(f"<a href='{html.escape(p)}'>{html.escape(p)}</a>" for p in files)
        note = (" &middot; <code>study.log</code> is an Optuna journal: "
                "<code>optuna-dashboard study.log</code> opens it") if "study.log" in files else ""
        parts.append(f"<p><small>Files: {links}{note}</small></p>")
    parts.append("<h2>Details</h2>")
    return f"<div class='expkit-head'>{''.join(parts)}</div>"


def verdict_html(metrics: Mapping) -> str:
    """Winner, hold-out metrics and the above-chance verdict of a metrics.json dict ('' without)."""
    if not metrics or not (metrics.get("winner") or metrics.get("holdout")):
        return ""
    holdout = metrics.get("holdout") or {}
    above = metrics.get("above_chance")
    out = []
    if metrics.get("winner"):
        out.append(f"<b>Winner</b>: {html.escape(str(metrics['winner']))}")
        if metrics.get("cv_score") is not None:
            out[-1] += f" (CV {html.escape(str(metrics.get('metric', '')))} {fmt(metrics['cv_score'])}"
            out[-1] += f" ± {fmt(metrics['cv_std'])})" if metrics.get("cv_std") is not None else ")"
    if above is not None:
        ct = metrics.get("chance_test") or {}
        ci = (f" ({html.escape(str(ct.get('method', '')))} CI {fmt(ct['ci_low'])} to {fmt(ct['ci_high'])}"
              f", p = {fmt(ct.get('p_value'))})") if ct.get("ci_low") is not None else ""
        word = "above chance" if above else "NOT above chance"
        out.append(f"<span class='expkit-status expkit-{'ok' if above else 'bad'}'>{word}</span>{ci}")
    shown = {k: v for k, v in holdout.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if shown:
        out.append("<div class='scroll'>" + html_table([{"": "hold-out", **shown}], ["", *shown]) + "</div>")
    return "<p>" + "<br>".join(out[:2]) + "</p>" + "".join(out[2:])


def _leaderboard(path: Path, metrics: Mapping) -> str:
    if not path.is_file():
        return ""
    try:
        board = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return ""
    board = board.drop(columns=[c for c in _HIDDEN if c in board.columns])
    return leaderboard_html(board, metrics)


def leaderboard_html(board: pd.DataFrame, metrics: Mapping | None = None) -> str:
    """A leaderboard as HTML with the best value of each score column in bold
    (:func:`expkit.formatting.best_columns`; ``best_cv`` goes the way of the ranking
    metric named in ``metrics``)."""
    return html_table(board, best=best_columns(list(board.columns), (metrics or {}).get("metric")))


def _short(value, limit: int = 160) -> str:
    text = fmt(value) if not isinstance(value, (list, dict, tuple)) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."

