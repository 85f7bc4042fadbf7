"""RunBrowser on runs made with expkit.runs: filters, comparison, report links."""
from __future__ import annotations

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
