"""kill -9 at random points of `expkit run`, `expkit promote model` and `expkit score`.

For each command the harness first times one uninterrupted call, then starts the command
``--kills`` times as a user would (a subprocess of the console entry point) and kills it
with SIGKILL after a random delay in [0, 1.2 x that time]; half of the kills hit the whole
process group (the command, its kernel or workers: a power cut, the OOM killer), half the
command alone (``kill -9 PID``). What each kill left behind is counted before the next
start of the same command, which must clean it up. After the last kill every command runs
once more to completion, then:

- nothing is ``created``/``running`` (run.json files and index rows);
- no temporary file (``*.tmp``) is left under the runs folder or the output folder;
- every run.json and notebook.ipynb is valid JSON;
- the index agrees with the files: runs (status per folder), registry (production
  pointers replayed from ``registry.jsonl``), score log (batch ids of ``scores/*.json``);
- every score-log batch's output file exists and is complete;
- ``expkit runs rebuild-index`` restores the same runs, production pointers and batches;
- no process of a killed command (kernel, workers) is still alive 15 s after the kill
  (those found are killed by the harness and reported).

The scoring commands use only the CLI's documented options, so the harness works for
whichever scoring engine is installed.

Usage: ``python benchmarks/faults.py [--kills 20] [--commands run,promote,score]``.
Writes benchmarks/results/faults.json (the exit code is 1 when a check fails).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny.ipynb"
RESULTS = ROOT / "benchmarks" / "results" / "faults.json"
EXPKIT = [sys.executable, "-c", "from expkit.cli import main; main()"]
#: Seconds a killed command's workers or kernel get to notice and exit.
SURVIVOR_WAIT = 15.0


# -- the project ----------------------------------------------------------------------------
def prepare(root: Path, work: Path, score_rows: int) -> list[str]:
    """A trained model promoted for app ``leads``, two more runs to promote, and a scoring
    input; returns the run ids that `promote` cycles through."""
    import expkit
    from expkit.datasets import leads
    from expkit.registry import Registry
    from expkit.runs import Run

    df = leads(800, n_tenants=1, seed=0).drop(columns=["title", "note"])
    result = expkit.tournament(df, "converted", n_trials=3, families=["logistic"], budget=30,
                               progress=False, n_jobs=1, seed=0)
    ids = []
    for i in range(3):
        run = Run.create("faults", runs_dir=root)
        run.start()
        run.save_model(result.best_pipeline, card=result.card())
        run.log_metrics(result.summary())
        run.finish("succeeded")
        ids.append(run.id)
    Registry(root).promote(ids[0], "leads")
    parts = [leads(20_000, n_tenants=1, seed=s) for s in range(max(1, score_rows // 20_000))]
    import pandas as pd

    pd.concat(parts).head(score_rows).to_csv(work / "input.csv", index=False)
    return ids


def command(kind: str, i: int, root: Path, work: Path, run_ids: list[str]) -> list[str]:
    """The i-th call of a command (they vary: tenants, which run, rollback)."""
    if kind == "run":
        tenants = ["--tenant", f"t{i % 3}"] if i % 4 else ["--tenants", f"a{i},b{i}"]
        return [*EXPKIT, "run", str(TINY), "-p", "sleep", "1.0", *tenants, "--runs-dir", str(root)]
    if kind == "promote":
        if i % 3 == 2:
            return [*EXPKIT, "promote", "model", "--rollback", "--app", "leads", "--runs-dir", str(root)]
        return [*EXPKIT, "promote", "model", run_ids[i % len(run_ids)], "--app", "leads", "--force",
                "--reason", f"fault {i}", "--runs-dir", str(root)]
    return [*EXPKIT, "score", str(work / "input.csv"), "-o", str(work / "out" / f"scored-{i}.csv"),
            "--app", "leads", "--runs-dir", str(root)]


def start(cmd: list[str], root: Path, capture: bool = False) -> subprocess.Popen:
    """The command in a session of its own (its process group holds what it starts). Output
    is captured only for calls that are not killed: a killed command's children could
    hold the pipes open."""
    env = {**os.environ, "EXPKIT_RUNS": str(root)}
    env.pop("EXPKIT_DB", None)
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=out, text=True, start_new_session=True)


def finish(cmd: list[str], root: Path) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    proc = start(cmd, root, capture=True)
    out, err = proc.communicate(timeout=600)
    return time.perf_counter() - began, subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def survivors(group: int, patience: float = SURVIVOR_WAIT) -> bool:
    """Whether processes of the killed command's group still run after ``patience``
    seconds; they are then killed (they are this harness's own, by group id)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


# -- what a kill left, and the checks ------------------------------------------------------------
def temporaries(*folders: Path) -> list[str]:
    return sorted(str(p) for f in folders if f.exists() for p in f.rglob("*") if p.name.endswith(".tmp"))


def unfinished(root: Path) -> list[str]:
    out = []
    for meta in root.glob("*/run.json"):
        try:
            status = json.loads(meta.read_text())["status"]
        except (OSError, ValueError, KeyError):
            out.append(f"{meta.parent.name}: unreadable run.json")
            continue
        if status in ("created", "running"):
            out.append(f"{meta.parent.name}: {status}")
    return out


def _index(root: Path) -> dict:
    """What the index holds, read with sqlite3 (no expkit code that could heal it first)."""
    with sqlite3.connect(root / "index.db") as con:
        tables = {t for (t,) in con.execute("select name from sqlite_master where type = 'table'")}

        def rows(sql, table):
            return con.execute(sql).fetchall() if table in tables else []

        runs = dict(rows("select run_id, status from runs", "runs"))
        prod = {(a, t): (v, r) for a, t, v, r in rows(
            "select app, tenant_key, version, run_id from model_versions where status = 'production'",
            "model_versions")}
        versions = len(rows("select id from model_versions", "model_versions"))
        batches = {b for (b,) in rows("select id from score_batches", "score_batches")}
        logged = rows("select id, rows, output from score_batches", "score_batches")
    con.close()
    return {"runs": runs, "production": prod, "versions": versions, "batches": batches, "logged": logged}


def _from_files(root: Path) -> dict:
    """The same, from the files alone."""
    runs = {}
    for meta in root.glob("*/run.json"):
        runs[meta.parent.name] = json.loads(meta.read_text())["status"]
    prod, versions = {}, 0
    journal = root / "registry.jsonl"
    for line in journal.read_text().splitlines() if journal.exists() else []:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        versions += 1
        prod[(event["app"], event.get("tenant") or "")] = (event["version"], event["run_id"])
    batches = {p.stem for p in (root / "scores").glob("*.json")} if (root / "scores").exists() else set()
    return {"runs": runs, "production": prod, "versions": versions, "batches": batches}


def checks(root: Path, work: Path, results: dict | None = None) -> dict:
    """Every invariant in the module docstring: {name: [problems]} (empty lists pass)."""
    problems: dict[str, list] = {}
    problems[f"no process outlives a killed command by {SURVIVOR_WAIT:g} s"] = [
        f"{kind} kill {i} (after {k['after_s']} s)" for kind, rec in (results or {}).items()
        for i, k in enumerate(rec["kills"]) if k["survivors_killed"]]
    problems["nothing running"] = unfinished(root)
    problems["no temporary files"] = temporaries(root, work)
    bad_json = []
    for path in [*root.glob("*/run.json"), *root.glob("*/notebook.ipynb")]:
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            bad_json.append(f"{path}: {exc}")
    problems["run.json and notebooks are valid JSON"] = bad_json
    index, files = _index(root), _from_files(root)
    problems["index agrees with the files"] = [
        f"{key}: index {index[key]!r} != files {files[key]!r}" for key in files if index[key] != files[key]]
    outputs = []
    for batch_id, rows, output in index["logged"]:
        if output is None:
            continue
        if not Path(output).is_file():
            outputs.append(f"batch {batch_id}: output {output} is missing")
        elif sum(1 for _ in open(output)) - 1 != rows:
            outputs.append(f"batch {batch_id}: output {output} does not hold {rows} rows")
    problems["every logged batch has its complete output"] = outputs
    before = _index(root)
    rebuilt = subprocess.run([*EXPKIT, "runs", "rebuild-index", "--runs-dir", str(root)], capture_output=True,
                             text=True, timeout=600)
    after = _index(root)
    problems["rebuild-index restores runs, production pointers and batches"] = (
        [f"rebuild-index failed: {rebuilt.stderr.strip()}"] if rebuilt.returncode else
        [f"{key}: before {before[key]!r} != after {after[key]!r}" for key in before if before[key] != after[key]])
    return problems


# -- the harness ------------------------------------------------------------------------------
def torture(kind: str, kills: int, root: Path, work: Path, run_ids: list[str], rng: random.Random) -> dict:
    """Start ``kind`` until it was killed ``kills`` times while still running (a start that
    finishes before its kill time counts as a call, not a kill), then once to completion."""
    seconds, done = finish(command(kind, 1000, root, work, run_ids), root)
    if done.returncode != 0:
        raise SystemExit(f"{kind} does not run cleanly: {done.stderr}")
    durations = [seconds]  # kill times are drawn within the calls' typical duration
    record = {"uninterrupted_s": round(seconds, 2), "kills": [], "finished_before_the_kill": 0}
    i = 0
    while len(record["kills"]) < kills and i < 3 * kills:
        delay = rng.uniform(0.05, 0.95 * statistics.median(durations))
        group = len(record["kills"]) % 2 == 0
        proc = start(command(kind, i, root, work, run_ids), root)
        i += 1
        began = time.perf_counter()
        while time.perf_counter() - began < delay and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is not None:  # it ended first: one more duration to draw from
            durations.append(time.perf_counter() - began)
            record["finished_before_the_kill"] += 1
            survivors(proc.pid, patience=2)
            continue
        try:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=120)
        left = survivors(proc.pid)  # the kernel or workers of a command killed alone must exit
        record["kills"].append({"after_s": round(delay, 2), "whole_group": group, "survivors_killed": left,
                                "tmp_left": len(temporaries(root, work)), "unfinished_left": len(unfinished(root))})
    _, last = finish(command(kind, 3 * i, root, work, run_ids), root)  # the next start cleans up
    record["next_start_exit"] = last.returncode
    if last.returncode != 0:
        record["next_start_error"] = last.stderr.strip().splitlines()[-1:]
    record["median_call_s"] = round(statistics.median(durations), 2)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per command (default 20)")
    parser.add_argument("--commands", default="run,promote,score", help="comma-separated, default all three")
    parser.add_argument("--score-rows", type=int, default=100_000, help="rows of the scoring input")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON ('-' for none)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    kinds = [k.strip() for k in args.commands.split(",") if k.strip()]
    base = Path(tempfile.mkdtemp(prefix="expkit-faults-"))
    root, work = base / "runs", base / "work"
    root.mkdir()
    work.mkdir()
    os.environ["EXPKIT_RUNS"] = str(root)
    began = time.perf_counter()
    try:
        run_ids = prepare(root, work, args.score_rows)
        results = {k: torture(k, args.kills, root, work, run_ids, rng) for k in kinds}
        problems = checks(root, work, results)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    failed = {k: v for k, v in problems.items() if v}
    for name, found in problems.items():
        print(f"{'FAIL' if found else 'ok  '} {name}" + (f": {found[:3]}" if found else ""))
    for kind, rec in results.items():
        left = [k for k in rec["kills"] if k["tmp_left"] or k["unfinished_left"]]
        print(f"{kind}: {len(rec['kills'])} kills while running (median call {rec['median_call_s']} s; "
              f"{rec['finished_before_the_kill']} more calls ended first); {len(left)} kills left temporary "
              f"files or unfinished runs for the next start to clean; next start exit {rec['next_start_exit']}")
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                      f"Python {platform.python_version()}",
           "seconds": round(time.perf_counter() - began, 1), "kills_per_command": args.kills,
           "commands": results, "checks": {k: (v[:10] if v else "ok") for k, v in problems.items()}}
    if str(args.out) != "-":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 1 if failed or any(r["next_start_exit"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
