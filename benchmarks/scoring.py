"""Batch scoring speed and memory: ``expkit score --jobs 2`` end to end against the
loaded pipeline's bare ``predict_proba`` in one process on the same rows in memory.

A tiny model is trained on the demo leads (with the free-text fields, and without them),
saved in a run and promoted; a demo-leads CSV of ``--rows`` rows is written, and one four
times as long (the same rows four times over). For each model, ``--repeat`` times and
interleaved so that all three see the same state of a shared machine:

- ``expkit score`` in a subprocess on the small file and on the large file (start-up,
  imports, model load with the digest check, workers reading their parts, validation,
  drift summaries, scoring, output in input order, score log);
- ``bundle.pipeline.predict_proba`` in this process on the small file's rows, already in
  memory with the model's types (no I/O, no validation, no log).

Reported (medians over the repeats):

- *marginal throughput*: the rows/s the large file adds over the small one,
  ``3 * rows / (t_large - t_small)``; fixed costs cancel out;
- *marginal ratio*: marginal seconds per row over the bare call's seconds per row, per
  repeat (target: <= 1.0, i.e. the rows a bigger file adds cost no more than the bare call);
- *start-up*: ``t_small`` minus the small file's rows at the marginal rate (what every
  command pays whatever the file's size);
- *peak memory*: the peak of the summed proportional set size (PSS) of the command and all
  its processes, sampled every 0.1 s in separate runs, at both sizes (target: flat).

    python benchmarks/scoring.py                         # 1,000,000 and 4,000,000 rows, 3 repeats
    python benchmarks/scoring.py --rows 50000 --repeat 1 # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXT = ["title", "note"]
TARGET = "converted"
CHUNK = 100_000
TARGET_RATIO = 1.0
JOBS = 2
EXPKIT = [sys.executable, "-c", "from expkit.cli import main; main()"]
SAMPLE_EVERY = 0.1  # seconds between memory samples of the scoring process tree


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _pss_mb(pids) -> float:
    """Summed proportional set size (shared pages split between the processes sharing them)."""
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


def train(runs: Path, app: str, with_text: bool, seed: int = 0) -> str:
    """Train a tiny model on 2,000 demo leads, save it in a run and promote it for ``app``."""
    import expkit
    from expkit.registry import Registry
    from expkit.runs import Run

    df = expkit.datasets.leads(2000, n_tenants=1, seed=seed)
    if not with_text:
        df = df.drop(columns=TEXT)
    result = expkit.tournament(df, TARGET, n_trials=3, families=["logistic"], budget=60,
                               progress=False, n_jobs=1, seed=seed)
    run = Run.create(f"bench-{app}", runs_dir=runs)
    run.start()
    run.save_model(result.best_pipeline, card=result.card())
    run.log_metrics(result.summary())
    run.finish("succeeded")
    return Registry(runs).promote(run.id, app)["model_dir"]


def write_leads(path: Path, rows: int, with_text: bool) -> None:
    """``rows`` demo leads (no label) written in chunks, so memory stays small."""
    from expkit.datasets import leads

    done = 0
    while done < rows:
        n = min(CHUNK, rows - done)
        df = leads(n, n_tenants=1, seed=1000 + done // CHUNK).drop(columns=[TARGET])
        if not with_text:
            df = df.drop(columns=TEXT)
        df.to_csv(path, mode="a" if done else "w", header=not done, index=False)
        done += n


def end_to_end(src: Path, out: Path, app: str, runs: Path, memory: bool = False, how=("--jobs", str(JOBS)),
               env: dict | None = None) -> float:
    """Seconds of ``expkit score --jobs 2`` (or the options ``how``) in its own process or, with
    ``memory``, the peak of the summed PSS (MB) of the command and its processes, sampled every
    SAMPLE_EVERY seconds (sampling slows the command down, so time and memory come from
    separate runs)."""
    start = time.perf_counter()
    proc = subprocess.Popen([*EXPKIT, "score", str(src), "-o", str(out), "--app", app, "--runs-dir", str(runs),
                             *how], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=None if env is None else {**os.environ, **env})
    peak = 0.0
    while memory and proc.poll() is None:
        peak = max(peak, _pss_mb(_tree(proc.pid)))
        time.sleep(SAMPLE_EVERY)
    proc.wait()
    secs = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"expkit score failed ({proc.returncode}): {proc.stderr.read().decode()}")
    return peak if memory else secs


def bare_rows(bundle, src: Path):
    """The file's rows in memory with the column types of training, as the bare call gets them."""
    import pandas as pd

    from expkit.scoring.scorer import Scorer

    scorer = Scorer(bundle, version="bench")
    return scorer.prepare(pd.read_csv(src))[scorer.features]


