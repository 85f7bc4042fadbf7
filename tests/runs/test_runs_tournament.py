"""End to end: templates/tournament.ipynb through `expkit run`, then promotion of its model."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from expkit.cli import cli
from expkit.registry import Registry
from expkit.templates import template_parameters

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["tournament", "explore"])
def test_templates_are_clean_with_literal_parameters(name):
    path = ROOT / "templates" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert template_parameters(path)["run_dir"] is None


@pytest.mark.slow
def test_tournament_template_end_to_end(runs_dir):
    result = CliRunner().invoke(cli, ["run", "tournament", "--templates-dir", str(ROOT / "templates"),
                                      "-p", "n_rows", "300", "-p", "n_trials", "3", "-p", "budget", "20",
                                      "--tenant", "acme", "--runs-dir", str(runs_dir),
                                      "--progress-every", "1"])
    assert result.exit_code == 0, result.output + result.stderr
    (folder,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    for name in ("run.json", "notebook.ipynb", "report.html", "metrics.json", "leaderboard.csv",
                 "model/model.skops", "model/card.json", "study.log", "figures/roc.png",
                 "figures/gain_lift.png", "figures/confusion_matrix.png", "figures/threshold_metrics.png",
                 "figures/search_importances.png", "figures/search_parallel_coordinate.png",
                 "figures/search_slice.png"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert meta["status"] == "succeeded" and meta["data"]["source"] == "expkit.datasets.leads"
    assert 50 < meta["data"]["rows"] < 200  # one tenant's share of 300 rows
    assert meta["summary"]["winner"] == metrics["winner"]
    assert meta["summary"]["metric"] == metrics["holdout"]["auroc"]
    assert result.stdout.splitlines()[-1].split()[:5] == [
        "acme", "succeeded", metrics["winner"], "auroc", f"{metrics['holdout']['auroc']:.4f}"]
    assert "Winner" in (folder / "report.html").read_text()
    # while it ran: the runs folder, the notebook being written, then trials and best so far
    err = result.stderr
    assert f"runs folder {runs_dir} (given)" in err
    assert f"[acme] writing {folder / 'notebook.ipynb'}" in err
    assert "[acme] starting: kernel" in err and "[acme] search " in err and " trial" in err
    # the report opens with parameters, verdict and leaderboard, and loads nothing from the web
    report = (folder / "report.html").read_text()
    heads = [report.index(f"<h2>{h}</h2>") for h in ("Parameters", "Verdict", "Leaderboard", "Details")]
    assert heads == sorted(heads) and report.index("<h2>Details</h2>") < report.index("<h1 id=\"Model-tournament")
    assert "<script src=" not in report and "cdnjs" not in report and "mathjax" not in report.lower()
    # the leaderboard with out-of-fold metrics, the best of each in bold; the tenant on the model card
    board = report[report.index("<h2>Leaderboard</h2>"):report.index("<h2>Details</h2>")]
    assert all(f"<th>oof_{m}</th>" in board for m in ("auroc", "aupr", "log_loss", "brier", "f1"))
    assert "num best" in board and '<h2 id="Search">' in report
    assert re.search(r"expkit-ok['\"]>succeeded</span>", report)  # the ending status, not "running"
    assert json.loads((folder / "model" / "card.json").read_text())["tenant"] == "acme"

    registry = Registry(runs_dir)
    if metrics["above_chance"]:
        assert registry.promote(meta["id"], "leads", "acme")["version"] == 1
    else:
        with pytest.raises(Exception, match="not above chance"):
            registry.promote(meta["id"], "leads", "acme")
