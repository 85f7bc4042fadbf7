"""Beyond one machine: tenants, tenant runs and one tournament's trials on a Dask cluster.

Parts (each in fresh processes, so that memory is the part's own):

a. ``expkit.tournament(df, tenant="tenant", cluster="local:2")`` on demo leads split into
   N tenants (~150 rows each, ``n_trials=1``, logistic): tenants per minute and the
   client's peak RSS above what it held before the call, at two sizes, so that the
   memory per tenant (the slope) can be extrapolated to 1,000 tenants.
b. ``expkit run TEMPLATE --tenants-from FILE:COLUMN --cluster local:1`` and ``local:2``
   with a tiny template (a 2-trial tournament on 400 rows per tenant): tenants per minute
   and the speed-up of the second worker.
c. One tournament (demo leads, every family) with ``budget=SECONDS`` on ``local:1`` and
   ``local:2``: trials finished per second of search, and the speed-up.
d. ``expkit score`` of demo-lead CSVs of ``--score-rows`` and four times as many rows with
   a model that reads the free text: in the calling process (``--jobs 1``), on two local
   worker processes (``--jobs 2``) and on ``--cluster local:2``; the marginal rows/s (what
   the larger file adds, start-up cancelled), the speed-ups over one process, and the
   peak memory (summed PSS of the command's process tree) on the larger file.

Next to each speed-up: what a second busy process gains on this machine at that moment
(two pure-CPU loops against one, measured right before the part), the limit here. Parts
b and d also record the CPU seconds of the command's whole process tree (workers,
kernels, scheduler; from ``getrusage(RUSAGE_CHILDREN)``), so a shortfall can be split into
cores left idle (busy cores = CPU seconds / wall seconds, out of 2) and extra CPU spent
for the same work (CPU seconds with two workers over those with one).
Medians over ``--repeat``.

    python benchmarks/scale.py                 # 100 and 1,000 tenants, 100 tenant runs, 60 s, 1M/4M rows, 2 repeats
    python benchmarks/scale.py --quick         # a quick check
Writes benchmarks/results/scale.json (parts not run this time are kept from the last run).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
EXPKIT = [sys.executable, "-c", "from expkit.cli import main; main()"]
ROWS_PER_TENANT = 150


# -- the limit: a second busy process -------------------------------------------------
def _spin(seconds, out):
    end, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        for _ in range(10_000):
            n += 1
    out.put(n)


def busy_gain(seconds: float = 4.0) -> float:
    """Work done by two pure-CPU loops at once over the work of one, in the same time (one
    loop measured before and after the pair, so that a load change during the pair counts half)."""
    ctx = mp.get_context("spawn")

    def run(k):
        q = ctx.Queue()
        procs = [ctx.Process(target=_spin, args=(seconds, q)) for _ in range(k)]
        for p in procs:
            p.start()
        total = sum(q.get() for _ in procs)
        for p in procs:
            p.join()
        return total

    first, two, last = run(1), run(2), run(1)
    return two / ((first + last) / 2)


# -- a. many tenants from Python --------------------------------------------------------
class PeakRSS:
    """The peak resident memory of this process, sampled every 50 ms."""

    def __init__(self):
        import psutil

        self._proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self):
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def with_cpu(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` and the CPU seconds (user + system) its processes used: those
    of every descendant it started and waited for (``getrusage(RUSAGE_CHILDREN)``)."""
    def cpu():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before = cpu()
    value = fn(*args, **kwargs)
    return value, cpu() - before


def tenant_table(n_tenants: int):
    import expkit

    df = expkit.datasets.leads(n_rows=n_tenants * ROWS_PER_TENANT, n_tenants=10, seed=0)
    return df.assign(tenant=[f"t{i % n_tenants:04d}" for i in range(len(df))])


