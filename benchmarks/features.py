"""Feature engineering speed and memory: expkit's Transmogrifier against a
hand-written scikit-learn ColumnTransformer on the same demo leads.

Each measurement runs in a fresh subprocess (so peak memory is that run's
own): read the table, time ``fit_transform``, record the peak resident set
size above the size before the fit. Medians over ``--repeat`` runs.

    python benchmarks/features.py                 # 100,000 rows, 3 repeats
    python benchmarks/features.py --rows 5000 --repeat 1

Results go to benchmarks/results/features.json and a markdown table is
printed. Targets (issue 2): with text >= 10,000 rows/s on 2 cores; without
text no slower than the hand-written baseline.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEXT = ["title", "note"]
NUMERIC = ["spend", "web_visits"]
CATEGORICAL = ["tenant", "lead_source", "country", "email"]
TARGET_TEXT_ROWS_PER_S = 10_000


def baseline(with_text: bool):
    """The hand-written pipeline a data scientist would write: imputer +
    scaler for numbers, one-hot for categoricals, hashing for text."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    def text(col):
        return make_pipeline(FunctionTransformer(lambda d: d[col].fillna("").astype(str)),
                             HashingVectorizer(n_features=2 ** 12))

    def days(d):
        return ((d["created"] - d["created"].min()).dt.total_seconds() / 86400).to_frame()

    parts = [
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMERIC),
        ("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, max_categories=21),
         CATEGORICAL),
        ("date", make_pipeline(FunctionTransformer(days), StandardScaler()), ["created"]),
    ]
    if with_text:
        parts += [(f"text_{c}", text(c), [c]) for c in TEXT]
    return ColumnTransformer(parts, sparse_threshold=1.0)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(path: str, method: str, with_text: bool) -> dict:
    """One measurement (runs in its own process)."""
    import gc

    import pandas as pd

    df = pd.read_parquet(path)
    y = df.pop("converted")
    if not with_text:
        df = df.drop(columns=TEXT)
    if method == "expkit":
        from expkit.features import Transmogrifier
        est = Transmogrifier()
    else:
        est = baseline(with_text)
    gc.collect()
    before = _rss_mb()
    start = time.perf_counter()
    X = est.fit_transform(df, y)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    return {"seconds": seconds, "peak_mb": max(0.0, peak - before), "n_features": int(X.shape[1]),
            "nnz": int(X.nnz)}


def run(rows: int, repeat: int, out: Path) -> dict:
    import expkit.datasets

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "leads.parquet")
        expkit.datasets.leads(n_rows=rows, seed=0).to_parquet(path)
        for with_text in (True, False):
            for method in ("expkit", "sklearn ColumnTransformer"):
                runs = []
                for _ in range(repeat):
                    cmd = [sys.executable, __file__, "--worker", path, method, str(int(with_text))]
                    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                seconds = statistics.median(r["seconds"] for r in runs)
                results.append({
                    "method": method, "text": with_text, "rows": rows,
                    "median_seconds": round(seconds, 4),
                    "rows_per_second": round(rows / seconds),
                    "median_peak_mb": round(statistics.median(r["peak_mb"] for r in runs), 1),
                    "n_features": runs[0]["n_features"], "runs": runs,
                })
    by = {(r["method"], r["text"]): r for r in results}
    ratio_text = by[("expkit", True)]["rows_per_second"] / by[("sklearn ColumnTransformer", True)]["rows_per_second"]
    ratio_plain = by[("expkit", False)]["rows_per_second"] / by[("sklearn ColumnTransformer", False)]["rows_per_second"]
    report = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
                    "processor": platform.processor() or platform.machine()},
        "rows": rows, "repeat": repeat, "results": results,
        "speed_ratio_expkit_vs_baseline": {"with_text": round(ratio_text, 3),
                                           "without_text": round(ratio_plain, 3)},
        "targets": {
            "with_text_rows_per_second>=10000": by[("expkit", True)]["rows_per_second"] >= TARGET_TEXT_ROWS_PER_S,
            "without_text_not_slower_than_baseline": ratio_plain >= 1.0,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return report


def markdown(report: dict) -> str:
    lines = [f"fit_transform on {report['rows']:,} demo lead rows, median of {report['repeat']} "
             f"(cpus={report['machine']['cpus']}, load at start={report['machine']['load_average_at_start'][0]:.1f})",
             "", "| method | text | seconds | rows/s | peak MB | features |", "|---|---|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['method']} | {'yes' if r['text'] else 'no'} | {r['median_seconds']:.2f} | "
                     f"{r['rows_per_second']:,} | {r['median_peak_mb']:.0f} | {r['n_features']:,} |")
    ratio = report["speed_ratio_expkit_vs_baseline"]
    lines += ["", f"speed ratio expkit / baseline: with text {ratio['with_text']:.2f}x, "
                  f"without text {ratio['without_text']:.2f}x",
              "targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in report["targets"].items())]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "features.json")
    parser.add_argument("--worker", nargs=3, metavar=("PATH", "METHOD", "TEXT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        path, method, text = args.worker
        print(json.dumps(worker(path, method, bool(int(text)))))
        return
    print(markdown(run(args.rows, args.repeat, args.out)))


if __name__ == "__main__":
    main()
