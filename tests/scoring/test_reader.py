"""Partitioned reading, the type rule, formula neutralising and leftover cleaning."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from expkit import load
from expkit.errors import DataError, SchemaError
from expkit.schema import ColumnType
from expkit.scoring import reader, types, writer

TRICKY_HEADER = "lead_id,spend,source,visits,note\n"
TRICKY_ROWS = (
    '007,12.5,web,3,"two\nlines, and a ""quote"""\n'
    "008,NA,,,None\n"
    "009, 12 ,ads,3.0,<NA>\n"
    "010,,event,4,n/a\n"
    '011,1e3,"",5,"quoted, comma"\n'
)
COLUMNS = ["lead_id", "spend", "source", "visits", "note"]


def read_all(path, rows, columns=COLUMNS):
    source, parts = reader.plan(path, columns, rows)
    parts = list(parts)
    frames = [f for p in parts for f in reader.read_part(source, p, rows)]
    return parts, pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_text_parts_end_on_record_boundaries_and_keep_expkit_loads_null_policy(tmp_path, monkeypatch, block):
    """Quoted newlines and quotes across part and block edges: the parts together are the
    file as expkit.load reads it (as text), with the same missing values."""
    monkeypatch.setattr(reader, "BLOCK", block)  # boundaries found across many blocks
    src = tmp_path / "tricky.csv"
    src.write_text(TRICKY_HEADER + TRICKY_ROWS * 40)
    parts, got = read_all(src, 7)
    assert len(parts) > 10 and [p.number for p in parts] == list(range(len(parts)))
    assert all(a.end == b.start for a, b in zip(parts, parts[1:]))
    assert [p.line for p in parts] == sorted(p.line for p in parts) and parts[0].line == 2
    expected = load(src, dtype="str")
    assert len(got) == 200 and got["lead_id"].tolist() == expected["lead_id"].tolist()
    for col in COLUMNS:
        assert got[col].isna().tolist() == expected[col].isna().tolist(), col
    assert got["note"].iloc[0] == 'two\nlines, and a "quote"' and got["lead_id"].iloc[1] == "008"


def test_newlines_inside_long_quoted_values_are_never_boundaries(tmp_path):
    """Most of the file's bytes (and newlines) lie inside quoted values: a planner that cut
    at the first newline after its target would cut inside them nearly every time."""
    src = tmp_path / "notes.csv"
    note = '"' + "\n".join(f"line {j}, with ""quotes""" for j in range(30)) + '"'
    src.write_text(TRICKY_HEADER + "".join(f"{i:04d},1.5,web,3,{note}\n" for i in range(300)))
    parts, got = read_all(src, 9)
    assert len(parts) > 20
    assert got["lead_id"].tolist() == [f"{i:04d}" for i in range(300)]
    assert (got["note"] == load(src, dtype="str")["note"]).all()


def test_parquet_parts_are_row_groups_and_jsonl_parts_byte_ranges(tmp_path):
    df = pd.DataFrame({"a": range(1000), "b": [f"x{i}" for i in range(1000)]})
    df.to_parquet(tmp_path / "a.parquet", row_group_size=100)
    df.to_json(tmp_path / "a.jsonl", orient="records", lines=True)
    parts, got = read_all(tmp_path / "a.parquet", 250, ["b", "a"])
    assert [p.row_groups for p in parts] == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert got["a"].tolist() == list(range(1000)) and list(got.columns) == ["b", "a"]
    parts, got = read_all(tmp_path / "a.jsonl", 250, ["a", "b"])
    assert len(parts) >= 3 and got["b"].tolist() == df["b"].tolist()


def test_a_malformed_line_is_named(tmp_path):
    src = tmp_path / "bad.csv"
    lines = [TRICKY_HEADER.strip()] + [f"{i:03d},1.5,web,3,ok" for i in range(300)]
    lines[250] = "249,1.5,web,3,ok,extra,fields"
    src.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"bad\.csv.*7 field\(s\) where the header has 5.*extra,fields"):
        read_all(src, 40)


def ct(dtype, kind="numeric"):
    return ColumnType("c", kind, dtype=dtype)


