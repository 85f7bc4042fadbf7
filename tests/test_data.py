"""expkit.data: loading (sniffing, formats, bad files), fingerprint, split, sample."""
from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from expkit import data
from expkit.errors import ConfigError, DataError, TargetError


@pytest.fixture
def table():
    return pd.DataFrame({
        "id": [f"r{i}" for i in range(60)],
        "city": ["Köln", "Zürich", "São Paulo"] * 20,
        "amount": np.round(np.linspace(0, 100, 60), 2),
        "label": [0, 1, 1] * 20,
    })


@pytest.mark.parametrize("sep, name", [(",", "t.csv"), ("\t", "t.tsv"), (";", "t.csv"),
                                       ("|", "t.txt"), ("\t", "t.csv")])
def test_load_sniffs_the_delimiter(tmp_path, table, sep, name):
    path = tmp_path / name
    table.to_csv(path, sep=sep, index=False)
    pd.testing.assert_frame_equal(data.load(path), table)


def test_load_sniffs_semicolons_with_decimal_commas(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("name;price\nA;1,5\nB;2,25\n", encoding="utf-8")
    df = data.load(path, decimal=",")
    assert list(df.columns) == ["name", "price"] and df["price"].tolist() == [1.5, 2.25]


def test_load_parquet_jsonl_and_gzip_round_trip(tmp_path, table):
    table.to_parquet(tmp_path / "t.parquet")
    table.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    table.to_json(tmp_path / "t.json", orient="records", lines=True)
    with gzip.open(tmp_path / "t.csv.gz", "wt", encoding="utf-8") as fh:
        table.to_csv(fh, sep=";", index=False)
    for name in ("t.parquet", "t.jsonl", "t.json", "t.csv.gz"):
        pd.testing.assert_frame_equal(data.load(str(tmp_path / name)), table, check_dtype=False)


def test_load_passes_a_dataframe_through(table):
    assert data.load(table) is table


def test_load_reads_windows_1252_text(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("name,city\nJosé,München\n".encode("cp1252"))
    assert data.load(path)["city"].tolist() == ["München"]


@pytest.mark.parametrize("content, problem", [
    (None, "does not exist"),
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
    (b"a,b\n\x81\x8d\x8f,1\n", "not UTF-8"),
    (b"a,b,c\n", "no data rows"),
    (b"\n\n  \n", "blank"),
])
def test_bad_files_raise_data_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "bad_input.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as info:
        data.load(path)
    assert "bad_input.csv" in str(info.value) and problem in str(info.value)
    assert info.value.hint  # says what to do


def test_load_rejects_folders_and_other_objects(tmp_path):
    with pytest.raises(DataError, match="folder"):
        data.load(tmp_path)
    with pytest.raises(DataError, match="cannot load"):
        data.load(42)


def test_broken_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match="broken.parquet"):
        data.load(path)


def test_fingerprint_tracks_content_not_index(table):
    fp = data.fingerprint(table)
    assert len(fp) == 64 and fp == data.fingerprint(table.copy())
    assert fp == data.fingerprint(table.set_axis(range(100, 160)))
    changed = table.copy()
    changed.loc[5, "amount"] += 0.01
    assert data.fingerprint(changed) != fp
    assert data.fingerprint(table.iloc[:-1]) != fp
    assert data.fingerprint(table.rename(columns={"city": "town"})) != fp


def test_split_is_stratified_and_reproducible():
    df = pd.DataFrame({"x": range(1000), "y": [1] * 100 + [0] * 900})
    train, test = data.split(df, "y", holdout=0.2, seed=1)
    assert len(train) == 800 and len(test) == 200
    assert train["y"].mean() == pytest.approx(0.1) and test["y"].mean() == pytest.approx(0.1)
    assert set(train.index).isdisjoint(test.index)
    again, _ = data.split(df, "y", holdout=0.2, seed=1)
    assert again.index.equals(train.index)
    other, _ = data.split(df, "y", holdout=0.2, seed=2)
    assert not other.index.equals(train.index)


def test_split_handles_continuous_and_rare_targets():
    df = pd.DataFrame({"x": range(200), "y": np.linspace(0, 1, 200)})
    train, test = data.split(df, "y", holdout=0.25)
    assert len(test) == 50 and 0.4 < test["y"].mean() < 0.6  # decile-stratified
    rare = pd.DataFrame({"x": range(50), "y": [0] * 49 + [1]})
    train, test = data.split(rare, "y")  # falls back to a random split
    assert len(train) + len(test) == 50


def test_split_errors():
    df = pd.DataFrame({"x": range(10), "y": [0, 1] * 5})
    with pytest.raises(TargetError, match="'nope'"):
        data.split(df, "nope")
    with pytest.raises(ConfigError):
        data.split(df, "y", holdout=1.5)


def test_sample_stratified_keeps_order_and_shares():
    df = pd.DataFrame({"x": range(10_000), "y": [1] * 1000 + [0] * 9000})
    s = data.sample(df, 500, target="y", seed=0)
    assert len(s) == 500 and s["y"].mean() == pytest.approx(0.1)
    assert s.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(s, data.sample(df, 500, target="y", seed=0))
    assert data.sample(df, 20_000) is df
    with pytest.raises(ConfigError):
        data.sample(df, 0)


# -- what used to be misread or mangled --------------------------------------------------------
def test_a_first_data_row_longer_than_the_header_is_an_error_naming_the_line(tmp_path):
    from expkit.data import check

    path = tmp_path / "leads.csv"
    path.write_text("id,spend,converted\n1,10,yes,extra,more\n2,20,no\n")
    for read in (data.load, check):
        with pytest.raises(DataError, match=r"line 2 of .*leads.csv' has 5 fields but the header \(line 1\) has 3"):
            read(path)
    path.write_text("id,spend,converted\n1,10,yes\n2,20,no,extra\n")
    with pytest.raises(DataError, match="Expected 3 fields in line 3, saw 4") as info:
        data.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("url,pattern", [
    ("http://127.0.0.1:8000/leads.csv", r"names a file on another machine \(http://\)"),
    ("https://user:secret@example.com/leads.csv", r"names a file on another machine \(https://\)"),
    ("s3://bucket/leads.parquet", r"\(s3://\); expkit reads tables from local files \(download it first"),
    ("gs://bucket/x.csv", r"\(gs://\)"),
])
def test_urls_are_refused_with_what_to_do(url, pattern):
    with pytest.raises(DataError, match=pattern) as info:
        data.load(url)
    assert "secret" not in str(info.value)


def test_other_urls_are_databases_and_need_a_query():
    with pytest.raises(ConfigError, match="a database URL needs a query"):
        data.load("weird+scheme://x/y")


def test_file_urls_are_read(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    assert data.load(path.as_uri()).shape == (1, 2)


def test_template_pre_check_refuses_before_anything_runs(tmp_path, monkeypatch):
    from expkit.templates import check_data_paths

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.csv").write_text("spend,converted\n1,yes\n2,no\n")
    (tmp_path / "ragged.csv").write_text("spend,converted\n1,yes,3\n2,no\n")
    check_data_paths({"data": "ok.csv", "target": "converted"})
    check_data_paths({"data": "postgresql://h/db", "target": "x"})  # a database: the template's business
    for params, pattern in (
            ({"data": "https://example.com/x.csv"}, r"parameter 'data': 'https://example.com/x.csv' names a file"),
            ({"data": "ragged.csv"}, r"parameter 'data': line 2 of 'ragged.csv' has 3 fields"),
            ({"data": "ok.csv", "target": "convrted"}, r"parameter 'target': 'convrted' is not a column of ok.csv"),
            ({"data": "file:///no/such.csv"}, r"parameter 'data': data path file:///no/such.csv does not exist")):
        with pytest.raises(DataError, match=pattern):
            check_data_paths(params)
