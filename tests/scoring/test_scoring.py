"""Scoring a file or a DataFrame: output, score log, atomicity, worker processes, errors.

The model is a real saved pipeline (tests/scoring/conftest.py) used through
``run="run-x"``, so worker processes load it from its file like a production model; the
registry path is covered by test_scoring_e2e.py.
"""
import threading

import numpy as np
import pandas as pd
import psutil
import pyarrow.csv
import pytest

from expkit import drift, scoring
from expkit.errors import ConfigError, DataError, ModelError, SchemaError, ScoringError
from expkit.scoring import scorelog

from .conftest import RUN, expected_scores, leads


def state(runs_dir):
    """What a failed batch must leave unchanged."""
    folder = runs_dir / scorelog.SCORES_FOLDER
    return scorelog.count_batches(runs_dir), sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def leftovers(*folders):
    return [p.name for f in folders if f.exists() for p in f.iterdir() if p.name.endswith(".tmp")]


def no_workers_left():
    """No worker process under this test process and no expkit thread left (the resource
    trackers of multiprocessing and loky, one per process for its whole life, aside)."""
    kids = [p for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]
    threads = [t.name for t in threading.enumerate() if t.name.startswith("expkit-")]
    return kids == [] and threads == []


def write(df, path):
    {"csv": lambda: df.to_csv(path, index=False), "tsv": lambda: df.to_csv(path, sep="\t", index=False),
     "parquet": lambda: df.to_parquet(path, row_group_size=90),
     "jsonl": lambda: df.to_json(path, orient="records", lines=True)}[path.suffix[1:]]()
    return path


def test_score_file_matches_in_memory(model, runs_dir, tmp_path):
    df = leads(1000, seed=1)
    df["extra"] = "ignored"
    src, dst = write(df, tmp_path / "in.csv"), tmp_path / "out.csv"
    record = scoring.score_file(src, dst, app="leads", run=RUN, chunksize=97)
    out = pd.read_csv(dst)
    assert list(out.columns) == ["lead_id", "score", "label", "model_version"]
    assert len(out) == 1000 and out["lead_id"].tolist() == df["lead_id"].tolist()
    expected = expected_scores(model, df)
    np.testing.assert_allclose(out["score"], expected, rtol=1e-6)
    assert (out["label"] == (expected >= 0.4).astype(int)).all()
    assert (out["model_version"] == f"run:{RUN}").all()
    # one score-log record with bucket counts, merged field summaries and the ids file
    logged = scorelog.batches("leads").iloc[0]
    assert scorelog.count_batches(runs_dir) == 1 and record["id"] == logged["id"]
    assert logged["rows"] == 1000 and logged["score_counts"] == drift.score_buckets(expected, normalize=False)
    assert logged["fields"]["spend"]["fill_rate"] == pytest.approx(df["spend"].notna().mean())
    assert logged["version"] == f"run:{RUN}" and logged["run_id"] == RUN
    ids = scorelog.scored_ids(scorelog.batches("leads"))
    assert ids["id"].tolist() == df["lead_id"].tolist()
    np.testing.assert_allclose(ids["score"], expected, rtol=1e-6)
    assert not leftovers(tmp_path, runs_dir / "scores")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_two_workers_give_the_same_batch_as_one(model, runs_dir, tmp_path, fmt):
    """Parts read by 2 worker processes come back in input order with the same rows, scores,
    counts and field summaries as in this process; no worker process is left afterwards."""
    df = leads(3000, seed=8)
    src = write(df, tmp_path / f"in.{fmt}")
    one = scoring.score_file(src, tmp_path / "one.parquet", app="leads", run=RUN, chunksize=200, keep=["visits"])
    two = scoring.score_file(src, tmp_path / "two.parquet", app="leads", run=RUN, chunksize=200, keep=["visits"],
                             n_jobs=2)
    a, b = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert b["lead_id"].tolist() == df["lead_id"].tolist()
    np.testing.assert_allclose(b["score"], expected_scores(model, df), rtol=1e-9)
    assert one["rows"] == two["rows"] == 3000 and one["score_counts"] == two["score_counts"]
    assert one["fields"] == two["fields"]
    # a Parquet dataset from the workers' own part files: one file per part, in input order
    scoring.score_file(src, str(tmp_path / "ds") + "/", app="leads", run=RUN, chunksize=200, keep=["visits"],
                       n_jobs=2)
    files = sorted((tmp_path / "ds").glob("part-*.parquet"))
    assert len(files) >= 3 and [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(len(files))]
    pd.testing.assert_frame_equal(pd.concat(map(pd.read_parquet, files), ignore_index=True), a)
    assert no_workers_left() and not leftovers(tmp_path, runs_dir / "scores")


