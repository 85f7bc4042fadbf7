"""Monitoring: fleet KPIs, per-model health, drift against the training reference, alerts.

:func:`monitor` reads the registry (production models and their cards), the
score log and the run index and returns a :class:`MonitorResult` with tables
(``kpis``, ``models``, ``drift``, ``alerts``, ``batches``, ``scores``), figures
and a self-contained HTML dashboard. "Production" data of a model is its
latest scored batches, pooled newest first until they hold ``min_drift_rows`` rows
(one batch when it is that large); drift is the PSI of the score and of every input
field of those rows against the reference stored in the model card. Below
``min_drift_rows`` rows in all, drift is shown but raises no alert: PSI on a few
rows is noise.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from . import drift, scorelog
from .errors import ConfigError, RegistryError
from .runs import runs_dir as _runs_dir

log = logging.getLogger(__name__)

#: Alert thresholds; override any of them with ``monitor(thresholds={...})``.
DEFAULT_THRESHOLDS = {
    "psi_warning": 0.1,        # PSI of the score or a field: warning from here
    "psi_alert": 0.25,         # ... alert from here
    "auroc_drop": 0.05,        # live AUROC this far below evaluation: alert
    "stale_days": 7,           # no scores for a production model in this many days: alert
    "fill_rate_change": 0.2,   # fill rate of a field moved this much: warning
    "unseen_share": 0.2,       # share of unseen categories in a field: warning
    "min_feedback": 20,        # scored rows with feedback needed for live AUROC
    "min_drift_rows": 500,     # drift is measured on the latest batches holding this many rows
}
FEW_ROWS = "too few rows"  # drift level below min_drift_rows: shown, never alerted
SCORE_FIELD = "(score)"
ALERT_COLUMNS = ["level", "app", "tenant", "version", "check", "field", "value", "threshold", "message"]
MODEL_COLUMNS = ["app", "tenant", "version", "run_id", "family", "promoted_at", "above_chance",
                 "eval_auroc", "live_auroc", "feedback_rows", "batches", "rows_scored",
                 "last_scored", "drift_rows", "score_psi", "max_field_psi", "worst_field", "status"]
DRIFT_COLUMNS = ["app", "tenant", "version", "field", "kind", "psi", "fill_rate_ref", "fill_rate",
                 "fill_rate_change", "unseen_share", "level"]
BATCH_COLUMNS = ["id", "app", "tenant", "model_tenant", "version", "rows", "started_at", "finished_at",
                 "score_psi", "max_field_psi", "worst_field"]


@dataclass
class MonitorResult:
    """What :func:`monitor` found. Tables are DataFrames; see the module docstring."""

    kpis: pd.DataFrame
    models: pd.DataFrame
    drift: pd.DataFrame
    alerts: pd.DataFrame
    batches: pd.DataFrame
    scores: pd.DataFrame
    thresholds: dict = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    generated_at: datetime = field(default_factory=scorelog.utcnow)

    @property
    def ok(self) -> bool:
        """True when no alert-level alert fired (warnings allowed)."""
        return not (self.alerts["level"] == "alert").any()

    def kpi(self, name: str):
        """The value of one KPI by name."""
        return self.kpis.set_index("kpi").loc[name, "value"]

    # -- figures ------------------------------------------------------------------
    def figures(self) -> dict:
        """``{name: matplotlib Figure}``: scores over time, score distributions,
        drift per field, AUROC per model."""
        return {
            "scores_over_time": _fig_scores_over_time(self.batches),
            "score_distributions": _fig_score_distributions(self.scores),
            "drift": _fig_drift(self.drift),
            "auroc": _fig_auroc(self.models),
        }

    # -- HTML -----------------------------------------------------------------------
    def to_html(self, path=None) -> str:
        """A self-contained HTML dashboard (figures embedded as PNG); written to ``path`` if given."""
        import matplotlib.pyplot as plt

        parts = [f"<h1>expkit monitor</h1><p>generated {self.generated_at:%Y-%m-%d %H:%M} UTC</p>"]
        parts.append(self._body(include_figures=False))
        if not self.models.empty:
            for name, fig in self.figures().items():
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
                plt.close(fig)
                data = base64.b64encode(buf.getvalue()).decode("ascii")
                parts.append(f"<h3>{html.escape(name.replace('_', ' '))}</h3>"
                             f'<img alt="{name}" src="data:image/png;base64,{data}">')
        page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>expkit monitor</title>"
                f"<style>{_CSS}</style></head><body>" + "".join(parts) + "</body></html>")
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(page, encoding="utf-8")
        return page

    def _body(self, include_figures: bool = False) -> str:
        parts = ["<h2>Fleet</h2>", _table(self.kpis)]
        if self.models.empty:
            parts.append("<p><b>No production models yet.</b> Promote a run's model with "
                         "<code>expkit promote</code>, then score with <code>expkit score</code>.</p>")
            return "".join(parts)
        n_alert = int((self.alerts["level"] == "alert").sum())
        n_warn = int((self.alerts["level"] == "warning").sum())
        parts.append(f"<h2>Alerts</h2><p>{n_alert} alert(s), {n_warn} warning(s)</p>")
        if not self.alerts.empty:
            parts.append(_table(self.alerts, level_col="level"))
        parts += ["<h2>Production models</h2>", _table(self.models, level_col="status"),
                  f"<h2>Drift (latest batches, at least {self.thresholds['min_drift_rows']:,.0f} rows "
                  "in all, vs training reference)</h2>",
                  _table(self.drift, level_col="level")]
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self._body()

    def __repr__(self) -> str:
        return (f"MonitorResult({len(self.models)} production model(s), "
                f"{int((self.alerts['level'] == 'alert').sum())} alert(s), "
                f"{int((self.alerts['level'] == 'warning').sum())} warning(s))")


# -- entry point -------------------------------------------------------------------
def monitor(app: str | None = None, runs_dir=None, thresholds: Mapping | None = None,
            now: datetime | None = None) -> MonitorResult:
    """Fleet KPIs, per-model health, drift and alerts.

    Parameters
    ----------
    app : str, optional
        Only the production models of this app (KPIs on runs stay fleet-wide).
    runs_dir : str or Path, optional
        Runs folder (default ``$EXPKIT_RUNS`` or ``./runs``). An empty or missing
        folder gives an empty result, not an error.
    thresholds : dict, optional
        Overrides of :data:`DEFAULT_THRESHOLDS`.
    now : datetime, optional
        Naive UTC "now" (for reproducible reports and tests).

    Returns
    -------
    MonitorResult
    """
    th = _thresholds(thresholds)
    now = now or scorelog.utcnow()
    root = _runs_dir(runs_dir)
    if not (root / "index.db").exists() and not _external_db():
        return _empty(th, now, _kpis([], pd.DataFrame(), pd.DataFrame(columns=["created", "path"]), now))
    prod = production_models(root, app)
    batches = scorelog.batches(app, runs_dir=root)
    fb = scorelog.feedback(app, runs_dir=root)
    runs = _runs(root)
    return evaluate(prod, batches, fb, runs, th, now,
                    scored=lambda b: scorelog.scored_ids(b, root))


def _external_db() -> bool:
    import os

    return bool(os.environ.get("EXPKIT_DB"))


def _thresholds(overrides) -> dict:
    th = dict(DEFAULT_THRESHOLDS)
    for key, value in (overrides or {}).items():
        if key not in th:
            raise ConfigError(f"unknown threshold {key!r}", hint=f"use {', '.join(th)}")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"threshold {key!r} must be a number, got {value!r}") from None
        if value < 0 or not math.isfinite(value):
            raise ConfigError(f"threshold {key!r} must be a finite number >= 0, got {value}")
        th[key] = value
    if th["psi_warning"] > th["psi_alert"]:
        raise ConfigError("psi_warning must not be above psi_alert",
                           hint=f"got {th['psi_warning']} > {th['psi_alert']}")
    return th


def production_models(root: Path, app=None) -> list[dict]:
    """The registry's production entries (optionally of ``app``), each with its ``card``."""
    from .registry import Registry

    try:
        table = Registry(root).list()
    except RegistryError:
        return []
    if table is None or len(table) == 0:
        return []
    if "production" in table.columns:  # a history listing: keep the live entries
        table = table[table["production"].astype(bool)]
    if app is not None:
        table = table[table["app"] == app]
    out = []
    for entry in table.to_dict("records"):
        entry = {k: (None if _isna(v) else v) for k, v in entry.items()}
        model_dir = Path(entry.get("model_dir") or root / str(entry.get("run_id")) / "model")
        if not model_dir.is_absolute():
            model_dir = root / model_dir
        try:
            entry["card"] = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("production model %s/%s: cannot read %s", entry.get("app"),
                        entry.get("tenant"), model_dir / "card.json")
            entry["card"] = {}
        out.append(entry)
    return out


