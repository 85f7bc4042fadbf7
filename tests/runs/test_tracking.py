"""Runs logged to MLflow (the `mlflow` extra) against local stores: SQLite, and the file store."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from expkit import tracking
from expkit.cli import cli
from expkit.errors import ConfigError
from expkit.run import Run

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="the mlflow extra is not installed")
FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture
def finished_run(runs_dir):
    """A succeeded run folder as a tournament leaves it: params, metrics, report, figures, model."""
    run = Run.create("tournament", tenant="acme", params={"budget": 20, "families": ["logistic"],
                                                           "run_dir": "/x"}, runs_dir=runs_dir)
    run.start()
    run.log_metrics({"winner": "logistic", "metric_name": "auroc", "cv_score": 0.71,
                     "holdout": {"auroc": 0.74, "brier": 0.15}, "above_chance": True})
    (run.dir / "report.html").write_text("<html>report</html>")
    (run.dir / "figures").mkdir()
    (run.dir / "figures" / "roc.png").write_bytes(b"\x89PNG fake")
    (run.dir / "model").mkdir()
    (run.dir / "model" / "model.skops").write_bytes(b"skops")
    (run.dir / "model" / "card.json").write_text(json.dumps({"family": "logistic"}))
    run.finish("succeeded")
    return run


@pytest.fixture(params=["sqlite", "file"])
def store(request, tmp_path, monkeypatch):
    """A local MLflow store: SQLite (what MLflow recommends) or the file store (./mlruns)."""
    monkeypatch.chdir(tmp_path)  # MLflow puts a SQLite store's artifacts under ./mlruns
    if request.param == "file":
        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks to opt in
        return (tmp_path / "mlruns").as_uri()
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_a_run_is_logged_with_params_metrics_tags_artifacts_and_model(finished_run, store):
    mlflow_id = tracking.log_run(finished_run, store)
    client = mlflow_tracking.MlflowClient(tracking_uri=store)
    logged = client.get_run(mlflow_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == finished_run.id
    assert client.get_experiment(logged.info.experiment_id).name == "expkit-tournament"
    assert logged.data.params == {"budget": "20", "families": '["logistic"]'}  # run_dir left out
    assert logged.data.metrics["holdout.auroc"] == 0.74 and logged.data.metrics["cv_score"] == 0.71
    assert "duration_s" in logged.data.metrics and "above_chance" not in logged.data.metrics
    tags = logged.data.tags
    assert (tags["template"], tags["tenant"], tags["status"]) == ("tournament", "acme", "succeeded")
    assert tags["expkit.run_id"] == finished_run.id
    top = {f.path for f in client.list_artifacts(mlflow_id)}
    assert {"report.html", "run.json", "metrics.json", "figures", "model"} <= top
    assert {f.path for f in client.list_artifacts(mlflow_id, "model")} == {"model/model.skops", "model/card.json"}
    assert [f.path for f in client.list_artifacts(mlflow_id, "figures")] == ["figures/roc.png"]
    assert finished_run.meta["mlflow"]["run_id"] == mlflow_id


def test_failed_run_is_failed_in_mlflow_too(runs_dir, store):
    run = Run.create("tiny", runs_dir=runs_dir)
    run.start()
    run.finish("failed", error={"cell": 3, "message": "ValueError: boom"})
    logged = mlflow_tracking.MlflowClient(tracking_uri=store).get_run(tracking.log_run(run, store))
    assert logged.info.status == "FAILED" and logged.data.tags["expkit.error"] == "ValueError: boom"
    assert logged.data.tags["tenant"] == "all"


def test_expkit_run_logs_each_run_when_mlflow_tracking_uri_is_set(runs_dir, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(cli, ["run", str(FIXTURES / "tiny.ipynb"), "--tenants", "acme,globex",
                                      "-p", "fail_tenant", "globex", "--runs-dir", str(runs_dir)])
    assert result.exit_code == 1  # globex fails on purpose
    client = mlflow_tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("expkit-tiny")
    logged = {r.data.tags["tenant"]: r for r in client.search_runs([experiment.experiment_id])}
    assert logged["acme"].info.status == "FINISHED" and logged["globex"].info.status == "FAILED"
    assert logged["acme"].data.metrics["auroc"] == 0.55 and logged["acme"].data.params["n"] == "3"
    arts = {f.path for f in client.list_artifacts(logged["acme"].info.run_id)}
    assert {"report.html", "notebook.ipynb", "figures"} <= arts
    assert f"(MLflow run {logged['acme'].info.run_id})" in result.stderr


def test_mlflow_trouble_never_changes_the_run(finished_run, runs_dir, tmp_path):
    recorded = tracking.log_run_safely(finished_run, "nosuchscheme://host/x")
    assert "nosuchscheme" in recorded["error"] and finished_run.status == "succeeded"
    assert tracking.log_run_safely(finished_run, None) is None
    assert tracking.tracking_uri() is None or tracking.tracking_uri("x") == "x"


def test_asking_for_mlflow_without_it_installed_fails_before_any_run(monkeypatch, runs_dir):
    import builtins

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name.startswith("mlflow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(ConfigError, match="mlflow is not installed"):
        tracking.check("sqlite:///x.db")
    tracking.check(None)
    assert list(runs_dir.iterdir()) == []
