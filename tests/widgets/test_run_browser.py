"""RunBrowser on runs made with expkit.runs: filters, comparison, report links."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from expkit import runs
from expkit.widgets import RunBrowser


def _make_run(template, tenant, status, params, metrics, report=True):
    run = runs.Run.create(template, tenant=tenant, params=params)
    run.start()
    run.log_metrics(metrics)
    if report:
        (run.dir / "report.html").write_text("<html>report</html>")
    run.finish(status)
    return run


@pytest.fixture
def three_runs(runs_dir):
    a = _make_run("leads", "acme", "succeeded", {"budget": 30, "seed": 0},
                  {"metric_name": "auroc", "auroc": 0.81})
    b = _make_run("leads", "globex", "succeeded", {"budget": 60, "seed": 0},
                  {"metric_name": "auroc", "auroc": 0.77})
    c = _make_run("churn", "acme", "failed", {"budget": 30, "seed": 1}, {}, report=False)
    return a, b, c


def test_filters_narrow_the_runs_and_options_come_from_the_index(three_runs, runs_dir):
    a, b, c = three_runs
    browser = RunBrowser(runs_dir)
    assert set(browser.filtered["run_id"]) == {a.id, b.id, c.id}
    assert browser.dropdowns["template"].options == ("(all)", "churn", "leads")
    assert browser.dropdowns["status"].options == ("(all)", "failed", "succeeded")

    browser.dropdowns["tenant"].value = "acme"
    assert set(browser.filtered["run_id"]) == {a.id, c.id}
    browser.dropdowns["status"].value = "succeeded"
    assert list(browser.filtered["run_id"]) == [a.id]
    assert [v for _, v in browser.select.options] == [a.id]
    assert "<b>1</b> of 3 runs" in browser.table.value

    browser.dropdowns["tenant"].value = "(all)"
    browser.dropdowns["status"].value = "(all)"
    browser.dropdowns["template"].value = "churn"
    assert list(browser.filtered["run_id"]) == [c.id]


def test_select_several_compares_params_and_metrics(three_runs, runs_dir):
    a, b, _ = three_runs
    browser = RunBrowser(runs_dir)
    browser.select.value = (a.id,)
    assert browser.comparison.empty
    assert "two or more" in browser.compare_view.value

    browser.select.value = (a.id, b.id)
    cmp = browser.comparison
    assert list(cmp.columns) == [a.id, b.id, "differs"]
    assert cmp.loc["param.budget", a.id] == 30 and cmp.loc["param.budget", b.id] == 60
    assert cmp.loc["param.budget", "differs"]
    assert not cmp.loc["param.seed", "differs"]
    assert cmp.loc["metric.auroc", a.id] == pytest.approx(0.81)
    # differences are marked in the rendered table
    assert browser.compare_view.value.count("class='diff'") == int(cmp["differs"].sum())


def test_report_links_only_for_runs_with_a_report_and_refresh_sees_new_runs(three_runs, runs_dir):
    a, b, c = three_runs
    browser = RunBrowser(runs_dir)
    assert browser.table.value.count(">report</a>") == 2
    # runs outside the working directory are linked by file URI
    assert f'href="{(a.dir / "report.html").resolve().as_uri()}"' in browser.table.value
    assert "report.html" not in browser.table.value.split(c.id)[1].split("</tr>")[0]

    d = _make_run("leads", "initech", "succeeded", {"budget": 30}, {"metric_name": "auroc", "auroc": 0.7})
    assert d.id not in set(browser.runs["run_id"])
    browser.refresh_button.click()
    assert d.id in set(browser.runs["run_id"])
    assert "initech" in browser.dropdowns["tenant"].options


def test_max_rows_keeps_the_newest(three_runs, runs_dir):
    a, b, c = three_runs
    browser = RunBrowser(runs_dir, max_rows=2)
    newest = list(browser.runs["run_id"][:2])
    assert [v for _, v in browser.select.options] == newest
    assert "(first 2 shown)" in browser.table.value


def test_displays_as_a_widget(three_runs, runs_dir):
    bundle = RunBrowser(runs_dir)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_says_which_folder_it_reads_and_what_to_do_when_empty(runs_dir, tmp_path):
    browser = RunBrowser()
    assert f"runs folder {runs_dir} ($EXPKIT_RUNS)" in browser.folder.value
    assert "No runs here yet" in browser.folder.value and "EXPKIT_RUNS" in browser.folder.value
    other = RunBrowser(tmp_path / "elsewhere")
    assert f"runs folder {tmp_path / 'elsewhere'} (given)" in other.folder.value
    assert "<b>0</b> of 0 runs" in other.table.value


def test_where_and_sort_on_metrics_and_parameters(three_runs, runs_dir):
    a, b, c = three_runs
    browser = RunBrowser(runs_dir)
    browser.where.value = "auroc > 0.8"
    assert list(browser.filtered["run_id"]) == [a.id]
    assert "<th>auroc</th>" in browser.table.value  # the metric named gets a column
    browser.where.value = "budget >= 30 and seed = 0"
    assert set(browser.filtered["run_id"]) == {a.id, b.id}
    assert "auroc" in browser.sort.options and "budget" in browser.sort.options
    browser.sort.value = "auroc"
    assert list(browser.filtered["run_id"]) == [a.id, b.id]  # descending: 0.81, then 0.77
    browser.descending.value = False
    assert list(browser.filtered["run_id"]) == [b.id, a.id]
    assert [v for _, v in browser.select.options] == [b.id, a.id]  # the list follows the order
    browser.where.value = "auroc >> 1"  # a condition it cannot read: said, all runs shown
    assert "cannot read the condition" in browser.table.value and len(browser.filtered) == 3
    started = RunBrowser(runs_dir, where="budget = 60", sort="-auroc")
    assert list(started.filtered["run_id"]) == [b.id]
    assert started.sort.value == "auroc" and started.descending.value


def test_compare_shows_differences_first_and_overlays_curves(three_runs, runs_dir):
    a, b, _ = three_runs
    rng = np.random.default_rng(0)
    for run, noise in ((a, 0.2), (b, 0.6)):
        y = rng.integers(0, 2, 200)
        pd.DataFrame({"y": y, "score": np.clip(y * 0.5 + rng.normal(0.25, noise, 200), 0, 1)}).to_csv(
            run.dir / runs.HOLDOUT_FILE, index=False)
    browser = RunBrowser(runs_dir)
    browser.select.value = (a.id, b.id)
    cmp = browser.comparison
    assert list(cmp["differs"]) == sorted(cmp["differs"], reverse=True)  # differences first
    assert "param.budget" in browser.compare_view.value and "param.seed" not in browser.compare_view.value
    assert "identical rows hidden" in browser.compare_view.value
    browser.only_differences.value = False
    assert "param.seed" in browser.compare_view.value
    assert set(browser.curves) == {"roc", "calibration"} and len(browser.curve_box.children) == 2
    labels = [t.get_text() for t in browser.curves["roc"].axes[0].get_legend().get_texts()]
    assert len(labels) == 2 and labels[0].startswith("acme") and "AUROC" in labels[0]
    browser.select.value = (a.id,)
    assert browser.curve_box.children == ()


def test_report_link_is_the_jupyter_servers_files_url_in_a_kernel(three_runs, runs_dir, tmp_path, monkeypatch):
    a, _, _ = three_runs
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / f"jpserver-{os.getpid()}.json").write_text(json.dumps(
        {"pid": os.getpid(), "root_dir": str(runs_dir.parent), "base_url": "/", "url": "http://127.0.0.1:1/"}))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("JPY_PARENT_PID", str(os.getpid()))
    browser = RunBrowser(runs_dir)
    assert f'href="/files/runs/{a.id}/report.html"' in browser.table.value


def test_digests_are_shortened_in_the_comparison():
    from expkit.widgets.run_browser import _cell

    digest = "f635545caa7ec47f0d159fb0516e372b506bdf006e633fc0b93a8121a32c3b19"
    assert _cell("data.fingerprint", digest) == f"<span title='{digest}'>f635545caa7e…</span>"
    assert _cell("param.note", digest) == digest and _cell("template_hash", None) == _cell("x", None)
