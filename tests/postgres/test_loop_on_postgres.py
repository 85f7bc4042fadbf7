"""The loop with its data and studies in PostgreSQL: a tournament template trained from a
table, a scoring batch read from and written back to PostgreSQL (index, registry and
score log there too), and a tournament resumed from a PostgreSQL study."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import expkit
from expkit import sql
from expkit.cli import cli
from expkit.datasets import leads
from expkit.runs import Run
from expkit.scoring import scorelog

from ..models.test_tournament import FAST, make

pytestmark = pytest.mark.slow


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def crm(postgres_server, monkeypatch):
    """A 'crm' database with the demo leads, reached over TCP as URL without password:
    the password comes from PGPASSWORD, as a team would set it."""
    url = postgres_server.create_database()
    df = leads(1100, n_tenants=1, seed=0).drop(columns=["title", "note"])
    writer = sql.TableWriter(url.render_as_string(hide_password=False), "leads")
    writer.write(df.iloc[:800])
    writer.commit()
    writer = sql.TableWriter(url.render_as_string(hide_password=False), "new_leads")
    writer.write(df.iloc[800:].drop(columns=["converted"]))
    writer.commit()
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    tcp = postgres_server.tcp_url(url.database)
    yield f"postgresql://{tcp.username}@{tcp.host}:{tcp.port}/{tcp.database}", df
    postgres_server.drop_database(url)


def test_tournament_from_a_table_then_scores_written_back(crm, pg_index, runs_dir, tmp_path):
    url, df = crm
    assert sql.engine_url(url).password is None
    out = invoke("run", "tournament", "-p", "data", url, "-p", "query", "select * from leads",
                 "-p", "n_trials", "3", "-p", "families", '["logistic"]', "-p", "budget", "60")
    assert out.exit_code == 0, out.output
    (run,) = [Run(p) for p in expkit.runs.list(runs_dir=runs_dir)["path"]]
    meta = run.meta
    assert meta["status"] == "succeeded" and meta["data"]["rows"] == 800
    assert meta["params"]["data"] == url
    secret = os.environ["PGPASSWORD"]
    assert all(secret not in (run.dir / name).read_text() for name in ("run.json", "notebook.ipynb", "report.html"))
    out = invoke("promote", "model", run.id, "--app", "leads")
    assert out.exit_code == 0, out.output

    # score the new leads from the database into a table, and the same rows from a file
    out = invoke("score", url, "--query", "new_leads", "-o", url, "--table", "lead_scores", "--app", "leads",
                 "--chunksize", 100)
    assert out.exit_code == 0, out.output
    assert "scored 300 rows" in out.output and "table lead_scores" in out.output
    df.iloc[800:].drop(columns=["converted"]).to_csv(tmp_path / "new.csv", index=False)
    assert invoke("score", tmp_path / "new.csv", "-o", tmp_path / "scored.csv", "--app", "leads").exit_code == 0
    from_db = expkit.load(url, query="select * from lead_scores")
    from_file = pd.read_csv(tmp_path / "scored.csv")
    assert list(from_db.columns) == list(from_file.columns)
    assert from_db["lead_id"].tolist() == from_file["lead_id"].tolist()
    assert from_db["score"].to_numpy() == pytest.approx(from_file["score"].to_numpy(), abs=1e-12)

    # the score log and feedback live in PostgreSQL too
    batches = scorelog.batches("leads")
    assert list(batches["rows"]) == [300, 300] and "table lead_scores" in batches["output"].iloc[0]
    df.iloc[800:][["lead_id", "converted"]].to_csv(tmp_path / "fb.csv", index=False)
    assert invoke("feedback", tmp_path / "fb.csv", "--app", "leads", "--id-column", "lead_id",
                  "--label-column", "converted").exit_code == 0
    assert scorelog.count_feedback() == 300
    engine = sa.create_engine(sql.engine_url(pg_index))
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from score_feedback")).scalar() == 300
    engine.dispose()
    assert expkit.monitor(app="leads").models.iloc[0]["feedback_rows"] == 300

    # a failed write leaves the table as it was
    out = invoke("score", url, "--query", "new_leads", "-o", url, "--table", "lead_scores", "--if-exists", "fail",
                 "--app", "leads")
    assert out.exit_code != 0 and "already exists" in out.output
    assert len(expkit.load(url, query="lead_scores")) == 300 and len(scorelog.batches("leads")) == 2


def test_a_tournament_resumes_from_a_postgres_study(pg_url):
    df = make("binary")
    kw = dict(families=["logistic", "knn"], storage=pg_url, **FAST)
    first = expkit.tournament(df, "y", n_trials=3, **kw)
    second = expkit.tournament(df, "y", n_trials=5, **kw)
    assert second.study_name == first.study_name and len(second.trials) == 5
    pd.testing.assert_series_equal(second.trials["datetime_start"].head(3), first.trials["datetime_start"],
                                   check_names=False)
    engine = sa.create_engine(sql.engine_url(pg_url))
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from trials")).scalar() == 5
    engine.dispose()
    assert json.dumps(first.summary(), default=str)  # a result of the usual form
