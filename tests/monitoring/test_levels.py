"""The drift levels at the PSI values between the thresholds: 0.05 is quiet, 0.15 warns
(between psi_warning 0.1 and psi_alert 0.25), 0.3 alerts (between 0.25 and 0.5). A
swapped or shifted threshold, or a comparison turned the wrong way, fails one of them."""
from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from expkit import drift, monitoring
from expkit.monitoring.thresholds import thresholds

NOW = datetime(2025, 3, 20, 12, 0)
REFERENCE = [0.1] * 10
ROWS = 100_000


def counts_with_psi(target: float) -> list[int]:
    """Score-bucket counts of ROWS rows whose PSI against REFERENCE is ``target``: a share
    ``d`` moved from each of the lower five buckets to each of the upper five."""
    def shares(d):
        return np.array([0.1 - d] * 5 + [0.1 + d] * 5)

    d = brentq(lambda d: drift.psi(REFERENCE, shares(d)) - target, 0, 0.0999)
    return [int(c) for c in np.round(shares(d) * ROWS)]


def evaluate(counts: list[int]):
    card = {"family": "logistic", "above_chance": True, "metrics": {"auroc": 0.8},
            "reference": {"score_buckets": REFERENCE, "fields": {}}}
    batch = {"id": "b1", "app": "leads", "tenant": None, "model_tenant": None, "version": "1", "run_id": "r1",
             "rows": ROWS, "started_at": NOW - timedelta(hours=2), "finished_at": NOW - timedelta(hours=1),
             "score_counts": counts, "fields": {}, "ids_path": None, "output": None}
    prod = {"app": "leads", "tenant": None, "version": "1", "run_id": "r1",
            "promoted_at": (NOW - timedelta(days=1)).isoformat(), "card": card}
    feedback = pd.DataFrame(columns=["app", "tenant", "id", "label", "loaded_at"])
    runs = pd.DataFrame({"created": [], "path": []})
    return monitoring.evaluate([prod], pd.DataFrame([batch]), feedback, runs, thresholds(), NOW)


@pytest.mark.parametrize("psi,level,status", [(0.05, "ok", "ok"), (0.15, "warning", "warning"),
                                              (0.3, "alert", "alert")])
def test_score_psi_levels_between_the_thresholds(psi, level, status):
    counts = counts_with_psi(psi)
    result = evaluate(counts)
    row = result.drift.set_index("field").loc["(score)"]
    assert row["psi"] == pytest.approx(psi, abs=0.002)
    assert row["level"] == level
    model = result.models.iloc[0]
    assert model["status"] == status and model["score_psi"] == pytest.approx(psi, abs=0.002)
    drift_alerts = result.alerts[result.alerts["check"] == "drift"]
    assert drift_alerts["level"].tolist() == ([] if level == "ok" else [level])
    assert result.ok == (level != "alert")