def _runs(root: Path) -> pd.DataFrame:
    from . import runs

    try:
        return runs.list(runs_dir=root)
    except Exception as exc:  # the run index is informational here
        log.warning("cannot read the run index: %s", exc)
        return pd.DataFrame(columns=runs.LIST_COLUMNS)


# -- computations (pure: tables in, tables out) ---------------------------------------
def evaluate(prod: list[dict], batches: pd.DataFrame, feedback: pd.DataFrame, runs: pd.DataFrame,
             thresholds: Mapping, now: datetime, scored=None) -> MonitorResult:
    """Build a :class:`MonitorResult` from production entries (with ``card``), score
    batches, feedback and the run list. ``scored(batches) -> DataFrame[id, score]``
    gives the scored ids used for live AUROC."""
    th = dict(thresholds)
    batch_table = _batch_table(batches, {(p["app"], p.get("tenant"), str(p.get("version"))): p["card"]
                                         for p in prod})
    batches = batches if len(batches) else pd.DataFrame(columns=scorelog.BATCH_COLUMNS)
    models, drift_rows, score_rows, alerts = [], [], [], []
    for p in prod:
        card = p.get("card") or {}
        key = (p["app"], p.get("tenant"), str(p.get("version")))
        mine = _select(batches, *key, tenant_col="model_tenant")
        row = {"app": key[0], "tenant": key[1], "version": key[2], "run_id": p.get("run_id"),
               "family": card.get("family"), "promoted_at": _ts(p.get("promoted_at")),
               "above_chance": card.get("above_chance"), "eval_auroc": eval_auroc(card),
               "live_auroc": math.nan, "feedback_rows": 0, "batches": len(mine),
               "rows_scored": int(mine["rows"].sum()) if len(mine) else 0,
               "last_scored": mine["finished_at"].iloc[-1] if len(mine) else pd.NaT,
               "drift_rows": 0, "score_psi": math.nan, "max_field_psi": math.nan, "worst_field": None}
        if len(mine) and scored is not None:
            fb = feedback[(feedback["app"] == key[0]) & feedback["tenant"].isin(mine["tenant"])] \
                if len(feedback) else feedback
            if mine["tenant"].isna().any() and len(feedback):
                fb = pd.concat([fb, _select(feedback, key[0], None)]).drop_duplicates()
            row["live_auroc"], row["feedback_rows"] = live_auroc(scored(mine), fb, th["min_feedback"])
        ref = card.get("reference") or {}
        alerted = []  # this model's drift rows that may raise alerts
        if len(mine):
            latest = _latest_rows(mine, th["min_drift_rows"])
            row["drift_rows"] = latest["rows"]
            enough = latest["rows"] >= th["min_drift_rows"]
            d = _drift(ref, latest)
            mine_drift = [{"app": key[0], "tenant": key[1], "version": key[2], **r,
                           "level": _level(r["psi"], th) if enough else FEW_ROWS}
                          for r in d.to_dict("records")]
            drift_rows += mine_drift
            alerted = mine_drift if enough else []
            score_rows += _score_rows(key, ref.get("score_buckets"), latest["score_counts"])
            fields = d[d["field"] != SCORE_FIELD]
            row["score_psi"] = float(d.loc[d["field"] == SCORE_FIELD, "psi"].iloc[0]) \
                if (d["field"] == SCORE_FIELD).any() else math.nan
            if fields["psi"].notna().any():
                worst = fields.loc[fields["psi"].idxmax()]
                row["max_field_psi"], row["worst_field"] = float(worst["psi"]), worst["field"]
        elif ref.get("score_buckets"):
            score_rows += _score_rows(key, ref["score_buckets"], None)
        alerts += _model_alerts(row, alerted, th, now)
        models.append(row)
    models_df = pd.DataFrame(models, columns=MODEL_COLUMNS)
    alerts_df = pd.DataFrame(alerts, columns=ALERT_COLUMNS)
    if len(models_df):
        models_df["status"] = [_status(alerts_df, r) for r in models_df.itertuples()]
    return MonitorResult(
        kpis=_kpis(prod, batches, runs, now),
        models=models_df,
        drift=pd.DataFrame(drift_rows, columns=DRIFT_COLUMNS),
        alerts=alerts_df.sort_values("level", key=lambda s: s.map({"alert": 0, "warning": 1}),
                                     kind="stable").reset_index(drop=True),
        batches=batch_table,
        scores=pd.DataFrame(score_rows, columns=["app", "tenant", "version", "bucket",
                                                 "evaluation", "production"]),
        thresholds=th, generated_at=now,
    )


