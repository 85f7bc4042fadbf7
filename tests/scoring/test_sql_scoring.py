"""Scoring a database query into a database table (SQLite here; PostgreSQL in
tests/postgres/): same scores as in memory, streamed in parts, one transaction."""
from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from expkit import sql
from expkit.errors import ConfigError, DataError
from expkit.scoring import score_file, scorelog

from .conftest import RUN, expected_scores, leads


@pytest.fixture
def crm(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    with sa.create_engine(url).begin() as conn:
        leads(700, seed=3).drop(columns="converted").to_sql("new_leads", conn, index=False)
    return url


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_query_in_table_out(model, runs_dir, crm, n_jobs):
    record = score_file(crm, crm, app="leads", run=RUN, query="select * from new_leads where visits >= 0",
                        table="lead_scores", chunksize=150, n_jobs=n_jobs, keep=["visits"], runs_dir=runs_dir)
    out = sql.read(crm, "lead_scores")
    rows = leads(700, seed=3)
    assert record["rows"] == 700 and record["output"] == f"{crm} table lead_scores"
    assert out["lead_id"].tolist() == rows["lead_id"].tolist() and out["visits"].tolist() == rows["visits"].tolist()
    assert out["score"].to_numpy() == pytest.approx(expected_scores(model, rows), abs=1e-9)
    assert scorelog.count_batches(runs_dir) == 1


def test_a_failed_table_write_leaves_everything_as_it_was(model, runs_dir, crm):
    score_file(crm, crm, app="leads", run=RUN, query="new_leads", table="lead_scores", runs_dir=runs_dir)
    before = sql.read(crm, "lead_scores")
    with pytest.raises(DataError, match="already exists"):
        score_file(crm, crm, app="leads", run=RUN, query="new_leads", table="lead_scores", if_exists="fail",
                   runs_dir=runs_dir)
    pd.testing.assert_frame_equal(sql.read(crm, "lead_scores"), before)
    assert scorelog.count_batches(runs_dir) == 1
    score_file(crm, crm, app="leads", run=RUN, query="new_leads", table="lead_scores", if_exists="replace",
               runs_dir=runs_dir)
    assert len(sql.read(crm, "lead_scores")) == 700


def test_database_arguments_are_checked(model, runs_dir, crm, tmp_path):
    with pytest.raises(ConfigError, match="give the query"):
        score_file(crm, tmp_path / "o.csv", app="leads", run=RUN, runs_dir=runs_dir)
    with pytest.raises(ConfigError, match="give the table"):
        score_file(crm, crm, app="leads", run=RUN, query="new_leads", runs_dir=runs_dir)
    with pytest.raises(DataError, match="no such table: nope"):
        score_file(crm, tmp_path / "o.csv", app="leads", run=RUN, query="nope", runs_dir=runs_dir)
    assert not (tmp_path / "o.csv").exists() and scorelog.count_batches(runs_dir) == 0
