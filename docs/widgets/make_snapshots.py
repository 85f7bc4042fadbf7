"""Render the expkit widgets to static HTML (and PNG) snapshots for the README.

    .venv/bin/python docs/widgets/make_snapshots.py [--embed-js PATH] [--chromium PATH]

Each widget is built on the bundled demo leads and driven by code (values set,
buttons pressed) as a user would, then saved with ``ipywidgets.embed`` as
``docs/widgets/<name>.html``: real widget state, rendered by the
``@jupyter-widgets/html-manager`` script, which those pages load from a CDN.

The PNGs are screenshots of the same pages taken by headless Chromium. With no
network, pass ``--embed-js`` pointing to ``dist/embed.js`` of the
``@jupyter-widgets/html-manager`` npm package (``npm pack
@jupyter-widgets/html-manager@1`` and unpack it); the screenshot pages then load
it from disk. Without Chromium or the script only the HTML files are written.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import ipywidgets as W
from ipywidgets.embed import dependency_state, embed_minimal_html

HERE = Path(__file__).resolve().parent
STYLE = ("<style>body{font-family:-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,"
         "sans-serif;font-size:13px;margin:12px;background:#fff}</style>")
# name -> browser window (width, height) for the screenshot
WINDOWS = {"explorer": (1000, 1250), "tournament_panel": (1000, 1150), "run_browser": (1100, 900)}


def build_widgets(workdir: Path) -> dict:
    """The three widgets in a state worth showing (a finished run, a comparison)."""
    import expkit
    from expkit import runs
    from expkit.widgets import Explorer, RunBrowser, TournamentPanel

    df = expkit.datasets.leads(n_rows=1500, n_tenants=3, seed=0)
    explorer = Explorer(df, target="converted", page_size=10)
    explorer.set_type("web_visits", "categorical")
    explorer.select("spend")

    panel = TournamentPanel(df, target="converted", budget=45, n_trials=8,
                            schema=explorer.schema, n_jobs=1)
    for name, box in panel.family_boxes.items():
        box.value = name in ("logistic", "random_forest", "hist_gradient_boosting")
    panel.run(block=True)

    runs_root = workdir / "runs"
    runs_root.mkdir()
    ids = []
    for tenant, budget, auroc in (("acme", 30, 0.81), ("globex", 60, 0.77), ("initech", 60, 0.74)):
        run = runs.Run.create("leads_tournament", tenant=tenant, runs_dir=runs_root,
                              params={"tenant": tenant, "budget": budget, "n_trials": 20})
        run.start()
        run.log_metrics({"metric_name": "auroc", "winner": "logistic", "auroc": auroc,
                         "log_loss": round(0.9 - auroc / 2, 3)})
        (run.dir / "report.html").write_text("<html><body>report</body></html>")
        run.finish("succeeded")
        ids.append(run.id)
    failed = runs.Run.create("churn", tenant="acme", runs_dir=runs_root, params={"budget": 30})
    failed.start()
    failed.finish("failed", error={"message": "target 'churned' not found"})
    browser = RunBrowser(runs_root)
    browser.select.value = tuple(ids[:2])
    return {"explorer": explorer.widget, "tournament_panel": panel.widget,
            "run_browser": browser.widget}


def write_html(name: str, widget: W.Widget, path: Path, embed_url=None) -> None:
    kwargs = {"requirejs": False, "state": dependency_state([widget])}
    if embed_url:
        kwargs.update(embed_url=embed_url, cors=False)
    embed_minimal_html(path, views=[widget], title=f"expkit widget: {name}", **kwargs)
    text = path.read_text()
    path.write_text(text.replace("</head>", STYLE + "</head>", 1))


def screenshot(chromium: str, html: Path, png: Path, window) -> None:
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", f"--window-size={window[0]},{window[1]}",
         "--virtual-time-budget=8000", f"--screenshot={png}", html.as_uri()],
        check=True, capture_output=True, timeout=120)
    _trim(png)


def _trim(png: Path, margin: int = 12) -> None:
    """Crop the white space around the widget."""
    from PIL import Image, ImageChops

    img = Image.open(png).convert("RGB")
    bbox = ImageChops.difference(img, Image.new("RGB", img.size, "white")).getbbox()
    if bbox:
        left, top, right, bottom = bbox
        img.crop((0, 0, min(img.width, right + margin), min(img.height, bottom + margin))).save(png)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embed-js", type=Path, help="local @jupyter-widgets/html-manager dist/embed.js")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        widgets = build_widgets(Path(tmp))
        for name, widget in widgets.items():
            write_html(name, widget, args.out / f"{name}.html")
            if args.chromium and args.embed_js:
                local = Path(tmp) / f"{name}.html"
                write_html(name, widget, local, embed_url=args.embed_js.resolve().as_uri())
                screenshot(args.chromium, local, args.out / f"{name}.png", WINDOWS[name])
            print(f"wrote {args.out / name}.html" + (" and .png" if args.embed_js else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
