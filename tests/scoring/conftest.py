"""A small saved model (a real skops file in a run folder) that scoring tests use with
``run="run-x"``; worker processes load it from the file like any production model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from expkit import drift
from expkit.features import Transmogrifier
from expkit.models.bundle import save_model
from expkit.schema import Schema

RUN = "run-x"
FEATURES = ["spend", "source", "visits"]


def schema() -> Schema:
    s = Schema.coerce({"lead_id": "id", "spend": "numeric", "source": "categorical",
                       "visits": "integer", "converted": "binary"})
    s.target = "converted"
    for name, dtype in [("lead_id", "str"), ("spend", "float64"), ("source", "str"), ("visits", "int64")]:
        s.columns[name].dtype = dtype
    return s


def leads(n=500, seed=0, spend_scale=1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(3, 1, n) * spend_scale
    spend[rng.random(n) < 0.1] = np.nan
    df = pd.DataFrame({"lead_id": [f"S{seed}-{i:05d}" for i in range(n)], "spend": spend,
                       "source": rng.choice(["web", "ads", "event"], n), "visits": rng.poisson(3, n)})
    df["converted"] = (rng.random(n) < 1 / (1 + np.exp(-(np.log1p(np.nan_to_num(spend)) - 3)))).astype(int)
    return df


def fit_pipeline():
    train = leads(800)
    pipeline = make_pipeline(Transmogrifier(schema()), LogisticRegression())
    return pipeline.fit(train.drop(columns="converted"), train["converted"]), train


@pytest.fixture(scope="session")
def fitted():
    return fit_pipeline()


@pytest.fixture
def model(runs_dir, fitted):
    """The pipeline, saved as the model of run ``run-x`` of an empty runs folder."""
    pipeline, train = fitted
    X = train[FEATURES]
    card = {"task": "binary", "classes": [0, 1], "positive_class": 1, "threshold": 0.4,
            "id_columns": ["lead_id"], "metrics": {"auroc": 0.7}, "target": "converted",
            "schema": schema().to_dict(), "baseline": {"spend": 20.0, "visits": 3, "source": "web"},
            "reference": drift.reference_profile(X, schema(), scores=pipeline.predict_proba(X)[:, 1])}
    save_model(pipeline, runs_dir / RUN / "model", card=card)
    return pipeline


def expected_scores(pipeline, df: pd.DataFrame) -> np.ndarray:
    return pipeline.predict_proba(df[FEATURES])[:, 1]
