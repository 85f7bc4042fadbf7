"""Alert thresholds of the monitor, the columns of its tables, and their checks."""
from __future__ import annotations

import math

from ..errors import ConfigError

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


def thresholds(overrides=None) -> dict:
    """:data:`DEFAULT_THRESHOLDS` with ``overrides`` applied, each checked (ConfigError)."""
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
