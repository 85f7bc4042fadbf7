"""A drifted scoring batch reaches a webhook on 127.0.0.1 once, until it clears and comes back:
through `expkit monitor --notify` and through a scheduled monitor run (`alert: true`).

One tiny model per module (logistic, 3 trials), promoted for app 'leads'; each test works
on its own copy of that runs folder.
"""
from __future__ import annotations

import datetime as dt
import shutil

import pytest
import yaml
from click.testing import CliRunner

import expkit
from expkit import db, schedules
from expkit.cli import cli
from expkit.datasets import leads
from expkit.monitoring import alerts
from expkit.registry import Registry
from expkit.runs import Run
from expkit.scheduler import run_due

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("alerts") / "runs"
    root.mkdir()
    df = leads(800, n_tenants=1, seed=0).drop(columns=["title", "note"])
    result = expkit.tournament(df, "converted", n_trials=3, families=["logistic"], budget=30,
                               progress=False, n_jobs=1, seed=0)
    run = Run.create("leads-alerts", runs_dir=root)
    run.start()
    run.save_model(result.best_pipeline, card=result.card())
    run.log_metrics(result.summary())
    run.finish("succeeded")
    Registry(root).promote(run.id, "leads")
    db.dispose()  # the copies below start from a closed database
    return root


@pytest.fixture
def project(trained, tmp_path, monkeypatch, webhook):
    shutil.copytree(trained, tmp_path / "runs")
    monkeypatch.setenv("EXPKIT_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("EXPKIT_SCHEDULES", str(tmp_path / "schedules.yaml"))
    monkeypatch.delenv("EXPKIT_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "schedules.yaml").write_text(yaml.safe_dump({"alerts": {"sinks": [{"webhook": webhook.url}]}}))
    return tmp_path


def score(seed: int, spend_scale: float = 1.0) -> None:
    df = leads(700, n_tenants=1, seed=seed)
    df["spend"] = df["spend"] * spend_scale
    expkit.score(df, app="leads")


def tick() -> None:
    out = CliRunner().invoke(cli, ["monitor", "--app", "leads", "--notify"])
    assert out.exit_code == 0, out.output


def test_a_drifted_batch_posts_once_until_it_clears(project, webhook):
    score(seed=11, spend_scale=10)
    tick()
    assert len(webhook.received) == 1
    body = webhook.received[0]["body"]
    assert (body["app"], body["check"], body["level"]) == ("leads", "drift", "alert")
    assert "'spend' drifted" in body["message"] and body["source"] == "monitor"
    tick()
    assert len(webhook.received) == 1  # still drifted: not sent again
    score(seed=12)  # a normal batch of 700 rows: the drift clears, said once
    tick()
    assert len(webhook.received) == 2
    assert (webhook.received[1]["body"]["check"], webhook.received[1]["body"]["level"]) == ("drift", "resolved")
    assert alerts.state().set_index("check").loc["drift", "status"] == "cleared"
    tick()
    assert len(webhook.received) == 2
    score(seed=13, spend_scale=10)  # and comes back
    tick()
    assert len(webhook.received) == 3 and webhook.received[2]["body"]["level"] == "alert"


def test_a_scheduled_monitor_sends_its_alerts(project, webhook):
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    now -= dt.timedelta(minutes=now.minute % 5)  # on a slot of */5
    schedules.add(schedules.Schedule(name="monitor", template="monitor", cron="*/5 * * * *", alert=True),
                  now=now - dt.timedelta(hours=1))
    score(seed=21, spend_scale=10)
    started = run_due(now=now)
    assert [s["status"] for s in started] == ["succeeded"], started
    assert len(webhook.received) == 1 and webhook.received[0]["body"]["check"] == "drift"
    assert webhook.received[0]["body"]["source"] == "monitor (schedule monitor)"
    assert run_due(now=now + dt.timedelta(minutes=5))[0]["alerts"] == []
    assert len(webhook.received) == 1
    # the fleet view: the schedule with its last and next run
    result = expkit.monitor(now=now + dt.timedelta(minutes=6))
    row = result.schedules.set_index("schedule").loc["monitor"]
    assert row["last_status"] == "succeeded" and row["then"] == "alert"
    assert row["next_run"] == (now + dt.timedelta(minutes=10)).replace(tzinfo=None)
    page = result.to_html()
    assert "<h2>Schedules</h2>" in page and "*/5 * * * *" in page
