"""Transmogrifier: schema -> one sparse matrix with lineage."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from expkit.errors import ConfigError, SchemaError
from expkit.features import Transmogrifier

SCHEMA = {"lead_id": "id", "spend": "numeric", "visits": "integer", "country": "categorical",
          "note": "text", "email": "email", "created": "date", "flag": "constant"}


def make_frame(n=300, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "lead_id": [f"L{seed}-{i}" for i in range(n)],
        "spend": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(3, 1, n)),
        "visits": rng.integers(0, 20, n),
        "country": rng.choice(["US", "DE", "FR", "Select", None], n),
        "note": [f"call {i}: " + rng.choice(["loved the demo", "not interested", "no budget"]) for i in range(n)],
        "email": [f"p{i}@" + rng.choice(["acme.com", "gmail.com"]) for i in range(n)],
        "created": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        "flag": "x",
    })
    y = (df["visits"] + rng.normal(0, 3, n) > 10).astype(int)
    return df, y


def test_names_lineage_and_shape_are_stable_between_fit_and_transform():
    df, y = make_frame()
    tm = Transmogrifier(SCHEMA, text_features=64)
    X = tm.fit_transform(df, y)
    assert sp.isspmatrix_csr(X) and X.dtype == np.float64
    names = list(tm.get_feature_names_out())
    assert len(names) == X.shape[1] == len(set(names))
    lineage = tm.lineage_
    assert list(lineage.columns) == ["feature", "column", "transform"]
    assert lineage["feature"].tolist() == names
    assert set(lineage["column"]) == {"spend", "visits", "country", "note", "email", "created"}
    assert tm.dropped_ == {"lead_id": "id column: no features", "flag": "constant column: no features"}
    Xt = tm.transform(df)
    assert (abs(Xt - X)).max() == 0
    assert (abs(tm.fit(df, y).transform(df) - X)).max() == 0


def test_unseen_categories_and_missing_values_at_transform():
    df, y = make_frame()
    tm = Transmogrifier(SCHEMA, text_features=64).fit(df, y)
    new = pd.DataFrame({"lead_id": ["Z1", "Z2"], "spend": [np.nan, 5.0], "visits": [None, 3],
                        "country": ["Atlantis", None], "note": [None, "brand new words"],
                        "email": ["who@newco.io", None], "created": [pd.NaT, pd.Timestamp("2030-01-01")],
                        "flag": [None, "y"], "unused_extra_column": [1, 2]})
    X = tm.transform(new)
    assert X.shape == (2, len(tm.get_feature_names_out()))
    assert np.isfinite(X.toarray()).all()
    row = pd.Series(X.toarray()[0], index=tm.get_feature_names_out())
    assert row["country__OTHER"] == 1 and row["spend__null"] == 1 and row["email__domain=OTHER"] == 1


def test_missing_column_error_names_it():
    df, y = make_frame()
    tm = Transmogrifier(SCHEMA, text_features=64).fit(df, y)
    with pytest.raises(SchemaError, match="'country'"):
        tm.transform(df.drop(columns=["country"]))
    with pytest.raises(SchemaError, match="'visits'"):
        Transmogrifier({**SCHEMA, "visits": "integer"}).fit(df.drop(columns=["visits"]), y)


class Doubler(TransformerMixin, BaseEstimator):
    """Dense output, no feature names: lineage falls back to numbers."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(X, dtype=float) * 2


def test_custom_vectorizer_by_type_and_by_column():
    df, y = make_frame()
    user_scaler = StandardScaler()
    tm = Transmogrifier(SCHEMA, text_features=64,
                        vectorizers={"numeric": user_scaler, "visits": Doubler(), "note": "drop"})
    X = tm.fit_transform(df, y)
    lineage = tm.lineage_.set_index("feature")
    assert lineage.loc["spend__spend", "transform"] == "custom:StandardScaler"  # by type
    assert lineage.loc["visits__0", "transform"] == "custom:Doubler"            # column wins
    assert "note" not in set(lineage["column"]) and "note" in tm.dropped_
    visits = X[:, tm.lineage_["feature"].tolist().index("visits__0")].toarray().ravel()
    assert np.array_equal(visits, df["visits"] * 2)
    assert not hasattr(user_scaler, "mean_")  # the user's object is cloned, not fitted


