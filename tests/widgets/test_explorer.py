"""Explorer driven headless: type overrides reach the features, paging, plots."""
from __future__ import annotations

import ipywidgets as W
import numpy as np
import pandas as pd
import pytest

import expkit
from expkit.errors import SchemaError, TargetError
from expkit.formatting import fmt
from expkit.widgets import Explorer

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def leads():
    return expkit.datasets.leads(n_rows=400, n_tenants=2, seed=1)


def _row(explorer, column):
    """The (name button, type dropdown) of ``column`` on the current page."""
    i = explorer.visible_columns.index(column)
    _box, name, typ, *_ = explorer.rows[i]
    return name, typ


def test_type_override_in_the_dropdown_changes_the_features(leads):
    ex = Explorer(leads, target="converted")
    assert ex.schema["web_visits"].type == "integer"
    X = leads.drop(columns="converted")
    before = expkit.Transmogrifier(schema=ex.schema).fit(X).lineage_
    assert "value" in set(before.loc[before["column"] == "web_visits", "transform"])

    ex.filter.value = "web_vis"
    assert ex.visible_columns == ["web_visits"]
    _name, typ = _row(ex, "web_visits")
    typ.value = "categorical"  # what choosing it in the dropdown does

    assert ex.overrides == {"web_visits": "categorical"}
    schema = ex.schema
    assert schema["web_visits"].type == "categorical" and schema["web_visits"].overridden
    assert schema.target == "converted"
    after = expkit.Transmogrifier(schema=schema).fit(X).lineage_
    web_before = before[before["column"] == "web_visits"]
    web_after = after[after["column"] == "web_visits"]
    assert set(web_after["transform"]) == {"pivot"}  # one-hot levels instead of a number
    assert "web_visits__value" not in set(web_after["feature"])
    assert "web_visits__value" in set(web_before["feature"])
    # the other columns are untouched
    pd.testing.assert_frame_equal(before[before["column"] != "web_visits"].reset_index(drop=True),
                                  after[after["column"] != "web_visits"].reset_index(drop=True))

    typ.value = "integer"  # back to the inferred type: no override left
    assert ex.overrides == {}


def test_schema_argument_a_dict_of_overrides_or_a_full_schema(leads):
    ex = Explorer(leads, target="converted", schema={"spend": "categorical"})
    assert ex.schema["spend"].type == "categorical" and ex.schema["country"].type == "categorical"
    assert ex.overrides == {}  # part of the starting schema, not a change made here
    partial = expkit.schema.infer(leads[["spend", "converted"]], target="converted")
    with pytest.raises(SchemaError, match="lead_id"):
        Explorer(leads, schema=partial)


def test_set_type_validates_and_marks_the_row(leads):
    ex = Explorer(leads, target="converted")
    with pytest.raises(SchemaError, match="nope"):
        ex.set_type("spend", "nope")
    with pytest.raises(SchemaError, match="ghost"):
        ex.set_type("ghost", "numeric")
    ex.set_type("spend", "categorical")
    _name, typ = _row(ex, "spend")
    assert typ.value == "categorical" and typ.layout.border


def test_selecting_a_column_plots_distribution_and_target_relation(leads):
    ex = Explorer(leads, target="converted")
    name, _typ = _row(ex, "lead_source")
    name.click()
    assert ex.selected == "lead_source"
    assert name.button_style == "info"
    assert bytes(ex.plot.value).startswith(PNG)
    dist, relation = ex.figure.axes
    n_levels = leads["lead_source"].fillna("(missing)").nunique()
    assert len(dist.patches) == min(n_levels, 15)
    assert len(relation.patches) == len(dist.patches)
    assert "converted" in relation.get_title()
    # bars are the share of converted leads per level
    rates = leads.assign(k=leads["lead_source"].fillna("(missing)")).groupby("k")["converted"].mean()
    shown = {t.get_text(): p.get_width() for t, p in zip(relation.get_yticklabels(), relation.patches)}
    for level, rate in shown.items():
        assert rate == pytest.approx(rates[level])

    ex.select("spend")  # numeric: histogram + rate by quantile bin
    dist, relation = ex.figure.axes
    assert len(dist.patches) == 30 and 2 <= len(relation.patches) <= 10
    assert dist.get_xscale() == "log"  # money: log-spaced bins
    assert "spend" in ex.detail_title.value
    labels = [t.get_text() for t in relation.get_yticklabels()]  # each bin named by its range, in order
    lows = [float(label.split(" .. ")[0].replace(",", "")) for label in labels]
    assert all(" .. " in label for label in labels) and lows == sorted(lows)
    bins = pd.qcut(leads["spend"].dropna(), q=10, duplicates="drop").cat.categories
    assert labels[0].split(" .. ")[1] == fmt(float(bins[0].right))

    ex.target_dd.value = None  # no target: only the distribution
    assert ex.target is None and len(ex.figure.axes) == 1
    assert ex.schema.target is None
    # ipywidgets shows an empty box for a None value: "(none)" has a value of its own
    assert ex.target_dd.label == "(none)" and ex.target_dd.index == 0
    assert Explorer(leads).target_dd.label == "(none)"


def test_vs_target_names_its_measure(leads):
    ex = Explorer(leads, target="converted")
    shown = {name.description.split("  ")[0]: assoc.value for (_b, name, _t, _f, _d, assoc, _w) in ex.rows
             if name.description}
    assert shown["spend"].startswith("0.") and "AUC</span>" in shown["spend"]      # number: AUC, 0.5 none
    assert "V</span>" in shown["lead_source"]                                       # category: Cramér's V
    header = ex.widget.children[2].value
    assert "0.5 none" in header and "Cramér's V" in header


def test_paging_a_1000_column_table_builds_one_page_of_rows():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(120, 1000)), columns=[f"c{i:03d}" for i in range(1000)])
    df["y"] = rng.integers(0, 2, size=120)
    ex = Explorer(df, target="y", page_size=25)
    dropdowns = [w for w in _walk(ex.widget) if isinstance(w, W.Dropdown)]
    assert len(dropdowns) == 25 + 1  # one page of type dropdowns and the target's
    assert ex.n_pages == 41 and ex.visible_columns == [f"c{i:03d}" for i in range(25)]
    assert ex.prev_button.disabled and not ex.next_button.disabled

    ex.next_button.click()
    ex.next_button.click()
    assert ex.page == 2 and ex.visible_columns[0] == "c050"
    ex.prev_button.click()
    assert ex.visible_columns[0] == "c025" and "page 2 of 41" in ex.page_label.value

    ex.filter.value = "c99"
    assert ex.visible_columns == [f"c99{i}" for i in range(10)]
    assert ex.n_pages == 1 and ex.next_button.disabled
    hidden = [box.layout.display for box, *_ in ex.rows]
    assert hidden.count("none") == 25 - 10
    _name, typ = _row(ex, "c995")
    typ.value = "categorical"

    ex.filter.value = ""
    for _ in range(39):
        ex.next_button.click()
    assert ex.page == 39 and "c995" in ex.visible_columns
    _name, typ = _row(ex, "c995")
    assert typ.value == "categorical"
    ex.next_button.click()
    assert ex.visible_columns == ["y"] and ex.next_button.disabled
    assert ex.schema["c995"].type == "categorical" and ex.schema["c994"].type == "numeric"


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_bad_target_and_display(leads):
    with pytest.raises(TargetError, match="ghost"):
        Explorer(leads, target="ghost")
    bundle = Explorer(leads.iloc[:, :4])._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
