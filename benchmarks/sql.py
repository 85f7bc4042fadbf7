"""Database sources and score tables on PostgreSQL (a throw-away server started here).

1. Writing scores: ``expkit.sql.TableWriter`` (COPY, one transaction) against pandas'
   ``to_sql`` default (executemany), same rows, same server: rows/s and the ratio.
2. Reading a large query: ``expkit.sql.read_chunks`` (server-side cursor, 100k rows a
   chunk) against ``pandas.read_sql`` of the whole query: seconds and the peak memory of
   a fresh process doing only that (``ru_maxrss``), and the ratio of the peaks.

Usage: ``python benchmarks/sql.py [--rows 200000] [--read-rows 1000000] [--repeat 3]``.
Writes benchmarks/results/sql.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sql.json"
sys.path.insert(0, str(ROOT))

from tests.postgres.server import PostgresServer  # noqa: E402


def scores(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    s = rng.random(n)
    return pd.DataFrame({"lead_id": [f"L-{i:09d}" for i in range(n)], "score": s,
                         "label": (s > 0.4).astype(int), "model_version": "3"})


def write_copy(url: str, df: pd.DataFrame, table: str) -> float:
    from expkit.sql import TableWriter

    start = time.perf_counter()
    writer = TableWriter(url, table, if_exists="replace")
    for i in range(0, len(df), 100_000):
        writer.write(df.iloc[i:i + 100_000])
    writer.commit()
    return time.perf_counter() - start


def write_executemany(url: str, df: pd.DataFrame, table: str) -> float:
    import sqlalchemy as sa

    from expkit.sql import engine_url

    engine = sa.create_engine(engine_url(url))
    start = time.perf_counter()
    with engine.begin() as conn:
        df.to_sql(table, conn, if_exists="replace", index=False, chunksize=100_000)
    seconds = time.perf_counter() - start
    engine.dispose()
    return seconds


READ = """
import resource, sys, time
import pandas as pd
mode, url = sys.argv[1], sys.argv[2]
start = time.perf_counter()
if mode == "chunks":
    from expkit.sql import read_chunks
    rows = sum(len(c) for c in read_chunks(url, "select * from big", 100_000))
else:
    import sqlalchemy as sa
    from expkit.sql import engine_url
    engine = sa.create_engine(engine_url(url))
    with engine.connect() as conn:
        rows = len(pd.read_sql(sa.text("select * from big"), conn))
print(rows, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def read(mode: str, url: str) -> tuple[int, float, float]:
    out = subprocess.run([sys.executable, "-c", READ, mode, url], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    rows, seconds, peak = out.stdout.split()
    return int(rows), float(seconds), float(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="score rows written")
    parser.add_argument("--read-rows", type=int, default=1_000_000, help="rows of the query read")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
              "load_before": os.getloadavg(), "rows": args.rows, "read_rows": args.read_rows}
    with PostgresServer.start() as pg:
        url = pg.create_database("bench").render_as_string(hide_password=False)
        df = scores(args.rows)
        copy, many = [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine state
            copy.append(write_copy(url, df, "s_copy"))
            many.append(write_executemany(url, df, "s_many"))
        result["write"] = {"copy_s": copy, "executemany_s": many,
                           "copy_rows_per_s": args.rows / statistics.median(copy),
                           "executemany_rows_per_s": args.rows / statistics.median(many),
                           "ratio_median": statistics.median(m / c for m, c in zip(many, copy))}
        write_copy(url, scores(args.read_rows, seed=1), "big")
        chunks, whole = [], []
        for _ in range(args.repeat):
            chunks.append(read("chunks", url))
            whole.append(read("whole", url))
        result["read"] = {"chunks": chunks, "whole": whole,
                          "chunks_peak_mb_median": statistics.median(c[2] for c in chunks),
                          "whole_peak_mb_median": statistics.median(w[2] for w in whole),
                          "chunks_s_median": statistics.median(c[1] for c in chunks),
                          "whole_s_median": statistics.median(w[1] for w in whole)}
    result["load_after"] = os.getloadavg()
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("write", "read")}, indent=2))
    w, r = result["write"], result["read"]
    print(f"write {args.rows:,} rows: COPY {w['copy_rows_per_s']:,.0f} rows/s, executemany "
          f"{w['executemany_rows_per_s']:,.0f} rows/s, ratio {w['ratio_median']:.1f}x")
    print(f"read {args.read_rows:,} rows: chunks {r['chunks_s_median']:.1f} s peak "
          f"{r['chunks_peak_mb_median']:.0f} MB, whole {r['whole_s_median']:.1f} s peak "
          f"{r['whole_peak_mb_median']:.0f} MB")


if __name__ == "__main__":
    main()