def bare(bundle, rows) -> float:
    """Seconds of one ``pipeline.predict_proba`` call on ``rows`` in this process."""
    start = time.perf_counter()
    bundle.pipeline.predict_proba(rows)
    return time.perf_counter() - start


def times_over(src: Path, dst: Path, times: int) -> None:
    """``dst``: the rows of CSV ``src`` ``times`` over (one header)."""
    with open(dst, "wb") as out_file:
        for i in range(times):
            with open(src, "rb") as in_file:
                if i:
                    in_file.readline()
                shutil.copyfileobj(in_file, out_file)


def measure(tmp: Path, runs: Path, with_text: bool, rows: int, repeat: int) -> dict:
    from expkit.models.bundle import load_model

    variant = "with text" if with_text else "without text"
    app = "bench-text" if with_text else "bench-notext"
    model_dir = train(runs, app, with_text)
    bundle = load_model(model_dir)
    small, large = tmp / f"{app}-small.csv", tmp / f"{app}-large.csv"
    write_leads(small, rows, with_text)
    times_over(small, large, 4)
    in_memory = bare_rows(bundle, small)
    t_small, t_large, t_bare = [], [], []
    for _ in range(repeat):  # interleaved: each repeat's three timings see the same machine
        t_small.append(end_to_end(small, tmp / "scored.csv", app, runs))
        t_large.append(end_to_end(large, tmp / "scored.csv", app, runs))
        t_bare.append(bare(bundle, in_memory))
    del in_memory
    extra = 3 * rows
    marginal = [(b - a) / extra for a, b in zip(t_small, t_large)]  # seconds per row
    ratios = [m / (t / rows) for m, t in zip(marginal, t_bare)]
    startups = [a - rows * m for a, m in zip(t_small, marginal)]
    peaks = {n: end_to_end(f, tmp / "scored.csv", app, runs, memory=True)
             for n, f in ((rows, small), (4 * rows, large))}
    for f in (small, large, tmp / "scored.csv"):
        f.unlink(missing_ok=True)
    return {
        "variant": variant, "rows": rows, "large_rows": 4 * rows, "jobs": JOBS,
        "end_to_end_small_s": [round(t, 2) for t in t_small], "end_to_end_large_s": [round(t, 2) for t in t_large],
        "bare_s": [round(t, 3) for t in t_bare],
        "bare_rows_per_s": round(rows / statistics.median(t_bare)),
        "marginal_rows_per_s": round(1 / statistics.median(marginal)),
        "marginal_ratio": round(statistics.median(ratios), 2), "marginal_ratios": [round(r, 2) for r in ratios],
        "startup_s": round(statistics.median(startups), 2),
        "peak_pss_mb": {str(n): round(v, 1) for n, v in peaks.items()},
        "model_mb": round((Path(model_dir) / "model.skops").stat().st_size / 1e6, 2),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the small file (the large: 4x)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats (medians are reported)")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="expkit-bench-scoring-") as tmp:
        tmp = Path(tmp)
        runs = tmp / "runs"
        runs.mkdir()
        for with_text in (True, False):
            results.append(measure(tmp, runs, with_text, args.rows, args.repeat))
            print(table(results[-1:]), flush=True)
    report = {
        "benchmark": "scoring", "rows": args.rows, "repeat": args.repeat, "chunksize": CHUNK,
        "target_marginal_ratio": TARGET_RATIO,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    out = HERE / "results" / "scoring.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\nresults -> {out.relative_to(HERE.parent)}")
    return report


def table(results) -> str:
    lines = ["| model | bare predict_proba (rows/s) | marginal end to end (rows/s) | marginal ratio (pairs) | "
             "start-up (s) | peak PSS at 1x / 4x rows (MB) |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        peaks = " / ".join(f"{v:,.0f}" for v in r["peak_pss_mb"].values())
        lines.append(f"| {r['variant']} | {r['bare_rows_per_s']:,} | {r['marginal_rows_per_s']:,} | "
                     f"{r['marginal_ratio']}x ({min(r['marginal_ratios'])}-{max(r['marginal_ratios'])}) | "
                     f"{r['startup_s']} | {peaks} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