def test_parquet_and_jsonl_inputs_parquet_output_keep_and_reasons(model, runs_dir, tmp_path):
    df = leads(300, seed=2)
    write(df, tmp_path / "in.parquet")
    write(df, tmp_path / "in.jsonl")
    scoring.score_file(tmp_path / "in.parquet", tmp_path / "a.parquet", app="leads", run=RUN, chunksize=64,
                       keep=["visits"], reasons=2)
    a = pd.read_parquet(tmp_path / "a.parquet")
    assert list(a.columns) == ["lead_id", "visits", "score", "label", "model_version",
                               "reason_1", "impact_1", "reason_2", "impact_2"]
    assert a["visits"].tolist() == df["visits"].tolist()
    scoring.score_file(tmp_path / "in.jsonl", tmp_path / "b.csv", app="leads", run=RUN, chunksize=50)
    b = pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6)
    assert scorelog.count_batches(runs_dir) == 2


def test_compressed_and_json_table_inputs_and_a_parquet_dataset(model, runs_dir, tmp_path):
    """Files that cannot be split are read by the calling process; a folder output is a
    Parquet dataset of one file per part."""
    df = leads(500, seed=3)
    df.to_csv(tmp_path / "in.csv.gz", index=False)
    df.to_json(tmp_path / "in.json", orient="records")  # one JSON table, as expkit.load reads it
    scoring.score_file(tmp_path / "in.csv.gz", tmp_path / "gz.csv", app="leads", run=RUN, chunksize=100, n_jobs=2)
    scoring.score_file(tmp_path / "in.json", str(tmp_path / "ds") + "/", app="leads", run=RUN, chunksize=100)
    gz, ds = pd.read_csv(tmp_path / "gz.csv"), pd.read_parquet(tmp_path / "ds")
    assert len(list((tmp_path / "ds").glob("part-*.parquet"))) == 5
    assert gz["lead_id"].tolist() == ds["lead_id"].tolist() == df["lead_id"].tolist()
    np.testing.assert_allclose(gz["score"], expected_scores(model, df), rtol=1e-6)


def test_tsv_output_is_tab_separated_and_reads_back_as_its_input_would(model, runs_dir, tmp_path):
    df = leads(120, seed=5)
    src = write(df, tmp_path / "in.tsv")
    scoring.score_file(src, tmp_path / "out.tsv", app="leads", run=RUN, chunksize=50)
    header = (tmp_path / "out.tsv").read_text().splitlines()[0]
    assert header.split("\t") == ['"lead_id"', '"score"', '"label"', '"model_version"']
    out = pd.read_csv(tmp_path / "out.tsv", sep="\t")
    assert out["lead_id"].tolist() == df["lead_id"].tolist()
    np.testing.assert_allclose(out["score"], expected_scores(model, df), rtol=1e-6)


def test_score_dataframe_logs_one_batch(model, runs_dir):
    df = leads(200, seed=3)
    out = scoring.score(df, app="leads", run=RUN, keep=["source"])
    assert list(out.columns) == ["lead_id", "source", "score", "label", "model_version"]
    np.testing.assert_allclose(out["score"], expected_scores(model, df))
    assert scorelog.count_batches(runs_dir) == 1
    scoring.score(df, app="leads", run=RUN, log_batch=False)
    assert scorelog.count_batches(runs_dir) == 1


