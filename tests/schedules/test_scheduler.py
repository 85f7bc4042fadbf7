"""`expkit schedule run-due` for real (papermill runs of small fixture templates): one start
per slot under concurrent callers, missed slots caught up once, gated automatic promotion
with its reason in the registry, and failures sent to the alert sinks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import expkit
from expkit import runs, schedules
from expkit.cli import cli
from expkit.monitoring import alerts
from expkit.registry import Registry
from expkit.run import Run
from expkit.scheduler import run_due

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def project(tmp_path, runs_dir, monkeypatch):
    monkeypatch.setenv("EXPKIT_SCHEDULES", str(tmp_path / "schedules.yaml"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def retrain(auroc: float, fail: bool = False) -> schedules.Schedule:
    return schedules.Schedule(name="retrain", template=str(FIXTURES / "retrain.ipynb"), cron="0 3 1 * *",
                              params={"auroc": auroc, "fail": fail}, tenants=["acme"], promote="if-better",
                              app="leads", since="2024-01-01T00:00:00+00:00")


def sent(runs_dir) -> list[dict]:
    path = runs_dir / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_two_overlapping_run_due_calls_start_a_due_schedule_once(project, runs_dir):
    schedules.add(schedules.Schedule(name="nightly", template=str(FIXTURES / "tiny.ipynb"), cron="0 2 * * *",
                                     params={"sleep": 2.0}), now="2024-01-01T00:00")
    command = [str(Path(sys.executable).with_name("expkit")), "schedule", "run-due", "--now", "2024-01-01T02:00:30"]
    procs = [subprocess.Popen(command, cwd=project, env=os.environ.copy(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sorted("nothing due" in out for out, _ in outputs) == [False, True], outputs
    listed = runs.list(runs_dir=runs_dir)
    assert len(listed) == 1 and listed["status"].iloc[0] == "succeeded"
    starts = schedules.starts("nightly", runs_dir)
    assert len(starts) == 1 and starts["status"].iloc[0] == "succeeded" and len(starts["runs"].iloc[0]) == 1
    meta = Run(listed["path"].iloc[0]).meta
    assert meta["kind"] == "schedule" and meta["schedule"]["name"] == "nightly"


def test_retraining_is_promoted_when_better_and_kept_out_when_worse(project, runs_dir):
    registry = Registry(runs_dir)
    schedules.add(retrain(0.80))
    assert run_due(now="2023-12-31T12:00") == []  # nothing before it was added
    first = run_due(now="2024-02-01T03:05")
    assert [s["status"] for s in first] == ["succeeded"] and first[0]["missed"] == 1  # January's slot caught up
    assert registry.production("leads", "acme")["version"] == 1
    assert Run(first[0]["runs"][0]["path"]).metrics["clock"] == "2024-02-01T03:05:00+00:00"

    schedules.add(retrain(0.70), replace=True)
    worse = run_due(now="2024-03-01T03:05")
    assert worse[0]["status"] == "succeeded"  # a refused promotion is an alert, not a failure
    assert registry.production("leads", "acme")["version"] == 1
    decision = registry.decisions("leads").iloc[0]
    assert not decision["promoted"] and decision["run_id"] == worse[0]["runs"][0]["run_id"]
    assert "schedule retrain: refused: hold-out auroc 0.7000 is worse than production version 1" in decision["reason"]
    refused = [a for a in sent(runs_dir) if a["check"] == "promotion"]
    assert len(refused) == 1 and refused[0]["tenant"] == "acme" and "was not promoted" in refused[0]["message"]

    schedules.add(retrain(0.85), replace=True)
    better = run_due(now="2024-04-01T03:05")
    prod = registry.production("leads", "acme")
    assert prod["version"] == 2 and prod["run_id"] == better[0]["runs"][0]["run_id"]
    decision = registry.decisions("leads").iloc[0]
    assert decision["promoted"] and "hold-out auroc 0.8500 vs 0.8000 of production version 1" in decision["reason"]
    assert alerts.state(runs_dir).set_index("check").loc["promotion", "status"] == "cleared"
    assert "promoted automatically" in registry.list("leads").iloc[0]["reason"]

    # three monthly slots missed: one start catches them up
    caught = run_due(now="2024-08-01T03:05")
    assert len(caught) == 1 and caught[0]["missed"] == 3 and len(caught[0]["runs"]) == 1
    assert run_due(now="2024-08-01T03:06") == []
    assert list(schedules.starts("retrain", runs_dir)["missed"]) == [3, 0, 0, 1]
    # every start is in the run index, so the fleet KPIs count them
    kpis = expkit.monitor(app="leads")
    assert kpis.kpi("experiments this week") == 4 and kpis.kpi("models trained this month") == 4
    out = CliRunner().invoke(cli, ["models", "decisions", "--app", "leads"])
    assert out.exit_code == 0 and out.output.count("schedule retrain:") == 4 and " no " in out.output
    out = CliRunner().invoke(cli, ["schedule", "starts", "retrain"])
    assert out.exit_code == 0 and out.output.count("\n") == 5 and "promoted acme v1" in out.output


def test_a_failed_scheduled_run_is_an_alert_and_exit_1(project, runs_dir):
    schedules.add(retrain(0.80, fail=True))
    out = CliRunner().invoke(cli, ["schedule", "run-due", "--now", "2024-01-01T03:00"])
    assert out.exit_code == 1, out.output
    assert "retrain [2024-01-01 03:00]: failed: 0 of 1 run(s) succeeded" in out.output
    failed = [a for a in sent(runs_dir) if a["check"] == "schedule retrain"]
    assert len(failed) == 1 and "RuntimeError: training data missing" in failed[0]["message"]
    assert schedules.starts("retrain", runs_dir)["status"].iloc[0] == "failed"
    assert Registry(runs_dir).list().empty and Registry(runs_dir).decisions().empty
    listed = CliRunner().invoke(cli, ["schedule", "list", "--now", "2024-01-01T03:01"])
    assert "failed" in listed.output and "2024-02-01 03:00" in listed.output
    # a template that cannot start at all is an alert too
    schedules.add(schedules.Schedule(name="gone", template="no-such-template", cron="0 * * * *",
                                     since="2024-01-01T00:00:00+00:00"))
    gone = run_due(now="2024-01-01T04:00", names=["gone"])
    assert gone[0]["status"] == "failed" and "unknown template" in gone[0]["detail"]
    assert any(a["check"] == "schedule gone" for a in sent(runs_dir))
