"""expkit.profiling: per-column statistics, target association, warnings, HTML."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from expkit import datasets, profiling, schema
from expkit.errors import TargetError


@pytest.fixture(scope="module")
def titanic_profile():
    df = datasets.titanic()
    df["leak_copy"] = df["Survived"]
    df["leak_text"] = np.where(df["Survived"] == 1, "saved", "lost")
    df["notes"] = np.where(np.arange(len(df)) < 30, "checked", None)
    return profiling.profile(df, target="Survived")


def test_profile_frame_has_stats_per_column(titanic_profile):
    frame = titanic_profile.to_frame()
    assert len(frame) == 15 and frame.loc["PassengerId", "type"] == "id"
    for col in ("type", "fill_rate", "distinct", "top_values", "mean", "std", "min", "p25",
                "p50", "p75", "max", "association", "association_metric", "warnings"):
        assert col in frame.columns
    assert frame.loc["Age", "fill_rate"] == pytest.approx(714 / 891)
    assert frame.loc["Embarked", "distinct"] == 3
    assert frame.loc["Embarked", "top_values"].startswith("S (72%)")
    assert frame.loc["Fare", "max"] == pytest.approx(512.3292)
    assert frame.loc["Age", "p50"] == pytest.approx(28.0)
    assert frame.loc["Sex", "association_metric"] == "Cramer's V"
    assert 0.5 < frame.loc["Sex", "association"] < 0.6
    assert frame.loc["Fare", "association_metric"] == "AUC"


def test_auc_matches_sklearn(titanic_profile):
    df = datasets.titanic().dropna(subset=["Age"])
    auc = roc_auc_score(df["Survived"], df["Age"])
    assert titanic_profile.to_frame().loc["Age", "association"] == pytest.approx(max(auc, 1 - auc))


def test_warnings_flag_leaks_ids_and_mostly_empty(titanic_profile):
    w = titanic_profile.warnings
    assert list(w.columns) == ["column", "kind", "message"]
    kinds = set(zip(w["column"], w["kind"]))
    assert ("leak_copy", "leak") in kinds and ("leak_text", "leak") in kinds
    assert ("PassengerId", "id") in kinds and ("notes", "mostly_empty") in kinds
    assert not any(k == "leak" for c, k in kinds if c in ("Sex", "Fare", "Pclass"))
    assert "AUC 1.00" in w.loc[w["column"] == "leak_copy", "message"].iloc[0]


def test_placeholders_and_constants_are_flagged():
    leads = datasets.leads(3000, seed=1)
    leads["region"] = "EMEA"
    p = profiling.profile(leads, target="converted")
    w = p.warnings
    select = w[(w["column"] == "lead_source") & (w["kind"] == "placeholder")]
    assert len(select) == 1 and "'Select'" in select["message"].iloc[0]
    share = (leads["lead_source"] == "Select").mean()
    assert f"{share:.1%}" in select["message"].iloc[0]
    assert ((w["column"] == "region") & (w["kind"] == "constant")).any()
    assert ((w["column"] == "lead_id") & (w["kind"] == "id")).any()
    assert not (w["kind"] == "leak").any()
    assert p.task == "binary" and p.schema["email"].type == "email"


def test_html_is_readable_and_highlights_warnings(titanic_profile):
    out = titanic_profile._repr_html_()
    assert out.count("<tr") == 16  # header + one row per column
    assert "#f8d7da" in out and "likely label leak" in out  # leak rows in red
    assert "Survived (target)" in out and "891 rows" in out


def test_multiclass_and_regression_targets():
    rng = np.random.default_rng(0)
    n = 600
    cls = rng.choice(["a", "b", "c"], n)
    df = pd.DataFrame({"cls": cls, "x": (cls == "a") * 3 + rng.normal(size=n),
                       "g": rng.choice(["u", "v"], n), "y": rng.normal(size=n)})
    df["y"] += df["x"]
    multi = profiling.profile(df, target="cls").to_frame()
    assert multi.loc["x", "association_metric"] == "eta" and multi.loc["x", "association"] > 0.6
    reg = profiling.profile(df, target="y").to_frame()
    assert reg.loc["x", "association_metric"] == "|Spearman|" and reg.loc["x", "association"] > 0.5
    assert reg.loc["g", "association_metric"] == "eta" and reg.loc["g", "association"] < 0.2


def test_cramers_v_bounds():
    rng = np.random.default_rng(0)
    a = rng.choice(list("abcd"), 2000)
    assert profiling.cramers_v(a, a) == pytest.approx(1.0)
    assert profiling.cramers_v(a, rng.choice(list("xy"), 2000)) < 0.05


def test_profile_uses_a_given_schema_and_checks_the_target():
    df = datasets.titanic()
    s = schema.infer(df, target="Survived", overrides={"Pclass": "categorical"})
    p = profiling.profile(df, schema=s)
    assert p.target == "Survived" and p.to_frame().loc["Pclass", "type"] == "categorical"
    assert p.to_frame().loc["Pclass", "association_metric"] == "Cramer's V"
    with pytest.raises(TargetError):
        profiling.profile(df, target="missing")


@pytest.mark.slow
def test_wide_tables_are_profiled_on_a_sample_quickly():
    rng = np.random.default_rng(0)
    n = 5_000
    wide = pd.DataFrame({f"c{i}": (rng.normal(size=n) if i % 2 else rng.choice(["a", "b", "?"], n))
                         for i in range(1000)})
    wide["y"] = rng.integers(0, 2, n)
    start = time.perf_counter()
    p = profiling.profile(wide, target="y")
    assert time.perf_counter() - start < 30  # a few seconds alone; generous under load
    assert p.n_rows == n and p.n_profiled < n and len(p.to_frame()) == 1001
    assert (p.warnings["kind"] == "placeholder").sum() == 500
