"""expkit.schema.infer: semantic types from values, evidence, overrides, JSON."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from expkit import data, datasets, schema
from expkit.errors import SchemaError, TargetError
from expkit.schema import Schema

TITANIC = {"PassengerId": "id", "Survived": "binary", "Pclass": "integer", "Name": "text",
           "Sex": "binary", "Age": "numeric", "SibSp": "integer", "Parch": "integer",
           "Ticket": "text", "Fare": "numeric", "Cabin": "text", "Embarked": "categorical"}
LEADS = {"lead_id": "id", "tenant": "categorical", "email": "email", "title": "text",
         "lead_source": "categorical", "country": "categorical", "spend": "numeric",
         "web_visits": "integer", "created": "date", "note": "text", "converted": "binary"}


def test_titanic_types():
    s = schema.infer(datasets.titanic(), target="Survived")
    assert s.types == TITANIC
    assert s.target == "Survived" and "Survived" not in s.features
    assert "one per row" in s["PassengerId"].evidence


def test_leads_types_from_frame_and_from_csv(tmp_path):
    leads = datasets.leads(1500, seed=2)
    assert schema.infer(leads, target="converted").types == LEADS
    leads.to_csv(tmp_path / "leads.csv", index=False)
    loaded = data.load(tmp_path / "leads.csv")
    assert not pd.api.types.is_datetime64_any_dtype(loaded["created"])
    s = schema.infer(loaded)
    assert s.types == LEADS
    assert "email pattern" in s["email"].evidence and "%" in s["email"].evidence
    assert "parse as dates" in s["created"].evidence


def test_string_patterns_and_numbers_stored_as_text():
    n = 40
    df = pd.DataFrame({
        "amount": ["1,234", "12.5", "3", "-4,000.5"] * (n // 4),
        "count": ["1", "2", "3", "15"] * (n // 4),
        "zip": ["02139", "10001", "00501", "94105"] * (n // 4),
        "phone": ["+1 (555) 123-4567", "555-123-4567", "+44 20 7946 0958", "(555) 987 6543"] * (n // 4),
        "site": ["https://a.com/x", "www.b.org", "http://c.io/y?z=1", "https://d.de"] * (n // 4),
        "day": ["01/05/2024", "03/15/2023", "12/31/2022", "07/04/2021"] * (n // 4),
        "token": [f"tok{i:05d}x" for i in range(n)],
    })
    types = schema.infer(df).types
    assert types == {"amount": "numeric", "count": "integer", "zip": "categorical",
                     "phone": "phone", "site": "url", "day": "date", "token": "id"}
    assert schema.parse_numeric(pd.Series(["1,234", "$5", "12%", "12,5", "x", None])) \
        .tolist()[:4] == [1234.0, 5.0, 12.0, 12.5]


def test_constant_binary_and_integer_id_rules():
    n = 100
    df = pd.DataFrame({
        "empty": [np.nan] * n,
        "same": ["x"] * n,
        "flag": ["Y"] * 30 + [None] * 70,
        "yesno": ["yes", "no"] * 50,
        "bools": [True, False] * 50,
        "code": np.arange(n)[::-1] + 1000,  # distinct, in order
        "row_id": np.random.default_rng(0).permutation(n),  # distinct, id-like name
        "score": np.random.default_rng(1).permutation(n),  # distinct, not an id
        "when": pd.date_range("2024-01-01", periods=n),
    })
    types = schema.infer(df).types
    assert types == {"empty": "constant", "same": "constant", "flag": "binary",
                     "yesno": "binary", "bools": "binary", "code": "id", "row_id": "id",
                     "score": "integer", "when": "date"}


def test_coverage_decides_categorical_versus_text():
    rng = np.random.default_rng(0)
    common = [f"plan {i}" for i in range(60)]
    few_values = rng.choice(common[:30], 2000)
    covered = np.where(rng.random(2000) < 0.95, rng.choice(common[:40], 2000),
                       [f"rare value {i}" for i in range(2000)])
    sentences = [f"customer {i} said something about {w}" for i, w in
                 enumerate(rng.choice(["price", "demo", "support"], 2000))]
    df = pd.DataFrame({"few": few_values, "covered": covered, "free": sentences})
    s = schema.infer(df)
    assert s.types == {"few": "categorical", "covered": "categorical", "free": "text"}
    assert "cover" in s["covered"].evidence and "cover only" in s["free"].evidence


def test_overrides_win_and_are_marked():
    df = datasets.titanic()
    s = schema.infer(df, target="Survived", overrides={"Pclass": "categorical", "Ticket": "id"})
    assert s["Pclass"].type == "categorical" and s["Pclass"].overridden
    assert s["Ticket"].type == "id" and not s["Name"].overridden
    with pytest.raises(SchemaError, match="nope"):
        schema.infer(df, overrides={"nope": "text"})
    with pytest.raises(SchemaError, match="banana"):
        schema.infer(df, overrides={"Name": "banana"})
    with pytest.raises(TargetError, match="'label'"):
        schema.infer(df, target="label")


def test_schema_round_trips_through_json(tmp_path):
    s = schema.infer(datasets.leads(400), target="converted", overrides={"title": "categorical"})
    again = Schema.from_json(s.to_json())
    assert again == s and again.target == "converted" and again["title"].overridden
    s.to_json(tmp_path / "schema.json")
    assert Schema.from_json(tmp_path / "schema.json") == s
    assert Schema.coerce({"a": "numeric"}).types == {"a": "numeric"}


def test_inference_is_fast_on_wide_and_long_tables():
    rng = np.random.default_rng(0)
    n = 3000
    wide = pd.DataFrame({f"c{i}": (rng.normal(size=n) if i % 3 == 0 else
                                   rng.integers(0, 9, n) if i % 3 == 1 else
                                   rng.choice(["a", "b", "c", "Select"], n))
                         for i in range(300)})
    start = time.perf_counter()
    assert len(schema.infer(wide)) == 300
    long = datasets.leads(100_000)
    assert schema.infer(long).types == LEADS  # string checks look at a sample
    assert time.perf_counter() - start < 15  # ~2 s alone


def test_mixed_date_formats_are_dates_with_a_warning_in_the_evidence():
    import numpy as np
    import pandas as pd

    from expkit import profile
    from expkit.schema import infer

    days = pd.date_range("2023-01-01", periods=300, freq="D")
    mixed = [d.strftime(["%Y-%m-%d", "%d-%b-%Y", "%a, %d %b %Y"][i % 3]) for i, d in enumerate(days)]
    one = [d.strftime("%Y-%m-%d") for d in days]
    df = pd.DataFrame({"mixed": mixed, "one": one, "y": np.arange(300) % 2})
    schema = infer(df, "y")
    assert schema["mixed"].type == "date" and "warning: mixed date formats" in schema["mixed"].evidence
    assert "'2023-01-01'" in schema["mixed"].evidence
    assert schema["one"].type == "date" and "warning" not in schema["one"].evidence
    warnings = profile(df, "y").warnings
    assert warnings[warnings["kind"] == "mixed_dates"]["column"].tolist() == ["mixed"]


def test_a_one_row_table_is_said_as_such():
    import pandas as pd

    from expkit import Transmogrifier, profile
    from expkit.errors import FeatureError, TargetError
    from expkit.models.tournament import tournament
    from expkit.schema import infer

    df = pd.DataFrame({"spend": [10.0], "source": ["web"], "y": [1]})
    assert set(profile(df, "y").warnings["kind"]) == {"few_rows"}
    with pytest.raises(FeatureError, match=r"the table has 1 row\(s\)"):
        Transmogrifier(infer(df, "y")).fit(df.drop(columns="y"), df["y"])
    with pytest.raises(TargetError, match="the table has only 1 row; a tournament needs at least"):
        tournament(df, "y", n_trials=1, progress=False)
