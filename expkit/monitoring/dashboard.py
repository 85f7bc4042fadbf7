"""The monitor's figures (matplotlib, no pyplot state kept) and its HTML dashboard."""
from __future__ import annotations

import base64
import html
import io
import math

import numpy as np
import pandas as pd

from ..formatting import html_table
from .thresholds import SCORE_FIELD  # noqa: F401  (figures label the score's row)


def figures(result) -> dict:
    """``{name: Figure}`` of a :class:`~expkit.monitoring.result.MonitorResult`: the KPIs
    over time always; the per-model figures once a model is in production."""
    figs = {"kpis_over_time": _fig_kpi_history(result.history)}
    if result.models.empty:
        return figs
    return {
        **figs,
        "scores_over_time": _fig_scores_over_time(result.batches),
        "live_auroc_over_time": _fig_auroc_history(result.auroc_history, result.models),
        "psi_over_time": _fig_drift_history(result.drift_history, result.thresholds),
        "score_distributions": _fig_score_distributions(result.scores),
        "drift": _fig_drift(result.drift),
        "auroc": _fig_auroc(result.models),
    }


def page(result) -> str:
    """The whole dashboard as one self-contained HTML page (figures as embedded PNG, no
    external scripts or styles; wide tables scroll inside the page, which reads at 1,280 px)."""
    parts = [f"<h1>expkit monitor</h1><p>generated {result.generated_at:%Y-%m-%d %H:%M} UTC</p>"]
    parts.append(body(result))
    for name, fig in figures(result).items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        parts.append(f"<h3>{html.escape(name.replace('_', ' '))}</h3>"
                     f'<img alt="{name}" src="data:image/png;base64,{data}">')
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>expkit monitor</title>"
            f"<style>{_CSS}</style></head><body><main>" + "".join(parts) + "</main></body></html>")


def body(result) -> str:
    """The tables of the dashboard (what a notebook shows)."""
    parts = [f"<p><small>{html.escape(result.folder_line)}</small></p>" if result.folder_line else "",
             "<h2>Fleet</h2>", _table(result.kpis)]
    if len(result.schedules):
        levels = result.schedules["last_status"].map({"failed": "alert", "interrupted": "warning"})
        parts += ["<h2>Schedules</h2>",
                  "<div class='scroll'>" + html_table(result.schedules, row_classes=[
                      v if isinstance(v, str) else None for v in levels]) + "</div>"]
    if result.models.empty:
        parts.append("<p><b>No production models yet.</b> Promote a run's model with "
                     "<code>expkit promote</code>, then score with <code>expkit score</code>.</p>")
        return "".join(parts)
    n_alert = int((result.alerts["level"] == "alert").sum())
    n_warn = int((result.alerts["level"] == "warning").sum())
    parts.append(f"<h2>Alerts</h2><p>{n_alert} alert(s), {n_warn} warning(s)</p>")
    if not result.alerts.empty:
        parts.append(_table(result.alerts, level_col="level"))
    parts += ["<h2>Production models</h2>", _table(result.models, level_col="status"),
              f"<h2>Drift (latest batches, at least {result.thresholds['min_drift_rows']:,.0f} rows "
              "in all, vs training reference)</h2>",
              _table(result.drift, level_col="level")]
    return "".join(parts)


def _table(df: pd.DataFrame, level_col: str | None = None) -> str:
    classes = None
    if level_col and len(df):
        classes = [v if v in ("alert", "warning") else None for v in df[level_col]]
    return f"<div class='scroll'>{html_table(df, row_classes=classes)}</div>"


# -- figures (matplotlib, no pyplot state kept) ------------------------------------------
def _label(app, tenant, version) -> str:
    return f"{app}/{tenant or '-'} v{version}"


