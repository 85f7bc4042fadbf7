"""Train (Run) -> promote -> score a file -> feedback -> monitor, for real, on the demo leads.

One tiny tournament per test module (logistic family, 3 trials) trained in
process into a Run and promoted with the registry. The free-text columns are
left out of training to keep the model small and the module fast; scoring of
text fields is exercised by benchmarks/scoring.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import expkit
from expkit.cli import cli
from expkit.datasets import leads
from expkit.registry import Registry
from expkit.runs import Run
from expkit.scoring import scorelog

pytestmark = pytest.mark.slow

TEXT = ["title", "note"]


def promoted(result, root: Path, app: str) -> None:
    """A tournament's model saved in a finished run of ``root`` and promoted for ``app``."""
    run = Run.create(f"{app}-e2e", runs_dir=root)
    run.start()
    run.save_model(result.best_pipeline, card=result.card())
    run.log_metrics(result.summary())
    run.finish("succeeded")
    Registry(root).promote(run.id, app)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A runs folder with one promoted model for app 'leads' (all tenants)."""
    root = tmp_path_factory.mktemp("e2e") / "runs"
    root.mkdir()
    old = os.environ.get("EXPKIT_RUNS")
    os.environ["EXPKIT_RUNS"] = str(root)
    try:
        df = leads(800, n_tenants=1, seed=0).drop(columns=TEXT)
        result = expkit.tournament(df, "converted", n_trials=3, families=["logistic"], budget=30,
                                   progress=False, n_jobs=1, seed=0)
        promoted(result, root, "leads")
    finally:
        if old is None:
            os.environ.pop("EXPKIT_RUNS", None)
        else:
            os.environ["EXPKIT_RUNS"] = old
    return root


@pytest.fixture
def runs(trained, monkeypatch):
    monkeypatch.setenv("EXPKIT_RUNS", str(trained))
    monkeypatch.delenv("EXPKIT_DB", raising=False)
    return trained


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def batch_file(path: Path, seed: int, spend_scale: float = 1.0) -> pd.DataFrame:
    df = leads(700, n_tenants=1, seed=seed)
    df["spend"] = df["spend"] * spend_scale
    df.to_csv(path, index=False)
    return df


def test_train_promote_score_feedback_monitor(runs, tmp_path):
    # score an unshifted batch through the CLI (tenant acme falls back to the app-wide model)
    fresh = batch_file(tmp_path / "fresh.csv", seed=11)
    out = tmp_path / "scored.csv"
    r = invoke("score", tmp_path / "fresh.csv", "-o", out, "--app", "leads", "--tenant", "acme",
               "--keep", "tenant,country", "--chunksize", 250)
    assert r.exit_code == 0, r.output
    assert "scored 700 rows" in r.stdout
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["lead_id", "tenant", "country", "score", "label", "model_version"]
    assert scored["lead_id"].tolist() == fresh["lead_id"].tolist() and (scored["model_version"] == 1).all()
    card = json.loads((Path(Registry(runs).production("leads")["model_dir"]) / "card.json").read_text())
    assert (scored["label"] == (scored["score"] >= card["threshold"]).astype(int)).all()
    # same scores as the bundle in process
    bundle = expkit.load_model(Registry(runs).production("leads")["model_dir"])
    assert scored["score"].to_numpy() == pytest.approx(bundle.score(fresh), abs=1e-9)
    logged = scorelog.batches("leads").iloc[-1]
    assert logged["tenant"] == "acme" and logged["model_tenant"] is None and logged["rows"] == 700

    # feedback -> live AUROC
    fresh[["lead_id", "converted"]].to_csv(tmp_path / "fb.csv", index=False)
    r = invoke("feedback", tmp_path / "fb.csv", "--app", "leads", "--tenant", "acme",
               "--id-column", "lead_id", "--label-column", "converted")
    assert r.exit_code == 0, r.output
    assert "loaded 700 outcomes" in r.stdout

    res = expkit.monitor(app="leads")
    m = res.models.iloc[0]
    assert m["rows_scored"] == 700 and m["feedback_rows"] == 700
    assert 0.6 < m["live_auroc"] <= 1 and abs(m["live_auroc"] - m["eval_auroc"]) < 0.15
    assert res.drift.query("level == 'alert'").empty  # an unshifted batch is not flagged
    assert m["max_field_psi"] < 0.25 and m["score_psi"] < 0.25
    assert res.kpi("models in production") == 1 and res.kpi("models trained this month") == 1
    r = invoke("monitor", "--app", "leads", "--check", "--threshold", "auroc_drop=0.15")
    assert r.exit_code == 0, r.output

    # a shifted batch is flagged, and --check fails
    batch_file(tmp_path / "shifted.csv", seed=12, spend_scale=10)
    assert invoke("score", tmp_path / "shifted.csv", "-o", tmp_path / "s.parquet", "--app", "leads",
                  "--tenant", "acme").exit_code == 0
    res = expkit.monitor(app="leads")
    alerts = res.alerts[(res.alerts["check"] == "drift") & (res.alerts["level"] == "alert")]
    assert "spend" in set(alerts["field"]) and res.models.iloc[0]["worst_field"] == "spend"
    assert not res.ok
    html = tmp_path / "dash" / "monitor.html"
    r = invoke("monitor", "--app", "leads", "--check", "--html", html)
    assert r.exit_code == 1 and "ALERT" in r.stdout and "spend" in r.stdout
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 7 and "<script" not in page
    # the batch history keeps the first batch clean and the second flagged
    hist = res.batches.set_index("id")
    assert list(hist["worst_field"].iloc[-1:]) == ["spend"] and hist["max_field_psi"].iloc[-2] < 0.25


def state(root: Path) -> tuple:
    reg = Registry(root).list()
    files = sorted(p.name for p in (root / "scores").iterdir()) if (root / "scores").exists() else []
    return (scorelog.count_batches(root), scorelog.count_feedback(root), len(reg),
            reg[["app", "tenant", "version", "status"]].to_json(), tuple(files))


def test_bad_inputs_are_one_line_errors_and_change_nothing(runs, tmp_path):
    df = batch_file(tmp_path / "ok.csv", seed=21)
    expkit.score(df.head(50), app="leads", tenant="acme")  # so that feedback has scored ids to check
    before = state(runs)

    def fails(*args, match):
        r = invoke(*args)
        assert r.exit_code != 0, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], r.stderr
        assert "Traceback" not in r.output

    out = tmp_path / "out.csv"
    fails("score", tmp_path / "ok.csv", "-o", out, "--app", "nope", match="no production model")
    df.drop(columns=["spend", "country"]).to_csv(tmp_path / "missing.csv", index=False)
    fails("score", tmp_path / "missing.csv", "-o", out, "--app", "leads", match="country, spend")
    fails("score", tmp_path / "ok.csv", "-o", out, "--app", "leads", "--keep", "notes",
          match="no column 'notes' to keep")
    df.head(0).to_csv(tmp_path / "empty.csv", index=False)
    fails("score", tmp_path / "empty.csv", "-o", out, "--app", "leads", match="no data rows")
    bad = df.astype({"web_visits": object})
    bad.loc[600, "web_visits"] = "many"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    fails("score", tmp_path / "bad.csv", "-o", out, "--app", "leads", "--chunksize", 100,
          match="'web_visits'")
    pd.DataFrame({"lead_id": ["L-never"], "converted": [1]}).to_csv(tmp_path / "fb.csv", index=False)
    fails("feedback", tmp_path / "fb.csv", "--app", "leads", "--tenant", "acme", "--id-column", "lead_id",
          "--label-column", "converted", match="never scored")

    # a tampered model file is refused
    model_file = Path(Registry(runs).production("leads")["model_dir"]) / "model.skops"
    saved = tmp_path / "model.skops.orig"
    shutil.copy2(model_file, saved)
    try:
        with open(model_file, "ab") as fh:
            fh.write(b"tampered")
        fails("score", tmp_path / "ok.csv", "-o", out, "--app", "leads", match="model.skops (changed)")
    finally:
        shutil.copy2(saved, model_file)

    assert state(runs) == before and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _session_processes(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid`` (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def _session_ends(sid: int, wait: float = 10.0) -> list[int]:
    """The processes of session ``sid`` still alive after up to ``wait`` seconds (workers
    of a local cluster exit on their own once the command is gone, within a moment)."""
    import time

    deadline = time.monotonic() + wait
    while (alive := _session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_while_scoring_leaves_nothing_behind(runs, tmp_path, how):
    """Ctrl-C in a terminal (SIGINT to the whole process group) or SIGTERM to the command
    alone (a scheduler's timeout) while `expkit score` is writing: exit 130 / 143 with one
    line, no output, no temporary files, no score-log record, and none of its processes
    (worker processes) left running."""
    import signal
    import subprocess
    import sys
    import time

    pd.concat([leads(20_000, n_tenants=1, seed=s) for s in range(10)]).to_csv(tmp_path / "big.csv", index=False)
    out = tmp_path / "out.csv"
    before = state(runs)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from expkit.cli import main; main()", "score", str(tmp_path / "big.csv"),
         "-o", str(out), "--app", "leads", "--chunksize", "2000", "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "EXPKIT_RUNS": str(runs)})
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.csv.*.tmp")):  # the output is being written
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"never started writing: {proc.communicate(timeout=30)}")
        time.sleep(0.02)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    code, line = (130, "error: interrupted") if how == "ctrl-c" else (143, "error: terminated")
    assert proc.returncode == code and err.strip().splitlines() == [line], err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert state(runs) == before
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _session_processes(proc.pid)


def test_formulas_in_csv_output_are_neutralised_unless_raw_text(runs, tmp_path):
    df = batch_file(tmp_path / "in.csv", seed=31).head(4)
    df["note"] = ["=cmd|' /C calc'!A0", "@SUM(A1)", "-12.5", "plain"]
    df.to_csv(tmp_path / "in.csv", index=False)
    for flag, out in ((), "safe.csv"), (("--raw-text",), "raw.csv"):
        r = invoke("score", tmp_path / "in.csv", "-o", tmp_path / out, "--app", "leads", "--keep", "note", *flag)
        assert r.exit_code == 0, r.output
    assert pd.read_csv(tmp_path / "safe.csv")["note"].tolist() == ["'=cmd|' /C calc'!A0", "'@SUM(A1)", "-12.5", "plain"]
    assert pd.read_csv(tmp_path / "raw.csv")["note"].tolist() == df["note"].tolist()
    assert invoke("score", tmp_path / "in.csv", "-o", tmp_path / "p.parquet", "--app", "leads",
                  "--keep", "note").exit_code == 0
    assert pd.read_parquet(tmp_path / "p.parquet")["note"].tolist() == df["note"].tolist()  # Parquet untouched


def test_run_and_app_names_are_checked(runs, tmp_path):
    batch_file(tmp_path / "in.csv", seed=32)
    run_id = Path(Registry(runs).production("leads")["model_dir"]).parent.name
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(runs / run_id, elsewhere / run_id)
    before = state(runs)
    for args, match in [(("--run", f"../{elsewhere.name}/{run_id}"), "would escape"),
                        (("--run", str(elsewhere / run_id)), "would escape"),
                        (("--run", "no-such-run"), "not in the runs folder"),
                        (("--app", "../x"), "app '../x' would escape")]:
        full = ["--app", "leads", *args] if args[0] == "--run" else list(args)
        r = invoke("score", tmp_path / "in.csv", "-o", tmp_path / "o.csv", *full)
        assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1].startswith("error:"), r.output
        assert match in r.stderr, r.stderr
    assert state(runs) == before and not (tmp_path / "o.csv").exists()
    r = invoke("score", tmp_path / "in.csv", "-o", tmp_path / "o.csv", "--app", "leads", "--run", run_id)
    assert r.exit_code == 0, r.output


def _score_command(src, out, runs, *extra):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", "from expkit.cli import main; main()", "score", str(src), "-o", str(out),
         "--app", "leads", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, env={**os.environ, "EXPKIT_RUNS": str(runs)})


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_leftovers_of_a_killed_score_are_cleaned_at_the_next_start(runs, tmp_path):
    """kill -9 of `expkit score` while it writes leaves its temporary files (nothing can
    remove them then); the next `expkit score` removes them, its own output intact."""
    import signal
    import time

    pd.concat([leads(20_000, n_tenants=1, seed=s) for s in range(6)]).to_csv(tmp_path / "big.csv", index=False)
    proc = _score_command(tmp_path / "big.csv", tmp_path / "out.csv", runs, "--chunksize", "2000", "--jobs", "2")
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.csv.*.tmp")) or not list((runs / "scores").glob(".*.tmp")):
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"never started writing: {proc.communicate(timeout=30)}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while _session_processes(proc.pid) and time.monotonic() < deadline:  # workers see their parent gone
        time.sleep(0.1)
    assert not _session_processes(proc.pid)
    left = [*tmp_path.glob(".*.tmp"), *(runs / "scores").glob(".*.tmp")]
    assert left and not (tmp_path / "out.csv").exists()
    batch_file(tmp_path / "small.csv", seed=33)
    r = invoke("score", tmp_path / "small.csv", "-o", tmp_path / "out.csv", "--app", "leads")
    assert r.exit_code == 0, r.output
    assert not [p for p in left if p.exists()] and len(pd.read_csv(tmp_path / "out.csv")) == 700


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_local_cluster_scores_like_this_process_and_leaves_no_process(runs, tmp_path):
    pytest.importorskip("distributed")
    df = pd.concat([leads(3000, n_tenants=1, seed=s) for s in range(2)])
    df.to_csv(tmp_path / "in.csv", index=False)
    proc = _score_command(tmp_path / "in.csv", tmp_path / "cluster.csv", runs, "--chunksize", "1000",
                          "--cluster", "local:2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert not _session_ends(proc.pid)
    assert invoke("score", tmp_path / "in.csv", "-o", tmp_path / "local.csv", "--app", "leads", "--jobs", "1",
                  "--chunksize", "1000").exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cluster.csv"), pd.read_csv(tmp_path / "local.csv"))


def test_a_forest_trained_on_two_cores_scores_on_a_local_cluster_without_warnings(runs, tmp_path):
    """A forest keeps the tournament's n_jobs=2; in a Dask worker joblib would fall back to
    one job with a six-line warning per part. Worker processes predict in one thread (the
    parallelism is across parts), so the command prints its one line and nothing else."""
    pytest.importorskip("distributed")
    df = leads(800, n_tenants=1, seed=1).drop(columns=TEXT)
    result = expkit.tournament(df, "converted", n_trials=2, families=["random_forest"], budget=30,
                               progress=False, n_jobs=2, seed=0)
    assert "n_jobs=2" in repr(result.best_pipeline)  # the forest (or ensemble of forests) keeps it
    promoted(result, runs, "forest")
    leads(3000, n_tenants=1, seed=2).to_csv(tmp_path / "in.csv", index=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from expkit.cli import main; main()", "score", str(tmp_path / "in.csv"),
         "-o", str(tmp_path / "out.csv"), "--app", "forest", "--chunksize", "1000", "--cluster", "local:2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "EXPKIT_RUNS": str(runs)})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert err.strip() == "" and out.strip().startswith("scored 3,000 rows"), (out, err)