def test_unseen_categories_empties_and_safe_coercion(model, runs_dir):
    df = leads(60, seed=4)
    df["source"] = ["tv", "", None] * 20  # unseen and empty categories
    df["spend"] = df["spend"].map(lambda v: "" if np.isnan(v) else f" {v:.2f} ")  # numbers as text
    df["visits"] = df["visits"].astype(float)  # 3.0 for an int column
    out = scoring.score(df, app="leads", run=RUN)
    assert out["score"].between(0, 1).all() and len(out) == 60
    assert scorelog.batches("leads").iloc[0]["fields"]["source"]["unseen_share"] == 1.0


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_bad_value_in_a_late_part_leaves_nothing(model, runs_dir, tmp_path, n_jobs):
    df = leads(3000, seed=5).astype({"spend": object})
    df.loc[2950, "spend"] = "twelve"
    src, dst = write(df, tmp_path / "in.csv"), tmp_path / "out.csv"
    before = state(runs_dir)
    with pytest.raises(SchemaError, match=r"'spend'.*'twelve'"):  # the last part
        scoring.score_file(src, dst, app="leads", run=RUN, chunksize=100, n_jobs=n_jobs)
    assert state(runs_dir) == before and not dst.exists() and not leftovers(tmp_path, runs_dir / "scores")
    assert no_workers_left()


