"""Saved feature pipelines stay small: the fitted Featurizer keeps compact
state (numpy arrays, names generated on demand), not per-feature lists that
skops would write item by item."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from expkit.datasets import leads
from expkit.features import Featurizer
from expkit.models import load_model, save_model


@pytest.fixture(scope="module")
def fitted():
    df = leads(n_rows=600)
    X, y = df.drop(columns="converted"), df["converted"]
    pipe = Pipeline([("features", Featurizer()), ("model", LogisticRegression(max_iter=300))]).fit(X, y)
    return df, X, pipe


def test_model_with_text_fields_saves_small_and_loads_identically(fitted, tmp_path):
    df, X, pipe = fitted
    fz = pipe.named_steps["features"]
    lineage = fz.transmogrifier_.lineage_
    assert (lineage["transform"] == "tfidf").sum() >= 2 * 4096  # title and note are hashed text
    assert len(fz.sanity_report_) > 4000                        # thousands of empty hashed columns

    out = save_model(pipe, tmp_path / "m",
                     card={"task": "binary", "target": "converted", "classes": [0, 1]})
    assert (out / "model.skops").stat().st_size < 3_000_000

    loaded = load_model(out)
    np.testing.assert_array_equal(loaded.predict_proba(df), pipe.predict_proba(X))
    lfz = loaded.pipeline.named_steps["features"]
    pd.testing.assert_frame_equal(lfz.lineage_, fz.lineage_)
    pd.testing.assert_frame_equal(lfz.sanity_report_, fz.sanity_report_)
    pd.testing.assert_frame_equal(lfz.transmogrifier_.lineage_, lineage)
    pd.testing.assert_frame_equal(lfz.sanity_.statistics_, fz.sanity_.statistics_)
    np.testing.assert_array_equal(lfz.get_feature_names_out(), fz.get_feature_names_out())


def test_fitted_state_holds_no_per_feature_lists(fitted):
    fz = fitted[2].named_steps["features"]
    n_features = len(fz.transmogrifier_.get_feature_names_out())

    def long_lists(obj, path="featurizer"):
        if isinstance(obj, (list, tuple, dict)) and len(obj) > 100:
            yield path
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) \
            else vars(obj).items() if hasattr(obj, "get_params") else ()
        for key, value in items:
            yield from long_lists(value, f"{path}.{key}")

    assert n_features > 8000
    assert list(long_lists(fz)) == []
