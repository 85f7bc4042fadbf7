"""Batch scoring speed and memory: ``expkit score`` end to end against the
loaded pipeline's bare ``predict_proba`` on the same rows.

A tiny model is trained on the demo leads (with the free-text fields, and
without them), saved in a run and promoted; demo lead files of two sizes
(``--rows`` and twice as many, both longer than the chunks ``expkit score`` keeps
in memory at once) are written as CSV; memory alone is also measured on a file of
four times ``--rows`` (the larger file twice over). Then, for each model and
size:

- end to end: ``expkit score`` in a subprocess with its defaults (start-up, model load
  with the hash check, chunked read, validation, scoring in one worker process per CPU,
  output and score log); wall time and the peak of the summed proportional set size
  (PSS) of the command and its workers;
- bare: ``bundle.pipeline.predict_proba`` in this process on the same rows
  already in memory (no I/O, no validation, no log), timed right after each end-to-end
  run so that both see the same state of a shared machine.

The *ratio* is the median over ``--repeat`` runs of each end-to-end time over
the bare time measured right after it (the machine is shared and noisy: each pair sees
the same state of it); the ratio of the medians is reported beside it. The *marginal
ratio* compares the time the larger file adds over the smaller one, so fixed costs
(interpreter start-up, imports, model load) cancel out. Results go to
benchmarks/results/scoring.json and a markdown table is printed. Targets (issue 5): end to end within 1.5x of the
bare call, and peak memory independent of the file size.

    python benchmarks/scoring.py                    # 1,000,000 and 2,000,000 rows, 1 repeat
    python benchmarks/scoring.py --rows 20000 --repeat 2
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
TARGET_RATIO = 1.5
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


def end_to_end(src: Path, out: Path, app: str, runs: Path, memory: bool = False) -> float:
    """Seconds of ``expkit score`` in its own process or, with ``memory``, the peak of the summed
    PSS (MB) of the command and its worker processes, sampled every SAMPLE_EVERY seconds. PSS,
    not RSS: forked workers share the model's pages with their parent. Sampling reads every
    page table, which slows the command down, so time and memory come from separate runs."""
    start = time.perf_counter()
    proc = subprocess.Popen([*EXPKIT, "score", str(src), "-o", str(out), "--app", app, "--runs-dir", str(runs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the smaller file (the larger has twice as many)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (the median is reported)")
    args = parser.parse_args(argv)
    import compileall

    import expkit
    from expkit.models.bundle import load_model

    # expkit's own bytecode, as a user's installation has it after its first run: an editable
    # install leaves it to the first import, and where PYTHONDONTWRITEBYTECODE is set (this
    # machine) every run of the command would compile expkit's modules again (~0.1 s)
    compileall.compile_dir(Path(expkit.__file__).parent, quiet=1)
    sizes = [args.rows, 2 * args.rows]
    results = []
    with tempfile.TemporaryDirectory(prefix="expkit-bench-scoring-") as tmp:
        tmp = Path(tmp)
        runs = tmp / "runs"
        runs.mkdir()
        for with_text in (True, False):
            variant = "with text" if with_text else "without text"
            app = "bench-text" if with_text else "bench-notext"
            model_dir = train(runs, app, with_text)
            start = time.perf_counter()
            bundle = load_model(model_dir)
            load_secs = time.perf_counter() - start
            model_mb = (Path(model_dir) / "model.skops").stat().st_size / 1e6
            for rows in sizes:
                src = tmp / f"leads-{app}-{rows}.csv"
                write_leads(src, rows, with_text)
                in_memory = bare_rows(bundle, src)
                e2e_times, bare_times = [], []
                for _ in range(args.repeat):  # interleaved, so both see the same machine
                    e2e_times.append(end_to_end(src, tmp / "scored.csv", app, runs))
                    bare_times.append(bare(bundle, in_memory))
                del in_memory
                secs, base = statistics.median(e2e_times), statistics.median(bare_times)
                pairs = [e / b for e, b in zip(e2e_times, bare_times)]
                peak = end_to_end(src, tmp / "scored.csv", app, runs, memory=True)
                results.append({
                    "variant": variant, "rows": rows, "file_mb": round(src.stat().st_size / 1e6, 1),
                    "end_to_end_s": round(secs, 3), "end_to_end_rows_per_s": round(rows / secs),
                    "bare_predict_proba_s": round(base, 3), "bare_rows_per_s": round(rows / base),
                    # each end-to-end run against the bare call right after it (same machine
                    # state), then the median; and the ratio of the two medians, for comparison
                    "ratio": round(statistics.median(pairs), 2),
                    "ratio_of_medians": round(secs / base, 2),
                    "pair_ratios": [round(r, 2) for r in pairs],
                    "peak_pss_mb": round(peak, 1),
                    "model_load_s": round(load_secs, 2), "model_mb": round(model_mb, 1),
                })
            # memory only, at twice the larger size: the larger file twice over (no bare call,
            # which would hold all rows in memory)
            double = tmp / f"leads-{app}-{4 * args.rows}.csv"
            with open(double, "wb") as out_file:
                for part in range(2):
                    with open(src, "rb") as in_file:
                        if part:
                            in_file.readline()  # the header once
                        shutil.copyfileobj(in_file, out_file)
            results.append({"variant": variant, "rows": 4 * args.rows, "memory_only": True,
                            "file_mb": round(double.stat().st_size / 1e6, 1),
                            "peak_pss_mb": round(end_to_end(double, tmp / "scored.csv", app, runs, memory=True), 1)})
            for f in tmp.glob("leads-*.csv"):
                f.unlink()
            small, large = [r for r in results if r["variant"] == variant and not r.get("memory_only")][:2]
            if small is not None:  # rows/s of the extra rows: start-up and model load cancel out
                extra = large["rows"] - small["rows"]
                d_e2e = large["end_to_end_s"] - small["end_to_end_s"]
                d_base = large["bare_predict_proba_s"] - small["bare_predict_proba_s"]
                if d_e2e > 0 and d_base > 0:  # not measurable when noise beats the extra work
                    large.update(marginal_end_to_end_rows_per_s=round(extra / d_e2e),
                                 marginal_bare_rows_per_s=round(extra / d_base),
                                 marginal_ratio=round(d_e2e / d_base, 2))
    report = {
        "benchmark": "scoring", "rows": args.rows, "repeat": args.repeat, "chunksize": CHUNK,
        "target_ratio": TARGET_RATIO, "machine": {"python": platform.python_version(),
                                                  "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results,
    }
    out = HERE / "results" / "scoring.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    print(f"\nresults -> {out.relative_to(HERE.parent)}")
    return report


def table(results) -> str:
    head = ("| model | rows | end to end (rows/s) | bare predict_proba (rows/s) | ratio | "
            "ratio of medians | pairs | marginal ratio | peak memory, PSS of all processes (MB) | "
            "model file (MB) / load (s) |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in results:
        if r.get("memory_only"):
            lines.append(f"| {r['variant']} | {r['rows']:,} | | | | | | | {r['peak_pss_mb']:,} | |")
            continue
        marginal = f"{r['marginal_ratio']}x" if "marginal_ratio" in r else ""
        pairs = f"{min(r['pair_ratios'])}-{max(r['pair_ratios'])}x"
        lines.append(f"| {r['variant']} | {r['rows']:,} | {r['end_to_end_rows_per_s']:,} | "
                     f"{r['bare_rows_per_s']:,} | {r['ratio']}x | {r['ratio_of_medians']}x | {pairs} | "
                     f"{marginal} | {r['peak_pss_mb']:,} | {r['model_mb']} / {r['model_load_s']} |")
    return "\n".join(lines) + (
        "\n\nratio: median over the repeats of end-to-end time / the bare call's time right after it "
        "(includes process start-up, imports and model load); ratio of medians: median end-to-end "
        "time / median bare time; pairs: the range of the per-repeat ratios; marginal ratio: the "
        "same for the rows the larger file adds (fixed costs cancel out).")


if __name__ == "__main__":
    main()
