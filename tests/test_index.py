"""`expkit runs rebuild-index`: runs, registry, score log and feedback come back from the
files alone, from a deleted index or a corrupt one."""
from __future__ import annotations

import shutil
from datetime import datetime

import pytest
from click.testing import CliRunner

from expkit import db, runs
from expkit.cli import cli
from expkit.registry import Registry
from expkit.runs import Run
from expkit.scoring import scorelog


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def project(runs_dir, tiny_model):
    """Runs (one failed), two promotions and a rollback, two score batches and feedback."""
    made = []
    for tenant, status in (("acme", "succeeded"), ("acme", "succeeded"), ("globex", "failed")):
        run = Run.create("tournament", tenant=tenant, runs_dir=runs_dir)
        run.start()
        shutil.copytree(tiny_model, run.dir / "model")
        run.log_metrics({"task": "binary", "holdout": {"auroc": 0.8}, "above_chance": True})
        run.finish(status)
        made.append(run)
    reg = Registry(runs_dir)
    reg.promote(made[0].id, "leads", "acme")
    reg.promote(made[1].id, "leads", "acme")
    reg.rollback("leads", "acme")
    reg.promote(made[1].id, "leads")
    for i in (1, 2):
        scorelog.record_batch({"id": f"b{i}", "app": "leads", "tenant": "acme", "model_tenant": "acme",
                               "version": "3", "run_id": made[0].id, "rows": 5, "started_at": datetime(2025, 1, i),
                               "finished_at": datetime(2025, 1, i, 1), "score_counts": [1] * 10, "fields": {},
                               "ids_path": None, "output": None}, runs_dir)
    scorelog.add_feedback("leads", "acme", ["x", "y"], [1, 0], runs_dir)
    return runs_dir


def everything(root):
    table = runs.list(runs_dir=root)[["run_id", "status", "tenant", "metric"]]
    registry = Registry(root).list()[["app", "tenant", "version", "status", "run_id", "sha256"]]
    return (table.sort_values("run_id").to_dict("records"), registry.to_dict("records"),
            scorelog.batches(runs_dir=root).to_dict("records"), scorelog.feedback(runs_dir=root).to_dict("records"))


def test_rebuild_after_the_index_is_deleted(project):
    before = everything(project)
    db.dispose()
    for f in project.glob("index.db*"):
        f.unlink()
    result = invoke("runs", "rebuild-index", "--runs-dir", project)
    assert result.exit_code == 0, result.output
    assert "indexed 3 run(s), 4 model version(s), 2 score batch(es) and 2 feedback row(s)" in result.stdout
    assert everything(project) == before
    assert Registry(project).production("leads", "acme")["version"] == 3


@pytest.mark.parametrize("args", [("runs", "list"), ("models", "list"),
                                  ("monitor",), ("promote", "model", "--rollback", "--app", "leads")])
def test_a_corrupt_index_is_one_line_naming_the_rebuild(project, args):
    db.dispose()
    (project / "index.db").write_bytes(b"\x00garbage" * 512)
    for f in project.glob("index.db-*"):
        f.unlink()
    result = invoke(*args, "--runs-dir", project)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: the run index ") and "is corrupt" in lines[0]
    assert "run `expkit runs rebuild-index`" in lines[0] and "Traceback" not in result.output
    db.dispose()


def test_rebuild_moves_a_corrupt_index_aside_and_restores_everything(project):
    before = everything(project)
    db.dispose()
    (project / "index.db").write_bytes(b"SQLite format 3\x00" + b"\x07" * 4096)
    for f in project.glob("index.db-*"):
        f.unlink()
    result = invoke("runs", "rebuild-index", "--runs-dir", project)
    assert result.exit_code == 0, result.output
    moved = list(project.glob("index.db.corrupt-*"))
    assert len(moved) == 1 and f"the corrupt index was moved to {moved[0]}" in result.stdout
    assert everything(project) == before