def test_a_full_disk_mid_batch_is_one_clear_error_and_leaves_nothing(model, runs_dir, tmp_path, monkeypatch):
    real, calls = pyarrow.csv.write_csv, []

    def disk_full(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(pyarrow.csv, "write_csv", disk_full)
    src, dst = write(leads(4000, seed=4), tmp_path / "in.csv"), tmp_path / "out.csv"
    before = state(runs_dir)
    with pytest.raises(ScoringError, match=r"cannot write '.*out\.csv': No space left on device"):
        scoring.score_file(src, dst, app="leads", run=RUN, chunksize=100)
    assert state(runs_dir) == before and not dst.exists() and not leftovers(tmp_path, runs_dir / "scores")


def test_workers_write_their_parts_and_a_full_disk_joining_them_leaves_nothing(model, runs_dir, tmp_path,
                                                                                monkeypatch):
    """With worker processes the scored rows do not come back: each worker writes its part
    to a staging folder and this process joins the files in input order. A full disk while
    joining is the same clear error, and the staging folder goes with the rest."""
    import shutil

    real, joined = shutil.copyfileobj, []

    def copy(src, dst, *args):
        joined.append(src.name)
        if len(joined) == 3:
            raise OSError(28, "No space left on device")
        return real(src, dst, *args)

    df = leads(4000, seed=4)
    src, dst = write(df, tmp_path / "in.csv"), tmp_path / "out.csv"
    scoring.score_file(src, tmp_path / "one.csv", app="leads", run=RUN, chunksize=500)
    monkeypatch.setattr(shutil, "copyfileobj", copy)
    before = state(runs_dir)
    with pytest.raises(ScoringError, match=r"cannot write '.*out\.csv': No space left on device"):
        scoring.score_file(src, dst, app="leads", run=RUN, chunksize=500, n_jobs=2)
    assert all(".out.csv.parts." in name for name in joined), joined  # parts were written by the workers
    assert state(runs_dir) == before and not dst.exists() and not leftovers(tmp_path, runs_dir / "scores")
    monkeypatch.setattr(shutil, "copyfileobj", real)
    scoring.score_file(src, dst, app="leads", run=RUN, chunksize=500, n_jobs=2)
    assert dst.read_bytes() == (tmp_path / "one.csv").read_bytes()
    assert no_workers_left() and not leftovers(tmp_path, runs_dir / "scores")


def test_a_worker_that_cannot_write_its_part_names_the_output(tmp_path):
    import pyarrow as pa

    from expkit.scoring.writer import Spill

    table = pa.table({"id": ["a"], "score": [0.5]})
    spill = Spill(str(tmp_path / "gone"), "csv", str(tmp_path / "out.csv"))
    with pytest.raises(ScoringError, match=r"cannot write '.*out\.csv' \(in a worker\): .*No such file"):
        spill.write(0, table, table)


def test_an_output_folder_that_cannot_be_written_is_one_clear_error(model, runs_dir, tmp_path):
    src = write(leads(50), tmp_path / "in.csv")
    (tmp_path / "file").write_text("not a folder")
    before = state(runs_dir)
    with pytest.raises(ScoringError, match=r"cannot create the output folder '.*file'"):
        scoring.score_file(src, tmp_path / "file" / "out.csv", app="leads", run=RUN)
    assert state(runs_dir) == before


def test_a_model_failing_to_load_in_the_workers_is_one_clear_error(model, runs_dir, tmp_path):
    """A model file whose digest matches but that is not a skops archive: the workers
    refuse it, the batch leaves nothing."""
    import hashlib
    import json

    folder = runs_dir / RUN / "model"
    (folder / "model.skops").write_bytes(b"not a zip archive")
    card = json.loads((folder / "card.json").read_text())
    card["sha256"] = hashlib.sha256(b"not a zip archive").hexdigest()
    (folder / "card.json").write_text(json.dumps(card))
    src, dst = write(leads(3000), tmp_path / "in.csv"), tmp_path / "out.csv"
    before = state(runs_dir)
    with pytest.raises(ModelError, match="cannot load"):
        scoring.score_file(src, dst, app="leads", run=RUN, chunksize=100, n_jobs=2)
    assert state(runs_dir) == before and not dst.exists() and no_workers_left()


def test_missing_columns_listed_and_nothing_written(model, runs_dir, tmp_path):
    src, dst = write(leads(50).drop(columns=["spend", "visits"]), tmp_path / "in.csv"), tmp_path / "out.csv"
    dst.write_text("previous output\n")
    before = state(runs_dir)
    with pytest.raises(SchemaError, match="missing 2 column.*spend, visits"):
        scoring.score_file(src, dst, app="leads", run=RUN)
    with pytest.raises(SchemaError, match="nope"):
        scoring.score(leads(50), app="leads", run=RUN, keep=["nope"])
    assert state(runs_dir) == before and dst.read_text() == "previous output\n"


def test_empty_inputs(model, runs_dir, tmp_path):
    before = state(runs_dir)
    header_only = write(leads(5).head(0), tmp_path / "h.csv")
    with pytest.raises(DataError, match="no data rows"):
        scoring.score_file(header_only, tmp_path / "o.csv", app="leads", run=RUN)
    leads(5).head(0).to_parquet(tmp_path / "h.parquet")
    with pytest.raises(ScoringError, match="no rows"):
        scoring.score_file(tmp_path / "h.parquet", tmp_path / "o.csv", app="leads", run=RUN)
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        scoring.score_file(tmp_path / "zero.csv", tmp_path / "o.csv", app="leads", run=RUN)
    with pytest.raises(ScoringError, match="no rows"):
        scoring.score(leads(5).head(0), app="leads", run=RUN)
    with pytest.raises(DataError, match="unsupported"):
        scoring.score_file(header_only, tmp_path / "o.xlsx", app="leads", run=RUN)
    assert state(runs_dir) == before and not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("run", ["../elsewhere/run-x", "/abs/run-x", "..", ".hidden", "run x", "no-such-run"])
def test_run_must_be_a_run_id_of_the_runs_folder(model, runs_dir, tmp_path, run):
    (tmp_path / "elsewhere").mkdir()
    src = write(leads(20), tmp_path / "in.csv")
    with pytest.raises(ConfigError, match="run"):
        scoring.score_file(src, tmp_path / "o.csv", app="leads", run=run)
    with pytest.raises(ConfigError, match="run"):
        scoring.score(leads(20), app="leads", run=run)
    assert state(runs_dir) == (0, [])


@pytest.mark.parametrize("app", ["../x", "a/b", "", "x" * 101, "tab\there"])
def test_app_names_follow_the_tenant_rules(model, runs_dir, tmp_path, app):
    with pytest.raises(ConfigError, match="app"):
        scoring.score(leads(20), app=app, run=RUN)
    assert state(runs_dir) == (0, [])


def test_feedback(model, runs_dir, tmp_path):
    with pytest.raises(ScoringError, match="nothing was scored"):
        scoring.feedback(pd.DataFrame({"id": ["x"], "label": [1]}), app="leads")
    df = leads(100, seed=6)
    scoring.score(df, app="leads", run=RUN)
    fb = df[["lead_id", "converted"]].head(40)
    fb.to_csv(tmp_path / "fb.csv", index=False)
    assert scoring.feedback(tmp_path / "fb.csv", app="leads", id_column="lead_id",
                            label_column="converted") == 40
    # unknown ids: one clear error, nothing stored
    bad = pd.DataFrame({"id": ["S6-00001", "never-1", "never-2"], "label": ["yes", "no", "yes"]})
    with pytest.raises(ScoringError, match="2 of 3 ids .* never scored.*'never-1'"):
        scoring.feedback(bad, app="leads")
    with pytest.raises(ScoringError, match="must be 0/1"):
        scoring.feedback(pd.DataFrame({"id": ["S6-00001"], "label": ["maybe"]}), app="leads")
    assert scorelog.count_feedback(runs_dir) == 40
    assert scoring.feedback(bad.head(1), app="leads") == 1
    stored = scorelog.feedback("leads")
    assert len(stored) == 40 and stored.set_index("id").loc["S6-00001", "label"] == 1


def test_workers_load_only_bytes_that_match_the_checked_digest(model, runs_dir):
    """A worker reads the model file itself: bytes that differ from the digest the calling
    process verified (the file replaced in between) are refused, not scored."""
    from expkit.scoring import scorer, worker

    checked = scorer.load_scorer("leads", run=RUN, lazy=True)
    ref = worker.ModelRef.of(checked)
    assert worker.scorer_of(ref).model_sha256 == ref.sha256
    changed = worker.ModelRef(**{**ref.__dict__, "sha256": "0" * 64})
    with pytest.raises(ModelError, match="expected 000000000000"):
        worker.scorer_of(changed)
    with pytest.raises(ModelError, match="expected 000000000000"):
        worker.scorer_of(changed, (runs_dir / RUN / "model" / "model.skops").read_bytes())


def test_types_trusted_in_this_process_are_trusted_by_the_workers(runs_dir, fitted, tmp_path):
    """A model that needs ``trust_types(...)`` loads in worker processes too (fresh
    interpreters: the calling process hands them the names with the model)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from expkit.features import Transmogrifier
    from expkit.models.bundle import save_model, trust_types

    from .conftest import schema
    from .custom_step import Passthrough

    train = fitted[1]
    pipeline = make_pipeline(Transmogrifier(schema()), Passthrough(), LogisticRegression())
    pipeline.fit(train.drop(columns="converted"), train["converted"])
    card = {"task": "binary", "classes": [0, 1], "positive_class": 1, "threshold": 0.5,
            "id_columns": ["lead_id"], "target": "converted", "schema": schema().to_dict()}
    with pytest.raises(ModelError, match="Passthrough"):
        save_model(pipeline, runs_dir / "run-custom" / "model", card=card)
    trust_types("tests.scoring.custom_step.Passthrough")
    save_model(pipeline, runs_dir / "run-custom" / "model", card=card)
    src = write(leads(600, seed=4), tmp_path / "in.csv")
    record = scoring.score_file(src, tmp_path / "out.csv", app="leads", run="run-custom", chunksize=200,
                                n_jobs=2)
    assert record["rows"] == 600 and no_workers_left()


def test_a_model_without_id_columns_numbers_rows_across_parts_and_workers(runs_dir, tmp_path):
    """Without id columns each row is named by its number in the input: parts scored by two
    workers come back (the workers cannot number them) and are numbered on, 0 to n-1."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from expkit.features import Transmogrifier
    from expkit.models.bundle import save_model
    from expkit.schema import Schema

    from .conftest import FEATURES

    s = Schema.coerce({"spend": "numeric", "source": "categorical", "visits": "integer", "converted": "binary"})
    s.target = "converted"
    train = leads(600)
    pipeline = make_pipeline(Transmogrifier(s), LogisticRegression()).fit(train[FEATURES], train["converted"])
    card = {"task": "binary", "classes": [0, 1], "positive_class": 1, "threshold": 0.5, "id_columns": [],
            "target": "converted", "schema": s.to_dict()}
    save_model(pipeline, runs_dir / "run-noid" / "model", card=card)
    df = leads(1500, seed=11)
    src = write(df.drop(columns=["lead_id"]), tmp_path / "in.csv")
    scoring.score_file(src, tmp_path / "one.csv", app="leads", run="run-noid", chunksize=200)
    record = scoring.score_file(src, tmp_path / "two.csv", app="leads", run="run-noid", chunksize=200, n_jobs=2)
    one, two = pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    assert two["row"].tolist() == list(range(1500)) and record["rows"] == 1500
    pd.testing.assert_frame_equal(one, two)
    np.testing.assert_allclose(two["score"], pipeline.predict_proba(df[FEATURES])[:, 1], rtol=1e-6)
    ids = scorelog.scored_ids(scorelog.batches("leads", runs_dir=runs_dir).iloc[[0]])
    assert ids["id"].tolist() == [str(i) for i in range(1500)]
    assert no_workers_left() and not leftovers(tmp_path, runs_dir / "scores")
