import json
import math

import numpy as np
import pandas as pd
import pytest

from expkit import drift
from expkit.schema import Schema

SCHEMA = Schema.coerce({"id": "id", "spend": "numeric", "visits": "integer",
                        "source": "categorical", "note": "text", "email": "email",
                        "created": "date", "converted": "binary"})
SCHEMA.target = "converted"


def table(n=4000, seed=0, spend_scale=1.0, sources=("web", "ads", "event")):
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(3, 1, n) * spend_scale
    spend[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "id": [f"L{i}" for i in range(n)],
        "spend": spend,
        "visits": rng.poisson(4, n),
        "source": rng.choice(list(sources), n),
        "note": rng.choice(["great product", "call me", "not interested at all, thanks"], n),
        "email": rng.choice(["a@x.com", "b@GMAIL.com", "c@y.com", "nope"], n),
        "created": pd.date_range("2024-01-01", periods=n, freq="h"),
        "converted": rng.integers(0, 2, n),
    })


def test_reference_profile_shape_and_json():
    df = table()
    ref = drift.reference_profile(df, SCHEMA, scores=np.linspace(0, 1, 101))
    json.dumps(ref)  # JSON-able
    assert ref["rows"] == len(df)
    f = ref["fields"]
    assert set(f) == {"spend", "visits", "source", "note", "email", "created"}  # no id, no target
    assert f["spend"]["kind"] == "numeric" and f["spend"]["fill_rate"] == pytest.approx(0.9, abs=0.02)
    assert len(f["spend"]["shares"]) == len(f["spend"]["edges"]) + 1
    assert sum(f["spend"]["shares"]) == pytest.approx(1)
    assert f["source"]["kind"] == "categorical" and set(f["source"]["shares"]) == {"web", "ads", "event", "__OTHER__"}
    assert set(f["email"]["shares"]) == {"(company)", "gmail.com", "(invalid)", "__OTHER__"}
    assert f["note"]["kind"] == "text" and sum(f["note"]["shares"]) == pytest.approx(1)
    assert f["created"] == {"kind": "fill", "fill_rate": 1.0, "count": len(df)}
    assert len(ref["score_buckets"]) == 10 and sum(ref["score_buckets"]) == pytest.approx(1)


def test_identical_data_has_zero_psi():
    df = table()
    ref = drift.reference_profile(df, SCHEMA)
    cmp = drift.compare(ref, drift.summarize(df, ref)).set_index("field")
    assert cmp.loc[["spend", "visits", "source", "note", "email"], "psi"].max() < 1e-9
    assert cmp["fill_rate_change"].abs().max() == 0
    # another sample of the same distribution is stable too
    cmp2 = drift.compare(ref, drift.summarize(table(seed=1), ref)).set_index("field")
    assert cmp2["psi"].max() < 0.1


def test_shifted_numeric_psi_is_large():
    ref = drift.reference_profile(table(), SCHEMA)
    cmp = drift.compare(ref, drift.summarize(table(seed=1, spend_scale=10), ref)).set_index("field")
    assert cmp.loc["spend", "psi"] > 0.25
    assert cmp.loc["visits", "psi"] < 0.1


def test_unseen_categories_share_counted():
    ref = drift.reference_profile(table(), SCHEMA)
    new = table(seed=1, sources=("web", "tv", "radio", "ads"))
    summ = drift.summarize(new, ref)
    src = summ["fields"]["source"]
    assert src["unseen_share"] == pytest.approx(0.5, abs=0.05)
    assert src["shares"]["__OTHER__"] == src["unseen_share"]
    assert drift.psi(ref["fields"]["source"]["shares"], src["shares"]) > 0.25


def test_psi_properties():
    assert drift.psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert math.isfinite(drift.psi([1, 0], [0, 1]))  # empty buckets use epsilon
    assert drift.psi([0.5, 0.5], [0.9, 0.1]) > drift.psi([0.5, 0.5], [0.6, 0.4]) > 0
    assert drift.psi({"a": 1.0}, {"a": 0.5, "b": 0.5}) > 0.25  # dict union of keys
    assert math.isnan(drift.psi([0, 0], [0.5, 0.5]))
    with pytest.raises(ValueError):
        drift.psi([0.5, 0.5], [1.0])


