"""JupyterLab in a real browser: notebooks/02_explore_with_widgets.ipynb run in headless
Chromium (Playwright driving the system's `chromium`), the widgets clicked as a person
would, a report opened from the RunBrowser, and reports and the monitor page checked
offline at 1,280 px. Screenshots go to build/browser/ (or $EXPKIT_SHOTS).

Skipped, with the reason, when no Chromium is installed (`.ci/run` installs Debian's
package) or Playwright is missing. The whole module runs on one pytest worker and
costs ~2-4 minutes on a shared 2-CPU machine.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import lab as L

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = L.find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(CHROMIUM is None, reason=(
        f"no Chromium browser found ({os.environ.get('EXPKIT_CHROMIUM') or '/usr/bin/chromium'} "
        f"missing); install it with `{L.INSTALL_HINT}` or set EXPKIT_CHROMIUM")),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -e '.[dev]')")
pytest.importorskip("jupyterlab", reason="jupyterlab is not installed (pip install -e '.[dev]')")
expect = sync_api.expect

BROWSE = """from expkit.widgets import RunBrowser
browser = RunBrowser()
browser"""


def _notebook(path: Path, source: str) -> None:
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": [],
                   "execution_count": None}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder (expkit.toml at its root) with notebooks/ and one real tournament
    run in runs/, made by `expkit run` from the root without $EXPKIT_RUNS."""
    root = tmp_path_factory.mktemp("project")
    (root / "expkit.toml").write_text("")
    (root / "notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / "02_explore_with_widgets.ipynb", root / "notebooks" / "explore.ipynb")
    _notebook(root / "notebooks" / "browse.ipynb", BROWSE)
    env = {k: v for k, v in os.environ.items() if k not in ("EXPKIT_RUNS", "EXPKIT_DB")}
    done = subprocess.run(
        [sys.executable, "-c", "from expkit.cli import main; main()", "run", "tournament",
         "--templates-dir", str(ROOT / "templates"), "--tenant", "acme", "-p", "n_rows", "600",
         "-p", "n_trials", "4", "-p", "budget", "20", "-p", "families", '["logistic"]'],
        cwd=root, env={**env, "MPLBACKEND": "Agg"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"runs folder {root / 'runs'} (project root {root})" in done.stderr
    return root


@pytest.fixture(scope="module")
def lab(project, tmp_path_factory):
    server = L.LabServer(root=project, home=tmp_path_factory.mktemp("lab-home"),
                         env={"EXPKIT_RUNS": None, "EXPKIT_DB": None}).start()
    yield server
    stopped = server.stop()
    L.SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(server.log_path, L.SHOTS / "lab-server.log")
    assert not stopped["leftover"], f"processes left after shutdown: {stopped['leftover']}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # Playwright adds --no-sandbox (needed as root) and --disable-dev-shm-usage itself
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser):
    pg = L.new_page(browser)
    yield pg
    pg.context.close()


@pytest.fixture(autouse=True)
def shot_on_failure(request):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "page" in request.fixturenames:
        request.getfixturevalue("page").screenshot(path=str(L.SHOTS / f"FAILED-{request.node.name}.png"))


@pytest.fixture(scope="module")
def notebook(page, lab):
    """explore.ipynb opened and every cell run (Run > Run All Cells)."""
    L.open_notebook(page, lab, "notebooks/explore.ipynb")
    L.run_all_cells(page)
    return page


def test_the_notebook_runs_and_its_widgets_render_as_widgets(notebook):
    page = notebook
    prompts = page.evaluate(L.STATE_JS)["prompts"]
    assert prompts == [f"[{i}]:" for i in range(1, len(prompts) + 1)], prompts
    page.wait_for_function(
        "() => { const s = (" + L.WIDGETS_JS + ")(); return s.expected > 0 && s.rendered === s.expected }",
        polling=200)
    state = page.evaluate(L.WIDGETS_JS)
    assert state["expected"] == 2 and state["asText"] == [], state  # Explorer and TournamentPanel
    expect(page.get_by_text("Loading widget...")).to_have_count(0)
    assert [e for e in page.console_errors if "widget" in e.lower()] == []
    # "(none)" is shown in the tenant dropdown, not an empty box
    panel = L.output_with(page, L.widget_button(page, "Run"))
    tenant = panel.get_by_label("tenant", exact=True)
    assert tenant.evaluate("s => s.options[s.selectedIndex] && s.options[s.selectedIndex].text") == "(none)"


def test_an_explorer_override_changes_the_features(notebook):
    page = notebook
    explorer = L.output_with(page, page.get_by_placeholder("filter columns by name or type"))
    expect(explorer).to_have_count(1)
    explorer.scroll_into_view_if_needed()
    L.shoot(explorer, "explorer.png")
    explorer.get_by_placeholder("filter columns by name or type").fill("sp")
    expect(explorer.get_by_text(re.compile(r"page 1 of 1 · 1 of \d+ columns"))).to_be_visible()
    spend = explorer.get_by_role("button", name="spend", exact=True)
    spend.click()
    title = explorer.locator(".widget-html-content").filter(has=page.locator("b", has_text=re.compile(r"^spend$")))
    expect(title).to_contain_text("spend · numeric")
    expect(explorer.locator("img.widget-image")).to_be_visible()
    row = explorer.locator(".widget-hbox").filter(has=page.get_by_role("button", name="spend", exact=True))
    expect(row).to_contain_text("AUC")  # "vs target" names its measure
    row.locator(".widget-dropdown select").select_option("categorical")
    expect(title).to_contain_text("spend · categorical")
    expect(row.locator(".widget-dropdown")).to_have_css("border-top-color", "rgb(230, 149, 0)")
    L.shoot(explorer, "explorer_override.png")
    explorer.get_by_placeholder("filter columns by name or type").fill("")
    # the kernel builds other features for spend now: one indicator per value instead of numbers
    out = L.new_cell(page, "lin = expkit.Transmogrifier(schema=explorer.schema).fit(X).lineage_\n"
                           "print(sorted(set(lin[lin['column'] == 'spend']['transform'])))")
    expect(out).to_contain_text("pivot")
    assert "scale" not in out.inner_text()


def test_tournament_panel_shows_a_live_leaderboard_and_stop_stops(notebook):
    page = notebook
    panel = L.output_with(page, L.widget_button(page, "Run"))
    expect(panel).to_have_count(1)
    run, stop = L.widget_button(panel, "Run"), L.widget_button(panel, "Stop")
    panel.get_by_label("random_forest", exact=True).uncheck()
    panel.get_by_label("n_trials", exact=True).fill("0")       # only the budget stops it
    panel.get_by_label("n_trials", exact=True).press("Enter")   # BoundedIntText syncs on change
    run.click()
    expect(stop).to_be_enabled()
    expect(run).to_be_disabled()
    # it follows the Explorer: the override made in the previous test is used
    expect(panel.get_by_text(re.compile(r"types from the Explorer \(2 overrides"))).to_be_visible()
    board = panel.locator(".widget-html-content").filter(has_text="leaderboard (CV")
    expect(board).to_be_visible(timeout=240_000)                 # after the first trial
    expect(board.locator("td", has_text="logistic")).to_be_visible()
    panel.scroll_into_view_if_needed()
    L.shoot(panel, "tournament_panel_running.png")
    t0 = time.monotonic()
    stop.click()
    expect(panel.get_by_text(re.compile(r"stopped early: best so far"))).to_be_visible(timeout=240_000)
    stopped_in = time.monotonic() - t0
    expect(run).to_be_enabled()
    expect(stop).to_be_disabled()
    expect(panel.locator("img.widget-image")).to_have_count(3)  # roc, calibration, importance
    L.shoot(panel, "tournament_panel.png")
    print(f"\nStop -> stopped in {stopped_in:.1f} s")


def test_run_browser_names_its_folder_and_its_report_link_opens(browser, lab, project):
    page = L.new_page(browser)
    try:
        L.open_notebook(page, lab, "notebooks/browse.ipynb")
        L.run_all_cells(page)
        out = page.locator(".jp-OutputArea-output").first
        expect(out.get_by_text(f"runs folder {project / 'runs'} (project root {project})")).to_be_visible()
        link = out.get_by_role("link", name="report")
        expect(link).to_have_count(1)
        L.shoot(out, "run_browser.png")
        requests = []
        page.context.on("request", lambda r: requests.append(r.url))
        with page.expect_popup() as opened:
            link.click()
        report = opened.value
        report.wait_for_load_state("load")
        assert re.search(r"/files/runs/[^/]+-tournament-acme-[^/]+/report\.html$", report.url), report.url
        expect(report.get_by_role("heading", name="Verdict")).to_be_visible()
        expect(report.get_by_role("heading", name="Leaderboard")).to_be_visible()
        report.set_viewport_size({"width": 1280, "height": 900})
        L.shoot(report, "report.png")
        assert report.evaluate("document.documentElement.scrollWidth") <= 1280
        origin = lab.base
        assert [u for u in requests if not u.startswith((origin, "data:"))] == []  # nothing from the web
    finally:
        page.context.close()


def _offline_check(browser, url: str, shot: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        outside = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.goto(url)
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        L.shoot(page, shot, full_page=False)
        assert outside == [], f"{url} loads {outside}"
        assert width <= 1280, f"{url} is {width} px wide"
    finally:
        context.close()


def test_reports_and_the_monitor_page_are_offline_and_fit_1280_px(browser, project, tmp_path):
    (report,) = (project / "runs").glob("*-tournament-acme-*/report.html")
    _offline_check(browser, report.as_uri(), "report_offline.png")
    from tests.monitoring.test_health import NOW, batch, prod, run, scores, table

    models = [prod(tenant=t, version=str(v)) for t, v in (("acme", 1), ("globex", 3), ("initech", 12))]
    result = run([batch(i, NOW, table(seed=i, spend_scale=1 + 4 * i), scores(seed=i), tenant=m["tenant"],
                        version=m["version"]) for i, m in enumerate(models)], models=models)
    result.to_html(tmp_path / "monitor.html")
    _offline_check(browser, (tmp_path / "monitor.html").as_uri(), "monitor.png")
