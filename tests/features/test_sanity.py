"""SanityChecker and Featurizer: leaks, constant features, groups, reports."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from expkit.errors import FeatureError
from expkit.features import Featurizer, SanityChecker, Transmogrifier


def random_sparse(n=400, p=30, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=0.3, random_state=seed, format="csr") * 10 + 0
    X.data += 1000  # large values: variance must still be exact
    return X, rng


def test_statistics_match_dense_computation():
    X, rng = random_sparse()
    y = rng.normal(size=X.shape[0])
    sc = SanityChecker(max_correlation=2, max_cramers_v=2, min_variance=0).fit(X, y)
    D = X.toarray()
    stats = sc.statistics_
    assert np.allclose(stats["variance"], D.var(axis=0))
    expected = [abs(np.corrcoef(D[:, j], y)[0, 1]) for j in range(D.shape[1])]
    assert np.allclose(stats["correlation"], expected)
    assert sc.support_.all()


def test_leaking_feature_drops_its_whole_group_with_reasons():
    X, rng = random_sparse()
    y = rng.integers(0, 2, X.shape[0])
    X = sp.hstack([X, sp.csr_matrix(np.column_stack([y, rng.normal(size=len(y))]))], format="csr")
    names = [f"f{i}" for i in range(30)] + ["copy__value", "copy__other"]
    groups = [f"g{i}" for i in range(30)] + ["copy", "copy"]
    sc = SanityChecker().fit(X, y, groups=groups, feature_names=names)
    report = sc.report_.set_index("feature")
    assert list(sc.report_.columns) == ["feature", "column", "statistic", "value", "reason"]
    assert report.loc["copy__value", "statistic"] == "abs_correlation"
    assert "leak" in report.loc["copy__value", "reason"]
    assert report.loc["copy__other", "statistic"] == "group"
    assert "copy__value" in report.loc["copy__other", "reason"]
    assert sc.support_[:30].all() and not sc.support_[30:].any()
    assert sc.transform(X).shape == (X.shape[0], 30)
    assert list(sc.get_feature_names_out()) == names[:30]


def test_cramers_v_catches_a_group_no_single_indicator_gives_away():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 600)                           # three classes
    level = 2 * y + rng.integers(0, 2, 600)               # six levels, each inside one class
    onehot = np.eye(6)[level]
    noise = rng.normal(size=(600, 2))
    X = np.column_stack([onehot, noise])
    groups = ["src"] * 6 + ["a", "b"]
    sc = SanityChecker().fit(X, y, groups=groups)
    assert sc.statistics_["correlation"][:6].max() < 0.95   # correlation alone would miss it
    report = sc.report_
    assert set(report["feature"]) == {f"x{i}" for i in range(6)}
    assert set(report["statistic"]) == {"cramers_v"} and np.allclose(report["value"], 1)
    assert sc.support_[6:].all()


def test_regression_target_and_correlation_ratio():
    rng = np.random.default_rng(5)
    level = rng.integers(0, 4, 500)
    y = level * 10.0 + rng.normal(0, 0.01, 500)
    X = np.column_stack([np.eye(4)[level], rng.normal(size=500), y * 3 + 1])
    sc = SanityChecker().fit(X, y, groups=["cat"] * 4 + ["noise", "copy"])
    report = sc.report_.set_index("feature")
    assert report.loc["x5", "statistic"] == "abs_correlation"
    assert set(report.loc[["x0", "x1", "x2", "x3"], "statistic"]) <= {"correlation_ratio", "abs_correlation"}
    assert sc.support_.tolist() == [False] * 4 + [True, False]


def test_constant_and_near_constant_features_dropped():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 200)
    X = np.column_stack([np.ones(200), np.r_[np.zeros(199), 1e-3], rng.normal(size=200)])
    sc = SanityChecker().fit(X, y)
    assert sc.support_.tolist() == [False, False, True]
    assert set(sc.report_["statistic"]) == {"variance"}


def test_multiclass_string_labels():
    rng = np.random.default_rng(7)
    y = rng.choice(["a", "b", "c"], 300)
    X = np.column_stack([(y == "c").astype(float), rng.normal(size=300)])
    sc = SanityChecker().fit(X, y)
    assert sc.support_.tolist() == [False, True]


# -- Featurizer ----------------------------------------------------------------------
SCHEMA = {"spend": "numeric", "country": "categorical", "note": "text", "outcome": "categorical"}


def frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    df = pd.DataFrame({
        "spend": rng.lognormal(2, 1, n) * (1 + y),
        "country": rng.choice(["US", "DE", "FR"], n),
        "note": [f"note {i} " + rng.choice(["good", "bad", "meh"]) for i in range(n)],
        "outcome": np.where(y == 1, "won", "lost"),             # a copy of the label
    })
    return df, y


def test_featurizer_removes_label_copy_group_and_keeps_the_rest():
    df, y = frame()
    fz = Featurizer(SCHEMA, transmogrifier=Transmogrifier(text_features=32))
    X = fz.fit_transform(df, y)
    report = fz.sanity_report_
    leak = report[report["column"] == "outcome"]
    assert len(leak) >= 3 and leak["reason"].str.contains("leak|leaking").all()
    assert "outcome" not in set(fz.lineage_["column"])
    assert {"spend", "country", "note"} <= set(fz.lineage_["column"])
    assert X.shape[1] == len(fz.get_feature_names_out()) == len(fz.lineage_) == len(fz.feature_names_out)
    assert (abs(fz.transform(df) - X)).max() == 0
    assert fz.schema_["outcome"].type == "categorical"


def test_featurizer_raises_when_everything_is_removed():
    df, y = frame()
    with pytest.raises(FeatureError, match="removed all"):
        Featurizer({"outcome": "categorical"}).fit(df[["outcome"]], y)


def test_featurizer_without_sanity_keeps_all_and_clone_pipeline_works():
    df, y = frame()
    fz = Featurizer(SCHEMA, sanity=False).fit(df, y)
    every = fz.transmogrifier_.lineage_
    # every column but the ordinal codes (those are the tree view's)
    assert len(fz.sanity_report_) == 0 and len(fz.lineage_) == (every["transform"] != "ordinal").sum()
    pipe = make_pipeline(clone(Featurizer(SCHEMA, sanity=SanityChecker(max_correlation=0.9))),
                         LogisticRegression(max_iter=1000)).fit(df, y)
    assert pipe[0].sanity_.max_correlation == 0.9
    assert pipe.predict_proba(df.drop(columns="outcome").assign(outcome="won")).shape == (len(df), 2)


def test_featurizer_persists_with_skops(tmp_path):
    sio = pytest.importorskip("skops.io")
    df, y = frame()
    fz = Featurizer(SCHEMA, transmogrifier=Transmogrifier(text_features=32)).fit(df, y)
    path = tmp_path / "f.skops"
    sio.dump(fz, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert all(t.startswith(("expkit.features.", "expkit.schema.")) for t in untrusted)
    loaded = sio.load(path, trusted=untrusted)
    assert (abs(loaded.transform(df) - fz.transform(df))).max() == 0


def test_featurizer_on_leads_catches_a_copied_label():
    datasets = pytest.importorskip("expkit.datasets")
    df = datasets.leads(n_rows=1200, seed=1)
    y = df.pop("converted")
    df["converted_copy"] = y.map({0: "no", 1: "yes"})
    fz = Featurizer(transmogrifier=Transmogrifier(text_features=128)).fit(df, y)
    report = fz.sanity_report_
    assert (report["column"] == "converted_copy").any()
    assert "converted_copy" not in set(fz.lineage_["column"])
    assert {"spend", "title", "note", "email"} <= set(fz.lineage_["column"])


# SanityChecker takes numeric matrices, so sklearn's generic checks apply. The
# Transmogrifier and Featurizer are DataFrame-in, schema-driven transformers
# (numpy arrays have no column names or semantic types), so those checks are
# not meaningful for them; their contract is tested above and in
# test_features_transmogrify.py.
@parametrize_with_checks([SanityChecker()])
def test_sanity_checker_passes_sklearn_checks(estimator, check):
    check(estimator)


def test_sanity_names_and_groups_in_a_plain_pipeline():
    """In a plain scikit-learn Pipeline with pandas output, the SanityChecker reports the
    Transmogrifier's real feature and raw-field names, and a leaking field loses every
    feature, also those that do not leak by themselves."""
    from sklearn.pipeline import Pipeline

    df, y = frame()
    # "score" is the label where it is filled: its buckets and empty-field indicator leak as a
    # one-hot group, its value (imputed where empty) does not by itself: with 8% empty, Cramér's V
    # of the group is about sqrt(0.92) = 0.96 > 0.95, the value's correlation about 0.92 < 0.95
    df["score"] = np.where(np.arange(len(df)) % 25 < 2, np.nan, y * 10.0)
    schema = {**SCHEMA, "score": "numeric"}
    pipe = Pipeline([("features", Transmogrifier(schema, text_features=32)), ("sanity", SanityChecker()),
                     ("model", LogisticRegression(max_iter=1000))]).set_output(transform="pandas")
    pipe.fit(df, y)
    checker = pipe.named_steps["sanity"]
    report = checker.report_.set_index("feature")
    names = set(pipe.named_steps["features"].get_feature_names_out())
    assert set(report.index) <= names and not report.index.str.match(r"x\d+$").any()
    assert set(report.loc[report["column"] == "outcome"].index) == {n for n in names if n.startswith("outcome__")}
    assert report.loc["score__value", "statistic"] == "group" and report.loc["score__value", "column"] == "score"
    assert "leaking feature score__" in report.loc["score__value", "reason"]
    kept = list(checker.get_feature_names_out())
    assert "spend__value" in kept and not any(n.startswith(("outcome__", "score__")) for n in kept)
    assert pipe.predict_proba(df).shape == (len(df), 2)
    out = pipe[:-1].transform(df)
    assert list(out.columns) == kept and out.attrs["lineage"]["column"][0] == "spend"
    # without the lineage (a plain DataFrame) each feature is its own group: the value stays
    plain = SanityChecker().fit(pipe[0].transform(df).sparse.to_dense().set_axis(list(pipe[0].get_feature_names_out()),
                                                                                   axis=1), y)
    assert "score__value" in plain.get_feature_names_out()
    # the default output stays a sparse matrix
    assert sp.issparse(Transmogrifier(schema, text_features=32).fit_transform(df, y))


def test_names_travel_as_text_when_pickled_or_saved():
    """Thousands of hashed-text names: pickled (Dask, loky) and saved (skops) small, and back as arrays."""
    import pickle

    import skops.io as sio

    X, rng = random_sparse(n=60, p=3000)
    y = rng.integers(0, 2, 60)
    names = [f"review_text__hashed_token_{i:05d}" for i in range(3000)]
    groups = [f"review_text_{i % 7}" for i in range(3000)]
    sc = SanityChecker().fit(X, y, feature_names=names, groups=groups)
    assert sc.names_.dtype.kind == "U" and sc.names_.nbytes > 300_000
    size, as_arrays = len(pickle.dumps(sc)), len(pickle.dumps(vars(sc)))
    assert size < 0.5 * as_arrays, (size, as_arrays)
    for back in (pickle.loads(pickle.dumps(sc)),
                 sio.loads(sio.dumps(sc), trusted=sio.get_untrusted_types(data=sio.dumps(sc)))):
        assert back.names_.dtype.kind == "U" and back.columns_.dtype.kind == "U"
        assert back.names_.tolist() == names and back.columns_.tolist() == groups
        assert list(back.get_feature_names_out()) == list(sc.get_feature_names_out())
        assert back.report_.equals(sc.report_)