def test_score_buckets():
    s = [0.0, 0.05, 0.1, 0.55, 0.99, 1.0, np.nan]
    assert drift.score_buckets(s, normalize=False) == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2]
    assert sum(drift.score_buckets(s)) == pytest.approx(1)
    assert drift.score_buckets([]) == [0.0] * 10


def test_merge_of_chunks_equals_whole():
    df = table(n=3000, seed=2, spend_scale=3)
    ref = drift.reference_profile(table(), SCHEMA)
    whole = drift.summarize(df, ref)
    merged = drift.merge(drift.summarize(df.iloc[i:i + 700], ref) for i in range(0, len(df), 700))
    assert merged["rows"] == whole["rows"]
    for col, f in whole["fields"].items():
        m = merged["fields"][col]
        assert m["fill_rate"] == pytest.approx(f["fill_rate"])
        assert m["count"] == f["count"]
        if isinstance(f.get("shares"), dict):
            assert m["shares"] == pytest.approx(f["shares"])
            assert m["unseen_share"] == pytest.approx(f["unseen_share"])
        elif "shares" in f:
            assert m["shares"] == pytest.approx(f["shares"])


def test_numeric_keys_stable_across_dtypes():
    schema = {"flag": "binary"}
    ref = drift.reference_profile(pd.DataFrame({"flag": [0, 1, 1, 0]}), schema)
    summ = drift.summarize(pd.DataFrame({"flag": [0.0, 1.0, np.nan, 1.0]}), ref)
    assert summ["fields"]["flag"]["unseen_share"] == 0
    assert summ["fields"]["flag"]["fill_rate"] == 0.75


def test_empty_strings_count_as_missing_and_absent_columns_skipped():
    ref = drift.reference_profile(pd.DataFrame({"c": ["a", "", None, "b"]}), {"c": "categorical"})
    assert ref["fields"]["c"]["fill_rate"] == 0.5
    assert set(ref["fields"]["c"]["shares"]) == {"a", "b", "__OTHER__"}
    assert drift.summarize(pd.DataFrame({"x": [1]}), ref)["fields"] == {}


def test_high_cardinality_categorical_is_stable_on_a_new_sample():
    def sample(seed, n=2000):
        r = np.random.default_rng(seed)
        company = [f"co{seed}-{i}.com" for i in r.integers(0, 800, n)]  # new companies each sample
        free = r.choice(["gmail.com", "yahoo.com"], n)
        return pd.DataFrame({"domain": np.where(r.random(n) < 0.5, free, company)})

    ref = drift.reference_profile(sample(0), {"domain": "categorical"})
    f = ref["fields"]["domain"]
    assert set(f["shares"]) == {"gmail.com", "yahoo.com", "__OTHER__"}  # rare values pooled
    assert f["n_values"] > 500 and len(f["values"]) == min(f["n_values"], 1000)
    summ = drift.summarize(sample(1), ref)["fields"]["domain"]
    assert drift.psi(f["shares"], summ["shares"]) < 0.05
    assert summ["unseen_share"] == pytest.approx(0.5, abs=0.05)  # the new companies are unseen


def test_arrow_string_summaries_equal_object_summaries():
    """pandas' default str columns are summarized in arrow; the result must be the same as
    for the same values held as Python objects (keys, fill rates, text lengths)."""
    emails = ["  x@GMAIL.com ", "", "   ", "no-at", "a@b@yahoo.com", None, "Z@Hotmail.CO.UK", "q@", "@",
              "ann@acme.io", "bob@acme.io", "c@ gmail.com", "d@yahoo.com\t"] * 3
    df = pd.DataFrame({
        "email": emails,
        "country": ["", " ", " US ", None, "us", "é", "US", "DE", "DE", "FR", "US", "FR", "é"] * 3,
        "note": ["", "  ", "héllo", None, "x", "\u00a0", "\u3000 \u2003", "\x1c", " a ", "\t", "long text",
                 "", "z"] * 3,
    }, dtype="str")
    schema = Schema.coerce({"email": "email", "country": "categorical", "note": "text"})
    as_objects = df.astype(object)
    assert drift.reference_profile(df, schema) == drift.reference_profile(as_objects, schema)
    ref = drift.reference_profile(as_objects, schema)
    assert drift.summarize(df.iloc[::-1], ref) == drift.summarize(as_objects.iloc[::-1], ref)
    shares = ref["fields"]["email"]["shares"]
    assert {"gmail.com", "yahoo.com", "hotmail.co.uk", "(company)", "(invalid)"} <= set(shares)