def text(values):
    return pd.Series(pa.array(values, pa.string()).to_pandas(), name="c")


def test_one_type_rule():
    # numbers: spaces ignored, int64 for an integer column only when the chunk allows it
    assert types.coerce(text([" 12 ", "3"]), ct("int64")).tolist() == [12, 3]
    assert types.coerce(text([" 12 ", "3"]), ct("int64")).dtype == np.int64
    got = types.coerce(text(["1.5", None, ""]), ct("int64"))
    assert got.dtype == float and got.isna().tolist() == [False, True, True]
    assert types.coerce(text(["1e3", "-2"]), ct("float64")).tolist() == [1000.0, -2.0]
    with pytest.raises(SchemaError, match=r"column 'c' should hold a number .* e\.g\. 'twelve'"):
        types.coerce(text(["1", "twelve"]), ct("float64"))
    # booleans
    assert types.coerce(text(["True", "false", "1"]), ct("bool", "binary")).tolist() == [True, False, True]
    with pytest.raises(SchemaError, match="true/false.*'maybe'"):
        types.coerce(text(["true", "maybe"]), ct("bool", "binary"))
    # text: whole numbers of a typed file become their text
    assert types.coerce(pd.Series([12.0, None]), ct("str", "categorical")).tolist()[0] == "12"


@pytest.mark.parametrize("values", [
    ["2024-04-03 19:50:02", None, " 2024-01-01 00:00:00 ", ""], ["2024-04-03", "", None],
    ["2024-04-03T19:50:02", "2024-04-04T00:00:00"], ["2024-04-03T19:50:02", "2024-04-03 01:02:03"],
    ["2024-02-30"], ["2024-4-3"], ["03/04/2024"], ["2024-04-03 19:50:02+02:00"], ["2024-04-03T19:50+01"],
    ["2024-04-03 00:00:00", "2024-04-03"]])
def test_date_coercion_matches_pandas(values):
    """Plain ISO dates are parsed in arrow; the result (or the error) is pandas'."""
    col = ColumnType("created", "date", dtype="datetime64[ns]")
    s = pd.Series(values, dtype="str", index=range(5, 5 + len(values)), name="created")
    stripped = s.str.strip()
    blank = s.isna() | stripped.eq("")
    expected = pd.to_datetime(stripped.where(~blank), errors="coerce")
    if (expected.isna() & ~blank).any():
        with pytest.raises(SchemaError, match="'created' should hold a date"):
            types.coerce(s, col)
    else:
        pd.testing.assert_series_equal(types.coerce(s, col), expected)


def test_formulas_are_neutralised_numbers_are_not():
    table = pa.table({
        "note": ["=cmd|' /C calc'!A0", "@SUM(A1)", "+1+1", "-12.5", "+3", "\tx", "\rx", "=HYPERLINK(\"x\")",
                 "plain", None, "-", "1e5"],
        "score": [-1.5] * 12, "=evil": ["a"] * 12})
    out = writer.neutralise(table)
    assert out.column("note").to_pylist() == [
        "'=cmd|' /C calc'!A0", "'@SUM(A1)", "'+1+1", "-12.5", "+3", "'\tx", "'\rx", "'=HYPERLINK(\"x\")",
        "plain", None, "'-", "1e5"]
    assert out.column("score").to_pylist() == [-1.5] * 12 and out.column_names[2] == "'=evil"


def test_only_leftovers_of_gone_processes_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.csv.{dead}.ab12cd34{writer.TMP_SUFFIX}"
    stale_dir = tmp_path / f".ds.{dead}.ab12cd35{writer.TMP_SUFFIX}"
    live = tmp_path / f".out.csv.{os.getppid()}.ab12cd36{writer.TMP_SUFFIX}"
    other = tmp_path / f".notes.txt.{dead}.ab12cd37.tmp"  # not scoring's
    for p in (stale, live, other):
        p.write_text("x")
    stale_dir.mkdir()
    (stale_dir / "part-00000.parquet").write_text("x")
    assert sorted(writer.clean_leftovers(tmp_path)) == sorted([stale, stale_dir])
    assert live.exists() and other.exists() and not stale.exists() and not stale_dir.exists()
