"""Notebook promotion: refused without literal parameters or when it fails; versions."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from expkit import runs
from expkit.cli import cli
from expkit.errors import PromotionError
from expkit.execute import run_template
from expkit.files import sha256_file as file_hash
from expkit.promote import promote_notebook
from expkit.templates import history

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.mark.parametrize("fixture,pattern", [
    ("no_parameters.ipynb", "no cell tagged 'parameters'"),
    ("nonliteral.ipynb", "parameters are not literals: start"),
])
def test_refused_before_anything_runs(runs_dir, tmp_path, fixture, pattern):
    with pytest.raises(PromotionError, match=pattern):
        promote_notebook(FIXTURES / fixture, "x", templates_dir=tmp_path / "templates")
    assert not (tmp_path / "templates").exists() and not list(runs_dir.iterdir())


def test_refused_names_and_files(runs_dir, tmp_path):
    with pytest.raises(PromotionError, match="template name '../x' is not valid"):
        promote_notebook(FIXTURES / "explore_n.ipynb", "../x", templates_dir=tmp_path)
    with pytest.raises(PromotionError, match="does not exist"):
        promote_notebook(tmp_path / "none.ipynb", "x", templates_dir=tmp_path)


@pytest.mark.slow
def test_failing_notebook_is_refused(runs_dir, tmp_path):
    result = CliRunner().invoke(cli, ["promote", "notebook", str(FIXTURES / "failing.ipynb"), "--name",
                                      "failing", "--templates-dir", str(tmp_path / "t"),
                                      "--runs-dir", str(runs_dir)])
    assert result.exit_code == 1
    assert "error: refused: the notebook failed when executed headless: cell 3 (In [4]): ZeroDivisionError" \
        in result.stderr
    assert not (tmp_path / "t" / "failing.ipynb").exists()
    (scratch,) = runs.list(runs_dir=runs_dir).itertuples()
    assert scratch.status == "failed" and (Path(scratch.path) / "report.html").is_file()


@pytest.mark.slow
def test_promotion_strips_outputs_records_versions_and_runs_keep_theirs(runs_dir, tmp_path):
    templates = tmp_path / "templates"
    notebook = tmp_path / "explore_n.ipynb"
    shutil.copy(FIXTURES / "explore_n.ipynb", notebook)
    first = promote_notebook(notebook, "count", templates_dir=templates, reason="try")
    target = templates / "count.ipynb"
    assert (first["version"], first["changed"], first["hash"]) == (1, True, file_hash(target))
    saved = nbformat.read(target, as_version=4)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in saved.cells if c.cell_type == "code")
    assert runs.get(first["scratch_run"], runs_dir).meta["kind"] == "promotion-check"

    assert promote_notebook(notebook, "count", templates_dir=templates)["changed"] is False
    run_v1 = run_template("count", templates_dir=templates, strings={"n": "4"})[0]

    nb = nbformat.read(notebook, as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("n = 3", "n = 5")
    nbformat.write(nb, notebook)
    second = promote_notebook(notebook, "count", templates_dir=templates)
    assert second["version"] == 2 and second["hash"] != first["hash"]
    assert [e["version"] for e in history(templates)["count"]] == [1, 2]

    v1 = json.loads((Path(run_v1["path"]) / "run.json").read_text())
    assert (v1["template_hash"], v1["template_version"]) == (first["hash"], 1)
    assert runs.get(run_v1["run_id"]).metrics == {"total": 6}
    run_v2 = run_template("count", templates_dir=templates)[0]
    assert runs.get(run_v2["run_id"]).meta["template_version"] == 2
    assert runs.get(run_v2["run_id"]).metrics == {"total": 10}
