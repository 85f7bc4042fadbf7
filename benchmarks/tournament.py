"""Tournament benchmark: expkit vs sklearn's HistGradientBoosting (and FLAML when installed).

For each dataset in ../shared/data and each budget, every contender trains on
the same training rows and is scored once on the same hold-out (hold-out
AUROC of the positive class):

* expkit: ``expkit.tournament(train, target, budget=B, holdout=0.1)`` (it
  keeps 10% of the training rows for its own evaluation), its
  ``best_pipeline`` scored on the benchmark hold-out;
* hgb: ``HistGradientBoostingClassifier()`` with default settings; text and
  id columns dropped, other non-numeric columns as pandas categories;
* flaml: ``flaml.AutoML(time_budget=B, metric="roc_auc")`` on the same frame
  as hgb, when flaml is installed.

Then the per-tenant run on the demo leads shows each tenant's winner.

    python benchmarks/tournament.py [--budgets 30 120] [--datasets titanic adult ...] [--quick]

Writes benchmarks/results/tournament.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

import expkit
from expkit.data import load, split
from expkit.schema import infer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EXPKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "results" / "tournament.json"
LEADS_LEAKS = ["Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index",
               "Asymmetrique Profile Index", "Asymmetrique Activity Score",
               "Asymmetrique Profile Score", "Last Activity", "Last Notable Activity"]
log = logging.getLogger("bench")


def _binary(df, target, positive):
    y = df[target].astype(str).str.strip().str.rstrip(".")
    return df.assign(**{target: (y == positive).astype(int)})


def datasets() -> dict:
    """name -> callable returning (train, test, target)."""
    def titanic():
        df = load(SHARED / "titanic" / "titanic.csv")
        return (*split(df, "Survived", 0.2, seed=0), "Survived")

    def leads():
        df = load(SHARED / "leads" / "leads.csv").drop(columns=LEADS_LEAKS)
        return (*split(df, "Converted", 0.2, seed=0), "Converted")

    def adult():
        train = _binary(load(SHARED / "adult" / "adult_train.csv"), "income", ">50K")
        test = _binary(load(SHARED / "adult" / "adult_test.csv"), "income", ">50K")
        return train, test, "income"

    def bank():
        df = _binary(load(SHARED / "bank_marketing" / "bank-full.csv").drop(columns=["duration"]), "y", "yes")
        return (*split(df, "y", 0.2, seed=0), "y")

    def sms():
        df = _binary(load(SHARED / "sms_spam" / "sms_spam.csv"), "label", "spam")
        return (*split(df, "label", 0.2, seed=0), "label")

    def reviews():
        df = load(SHARED / "clothing_reviews" / "reviews.csv").drop(columns=["Rating"])
        df = df.drop(columns=[c for c in df.columns if str(c).startswith("Unnamed") or c == ""])
        return (*split(df, "Recommended IND", 0.2, seed=0), "Recommended IND")

    return {"titanic": titanic, "leads": leads, "adult": adult, "bank_marketing": bank,
            "sms_spam": sms, "clothing_reviews": reviews}


def hgb_frame(df: pd.DataFrame, schema) -> pd.DataFrame:
    """Text and id columns dropped; other non-numeric columns as categories (HGB native)."""
    keep = [c for c in df.columns if schema.types.get(c) not in ("text", "id", "email", "url", "phone")]
    out = df[keep].copy()
    for c in keep:
        if not pd.api.types.is_numeric_dtype(out[c]):
            top = out[c].value_counts().index[:250]
            out[c] = pd.Categorical(out[c].where(out[c].isin(top)))
    return out


def run_hgb(train, test, target, schema):
    Xtr, Xte = hgb_frame(train.drop(columns=[target]), schema), hgb_frame(test.drop(columns=[target]), schema)
    for c in Xtr.columns:  # same categories on both sides
        if isinstance(Xtr[c].dtype, pd.CategoricalDtype):
            cats = Xtr[c].cat.categories  # values unseen in training become missing, as HGB treats them
            Xte[c] = pd.Categorical(Xte[c].astype(object).where(Xte[c].astype(object).isin(cats)), categories=cats)
    if Xtr.shape[1] == 0:  # text only (SMS spam): HGB without text is a constant predictor
        return {"auroc": 0.5, "seconds": 0.0, "note": "no non-text columns"}
    t = time.monotonic()
    model = HistGradientBoostingClassifier(random_state=0).fit(Xtr, train[target])
    return {"auroc": roc_auc_score(test[target], model.predict_proba(Xte)[:, 1]),
            "seconds": time.monotonic() - t}


def run_flaml(train, test, target, schema, budget):
    try:
        from flaml import AutoML
    except ImportError:
        return None
    Xtr, Xte = hgb_frame(train.drop(columns=[target]), schema), hgb_frame(test.drop(columns=[target]), schema)
    t = time.monotonic()
    automl = AutoML()
    automl.fit(Xtr, train[target], task="classification", metric="roc_auc", time_budget=budget,
               n_jobs=-1, verbose=0, seed=0)
    return {"auroc": roc_auc_score(test[target], automl.predict_proba(Xte)[:, 1]),
            "seconds": time.monotonic() - t, "winner": automl.best_estimator}


def run_expkit(train, test, target, budget):
    t = time.monotonic()
    r = expkit.tournament(train, target, budget=budget, holdout=0.1, progress=False, n_jobs=-1, seed=0)
    scores = r.best_pipeline.predict_proba(test.drop(columns=[target]))[:, 1]
    return {"auroc": roc_auc_score(test[target], scores), "seconds": time.monotonic() - t,
            "winner": r.winner, "cv_auroc": r.cv_score, "trials": len(r.trials),
            "search_seconds": r.timings["search"], "refit_seconds": r.timings["refit"],
            "above_chance": r.above_chance, "sampled": r.sampling["sampled"]}


def run_tenants(budget, n_rows):
    leads = expkit.datasets.leads(n_rows=n_rows, n_tenants=3, seed=0)
    t = time.monotonic()
    res = expkit.tournament(leads, "converted", tenant="tenant", budget=budget, progress=False, seed=0)
    w = res.winners.drop(columns=["metric"]).assign(seconds=time.monotonic() - t)
    return json.loads(w.to_json(orient="records"))


def machine() -> dict:
    import sklearn
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "expkit": expkit.__version__,
            "scikit-learn": sklearn.__version__}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[30, 120])
    ap.add_argument("--datasets", nargs="+", default=None, help="subset of " + ", ".join(datasets()))
    ap.add_argument("--quick", action="store_true",
                    help="10 s budget, training rows capped at 3,000, leads tenants on 1,500 rows")
    ap.add_argument("--no-tenants", action="store_true", help="skip the per-tenant leads run")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not SHARED.is_dir():
        sys.exit(f"shared datasets not found at {SHARED} (set EXPKIT_SHARED_DATA)")
    budgets = [10.0] if args.quick else args.budgets
    chosen = args.datasets or list(datasets())
    unknown = set(chosen) - set(datasets())
    if unknown:
        sys.exit(f"unknown datasets: {sorted(unknown)}; known: {', '.join(datasets())}")
    rows = []
    for name in chosen:
        train, test, target = datasets()[name]()
        if args.quick and len(train) > 3000:
            train = train.sample(3000, random_state=0)
        schema = infer(train, target=target)
        hgb = run_hgb(train, test, target, schema)
        for budget in budgets:
            print(f"{name}: budget {budget:g}s ...", file=sys.stderr, flush=True)
            ex = run_expkit(train, test, target, budget)
            fl = run_flaml(train, test, target, schema, budget)
            rows.append({"dataset": name, "budget": budget, "train_rows": len(train),
                         "test_rows": len(test), "expkit": ex, "hgb": hgb, "flaml": fl})
    tenants = None if args.no_tenants else run_tenants(budgets[-1], 1500 if args.quick else 4000)
    result = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "quick": args.quick, "rows": rows, "tenants": tenants}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    print(markdown(result))


def markdown(result) -> str:
    lines = ["| dataset | budget s | train rows | expkit AUROC (winner) | HGB default | FLAML | expkit ≥ both |",
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ex, hgb, fl = r["expkit"], r["hgb"], r["flaml"]
        best_other = max(hgb["auroc"], fl["auroc"] if fl else -1)
        flaml = f"{fl['auroc']:.4f}" if fl else "not installed"
        lines.append(f"| {r['dataset']} | {r['budget']:g} | {r['train_rows']} | {ex['auroc']:.4f} "
                     f"({ex['winner']}, {ex['trials']} trials) | {hgb['auroc']:.4f} | "
                     f"{flaml} | "
                     f"{'yes' if ex['auroc'] >= best_other else 'no'} |")
    if result.get("tenants"):
        lines += ["", "| tenant | rows | winner | hold-out AUROC | above chance | fallback |",
                  "|---|---|---|---|---|---|"]
        for t in result["tenants"]:
            lines.append(f"| {t['tenant']} | {t['rows']} | {t['winner']} | {t['holdout']:.4f} | "
                         f"{t['above_chance']} | {t['fallback']} |")
    m = result["machine"]
    lines += ["", f"Machine: {m['processor']}, {m['cpus']} CPUs, {m['platform']}, Python {m['python']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
