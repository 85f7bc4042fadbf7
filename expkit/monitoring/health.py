"""Monitoring computations (tables in, tables out): per-model health, drift against
the training reference, alerts and fleet KPIs.

"Production" data of a model is its latest scored batches, pooled newest first until
they hold ``min_drift_rows`` rows (one batch when it is that large); drift is the PSI of
the score and of every input field of those rows against the reference stored in the
model card. Below ``min_drift_rows`` rows in all, drift is shown but raises no alert:
PSI on a few rows is noise.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .. import drift
from ..scoring import scorelog
from . import history
from .result import MonitorResult
from .thresholds import (
    ALERT_COLUMNS,
    BATCH_COLUMNS,
    DRIFT_COLUMNS,
    FEW_ROWS,
    MODEL_COLUMNS,
    SCORE_FIELD,
)


def evaluate(prod: list[dict], batches: pd.DataFrame, feedback: pd.DataFrame, runs: pd.DataFrame,
             thresholds: Mapping, now: datetime, scored=None, versions=None) -> MonitorResult:
    """Build a :class:`MonitorResult` from production entries (with ``card``), score
    batches, feedback and the run list. ``scored(batches) -> DataFrame[id, score, batch]``
    gives the scored ids used for live AUROC; ``versions`` (every promotion in the
    registry, default ``prod``) dates the models-in-production series."""
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
        history=history.kpi_history(batches, runs, prod if versions is None else versions, now),
        auroc_history=history.auroc_history(prod, batches, feedback, scored, th, eval_auroc),
        drift_history=history.drift_history(prod, batches),
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
        history=history.kpi_history(pd.DataFrame(), pd.DataFrame(), [], now),
        kpis=kpis, models=pd.DataFrame(columns=MODEL_COLUMNS), drift=pd.DataFrame(columns=DRIFT_COLUMNS),
        alerts=pd.DataFrame(columns=ALERT_COLUMNS), batches=pd.DataFrame(columns=BATCH_COLUMNS),
        scores=pd.DataFrame(columns=["app", "tenant", "version", "bucket", "evaluation", "production"]),
        thresholds=th, generated_at=now)