def eval_auroc(card: Mapping) -> float:
    """Hold-out AUROC recorded in a model card (NaN when absent)."""
    metrics = card.get("metrics") or {}
    value = metrics.get("auroc", (metrics.get("holdout") or {}).get("auroc"))
    return float(value) if isinstance(value, (int, float)) else math.nan


def live_auroc(scored: pd.DataFrame, feedback: pd.DataFrame, min_rows: int = 20) -> tuple[float, int]:
    """(AUROC of scores against feedback labels, rows matched); NaN below ``min_rows``
    matched rows or with a single class."""
    from sklearn.metrics import roc_auc_score

    if scored.empty or feedback.empty:
        return math.nan, 0
    joined = scored[["id", "score"]].merge(feedback[["id", "label"]], on="id")
    n = len(joined)
    if n < min_rows or joined["label"].nunique() < 2:
        return math.nan, n
    return float(roc_auc_score(joined["label"], joined["score"])), n


def _select(table: pd.DataFrame, app, tenant, version=None, tenant_col="tenant") -> pd.DataFrame:
    if table.empty:
        return table
    t = table[tenant_col]
    mask = (table["app"] == app) & (t.isna() if tenant is None else t == tenant)
    if version is not None:
        mask &= table["version"].astype(str) == version
    return table[mask]


