"""Tables from databases (SQLite here; PostgreSQL in tests/postgres/): load, chunks,
credentials from the environment, passwords kept out of runs, writes in one transaction."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import expkit
from expkit import sql
from expkit.errors import ConfigError, DataError
from expkit.templates import resolve_params

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture
def crm(tmp_path):
    """A SQLite database with a leads table of 1,000 rows; returns its URL."""
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    df = expkit.datasets.leads(n_rows=1000, seed=0)
    with sa.create_engine(url).begin() as conn:
        df.to_sql("leads", conn, index=False)
    return url


def test_load_a_table_or_a_query(crm):
    table = expkit.load(crm, query="leads")
    assert table.shape == (1000, expkit.datasets.leads(n_rows=10).shape[1])
    some = expkit.load(crm, query="select lead_id, converted from leads where converted = 1")
    assert list(some.columns) == ["lead_id", "converted"] and len(some) == int(table["converted"].sum())


def test_chunks_are_bounded_and_complete(crm):
    chunks = list(expkit.load(crm, query="leads", chunksize=300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert pd.concat(chunks, ignore_index=True).equals(expkit.load(crm, query="leads"))
    picked = next(sql.read_chunks(crm, "select * from leads", 10, columns=["converted", "lead_id"]))
    assert list(picked.columns) == ["converted", "lead_id"]
    assert sql.columns(crm, "select lead_id, spend from leads") == ["lead_id", "spend"]


@pytest.mark.parametrize("query,pattern,hint", [
    ("nope", "no such table: nope", "tables: leads"),
    ("select zz from leads", "no such column: zz", None),
    ("select * from leads where 1 = 0", "returned no rows", None),
])
def test_bad_queries_are_one_clear_error(crm, query, pattern, hint):
    with pytest.raises(DataError, match=pattern) as err:
        expkit.load(crm, query=query)
    if hint:
        assert hint in err.value.hint


def test_a_url_needs_a_query_and_a_file_takes_none(crm, tmp_path):
    with pytest.raises(ConfigError, match="needs a query"):
        expkit.load(crm)
    path = tmp_path / "t.csv"
    pd.DataFrame({"a": [1]}).to_csv(path, index=False)
    with pytest.raises(ConfigError, match="query= is for database URLs"):
        expkit.load(path, query="x")


def test_credentials_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CRM_PASSWORD", "s3cr/t@x")
    url = sql.engine_url("postgresql://analyst:${CRM_PASSWORD}@db.example:5432/crm")
    assert url.password == "s3cr/t@x" and url.drivername == "postgresql+psycopg"
    assert sql.redact("postgresql://analyst:${CRM_PASSWORD}@db/crm") == "postgresql://analyst:${CRM_PASSWORD}@db/crm"
    assert sql.redact("postgresql://analyst:hunter2@db/crm") == "postgresql://analyst:***@db/crm"
    monkeypatch.delenv("CRM_PASSWORD")
    with pytest.raises(ConfigError, match="CRM_PASSWORD .* is not set"):
        sql.engine_url("postgresql://analyst:${CRM_PASSWORD}@db/crm")


def test_a_password_never_reaches_a_run(monkeypatch):
    template = ROOT / "templates" / "tournament.ipynb"
    with pytest.raises(ConfigError, match="holds a password") as err:
        resolve_params(template, {"data": "postgresql://analyst:hunter2@db/crm", "query": "leads"})
    assert "hunter2" not in str(err.value) and "PGPASSWORD" in err.value.hint
    with pytest.raises(ConfigError, match="'query' is not given"):
        resolve_params(template, {"data": "postgresql://analyst@db/crm"})
    ok = resolve_params(template, {"data": "postgresql://analyst@db/crm", "query": "select * from leads"})
    assert ok["query"] == "select * from leads"


def test_log_data_and_params_hide_passwords(runs_dir):
    run = expkit.Run.create("x", runs_dir=runs_dir)
    run.log_data(pd.DataFrame({"a": [1]}), source="postgresql://analyst:hunter2@db/crm")
    run.log_params(data="postgresql://analyst:hunter2@db/crm")
    text = (run.dir / "run.json").read_text()
    assert "hunter2" not in text and "postgresql://analyst:***@db/crm" in text


def test_table_writer_is_one_transaction(crm):
    rows = pd.DataFrame({"id": np.arange(10), "score": np.linspace(0, 1, 10)})
    writer = sql.TableWriter(crm, "scores")
    writer.write(rows.iloc[:5])
    writer.write(rows.iloc[5:])
    assert "scores" not in sa.inspect(sa.create_engine(crm)).get_table_names()  # nothing visible yet
    writer.abort()
    assert "scores" not in sa.inspect(sa.create_engine(crm)).get_table_names()
    writer = sql.TableWriter(crm, "scores")
    writer.write(rows)
    writer.commit()
    assert expkit.load(crm, query="scores").equals(rows)
    again = sql.TableWriter(crm, "scores", if_exists="replace")
    again.write(rows.iloc[:3])
    again.commit()
    assert len(expkit.load(crm, query="scores")) == 3
    with pytest.raises(DataError, match="already exists"):
        sql.TableWriter(crm, "scores", if_exists="fail").write(rows)
    with pytest.raises(ConfigError, match="not a plain name"):
        sql.TableWriter(crm, "scores; drop table leads")


def test_is_url():
    assert sql.is_url("postgresql://u@h/db") and sql.is_url("sqlite:///x.db") and sql.is_url("mysql+pymysql://h/d")
    assert not sql.is_url("https://example.org/x.csv") and not sql.is_url("data/leads.csv")
    assert not sql.is_url(None)
