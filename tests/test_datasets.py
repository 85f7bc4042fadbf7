"""Bundled demo data: the leads generator and the Titanic table."""
from __future__ import annotations

import time
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from expkit import datasets
from expkit.errors import ConfigError

COLUMNS = ["lead_id", "tenant", "email", "title", "lead_source", "country", "spend",
           "web_visits", "created", "note", "converted"]
FREEMAIL = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com")


@pytest.fixture(scope="module")
def leads():
    return datasets.leads(n_rows=6000, n_tenants=3, seed=0)


def test_leads_has_exactly_the_contract_columns_and_types(leads):
    assert list(leads.columns) == COLUMNS
    assert len(leads) == 6000
    assert leads["lead_id"].is_unique
    assert pd.api.types.is_datetime64_any_dtype(leads["created"])
    assert pd.api.types.is_integer_dtype(leads["web_visits"])
    assert pd.api.types.is_float_dtype(leads["spend"])
    assert set(leads["converted"].unique()) == {0, 1}
    assert set(leads["tenant"]) == {"acme", "globex", "initech"}
    span = leads["created"].max() - leads["created"].min()
    assert pd.Timedelta(days=480) < span < pd.Timedelta(days=560)  # ~18 months


def test_leads_values_look_like_crm_data(leads):
    domains = leads["email"].dropna().str.split("@").str[-1]
    free = domains.isin(FREEMAIL).mean()
    assert 0.2 < free < 0.4 and domains.nunique() > 50  # company domains too
    assert leads["title"].str.contains("Director", na=False).any()
    assert leads["title"].nunique() > 200  # free text, not a short list
    assert (leads["lead_source"] == "Select").any() and leads["lead_source"].isna().any()
    assert (leads["country"] == "Select").any() and leads["country"].isna().any()
    assert 0.12 < leads["spend"].isna().mean() < 0.18
    spend = leads["spend"].dropna()
    assert spend.mean() > 1.5 * spend.median()  # right-skewed
    notes = leads["note"].dropna()
    for word in ("interested", "too expensive", "Sehr", "demasiado", "intéressé"):
        assert notes.str.contains(word).any(), word
    assert leads["web_visits"].min() >= 0


def test_leads_are_deterministic_for_a_seed():
    a, b = datasets.leads(500, seed=3), datasets.leads(500, seed=3)
    pd.testing.assert_frame_equal(a, b)
    c = datasets.leads(500, seed=4)
    assert not a["converted"].equals(c["converted"]) and not a["lead_id"].equals(c["lead_id"])


def test_drivers_of_conversion_differ_between_tenants(leads):
    freemail = leads["email"].str.split("@").str[-1].isin(FREEMAIL).astype(float)
    senior = leads["title"].str.contains("VP|Director|CEO|Founder|President|Owner|CTO|CFO",
                                         case=False, na=False).astype(float)
    df = leads.assign(freemail=freemail, senior=senior,
                      log_spend=np.log(leads["spend"]))

    def corr(tenant, col):
        g = df[df["tenant"] == tenant].dropna(subset=[col])
        return np.corrcoef(g[col], g["converted"])[0, 1]

    # acme: spend and seniority; globex: web visits; initech: free-mail (negative)
    assert corr("acme", "senior") > 0.25 and abs(corr("globex", "senior")) < 0.1
    assert corr("acme", "log_spend") > 0.15 and abs(corr("globex", "log_spend")) < 0.1
    assert corr("globex", "web_visits") > 0.3 and abs(corr("acme", "web_visits")) < 0.1
    assert corr("initech", "freemail") < -0.25 and abs(corr("globex", "freemail")) < 0.1
    rates = leads.groupby("tenant")["converted"].mean()
    assert rates.between(0.2, 0.4).all()


def test_leads_signal_is_strong_within_a_tenant_only(leads):
    def auc(tenant):  # Mann-Whitney AUC of web_visits as a score for converted
        g = leads[leads["tenant"] == tenant]
        ranks, pos = g["web_visits"].rank(), g["converted"] == 1
        n1, n0 = pos.sum(), (~pos).sum()
        return (ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)

    # one driver alone already ranks globex leads well, and says nothing for acme
    assert auc("globex") > 0.7 and 0.4 < auc("acme") < 0.6


def test_more_tenants_and_bad_arguments():
    df = datasets.leads(300, n_tenants=5, seed=1)
    assert set(df["tenant"]) == set(datasets.TENANTS[:5])
    with pytest.raises(ConfigError):
        datasets.leads(10, n_tenants=0)
    with pytest.raises(ConfigError):
        datasets.leads(0)


def test_leads_are_fast():
    start = time.perf_counter()
    df = datasets.leads(100_000, n_tenants=5)
    elapsed = time.perf_counter() - start
    assert len(df) == 100_000
    assert elapsed < 5  # ~0.5 s alone; generous for a busy CI machine


def test_titanic_is_bundled_with_its_source():
    df = datasets.titanic()
    assert df.shape == (891, 12)
    assert list(df.columns[:4]) == ["PassengerId", "Survived", "Pclass", "Name"]
    assert int(df["Survived"].sum()) == 342
    source = (resources.files("expkit.datasets") / "SOURCE.md").read_text(encoding="utf-8")
    assert "TransmogrifAI" in source and "BSD-3-Clause" in source