def _latest_rows(batches: pd.DataFrame, min_rows: float) -> dict:
    """The latest batches (oldest first in ``batches``) pooled newest first until they
    hold ``min_rows`` rows: ``{"rows", "fields", "score_counts"}`` as of one batch."""
    picked, rows = [], 0
    for b in reversed(batches.to_dict("records")):
        picked.append(b)
        rows += int(b["rows"])
        if rows >= min_rows:
            break
    if len(picked) == 1:
        return {"rows": rows, "fields": picked[0]["fields"], "score_counts": picked[0]["score_counts"]}
    fields = drift.merge([{"fields": b["fields"] or {}, "rows": int(b["rows"])} for b in picked])["fields"]
    counts = [b["score_counts"] for b in picked if b["score_counts"]]
    return {"rows": rows, "fields": fields,
            "score_counts": [int(c) for c in np.sum(counts, axis=0)] if counts else None}


def _drift(ref: Mapping, batch) -> pd.DataFrame:
    d = drift.compare(ref, {"fields": batch["fields"] or {}})
    counts = batch["score_counts"] or []
    if ref.get("score_buckets") and sum(counts):
        d = pd.concat([pd.DataFrame([{"field": SCORE_FIELD, "kind": "score",
                                      "psi": drift.psi(ref["score_buckets"], counts)}]), d],
                      ignore_index=True)
    return d


