"""The README's pictures, from the real widgets and reports in a real browser.

    .venv/bin/python docs/widgets/make_snapshots.py [--out docs/widgets]

A throw-away project gets one real tournament run (``expkit run tournament`` for a
demo tenant) and a notebook that builds the three widgets in a state worth
showing (Explorer with an override, TournamentPanel after a run, RunBrowser with
two runs compared). JupyterLab runs it in headless Chromium (Playwright driving
the system's ``chromium``, as the browser test does: tests/browser/lab.py); each
widget's output is screenshotted, then the run's report.html at 1,280 px: its
opening, its evaluation figures and its search views. Needs ``chromium`` (``apt-get install -y
chromium``) and the dev extra (playwright, jupyterlab).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The browser window's height (tall: a widget is shot whole, not scrolled) and the
#: tallest picture (a long comparison is cut).
VIEWPORT_HEIGHT = 2200
MAX_HEIGHT = 1250
#: Scroll a report to the n-th figure after a heading (the heading itself for n = 0).
SCROLL_JS = """([id, n]) => {
  const head = document.getElementById(id);
  const after = [...document.querySelectorAll('img')].filter(
    img => head.compareDocumentPosition(img) & Node.DOCUMENT_POSITION_FOLLOWING);
  (n && after[n] ? after[n] : head).scrollIntoView();
}"""
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

WIDGETS = '''import expkit
from expkit.widgets import Explorer, RunBrowser, TournamentPanel

df = expkit.datasets.leads(n_rows=1500, n_tenants=3, seed=0)
explorer = Explorer(df, target="converted", page_size=10)
explorer.set_type("web_visits", "categorical")
explorer.select("spend")
explorer
---
panel = TournamentPanel(df, target="converted", budget=40, n_trials=10, schema=explorer, n_jobs=1)
for name, box in panel.family_boxes.items():
    box.value = name in ("logistic", "lightgbm", "hist_gradient_boosting")
panel.run(block=True)
panel
---
browser = RunBrowser()
browser.select.value = tuple(value for _, value in browser.select.options[:2])
browser
'''


def _notebook(path: Path, cells: list[str]) -> None:
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "metadata": {}, "source": c.strip(), "outputs": [],
                   "execution_count": None} for c in cells],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                    "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))


def _runs(root: Path) -> list[Path]:
    env = {k: v for k, v in os.environ.items() if k not in ("EXPKIT_RUNS", "EXPKIT_DB")}
    # acme: every family (the report's opening); globex: two families, so that each has
    # trials enough for the search views
    for tenant, extra in (("acme", ["-p", "budget", "30"]),
                          ("globex", ["-p", "budget", "40", "-p", "families", '["logistic", "lightgbm"]'])):
        subprocess.run([sys.executable, "-c", "from expkit.cli import main; main()", "run", "tournament",
                        "--templates-dir", str(ROOT / "templates"), "--tenant", tenant,
                        "-p", "n_rows", "3000", *extra],
                       cwd=root, env={**env, "MPLBACKEND": "Agg"}, check=True, timeout=900)
    return sorted(p for p in (root / "runs").iterdir() if (p / "report.html").is_file())


def _trim(png: Path, margin: int = 12) -> None:
    """Crop the white space right of and below the content."""
    from PIL import Image, ImageChops

    img = Image.open(png).convert("RGB")
    bbox = ImageChops.difference(img, Image.new("RGB", img.size, "white")).getbbox()
    if bbox:
        img.crop((0, 0, min(img.width, bbox[2] + margin), min(img.height, bbox[3] + margin))).save(png)


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    from tests.browser import lab as L

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    chromium = L.find_chromium()
    if chromium is None:
        raise SystemExit(f"no Chromium: {L.INSTALL_HINT}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        (root / "notebooks").mkdir(parents=True)
        (root / "expkit.toml").write_text("")
        runs = _runs(root)
        _notebook(root / "notebooks" / "widgets.ipynb", WIDGETS.split("---"))
        server = L.LabServer(root=root, home=Path(tmp) / "home", env={"EXPKIT_RUNS": None, "EXPKIT_DB": None})
        server.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, headless=True)
                page = L.new_page(browser)
                page.set_viewport_size({"width": 1280, "height": VIEWPORT_HEIGHT})
                L.open_notebook(page, server, "notebooks/widgets.ipynb")
                L.run_all_cells(page, timeout_s=900)
                page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
                outputs = page.locator(".jp-Notebook .jp-CodeCell .jp-OutputArea-output")
                for i, name in enumerate(("explorer", "tournament_panel", "run_browser")):
                    out = outputs.nth(i)
                    out.evaluate("e => e.scrollIntoView({block: 'start'})")
                    page.wait_for_timeout(800)
                    box = out.bounding_box()
                    height = min(box["height"], VIEWPORT_HEIGHT - box["y"] - 30, MAX_HEIGHT)
                    page.screenshot(path=str(args.out / f"{name}.png"),
                                    clip={"x": box["x"], "y": box["y"], "width": box["width"], "height": height})
                    _trim(args.out / f"{name}.png")
                    print("wrote", args.out / f"{name}.png")
                report = L.new_page(browser)
                report.set_viewport_size({"width": 1280, "height": 1150})
                report.goto((runs[0] / "report.html").as_uri())
                report.screenshot(path=str(args.out / "report.png"))
                _trim(args.out / "report.png")
                print("wrote", args.out / "report.png")
                for anchor, name, run in (("Evaluation-on-the-hold-out", "report_evaluation", runs[0]),
                                          ("Search", "report_search", runs[-1])):
                    report.goto((run / "report.html").as_uri())
                    report.evaluate(SCROLL_JS, [anchor, 0 if name == "report_evaluation" else 2])
                    report.wait_for_timeout(300)
                    report.screenshot(path=str(args.out / f"{name}.png"))
                    _trim(args.out / f"{name}.png")
                    print("wrote", args.out / f"{name}.png")
                report.context.close()
                page.context.close()
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