def child_tenants(n_tenants: int, cluster: str) -> dict:
    """Part a in this (fresh) process."""
    import psutil

    from expkit.models.tournament import tournament

    df = tenant_table(n_tenants)
    before = psutil.Process().memory_info().rss
    with PeakRSS() as mem:
        t = time.perf_counter()
        res = tournament(df, "converted", tenant="tenant", n_trials=1, families=["logistic"], cv=3,
                         cluster=cluster, progress=False)
        seconds = time.perf_counter() - t
    return {"tenants": int(df["tenant"].nunique()), "seconds": round(seconds, 2),
            "tenants_per_minute": round(60 * len(res.winners) / seconds, 1),
            "fallback": int(res.winners["fallback"].sum()),
            "results_on_disk_mb": round(sum(f.stat().st_size for f in res.results.folder.iterdir()) / 2**20, 1),
            "rss_before_mb": round(before / 2**20, 1), "peak_above_mb": round((mem.peak - before) / 2**20, 1)}


# -- b. tenant runs ------------------------------------------------------------------
TEMPLATE_CELLS = [
    ("tenant = None\nrun_dir = None", ["parameters"]),
    ("import zlib\nimport expkit\nrun = expkit.Run.current(run_dir)\n"
     "df = expkit.datasets.leads(n_rows=400, n_tenants=1, seed=zlib.crc32(tenant.encode()) % 1000)\n"
     "r = expkit.tournament(df.drop(columns=['tenant']), 'converted', n_trials=2, families=['logistic'],\n"
     "                      cv=3, n_jobs=1, progress=False)\n"
     "run.log_metrics({'winner': r.winner, 'metric_name': 'auroc', 'auroc': r.headline[1]})", []),
]