def _score_rows(key, evaluation, counts) -> list[dict]:
    n = 10
    ev = list(evaluation) if evaluation else [math.nan] * n
    total = sum(counts) if counts else 0
    pr = [c / total for c in counts] if total else [math.nan] * n
    return [{"app": key[0], "tenant": key[1], "version": key[2], "bucket": f"{i / n:.1f}-{(i + 1) / n:.1f}",
             "evaluation": ev[i], "production": pr[i]} for i in range(n)]


def _batch_table(batches: pd.DataFrame, cards: dict) -> pd.DataFrame:
    rows = []
    for b in batches.to_dict("records") if len(batches) else []:
        card = cards.get((b["app"], b["model_tenant"], str(b["version"])))
        row = {c: b.get(c) for c in BATCH_COLUMNS[:8]}
        row.update(score_psi=math.nan, max_field_psi=math.nan, worst_field=None)
        if card is not None:
            d = _drift(card.get("reference") or {}, b)
            s = d.loc[d["field"] == SCORE_FIELD, "psi"]
            f = d[(d["field"] != SCORE_FIELD) & d["psi"].notna()]
            row["score_psi"] = float(s.iloc[0]) if len(s) else math.nan
            if len(f):
                worst = f.loc[f["psi"].idxmax()]
                row["max_field_psi"], row["worst_field"] = float(worst["psi"]), worst["field"]
        rows.append(row)
    return pd.DataFrame(rows, columns=BATCH_COLUMNS)


def _level(value, th) -> str:
    if value is None or not np.isfinite(value):
        return "ok"
    return "alert" if value >= th["psi_alert"] else "warning" if value >= th["psi_warning"] else "ok"


def _model_alerts(row: dict, drift_rows: list[dict], th: Mapping, now: datetime) -> list[dict]:
    def alert(level, check, fld, value, threshold, message):
        return {"level": level, "app": row["app"], "tenant": row["tenant"], "version": row["version"],
                "check": check, "field": fld, "value": value, "threshold": threshold, "message": message}

    name = row["app"] + (f"/{row['tenant']}" if row["tenant"] else "")
    out = []
    for d in drift_rows:
        if d["level"] != "ok":
            limit = th["psi_alert"] if d["level"] == "alert" else th["psi_warning"]
            what = "score distribution" if d["field"] == SCORE_FIELD else f"field {d['field']!r}"
            out.append(alert(d["level"], "drift", d["field"], d["psi"], limit,
                             f"{name}: {what} drifted from training (PSI {d['psi']:.2f} >= {limit:g})"))
        change = d.get("fill_rate_change")
        if change is not None and np.isfinite(change) and abs(change) >= th["fill_rate_change"]:
            out.append(alert("warning", "fill rate", d["field"], change, th["fill_rate_change"],
                             f"{name}: fill rate of {d['field']!r} moved from {d['fill_rate_ref']:.0%} "
                             f"to {d['fill_rate']:.0%}"))
        unseen = d.get("unseen_share")
        if unseen is not None and np.isfinite(unseen) and unseen >= th["unseen_share"]:
            out.append(alert("warning", "unseen categories", d["field"], unseen, th["unseen_share"],
                             f"{name}: {unseen:.0%} of {d['field']!r} values were never seen in training"))
    ev, live = row["eval_auroc"], row["live_auroc"]
    if np.isfinite(ev) and np.isfinite(live) and live < ev - th["auroc_drop"]:
        out.append(alert("alert", "live auroc", None, live, ev - th["auroc_drop"],
                         f"{name}: live AUROC {live:.3f} is more than {th['auroc_drop']:g} below "
                         f"evaluation {ev:.3f} ({row['feedback_rows']} rows with feedback)"))
    last = row["last_scored"] if not pd.isna(row["last_scored"]) else row["promoted_at"]
    if last is not None and not pd.isna(last) and now - pd.Timestamp(last) > timedelta(days=th["stale_days"]):
        since = "since promotion" if pd.isna(row["last_scored"]) else f"since {pd.Timestamp(last):%Y-%m-%d}"
        out.append(alert("alert", "no scores", None, (now - pd.Timestamp(last)).days, th["stale_days"],
                         f"{name}: no scores for {th['stale_days']:g}+ days ({since})"))
    return out


