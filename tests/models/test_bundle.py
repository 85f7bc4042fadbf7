"""Model files: skops + card, sha256 check, trusted types only, identical predictions."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from expkit.errors import ModelError
from expkit.features import Featurizer
from expkit.files import sha256_file
from expkit.models import bundle, load_model, save_model
from expkit.models.tournament import tournament


def frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"amount": rng.lognormal(size=n), "kind": rng.choice(["a", "b", "c"], n),
                       "score": rng.normal(size=n)})
    df["label"] = (df["score"] + (df["kind"] == "a") + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    return df


def test_plain_pipeline_round_trip(tmp_path):
    df = frame()
    X, y = df.drop(columns="label"), df["label"]
    pipe = Pipeline([("features", Featurizer()), ("model", LogisticRegression())]).fit(X, y)
    out = save_model(pipe, tmp_path / "m", card={"task": "binary", "target": "label", "classes": [0, 1]})
    card = json.loads((out / "card.json").read_text())
    assert card["sha256"] == sha256_file(out / "model.skops") and "versions" in card
    loaded = load_model(out)
    np.testing.assert_array_equal(loaded.predict_proba(df), pipe.predict_proba(X))
    np.testing.assert_array_equal(loaded.score(df), pipe.predict_proba(X)[:, 1])


@pytest.mark.parametrize("family", ["lightgbm", "hist_gradient_boosting", "random_forest", "extra_trees"])
def test_tree_view_winners_save_and_load_with_the_trusted_types(tmp_path, family):
    """Tree families learn from a DataFrame with category codes: their files (LightGBM's
    booster, histogram boosting's categorical preprocessing) load with the trusted list only."""
    df = frame(200)
    r = tournament(df, "label", n_trials=1, families=[family], n_jobs=1, progress=False, cv=3)
    assert r.winner == family and r.best_pipeline["features"].view == "tree"
    b = load_model(save_model(r, tmp_path / "model"))
    np.testing.assert_allclose(b.predict_proba(df), r.best_pipeline.predict_proba(df.drop(columns="label")))


def test_tournament_result_round_trip_and_tamper(tmp_path):
    df = frame(200)
    r = tournament(df, "label", n_trials=2, families=["logistic", "hist_gradient_boosting"],
                   n_jobs=1, progress=False, cv=3)
    out = save_model(r, tmp_path / "model")
    b = load_model(out / "model.skops", expected_sha256=sha256_file(out / "model.skops"))
    np.testing.assert_array_equal(b.predict_proba(df), r.best_pipeline.predict_proba(df.drop(columns="label")))
    assert b.task == "binary" and b.classes == [0, 1] and b.threshold == pytest.approx(r.threshold)
    assert b.card["family"] == r.winner and b.card["above_chance"] == r.above_chance
    assert set(b.card["reference"]["fields"]) == {"amount", "kind", "score"}
    assert b.schema.types == r.schema.types
    for key in ("task", "target", "classes", "positive_class", "threshold", "schema", "features",
                "metrics", "above_chance", "chance_test", "id_columns", "reference", "versions",
                "created", "family"):
        assert key in b.card
    pd.testing.assert_frame_equal(b.reasons(df.head(4), k=2), r.reasons(df.head(4), k=2))
    with pytest.raises(ModelError, match="sha256"):
        load_model(out, expected_sha256="0" * 64)
    data = bytearray((out / "model.skops").read_bytes())
    data[-40] ^= 0xFF
    (out / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        load_model(out)


def _double(x):
    return x * 2


def test_untrusted_types_are_refused(tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    df = frame()
    pipe = Pipeline([("f", FunctionTransformer(_double)), ("m", LogisticRegression())])
    pipe.fit(df[["amount"]], df["label"])
    with pytest.raises(ModelError, match="trusted"):
        save_model(pipe, tmp_path / "refused")
    # a file written by someone else with an untrusted type is refused at load
    d = tmp_path / "evil"
    d.mkdir()
    sio.dump(pipe, d / "model.skops")
    (d / "card.json").write_text(json.dumps({"sha256": sha256_file(d / "model.skops")}))
    with pytest.raises(ModelError, match="untrusted"):
        load_model(d)
    with pytest.raises(ModelError, match="no model file"):
        load_model(tmp_path / "missing")


def test_lazy_load_checks_at_once_and_loads_the_checked_bytes(tmp_path):
    df = frame()
    X, y = df.drop(columns="label"), df["label"]
    pipe = Pipeline([("features", Featurizer()), ("model", LogisticRegression())]).fit(X, y)
    out = save_model(pipe, tmp_path / "m", card={"task": "binary", "target": "label", "classes": [0, 1]})
    lazy = load_model(out, lazy=True)
    assert lazy.pipeline is None and lazy.schema is None and lazy.classes == [0, 1]
    # replaced after the check: the bytes that were checked are the ones loaded
    other = Pipeline([("features", Featurizer()), ("model", LogisticRegression(C=0.001))]).fit(X, y)
    save_model(other, tmp_path / "m")
    np.testing.assert_array_equal(lazy.load().predict_proba(df), pipe.predict_proba(X))
    assert lazy.load() is lazy  # once built, load() is a no-op
    (out / "model.skops").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="sha256"):
        load_model(out, lazy=True)


def test_every_expkit_estimator_is_on_the_trusted_list():
    """A transformer added to expkit must be trusted explicitly, or its models would not load."""
    import importlib
    import inspect
    import pkgutil

    from sklearn.base import BaseEstimator

    import expkit

    found = set()
    for info in pkgutil.walk_packages(expkit.__path__, "expkit."):
        if info.name.startswith(("expkit.cli", "expkit.widgets")) or info.name == "expkit.plots":
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, BaseEstimator) and not inspect.isabstract(cls) \
                    and not cls.__name__.startswith("_") and cls.__name__ not in ("ColumnVectorizer", "Tournament"):
                found.add(f"{cls.__module__}.{cls.__name__}")
    assert found and found <= bundle.TRUSTED_TYPES, found - bundle.TRUSTED_TYPES


def test_untrusted_types_are_refused_on_save_and_on_load(tmp_path):
    """The trust decision is skops' own list checked against expkit's explicit one."""
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    df = frame()
    evil = Pipeline([("f", FunctionTransformer(_double)), ("m", LogisticRegression())])
    evil.fit(df[["amount"]], df["label"])
    with pytest.raises(ModelError, match="trusted list"):
        save_model(evil, tmp_path / "saved")
    folder = tmp_path / "forged"
    folder.mkdir()
    data = sio.dumps(evil)
    (folder / "model.skops").write_bytes(data)
    (folder / "card.json").write_text(json.dumps({"sha256": __import__("hashlib").sha256(data).hexdigest()}))
    with pytest.raises(ModelError, match="untrusted types.*_double"):
        load_model(folder)
    assert bundle.refused(["expkit.features.featurizer.Featurizer", "os.system"]) == ["os.system"]