def test_custom_text_vectorizer_gets_strings():
    from sklearn.feature_extraction.text import CountVectorizer
    df, y = make_frame()
    tm = Transmogrifier(SCHEMA, vectorizers={"text": CountVectorizer(min_df=5)}).fit(df, y)
    assert "note__demo" in tm.get_feature_names_out()
    X = tm.transform(df.assign(note=None))
    assert X.shape[1] == len(tm.get_feature_names_out())


def test_extra_hand_made_features():
    df, y = make_frame()
    ratio = FunctionTransformer(lambda d: (d["spend"].fillna(0) / (d["visits"] + 1)).to_frame("ratio"),
                                feature_names_out=lambda t, names: ["ratio"])
    tm = Transmogrifier(SCHEMA, text_features=64, extra=[("per_visit", ratio, ["spend", "visits"])])
    X = tm.fit_transform(df, y)
    lineage = tm.lineage_.set_index("feature")
    assert lineage.loc["per_visit__ratio", "column"] == "spend+visits"
    col = X[:, list(tm.get_feature_names_out()).index("per_visit__ratio")].toarray().ravel()
    assert np.allclose(col, df["spend"].fillna(0) / (df["visits"] + 1))
    with pytest.raises(SchemaError, match="'visits'"):
        tm.transform(df.drop(columns=["visits"]))


def test_bad_vectorizer_key_is_a_config_error():
    df, y = make_frame()
    with pytest.raises(ConfigError, match="nummeric"):
        Transmogrifier(SCHEMA, vectorizers={"nummeric": StandardScaler()}).fit(df, y)


def test_clone_keeps_params_and_pipeline_fits():
    df, y = make_frame()
    tm = Transmogrifier(SCHEMA, top_k=5, text_features=32, vectorizers={"visits": Doubler()})
    twin = clone(tm)
    assert twin.get_params()["top_k"] == 5 and twin.get_params()["schema"] == SCHEMA
    pipe = make_pipeline(twin, LogisticRegression(max_iter=1000)).fit(df, y)
    assert pipe.predict_proba(df).shape == (len(df), 2)
    assert not hasattr(tm, "plan_")  # the original stays unfitted


def test_float32_output_and_no_null_columns_when_disabled():
    df, y = make_frame()
    tm = Transmogrifier(SCHEMA, text_features=0, null_indicators=False, dtype=np.float32)
    X = tm.fit_transform(df, y)
    assert X.dtype == np.float32
    assert "null" not in set(tm.lineage_["transform"])


def test_partial_schema_dict_infers_the_rest():
    df, y = make_frame()
    tm = Transmogrifier({"visits": "categorical"}, text_features=16).fit(df, y)
    assert tm.schema_["visits"].type == "categorical"
    assert tm.schema_["lead_id"].type == "id" and tm.schema_["email"].type == "email"


@pytest.fixture(scope="module")
def leads():
    datasets = pytest.importorskip("expkit.datasets")
    df = datasets.leads(n_rows=1500, seed=3)
    return df.drop(columns=["converted"]), df["converted"]


def test_leads_end_to_end(leads):
    X_df, y = leads
    train, test = X_df.iloc[:1000], X_df.iloc[1000:].copy()
    test.loc[test.index[:20], "country"] = "Narnia"
    test.loc[test.index[20:40], ["spend", "note", "email", "created"]] = None
    tm = Transmogrifier(text_features=256)
    pipe = make_pipeline(tm, LogisticRegression(max_iter=2000)).fit(train, y.iloc[:1000])
    assert pipe.predict_proba(test).shape == (500, 2)
    assert tm.transform(test).shape[1] == len(tm.get_feature_names_out())
    types = tm.schema_.types
    assert types["lead_id"] == "id" and "lead_id" in tm.dropped_
    assert {"title", "note"} <= set(tm.lineage_["column"])


def test_titanic_end_to_end():
    datasets = pytest.importorskip("expkit.datasets")
    df = datasets.titanic()
    y = df.pop("Survived")
    tm = Transmogrifier(text_features=128).fit(df.iloc[:600], y.iloc[:600])
    X = tm.transform(df.iloc[600:])
    assert X.shape == (291, len(tm.get_feature_names_out()))
    assert "PassengerId" in tm.dropped_
    assert {"Sex", "Embarked", "Age", "Name"} <= set(tm.lineage_["column"])
