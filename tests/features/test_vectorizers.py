"""Per-type vectorizers on small generated columns."""
import numpy as np
import pandas as pd
import pytest

from expkit.features import (
    CategoricalVectorizer,
    DateVectorizer,
    EmailVectorizer,
    NumericVectorizer,
    PhoneVectorizer,
    TextVectorizer,
    UrlVectorizer,
)
from expkit.features.text import Tokens, _vader, lexicon_sentiment


def dense(v, s):
    return pd.DataFrame(v.transform(s).toarray(), columns=v.get_feature_names_out())


# -- numeric ---------------------------------------------------------------------
def test_numeric_imputes_median_scales_and_flags_missing():
    s = pd.Series([1.0, 2.0, np.nan, 4.0, 100.0, 3.0] * 20, name="spend")
    v = NumericVectorizer(scaling="standard", buckets=0).fit(s)
    out = dense(v, s)
    assert list(out.columns) == ["spend__value", "spend__null"]
    assert v.median_ == 3.0
    assert out["spend__null"].tolist() == s.isna().astype(float).tolist()
    assert abs(out["spend__value"].mean()) < 1e-9 and abs(out["spend__value"].std(ddof=0) - 1) < 1e-9


def test_numeric_null_indicator_auto_only_when_missing_at_fit():
    s = pd.Series(np.arange(50.0), name="x")
    assert "x__null" not in NumericVectorizer().fit(s).get_feature_names_out()
    assert "x__null" in NumericVectorizer(null_indicator=True).fit(s).get_feature_names_out()
    # a value missing only at transform time is imputed, not an error
    out = NumericVectorizer(buckets=0).fit(s).transform(pd.Series([np.nan, "oops"], name="x"))
    assert np.isfinite(out.toarray()).all()


def test_numeric_auto_scaling_logs_skewed_columns():
    rng = np.random.default_rng(0)
    skewed = pd.Series(rng.lognormal(3, 2, 500), name="s")
    assert NumericVectorizer().fit(skewed).log_
    assert not NumericVectorizer().fit(pd.Series(rng.normal(size=500), name="n")).log_


def test_label_aware_buckets_find_the_label_threshold_and_differ_from_quantiles():
    rng = np.random.default_rng(1)
    x = pd.Series(rng.uniform(0, 100, 2000), name="x")
    y = (x > 73).astype(int)
    supervised = NumericVectorizer(buckets=4).fit(x, y)
    unsupervised = NumericVectorizer(buckets=4).fit(x)
    assert any(abs(e - 73) < 1 for e in supervised.edges_)
    assert supervised.edges_ != unsupervised.edges_
    assert np.allclose(unsupervised.edges_, np.quantile(x, [0.25, 0.5, 0.75]))
    buckets = dense(supervised, x).filter(like="bucket")
    assert (buckets.sum(axis=1) == 1).all()  # one bucket per filled row


def test_buckets_for_regression_target():
    rng = np.random.default_rng(2)
    x = pd.Series(rng.uniform(0, 10, 1000), name="x")
    y = np.where(x > 5, 10.0, 0.0) + rng.normal(0, 0.1, 1000)
    v = NumericVectorizer(buckets=2).fit(x, y)
    assert len(v.edges_) == 1 and abs(v.edges_[0] - 5) < 0.2


# -- categorical -------------------------------------------------------------------
def test_categorical_top_k_min_support_other_and_placeholders():
    s = pd.Series(["a"] * 30 + ["b"] * 20 + ["c"] * 5 + ["Select", "unknown", " ? ", None, "a "] * 4,
                  name="src")
    v = CategoricalVectorizer(top_k=5, min_support=10).fit(s)
    assert v.categories_ == ["a", "b"]  # c below min_support, placeholders are missing
    assert list(v.get_feature_names_out()) == ["src__a", "src__b", "src__OTHER", "src__null"]
    out = dense(v, pd.Series(["b", "never seen", None, "N/A", "c"], name="src"))
    assert out.to_numpy().tolist() == [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 1, 0]]


def test_categorical_without_missing_at_fit_has_no_null_column():
    v = CategoricalVectorizer(min_support=1).fit(pd.Series(["x", "y"] * 5, name="c"))
    out = v.transform(pd.Series([None, "x"], name="c")).toarray()
    assert out.tolist() == [[0, 0, 0], [1, 0, 0]]


def test_numeric_codes_as_categories_match_across_dtypes():
    v = CategoricalVectorizer(min_support=1).fit(pd.Series([1, 2, 3] * 5, name="cls"))
    # the same classes arriving as floats (e.g. after a NaN) hit the same columns
    out = v.transform(pd.Series([1.0, 3.0, np.nan], name="cls")).toarray()
    assert out[:, :3].tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]


# -- text --------------------------------------------------------------------------
NOTES = ["Very interested, loved the demo and wants a proposal.",
         "Not interested at all, the price is too expensive and bad.",
         "Muy interesado en la propuesta, quiere una demo pronto.",
         "Left a voicemail for the buyer.", None]


