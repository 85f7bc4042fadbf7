"""templates/monitor.ipynb: stored clean and runs headless, even on an empty runs folder."""
from pathlib import Path

import nbformat
import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "monitor.ipynb"


def test_template_is_clean_with_literal_parameters():
    nb = nbformat.read(TEMPLATE, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)
    params = {}
    exec(code[0].source, {}, params)  # literal defaults only
    assert params == {"app": None, "runs_dir": None, "thresholds": {}, "html": None, "now": None, "run_dir": None}


@pytest.mark.slow
def test_template_runs_as_a_run_on_an_empty_runs_folder(runs_dir):
    from expkit.execute import run_template

    (result,) = run_template("monitor", runs_dir=runs_dir)
    assert result["status"] == "succeeded", result
    (folder,) = [p for p in runs_dir.iterdir() if p.is_dir() and (p / "run.json").exists()]
    out = nbformat.read(folder / "notebook.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.outputs)
    assert "no production models yet" in text and "all clear" in text
    page = (folder / "monitor.html").read_text()
    assert "No production models yet" in page and "models in production" in page
    from expkit.monitoring.alerts import load_saved

    assert load_saved(folder) == ([], [])  # what a schedule with alert: true sends: nothing here
