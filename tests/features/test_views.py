"""Feature views: one fit, the columns each kind of model needs (trees: no buckets, codes)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from expkit.errors import ConfigError
from expkit.features import CategoricalVectorizer, Featurizer, NumericVectorizer
from expkit.features.numeric import min_bucket_rows

SCHEMA = {"spend": "numeric", "visits": "integer", "country": "categorical", "note": "text"}


def frame(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    country = rng.choice(["US", "DE", "FR", "NL"], n, p=[0.4, 0.3, 0.2, 0.1])
    spend = rng.lognormal(2, 1, n)
    y = (rng.uniform(size=n) < 0.2 + 0.5 * (country == "NL") + 0.2 * (spend > 10)).astype(int)
    df = pd.DataFrame({"spend": np.where(rng.uniform(size=n) < 0.1, np.nan, spend),
                       "visits": rng.integers(0, 30, n), "country": country,
                       "note": [rng.choice(["great offer", "call me", "no thanks", "later"]) + f" {i}"
                                for i in range(n)]})
    return df, y


@pytest.fixture(scope="module")
def fitted():
    df, y = frame()
    return df, y, {view: Featurizer(SCHEMA, view=view).fit(df, y) for view in ("linear", "tree", "all")}


def test_tree_view_has_no_buckets_nor_pivots_and_codes_categoricals(fitted):
    df, y, f = fitted
    tree, linear = f["tree"].lineage_, f["linear"].lineage_
    assert (linear["transform"] == "bucket").sum() > 0 and (linear["transform"] == "pivot").sum() >= 4
    assert "bucket" not in set(tree["transform"]) and "pivot" not in set(tree["transform"])
    assert "ordinal" not in set(linear["transform"])
    # one value per number, one code per categorical, the empty-field indicator of spend, text statistics
    assert list(tree.loc[tree["column"] != "note", "feature"]) == [
        "spend__value", "spend__null", "visits__value", "country__ordinal"]
    X = f["tree"].transform(df)
    assert isinstance(X, pd.DataFrame) and X.shape == (len(df), len(tree))
    code = X.iloc[:, list(tree["feature"]).index("country__ordinal")]
    assert isinstance(code.dtype, pd.CategoricalDtype) and list(code.cat.categories) == list(range(6))
    assert (X.select_dtypes("number").dtypes == np.float32).all()
    assert sp.issparse(f["linear"].transform(df))


def test_ordinal_codes_follow_the_label_rate():
    """Codes are ordered by each value's label mean, so one split separates high from low."""
    s = pd.Series(["a"] * 50 + ["b"] * 50 + ["c"] * 50)
    y = np.array([1] * 45 + [0] * 5 + [0] * 50 + [1] * 25 + [0] * 25)
    vec = CategoricalVectorizer(ordinal=True).fit(s, y)
    codes = vec.transform(pd.Series(["a", "b", "c", "zzz", None])).toarray()[:, -1]
    assert list(codes[:3]) == [2, 0, 1]  # b (rate 0) < c (0.5) < a (0.9)
    assert list(codes[3:]) == [3, 4]     # OTHER, then missing


def test_linear_view_without_buckets_drops_only_the_buckets(fitted):
    df, y, f = fitted
    off = Featurizer(SCHEMA, view="linear", buckets=False).fit(df, y).lineage_
    on = f["linear"].lineage_
    assert list(off["feature"]) == [n for n, t in zip(on["feature"], on["transform"]) if t != "bucket"]


def test_views_of_one_fit_match_a_fit_per_view(fitted):
    """The tournament featurizes a fold once ("all") and cuts each view out of it: the same
    columns and values as a Featurizer of that view fitted on the same rows."""
    df, y, f = fitted
    X_all = f["all"].transform(df)
    for view, buckets in (("linear", True), ("linear", False), ("tree", True)):
        own = Featurizer(SCHEMA, view=view, buckets=buckets).fit(df, y)
        cut = f["all"].view_output(X_all, view, buckets)
        mine = own.transform(df)
        if view == "tree":
            pd.testing.assert_frame_equal(cut, mine)
        else:
            assert (abs(cut - mine)).max() == 0
    with pytest.raises(ConfigError, match="view='all'"):
        f["tree"].view_output(X_all, "linear")
    with pytest.raises(ConfigError, match="not known"):
        Featurizer(SCHEMA, view="forest").fit(df, y)


def test_tree_view_keeps_the_best_text_columns_only():
    from expkit.features.featurizer import TREE_TEXT_COLUMNS

    df, y = frame(600)
    f = Featurizer(SCHEMA, view="tree").fit(df, y)
    linear = Featurizer(SCHEMA, view="linear").fit(df, y)
    assert (linear.lineage_["transform"] == "tfidf").sum() > TREE_TEXT_COLUMNS
    assert (f.lineage_["transform"] == "tfidf").sum() == TREE_TEXT_COLUMNS


def test_bucket_leaves_grow_with_the_rows():
    """A handful of rows per bucket fits noise: leaves hold at least 3 sqrt(rows)."""
    assert min_bucket_rows(300, 0.02) == 52 and min_bucket_rows(10_000, 0.02) == 300
    assert min_bucket_rows(100_000, 0.02) == 2000
    rng = np.random.default_rng(0)
    x = pd.Series(rng.normal(size=300))
    noise = rng.integers(0, 2, 300)  # the label has nothing to do with x
    edges = NumericVectorizer().fit(x, noise).edges_
    assert len(edges) <= 300 // 52 - 1
