"""The monitor's KPIs as series over time (tables in, tables out).

- :func:`kpi_history`: per day, rows scored, experiments run (monitor runs excluded)
  and models in production (app/tenant pairs promoted by then; a rollback keeps one).
- :func:`auroc_history`: per production model and day of scoring, the live AUROC of
  that day's scored rows that have feedback (when at least ``min_feedback`` rows with
  both outcomes), next to the evaluation AUROC.
- :func:`drift_history`: per production model, batch and field, the PSI of that batch
  alone against the training reference (the alerts pool the latest batches instead).
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Callable, Mapping

import pandas as pd

from .. import drift
from .thresholds import SCORE_FIELD

#: Days of history the monitor keeps in its series.
HISTORY_DAYS = 30
KPI_HISTORY_COLUMNS = ["day", "kpi", "value"]
AUROC_HISTORY_COLUMNS = ["app", "tenant", "version", "day", "live_auroc", "eval_auroc", "rows"]
DRIFT_HISTORY_COLUMNS = ["app", "tenant", "version", "batch", "finished_at", "field", "psi"]


def _days(now: datetime, days: int) -> pd.DatetimeIndex:
    end = pd.Timestamp(now).normalize()
    return pd.date_range(end - timedelta(days=days - 1), end, freq="D")


def _per_day(times: pd.Series, values: pd.Series | None, index: pd.DatetimeIndex) -> pd.Series:
    if not len(times):
        return pd.Series(0.0, index=index)
    stamps = pd.to_datetime(times, utc=True, errors="coerce").dt.tz_localize(None).dt.normalize()
    counts = (values if values is not None else pd.Series(1.0, index=times.index)).astype(float)
    return counts.groupby(stamps.values).sum().reindex(index, fill_value=0.0)


def kpi_history(batches: pd.DataFrame, runs: pd.DataFrame, versions: pd.DataFrame | list,
                now: datetime, days: int = HISTORY_DAYS) -> pd.DataFrame:
    """``day, kpi, value`` for the last ``days`` days: rows scored per day, experiments
    per day and models in production at the end of each day."""
    index = _days(now, days)
    if "template" in runs.columns:  # the monitor's own scheduled runs are not experiments
        runs = runs[runs["template"] != "monitor"]
    scored = _per_day(batches["finished_at"], batches["rows"], index) if len(batches) else _per_day(
        pd.Series(dtype=object), None, index)
    experiments = _per_day(runs["created"] if len(runs) else pd.Series(dtype=object), None, index)
    versions = pd.DataFrame(versions)
    in_production = pd.Series(0.0, index=index)
    if len(versions) and "promoted_at" in versions:
        first = (versions.assign(when=pd.to_datetime(versions["promoted_at"], utc=True, errors="coerce")
                                 .dt.tz_localize(None))
                 .groupby([versions["app"], versions["tenant"].fillna("")], dropna=False)["when"].min())
        in_production = pd.Series([float((first < day + timedelta(days=1)).sum()) for day in index],
                                  index=index)
    frames = [pd.DataFrame({"day": index, "kpi": name, "value": series.to_numpy()})
              for name, series in (("scores per day", scored), ("experiments per day", experiments),
                                   ("models in production", in_production))]
    return pd.concat(frames, ignore_index=True)[KPI_HISTORY_COLUMNS]


def auroc_history(prod: list[dict], batches: pd.DataFrame, feedback: pd.DataFrame,
                  scored: Callable[[pd.DataFrame], pd.DataFrame] | None, thresholds: Mapping,
                  eval_auroc: Callable[[Mapping], float]) -> pd.DataFrame:
    """Live AUROC per production model and day of scoring (see the module docstring)."""
    from sklearn.metrics import roc_auc_score

    rows = []
    if scored is None or not len(batches) or not len(feedback):
        return pd.DataFrame(rows, columns=AUROC_HISTORY_COLUMNS)
    for p in prod:
        key = (p["app"], p.get("tenant"), str(p.get("version")))
        mine = _model_batches(batches, *key)
        if not len(mine):
            continue
        ids = scored(mine)
        if not len(ids):
            continue
        day = pd.to_datetime(mine.set_index("id")["finished_at"]).dt.normalize()
        fb = feedback[feedback["app"] == key[0]]
        joined = ids.merge(fb[["id", "label"]], on="id")
        # rows without their batch are dated by the latest one
        batch = joined["batch"] if "batch" in joined else pd.Series(mine["id"].iloc[-1], index=joined.index)
        joined["day"] = batch.map(day)
        for when, part in joined.groupby("day"):
            if len(part) < thresholds["min_feedback"] or part["label"].nunique() < 2:
                continue
            rows.append({"app": key[0], "tenant": key[1], "version": key[2], "day": when,
                         "live_auroc": float(roc_auc_score(part["label"], part["score"])),
                         "eval_auroc": eval_auroc(p.get("card") or {}), "rows": len(part)})
    return pd.DataFrame(rows, columns=AUROC_HISTORY_COLUMNS)


def drift_history(prod: list[dict], batches: pd.DataFrame) -> pd.DataFrame:
    """PSI of every field (and the score) per production model and batch."""
    rows = []
    for p in prod:
        key = (p["app"], p.get("tenant"), str(p.get("version")))
        ref = (p.get("card") or {}).get("reference") or {}
        for b in _model_batches(batches, *key).to_dict("records"):
            d = drift.compare(ref, {"fields": b.get("fields") or {}})
            counts = b.get("score_counts") or []
            if ref.get("score_buckets") and sum(counts):
                rows.append({"app": key[0], "tenant": key[1], "version": key[2], "batch": b["id"],
                             "finished_at": b["finished_at"], "field": SCORE_FIELD,
                             "psi": drift.psi(ref["score_buckets"], counts)})
            rows += [{"app": key[0], "tenant": key[1], "version": key[2], "batch": b["id"],
                      "finished_at": b["finished_at"], "field": r["field"], "psi": r["psi"]}
                     for r in d.to_dict("records") if r["psi"] is not None and not math.isnan(r["psi"])]
    return pd.DataFrame(rows, columns=DRIFT_HISTORY_COLUMNS)


def _model_batches(batches: pd.DataFrame, app, tenant, version) -> pd.DataFrame:
    if not len(batches):
        return batches
    t = batches["model_tenant"]
    mask = (batches["app"] == app) & (t.isna() if tenant is None else t == tenant)
    return batches[mask & (batches["version"].astype(str) == version)]