def _status(alerts: pd.DataFrame, r) -> str:
    mine = _select(alerts, r.app, r.tenant, r.version)
    return "alert" if (mine["level"] == "alert").any() else "warning" if len(mine) else "ok"


def _ts(value):
    """Naive UTC timestamp from an ISO string / datetime (None stays None)."""
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_pydatetime()


def _isna(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# -- KPIs ----------------------------------------------------------------------------
def _kpis(prod: list[dict], batches: pd.DataFrame, runs: pd.DataFrame, now: datetime) -> pd.DataFrame:
    if "template" in runs.columns:  # the monitor's own scheduled runs are not experiments
        runs = runs[runs["template"] != "monitor"]
    created = pd.to_datetime(runs["created"], utc=True, errors="coerce").dt.tz_localize(None) \
        if len(runs) else pd.Series([], dtype="datetime64[ns]")
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with_model = runs["path"].map(lambda p: (Path(p) / "model" / "card.json").exists()) \
        if len(runs) else pd.Series([], dtype=bool)
    above = [p["card"].get("above_chance") for p in prod]
    finished = pd.to_datetime(batches["finished_at"]) if len(batches) else pd.Series([], dtype="datetime64[ns]")
    rows = batches["rows"] if len(batches) else pd.Series([], dtype=int)
    day = float(rows[finished >= now - timedelta(days=1)].sum())
    week = float(rows[finished >= now - timedelta(days=7)].sum())
    values = [
        ("models in production", len(prod), "production entries in the registry"),
        ("models trained this month", int((with_model & (created >= month_start)).sum()),
         "runs created this calendar month (UTC) that saved a model"),
        ("share above chance", float(np.mean([bool(a) for a in above])) if above else math.nan,
         "production models whose hold-out performance beat chance"),
        ("experiments this week", int((created >= now - timedelta(days=7)).sum()),
         "runs in the last 7 days (monitor runs excluded)"),
        ("scores per hour (1-day avg)", day / 24, "rows scored in the last 24 h / 24"),
        ("scores per week", int(week), "rows scored in the last 7 days"),
        ("predictions per day (7-day avg)", week / 7, "rows scored in the last 7 days / 7"),
    ]
    # object dtype: counts stay integers (a float column would show "3.000 models")
    out = pd.DataFrame(values, columns=["kpi", "value", "description"])
    out["value"] = pd.Series([v for _, v, _ in values], dtype=object)
    return out


def _empty(th, now, kpis) -> MonitorResult:
    return MonitorResult(
        kpis=kpis, models=pd.DataFrame(columns=MODEL_COLUMNS), drift=pd.DataFrame(columns=DRIFT_COLUMNS),
        alerts=pd.DataFrame(columns=ALERT_COLUMNS), batches=pd.DataFrame(columns=BATCH_COLUMNS),
        scores=pd.DataFrame(columns=["app", "tenant", "version", "bucket", "evaluation", "production"]),
        thresholds=th, generated_at=now)


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
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
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


# -- HTML helpers ---------------------------------------------------------------------------
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f3f3f3}
tr.alert td{background:#fdd}tr.warning td{background:#fff3cd}img{max-width:100%}"""


def _table(df: pd.DataFrame, level_col: str | None = None) -> str:
    if df.empty:
        return "<p><i>none</i></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for rec in df.to_dict("records"):
        cls = rec.get(level_col) if level_col else None
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in rec.values())
        body.append(f"<tr class='{cls}'>{cells}</tr>" if cls in ("alert", "warning") else f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
        return ""
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, (datetime, pd.Timestamp)):
        return f"{v:%Y-%m-%d %H:%M}"
    return str(v)