def tenant_runs(folder: Path, n_tenants: int, workers: int) -> float:
    """Seconds of ``expkit run --tenants-from`` on ``local:workers``."""
    import nbformat

    template = folder / "tiny_tournament.ipynb"
    if not template.exists():
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
        nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in TEMPLATE_CELLS]
        nbformat.write(nb, template)
        (folder / "tenants.csv").write_text("tenant\n" + "\n".join(f"t{i:03d}" for i in range(n_tenants)) + "\n")
    runs = folder / f"runs-{workers}-{time.time_ns()}"
    t = time.perf_counter()
    out = subprocess.run([*EXPKIT, "run", str(template), "--tenants-from", f"{folder / 'tenants.csv'}:tenant",
                          "--cluster", f"local:{workers}", "--runs-dir", str(runs)],
                         capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"expkit run failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds


# -- c. one tournament's trials ----------------------------------------------------------
def child_trials(seconds: float, cluster: str) -> dict:
    """Part c in this (fresh) process."""
    import expkit
    from expkit.models.tournament import tournament

    df = expkit.datasets.leads(n_rows=5000, n_tenants=3, seed=0).drop(columns=["tenant"])
    r = tournament(df, "converted", budget=seconds, cluster=cluster, progress=False)
    done = r.trials[r.trials["state"].isin(["COMPLETE", "PRUNED"])]
    complete = int((r.trials["state"] == "COMPLETE").sum())
    return {"cluster": cluster, "finished": len(done), "complete": complete,
            "search_s": round(r.timings["search"], 2), "trials_per_search_s": round(len(done) / r.timings["search"], 3),
            "workers": int(r.trials["worker"].nunique()) if "worker" in r.trials else 1,
            "winner": r.winner, "holdout": round(float(r.headline[1]), 4)}


# -- d. scoring ------------------------------------------------------------------------
SCORING = {"one process": ["--jobs", "1"], "2 local workers": ["--jobs", "2"],
           "LocalCluster(2)": ["--cluster", "local:2"], "LocalCluster(2), no trim": ["--cluster", "local:2"]}
#: Dask's default worker environment sets MALLOC_TRIM_THRESHOLD_=65536, which makes glibc
#: hand every large temporary back to the OS (and fault it in again). The last variant
#: unsets it the way a user would, in a Dask config file (DASK_CONFIG); expkit leaves
#: the workers' allocator to Dask's configuration.
NO_TRIM = "distributed:\n  nanny:\n    pre-spawn-environ:\n      MALLOC_TRIM_THRESHOLD_: null\n"


def scoring_part(rows: int, repeat: int) -> dict:
    """Part d: the marginal rows/s of each way of scoring, interleaved per repeat."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scoring as sc

    with tempfile.TemporaryDirectory(prefix="expkit-scale-score-") as tmp:
        tmp = Path(tmp)
        runs, out = tmp / "runs", tmp / "scored.csv"
        runs.mkdir()
        app = "bench-text"
        sc.train(runs, app, with_text=True)
        small, large = tmp / "small.csv", tmp / "large.csv"
        sc.write_leads(small, rows, with_text=True)
        sc.times_over(small, large, 4)
        (tmp / "dask").mkdir()
        (tmp / "dask" / "no-trim.yaml").write_text(NO_TRIM)
        envs = {"LocalCluster(2), no trim": {"DASK_CONFIG": str(tmp / "dask")}}
        reps = []
        for _ in range(repeat):
            gain = busy_gain()
            rates, cpu_per_mrow, cores = {}, {}, {}
            for name, how in SCORING.items():
                (t_small, cpu_small), (t_large, cpu_large) = (
                    with_cpu(sc.end_to_end, src, out, app, runs, how=how, env=envs.get(name)) for src in (small, large))
                rates[name] = round(3 * rows / (t_large - t_small))
                cpu_per_mrow[name] = round((cpu_large - cpu_small) / (3 * rows / 1e6), 2)
                cores[name] = round((cpu_large - cpu_small) / (t_large - t_small), 2)
            reps.append({"busy_gain": round(gain, 3), "marginal_rows_per_s": rates,
                         "marginal_cpu_s_per_million_rows": cpu_per_mrow, "busy_cores": cores})
            print(json.dumps(reps[-1]), flush=True)
        peaks = {name: round(sc.end_to_end(large, out, app, runs, memory=True, how=how, env=envs.get(name)), 1)
                 for name, how in SCORING.items()}
    rates = {name: statistics.median(r["marginal_rows_per_s"][name] for r in reps) for name in SCORING}
    speedups = {name: statistics.median(r["marginal_rows_per_s"][name] / r["marginal_rows_per_s"]["one process"]
                                        for r in reps) for name in list(SCORING)[1:]}
    gain = statistics.median(r["busy_gain"] for r in reps)
    return {"rows": rows, "large_rows": 4 * rows, "repeats": reps, "marginal_rows_per_s": rates,
            "speedup": {k: round(v, 3) for k, v in speedups.items()}, "busy_gain": gain,
            "share_of_limit": {k: share(v, gain) for k, v in speedups.items()},
            "busy_cores": {n: statistics.median(r["busy_cores"][n] for r in reps) for n in SCORING},
            "cpu_s_per_million_rows": {n: statistics.median(r["marginal_cpu_s_per_million_rows"][n] for r in reps)
                                       for n in SCORING},
            "peak_pss_mb_large": peaks}


def share(speedup: float, gain: float) -> float | None:
    """What the second worker gained as a share of what a second busy process gains here
    (None when a second process gains nothing measurable: the machine is saturated). A
    measured gain above 2 (the lone loop was slowed by something else) counts as 2: two
    processes cannot do more than twice the work of one."""
    gain = min(gain, 2.0)
    return None if gain - 1 < 0.05 else round((speedup - 1) / (gain - 1), 3)


def child(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tenants", default="100,1000", help="sizes of part a (two numbers)")
    ap.add_argument("--run-tenants", type=int, default=100, help="tenants of part b")
    ap.add_argument("--seconds", type=float, default=60.0, help="budget of part c")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--score-rows", type=int, default=1_000_000, help="rows of part d's small file (the large: 4x)")
    ap.add_argument("--parts", default="abcd")
    ap.add_argument("--quick", action="store_true", help="6,12 tenants, 4 runs, 20 s, 50,000 rows, 1 repeat")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_tenants(int(rest[0]), rest[1]) if kind == "a" else child_trials(float(rest[0]), rest[1])
        print(json.dumps(result))
        return
    if args.quick:
        args.tenants, args.run_tenants, args.seconds, args.score_rows, args.repeat = "6,12", 4, 20.0, 50_000, 1
    started = time.time()
    out = {"benchmark": "scale", "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                             "platform": platform.platform(), "load_at_start": os.getloadavg()},
           "settings": vars(args) | {"child": None}}

    if "a" in args.parts:
        sizes = [int(n) for n in args.tenants.split(",")]
        rows = [child("a", n, "local:2") for n in sizes for _ in range(args.repeat)]
        by = {n: [r for r in rows if r["tenants"] == n] for n in sizes}
        med = {n: {k: statistics.median(r[k] for r in rs) for k in ("tenants_per_minute", "peak_above_mb")}
               for n, rs in by.items()}
        slope = (med[sizes[-1]]["peak_above_mb"] - med[sizes[0]]["peak_above_mb"]) / max(sizes[-1] - sizes[0], 1)
        out["a_tenants_python"] = {"runs": rows, "median": med, "mb_per_tenant": round(slope, 3),
                                   "peak_above_mb_at_1000_extrapolated":
                                       round(med[sizes[-1]]["peak_above_mb"] + slope * (1000 - sizes[-1]), 1)}
        print(json.dumps(out["a_tenants_python"]["median"]), "MB/tenant", round(slope, 3), flush=True)

    if "b" in args.parts:
        with tempfile.TemporaryDirectory(prefix="expkit-scale-") as tmp:
            reps = []
            for _ in range(args.repeat):
                gain = busy_gain()
                (one, one_cpu), (two, two_cpu) = (with_cpu(tenant_runs, Path(tmp), args.run_tenants, w)
                                                  for w in (1, 2))
                reps.append({"busy_gain": round(gain, 3), "one_s": round(one, 2), "two_s": round(two, 2),
                             "speedup": round(one / two, 3), "one_cpu_s": round(one_cpu, 1),
                             "two_cpu_s": round(two_cpu, 1), "busy_cores": {"1": round(one_cpu / one, 2),
                                                                           "2": round(two_cpu / two, 2)},
                             "cpu_two_over_one": round(two_cpu / one_cpu, 3)})
        speed = statistics.median(r["speedup"] for r in reps)
        gain = statistics.median(r["busy_gain"] for r in reps)
        out["b_tenant_runs"] = {"tenants": args.run_tenants, "repeats": reps, "speedup": speed, "busy_gain": gain,
                                "share_of_limit": share(speed, gain),
                                "busy_cores": {w: statistics.median(r["busy_cores"][w] for r in reps) for w in "12"},
                                "cpu_two_over_one": statistics.median(r["cpu_two_over_one"] for r in reps),
                                "tenants_per_minute": {
                                    "1": round(60 * args.run_tenants / statistics.median(r["one_s"] for r in reps), 1),
                                    "2": round(60 * args.run_tenants / statistics.median(r["two_s"] for r in reps), 1)}}
        print(json.dumps(out["b_tenant_runs"]), flush=True)

    if "c" in args.parts:
        reps = []
        for _ in range(args.repeat):
            gain = busy_gain()
            one, two = child("c", args.seconds, "local:1"), child("c", args.seconds, "local:2")
            reps.append({"busy_gain": round(gain, 3), "one": one, "two": two,
                         "speedup": round(two["trials_per_search_s"] / one["trials_per_search_s"], 3)})
        speed = statistics.median(r["speedup"] for r in reps)
        gain = statistics.median(r["busy_gain"] for r in reps)
        out["c_one_tournament"] = {"seconds": args.seconds, "repeats": reps, "speedup": speed, "busy_gain": gain,
                                   "share_of_limit": share(speed, gain)}
        print(json.dumps({k: v for k, v in out["c_one_tournament"].items() if k != "repeats"}), flush=True)

    if "d" in args.parts:
        out["d_scoring"] = scoring_part(args.score_rows, args.repeat)
        print(json.dumps({k: v for k, v in out["d_scoring"].items() if k != "repeats"}), flush=True)

    out["machine"]["load_at_end"] = os.getloadavg()
    out["seconds"] = round(time.time() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    kept = {k: v for k, v in earlier.items() if k[:2] in {"a_", "b_", "c_", "d_"} and k[0] not in args.parts}
    RESULTS.write_text(json.dumps(out | kept, indent=1) + "\n")
    print(f"written {RESULTS} in {out['seconds']} s")


if __name__ == "__main__":
    main()