def _new_figure(w=8, h=3.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _nothing(fig, ax, text):
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", color="grey")
    return fig


def _fig_scores_over_time(batches: pd.DataFrame):
    fig = _new_figure()
    ax = fig.add_subplot()
    if batches.empty:
        return _nothing(fig, ax, "no scores written yet")
    t = pd.to_datetime(batches["finished_at"]).dt.floor("h")
    hourly = batches.assign(hour=t).groupby("hour")["rows"].sum()
    hourly = hourly.reindex(pd.date_range(hourly.index.min(), hourly.index.max(), freq="h"), fill_value=0)
    ax.bar(hourly.index, hourly.values, width=1 / 24, color="#9ecae1", label="rows per hour")
    ax.plot(hourly.index, hourly.rolling(24, min_periods=1).mean().values, color="#08519c",
            label="1-day moving average")
    ax.set_ylabel("scores written")
    ax.set_title("Scores written over time")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    return fig


def _fig_score_distributions(scores: pd.DataFrame):
    groups = list(scores.groupby(["app", "tenant", "version"], dropna=False, sort=False)) if len(scores) else []
    if not groups:
        fig = _new_figure()
        return _nothing(fig, fig.add_subplot(), "no score distributions yet")
    n = min(len(groups), 12)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _new_figure(4 * cols, 3 * rows)
    x = np.arange(10)
    for i, ((app, tenant, version), g) in enumerate(groups[:n]):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.bar(x - 0.2, g["evaluation"].to_numpy() * 100, 0.4, label="evaluation", color="#bdbdbd")
        ax.bar(x + 0.2, g["production"].to_numpy() * 100, 0.4, label="production", color="#3182bd")
        ax.set_xticks(x, [f"{b / 10:.1f}" for b in range(10)], fontsize=7)
        ax.set_title(_label(app, None if pd.isna(tenant) else tenant, version), fontsize=9)
        ax.set_ylabel("% of predictions", fontsize=8)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Score distribution: evaluation vs production (latest batches)")
    fig.tight_layout()
    return fig


def _fig_drift(d: pd.DataFrame):
    d = d[d["psi"].notna()] if len(d) else d
    if d.empty:
        fig = _new_figure()
        return _nothing(fig, fig.add_subplot(), "no drift measured yet (score a batch first)")
    d = d.assign(model=[_label(a, None if pd.isna(t) else t, v)
                        for a, t, v in zip(d["app"], d["tenant"], d["version"])])
    grid = d.pivot_table(index="field", columns="model", values="psi", aggfunc="max", sort=False)
    fig = _new_figure(1.6 + 1.2 * grid.shape[1], 0.9 + 0.35 * grid.shape[0])
    ax = fig.add_subplot()
    values = grid.to_numpy(dtype=float)
    im = ax.imshow(np.nan_to_num(values, nan=0.0), cmap="OrRd", vmin=0, vmax=max(0.5, np.nanmax(values)),
                   aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):  # light text on dark cells, dark text on light ones
            r, g, b, _a = im.cmap(im.norm(v))
            dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    fig.colorbar(im, ax=ax, label="PSI")
    ax.set_title("Drift per field (PSI vs training)")
    fig.tight_layout()
    return fig


def _fig_auroc(models: pd.DataFrame):
    fig = _new_figure(max(5, 1.2 * len(models) + 2), 3.5)
    ax = fig.add_subplot()
    if models.empty or models["eval_auroc"].isna().all():
        return _nothing(fig, ax, "no AUROC to show")
    labels = [_label(r.app, r.tenant, r.version) for r in models.itertuples()]
    x = np.arange(len(models))
    ax.bar(x - 0.2, models["eval_auroc"].astype(float), 0.4, label="evaluation", color="#bdbdbd")
    ax.bar(x + 0.2, models["live_auroc"].astype(float), 0.4, label="live", color="#31a354")
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUROC")
    ax.set_title("AUROC per model (live where feedback exists)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _fig_kpi_history(history: pd.DataFrame):
    names = ["scores per day", "experiments per day", "models in production"]
    fig = _new_figure(11, 2.8)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        part = history[history["kpi"] == name] if len(history) else history
        if len(part):
            days = pd.to_datetime(part["day"])
            values = part["value"].astype(float).to_numpy()
            if name == "models in production":
                ax.step(days, values, where="post", color="#08519c")
            else:
                ax.bar(days, values, width=0.8, color="#9ecae1")
        ax.set_title(name, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"The fleet over the last {len(history) // len(names) if len(history) else 0} days")
    fig.tight_layout()
    return fig


def _fig_auroc_history(history: pd.DataFrame, models: pd.DataFrame):
    fig = _new_figure(8, 3.2)
    ax = fig.add_subplot()
    if history.empty:
        return _nothing(fig, ax, "no live AUROC yet: load outcomes with `expkit feedback`")
    for (app, tenant, version), part in history.groupby(["app", "tenant", "version"], dropna=False, sort=False):
        label = _label(app, None if pd.isna(tenant) else tenant, version)
        line, = ax.plot(pd.to_datetime(part["day"]), part["live_auroc"], marker="o", label=f"{label} live")
        ev = part["eval_auroc"].iloc[0]
        if np.isfinite(ev):
            ax.axhline(ev, color=line.get_color(), ls="--", lw=1)
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_ylim(0.4, 1)
    ax.set_ylabel("AUROC (dashed: evaluation)")
    ax.set_title("Live AUROC per day of scoring")
    ax.legend(fontsize=7, loc="lower left")
    fig.autofmt_xdate()
    return fig


def _fig_drift_history(history: pd.DataFrame, thresholds):
    fig = _new_figure(8, 3.2)
    ax = fig.add_subplot()
    if history.empty:
        return _nothing(fig, ax, "no drift measured yet (score a batch first)")
    top = history.groupby("field")["psi"].max().sort_values(ascending=False).index[:6]
    for field, part in history[history["field"].isin(top)].groupby("field", sort=False):
        part = part.sort_values("finished_at")
        ax.plot(pd.to_datetime(part["finished_at"]), part["psi"], marker="o", ms=3, label=field)
    ax.axhline(thresholds["psi_warning"], color="#e69500", ls="--", lw=1, label="warning")
    ax.axhline(thresholds["psi_alert"], color="#b03030", ls="--", lw=1, label="alert")
    ax.set_ylabel("PSI vs training")
    ax.set_title("Drift per batch (the most drifted fields)")
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    fig.autofmt_xdate()
    return fig


# -- HTML helpers ---------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
main{max-width:1180px;margin:0 auto}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f3f3f3}
tr.alert td{background:#fdd}tr.warning td{background:#fff3cd}img{max-width:100%}"""
