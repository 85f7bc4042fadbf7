"""What a papermill run costs, and how tenant fan-out scales.

1. Overhead: the code cells of templates/tournament.ipynb executed in this
   process (same data, same budget and trial count) versus ``expkit run``'s
   machinery (kernel start, papermill, saving the notebook after each cell,
   report.html, run index). Overhead = run seconds - in-process seconds.
2. Throughput: tenants per minute for the demo leads with ``--workers 1`` and
   ``--workers 2``.

Usage: ``python benchmarks/runs.py`` (full) or ``python benchmarks/runs.py --small``
(a quick check). Writes benchmarks/results/runs.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import matplotlib
import nbformat

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "tournament.ipynb"
RESULTS = ROOT / "benchmarks" / "results" / "runs.json"


def in_process(params: dict, runs_dir: Path) -> float:
    """Seconds to execute the template's code cells in this process."""
    from expkit.execute import INJECTED, template_parameters
    from expkit.runs import Run

    run = Run.create("tournament", tenant=params.get("tenant"), runs_dir=runs_dir, kind="benchmark")
    values = {**{k: v for k, v in template_parameters(TEMPLATE).items() if k not in INJECTED},
              **params, "run_dir": str(run.dir)}
    cells = [c.source for c in nbformat.read(TEMPLATE, as_version=4).cells
             if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    namespace = dict(values)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        for source in cells:
            exec(compile(source, "template", "exec"), namespace)  # noqa: S102 - our own template
    seconds = time.perf_counter() - start
    run.finish("succeeded")
    return seconds


def papermill_run(params: dict, runs_dir: Path) -> float:
    """Seconds for ``expkit run`` to execute the template once (in this process)."""
    from expkit.execute import run_template

    values = {k: v for k, v in params.items() if k != "tenant"}
    start = time.perf_counter()
    (result,) = run_template(TEMPLATE, values=values, tenants=[params["tenant"]], runs_dir=runs_dir)
    seconds = time.perf_counter() - start
    if result["status"] != "succeeded":
        raise SystemExit(f"benchmark run failed: {result['error']}")
    return seconds


def fan_out(params: dict, tenants: list[str], workers: int, runs_dir: Path) -> dict:
    from expkit.execute import run_template

    values = {k: v for k, v in params.items() if k != "tenant"}
    start = time.perf_counter()
    results = run_template(TEMPLATE, values=values, tenants=tenants, workers=workers, runs_dir=runs_dir)
    seconds = time.perf_counter() - start
    ok = sum(r["status"] == "succeeded" for r in results)
    return {"workers": workers, "tenants": len(tenants), "succeeded": ok, "seconds": round(seconds, 1),
            "tenants_per_minute": round(60 * len(tenants) / seconds, 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny data and 2 trials: checks it works")
    parser.add_argument("--rows", type=int, default=3000, help="demo leads rows over all tenants")
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--budget", type=int, default=20, help="tournament seconds per tenant")
    parser.add_argument("--n-trials", type=int, default=None, help="cap trials (same work in both modes)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.small:
        args.rows, args.tenants, args.budget, args.n_trials = 300, 2, 10, 2

    from expkit.datasets import leads

    tenants = sorted(leads(n_rows=args.rows, n_tenants=args.tenants)["tenant"].astype(str).unique())
    params = {"n_rows": args.rows, "n_tenants": args.tenants, "budget": args.budget,
              "n_trials": args.n_trials, "tenant": tenants[0]}
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        api = in_process(params, runs_dir)
        run = papermill_run(params, runs_dir)
        scaling = [fan_out(params, tenants, w, runs_dir) for w in (1, 2)]
    out = {
        "benchmark": "runs", "small": args.small,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {"rows": args.rows, "tenants": tenants, "budget": args.budget, "n_trials": args.n_trials},
        "overhead": {"in_process_seconds": round(api, 1), "papermill_run_seconds": round(run, 1),
                     "overhead_seconds": round(run - api, 1)},
        "fan_out": scaling,
    }
    if not args.small or args.output != RESULTS:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