def test_text_statistics_english_share_and_sentiment():
    s = pd.Series([f"{n} #{i}" if n else None for i, n in enumerate(NOTES * 10)], name="note")
    v = TextVectorizer(n_features=16).fit(s)
    assert v.pivot_ is None
    out = dense(v, pd.Series(NOTES, name="note"))
    assert out.shape[1] == 5 + 16 + 1
    eng, esp = out["note__english_share"][0], out["note__english_share"][2]
    assert eng > 0.2 and esp < 0.1
    assert out["note__sentiment"][0] > 0.5 and out["note__sentiment"][1] < -0.3
    assert np.isclose(np.expm1(out["note__log_words"][3]), 6)
    assert out.iloc[4].tolist() == [0] * 21 + [1]  # missing: only the indicator
    tfidf = out.filter(like="tfidf").to_numpy()
    assert np.allclose(np.linalg.norm(tfidf[:4], axis=1), 1)


def test_lexicon_sentiment_tracks_vader():
    docs = ["Very interested, loved the demo.", "Not interested, too expensive.",
            "I don't like it at all", "Unhappy with the price, no budget.", "not bad", "Left a voicemail."]
    exact = [_vader().polarity_scores(d)["compound"] for d in docs]
    approx = lexicon_sentiment(Tokens(docs))
    assert np.allclose(approx, exact, atol=0.05)
    v = TextVectorizer(n_features=0, sentiment="vader", pivot_coverage=1.1).fit(pd.Series(docs, name="t"))
    assert np.allclose(dense(v, pd.Series(docs, name="t"))["t__sentiment"], exact)


def test_tokens_keep_document_order_and_split_punctuation():
    t = Tokens(["E-mail (now), don't!", "", "  a_b  Ünïcode"])
    assert [t.vocab[i] for i in t.ids] == ["e", "mail", "now", "dont", "a_b", "ünïcode"]
    assert t.rows.tolist() == [0, 0, 0, 0, 2, 2]


def test_categorical_like_text_is_pivoted():
    s = pd.Series(["VP Sales"] * 50 + ["CEO"] * 45 + ["odd one"] * 5, name="title")
    v = TextVectorizer().fit(s)
    assert v.pivot_ is not None
    assert list(v.get_feature_names_out()) == ["title__VP Sales", "title__CEO", "title__OTHER"]
    assert set(v.feature_transforms_) == {"pivot"}


# -- contact -----------------------------------------------------------------------
def test_email_domain_free_mail_and_valid():
    s = pd.Series(["a@acme.com"] * 12 + ["b@gmail.com"] * 12 + ["broken", "x@tiny.io", None], name="email")
    v = EmailVectorizer().fit(s)
    out = dense(v, pd.Series(["z@ACME.com", "q@gmail.com", "not an email", "n@new.org", None], name="email"))
    assert out["email__domain=acme.com"].tolist() == [1, 0, 0, 0, 0]
    assert out["email__free_mail"].tolist() == [0, 1, 0, 0, 0]
    assert out["email__valid"].tolist() == [1, 1, 0, 1, 0]
    assert out["email__domain=OTHER"].tolist() == [0, 0, 1, 1, 0]
    assert out["email__null"].tolist() == [0, 0, 0, 0, 1]


def test_url_domain_and_valid():
    s = pd.Series(["https://www.acme.com/x?y=1", "acme.com", "http://user@acme.com:8080/"] * 4
                  + ["not a url"], name="site")
    v = UrlVectorizer().fit(s)
    out = dense(v, s)
    assert "site__domain=acme.com" in out and out["site__domain=acme.com"].sum() == 12
    assert out["site__valid"].tolist() == [1] * 12 + [0]


def test_phone_valid_digit_count():
    s = pd.Series(["+1 (555) 123-4567", "555-1234 ext. 12", "12", "call me", "+44 20 7946 0958 0000 11"],
                  name="phone")
    out = dense(PhoneVectorizer().fit(s), s)
    assert out["phone__valid"].tolist() == [1, 1, 0, 0, 0]


# -- dates -------------------------------------------------------------------------
def test_date_parts_from_strings():
    s = pd.Series(["2024-03-02", "2024-03-04", "bad date", None, "2024-01-01"], name="d")
    v = DateVectorizer().fit(s)
    assert not v.hours_ and v.reference_.startswith("2024-03-04")
    out = dense(v, s)
    assert out["d__weekend"].tolist() == [1, 0, 0, 0, 0]  # 2024-03-02 is a Saturday
    assert out["d__null"].tolist() == [0, 0, 1, 1, 0]
    assert np.isclose(out["d__years_since_ref"][1], 0) and out["d__years_since_ref"][4] > 0
    assert np.isclose(out["d__month_cos"][4], 1)  # January


def test_date_hours_are_circular_when_present():
    s = pd.Series(pd.to_datetime(["2024-01-01 06:00", "2024-01-01 18:00", "2024-01-02 00:00"]), name="t")
    out = dense(DateVectorizer().fit(s), s)
    assert np.allclose(out["t__hour_sin"], [1, -1, 0], atol=1e-9)


@pytest.mark.parametrize("cls", [NumericVectorizer, CategoricalVectorizer, TextVectorizer,
                                 EmailVectorizer, UrlVectorizer, PhoneVectorizer, DateVectorizer])
def test_vectorizers_accept_one_column_frames(cls):
    df = pd.DataFrame({"c": ["1", "2", None, "4"] * 5})
    v = cls().fit(df)
    assert v.transform(df).shape == (20, len(v.get_feature_names_out()))
