"""The bad-input corpus (cases.yaml): every case is one clear error line, the expected exit
code, no traceback, and nothing saved changes.

One project is prepared per module: a real model (a small logistic tournament on the demo
leads) promoted for app ``leads``, runs with forged or unsuitable models, apps whose model
folder was tampered with after promotion, a run whose run.json is cut short, one score
batch and feedback. Each case then runs through the ``expkit`` command (click's runner, in
this process: the same code path as the console script) and the runs folder, the index
(checkpointed SQLite file and its SQL dump), the registry journal and the score log are
compared byte for byte with their state before the case.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from expkit import db
from expkit.cli import cli

HERE = Path(__file__).parent
FILES = HERE / "files"
FIXTURES = HERE.parent / "fixtures"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text(encoding="utf-8"))
TEXT = ["title", "note"]

pytestmark = pytest.mark.slow


def _finished_run(root, model_from=None, metrics=None, status="succeeded", tenant=None):
    from expkit.runs import Run

    run = Run.create("corpus", tenant=tenant, runs_dir=root)
    run.start()
    if model_from is not None:
        shutil.copytree(model_from, run.dir / "model")
    run.log_metrics(metrics or {})
    run.finish(status)
    return run


def _reseal(model_dir: Path, data: bytes) -> None:
    (model_dir / "model.skops").write_bytes(data)
    card = json.loads((model_dir / "card.json").read_text())
    card["sha256"] = hashlib.sha256(data).hexdigest()
    (model_dir / "card.json").write_text(json.dumps(card))


def _zero_threshold(model_dir: Path) -> None:
    card = json.loads((model_dir / "card.json").read_text())
    card["threshold"] = 0.0  # every row labelled positive
    (model_dir / "card.json").write_text(json.dumps(card))


def _append_a_byte(model_dir: Path) -> None:
    with open(model_dir / "model.skops", "ab") as fh:
        fh.write(b"\0")


def _plant_a_file(model_dir: Path) -> None:
    (model_dir / "notes.txt").write_text("planted")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(runs folder, working folder, placeholder values)."""
    import skops.io as sio

    import expkit
    import expkit.monitoring.alerts  # noqa: F401 - with the schedules, every table of the index is declared
    import expkit.schedules  # noqa: F401   before the project is made, as after any real use of it
    from expkit.datasets import leads
    from expkit.registry import Registry
    from expkit.scoring import feedback, score_file

    base = tmp_path_factory.mktemp("corpus")
    root, work = base / "runs", base / "work"
    root.mkdir()
    work.mkdir()
    old = os.environ.get("EXPKIT_RUNS")
    os.environ["EXPKIT_RUNS"] = str(root)
    try:
        df = leads(800, n_tenants=1, seed=0).drop(columns=TEXT)
        result = expkit.tournament(df, "converted", n_trials=3, families=["logistic"], budget=30,
                                   progress=False, n_jobs=1, seed=0)
        good = _finished_run(root)
        good.save_model(result.best_pipeline, card=result.card())
        good.log_metrics(result.summary())
        good.finish("succeeded")
        model = good.dir / "model"
        metrics = good.metrics
        registry = Registry(root)
        registry.promote(good.id, "leads")

        worse = {**metrics, "holdout": {**metrics["holdout"], "auroc": metrics["holdout"]["auroc"] - 0.2}}
        ids = {"good": good.id,
               "worse": _finished_run(root, model, worse).id,
               "failed": _finished_run(root, model, metrics, status="failed").id,
               "below": _finished_run(root, model, {**metrics, "above_chance": False}).id,
               "nomodel": _finished_run(root, None, metrics).id}
        forged = _finished_run(root, model, metrics)
        (forged.dir / "model" / "model.skops").write_bytes(b"PK\x03\x04 not really a model")
        untrusted = _finished_run(root, model, metrics)
        _reseal(untrusted.dir / "model", sio.dumps({"f": print.__class__}))
        badcard = _finished_run(root, model, metrics)
        (badcard.dir / "model" / "card.json").write_text('{"threshold": 0.5, ')
        ids.update(forged=forged.id, untrusted=untrusted.id, badcard=badcard.id)
        for app, tamper in (("tampered-card", _zero_threshold), ("tampered-model", _append_a_byte),
                            ("planted", _plant_a_file)):
            run = _finished_run(root, model, metrics)
            registry.promote(run.id, app)
            tamper(run.dir / "model")
        truncated = _finished_run(root, model, metrics)
        text = (truncated.dir / "run.json").read_text()
        (truncated.dir / "run.json").write_text(text[: len(text) // 3])
        ids["truncated"] = truncated.id

        batch = leads(60, n_tenants=1, seed=5)
        batch.to_csv(work / "ok.csv", index=False)
        batch.drop(columns=["spend", "country"]).to_csv(work / "missing_columns.csv", index=False)
        bad = batch.astype({"web_visits": object})
        bad.loc[30, "web_visits"] = "many"
        bad.to_csv(work / "bad_value.csv", index=False)
        bad_labels = batch[["lead_id", "converted"]].astype({"converted": object})
        bad_labels.loc[3, "converted"] = "maybe"
        bad_labels.to_csv(work / "feedback_bad_labels.csv", index=False)
        score_file(work / "ok.csv", work / "scored.csv", app="leads", runs_dir=root)
        batch[["lead_id", "converted"]].head(20).to_csv(work / "feedback.csv", index=False)
        feedback(work / "feedback.csv", app="leads", id_column="lead_id", label_column="converted",
                 runs_dir=root)
    finally:
        if old is None:
            os.environ.pop("EXPKIT_RUNS", None)
        else:
            os.environ["EXPKIT_RUNS"] = old
    values = {"files": str(FILES), "work": str(work), "runs": str(root), "tiny": str(FIXTURES / "tiny.ipynb"),
              "fixtures": str(FIXTURES), "long": "t" * 300, **ids}
    return root, work, values


def snapshot(root: Path) -> dict:
    """Every file under the runs folder by content, the index checkpointed into its main
    file (whose bytes are then compared too) and its SQL dump."""
    db.dispose()
    with sqlite3.connect(root / "index.db") as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = "\n".join(con.iterdump())
    con.close()
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith("index.db-")}
    return {"files": files, "index": dump}


def test_the_corpus_is_big_and_covers_every_area():
    areas = {c["area"] for c in CASES}
    assert len(CASES) >= 60
    assert areas == {"data", "parameters", "tenants", "templates", "database", "scoring", "models"}
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input(case, project, monkeypatch):
    root, work, values = project
    monkeypatch.chdir(work)
    monkeypatch.setenv("EXPKIT_RUNS", str(root))
    monkeypatch.delenv("EXPKIT_DB", raising=False)
    args = [str(a).format(**values) for a in case["args"]]
    env = {k: str(v).format(**values) for k, v in (case.get("env") or {}).items()}
    before = snapshot(root)
    result = CliRunner().invoke(cli, args, env=env)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.output and "unexpected" not in result.stderr, result.output
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    assert case["message"].format(**values) in errors[0], errors[0]
    assert result.exit_code == case["exit"], (result.exit_code, errors[0])
    assert "secret" not in result.output
    after = snapshot(root)
    assert after["files"] == before["files"]
    assert after["index"] == before["index"]
    assert not (work / "out.csv").exists() and not list(work.glob(".*.tmp"))
