"""Scoring I/O, validation, atomicity and feedback with a stand-in model bundle.

The stand-in follows the ModelBundle contract (pipeline, card, schema, score,
reasons); the registry and skops loading are covered by test_scoring_e2e.py.
"""
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from expkit import drift, scoring
from expkit.errors import DataError, SchemaError, ScoringError
from expkit.schema import Schema
from expkit.scoring import batch, reader, scorelog, scorer
from expkit.scoring import reader as chunks

SCHEMA = Schema.coerce({"lead_id": "id", "spend": "numeric", "source": "categorical",
                        "visits": "integer", "converted": "binary"})
SCHEMA.target = "converted"
for name, dtype in [("lead_id", "str"), ("spend", "float64"), ("source", "str"), ("visits", "int64")]:
    SCHEMA.columns[name].dtype = dtype


def leads(n=500, seed=0, spend_scale=1.0):
    rng = np.random.default_rng(seed)
    spend = rng.lognormal(3, 1, n) * spend_scale
    spend[rng.random(n) < 0.1] = np.nan
    df = pd.DataFrame({"lead_id": [f"S{seed}-{i:05d}" for i in range(n)], "spend": spend,
                       "source": rng.choice(["web", "ads", "event"], n), "visits": rng.poisson(3, n)})
    df["converted"] = (rng.random(n) < 1 / (1 + np.exp(-(np.log1p(np.nan_to_num(spend)) - 3)))).astype(int)
    return df


class StubBundle:
    """Minimal stand-in for expkit.models.bundle.ModelBundle."""

    def load(self):
        return self

    def __init__(self):
        train = leads(800)
        X = train[SCHEMA.features]
        pre = ColumnTransformer([
            ("num", SimpleImputer(), ["spend", "visits"]),
            ("cat", make_pipeline(SimpleImputer(strategy="constant", fill_value="?"),
                                  OneHotEncoder(handle_unknown="ignore")), ["source"])])
        self.pipeline = make_pipeline(pre, LogisticRegression()).fit(X, train["converted"])
        self.schema = SCHEMA
        self.classes = [0, 1]
        self.threshold = 0.4
        self.card = {"task": "binary", "classes": [0, 1], "positive_class": 1, "threshold": 0.4,
                     "id_columns": ["lead_id"], "metrics": {"auroc": 0.7},
                     "reference": drift.reference_profile(X, SCHEMA, scores=self.score(X))}

    def predict_proba(self, df):
        return self.pipeline.predict_proba(df)

    def score(self, df):
        return self.pipeline.predict_proba(df)[:, 1]

    def reasons(self, df, k=3):
        cols = {"score": self.score(df)}
        for i in range(k):
            cols[f"reason_{i + 1}"], cols[f"impact_{i + 1}"] = f"r{i + 1}", 0.1 / (i + 1)
        return pd.DataFrame(cols, index=df.index)


@pytest.fixture(scope="module")
def bundle():
    return StubBundle()


@pytest.fixture
def model(runs_dir, bundle, monkeypatch):
    def fake_load(app, tenant=None, run=None, runs_dir=None, reasons=0, keep=(), lazy=False):
        return scorer.Scorer(bundle if lazy else bundle.load(), version="3", run_id="run-x",
                             reasons=reasons, keep=keep)

    monkeypatch.setattr(batch, "load_scorer", fake_load)
    return bundle


def state(runs_dir):
    """What a failed batch must leave unchanged."""
    folder = runs_dir / scorelog.SCORES_FOLDER
    return scorelog.count_batches(runs_dir), sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_score_file_chunked_matches_in_memory(model, runs_dir, tmp_path):
    df = leads(1000, seed=1)
    df["extra"] = "ignored"
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    df.to_csv(src, index=False)
    record = scoring.score_file(src, dst, app="leads", chunksize=97)
    out = pd.read_csv(dst)
    assert list(out.columns) == ["lead_id", "score", "label", "model_version"]
    assert len(out) == 1000 and out["lead_id"].tolist() == df["lead_id"].tolist()
    expected = model.score(df[SCHEMA.features])
    np.testing.assert_allclose(out["score"], expected, rtol=1e-6)
    assert (out["label"] == (expected >= 0.4).astype(int)).all()
    assert (out["model_version"] == 3).all()
    # one score-log record with bucket counts, merged field summaries and the ids file
    assert scorelog.count_batches(runs_dir) == 1
    logged = scorelog.batches("leads").iloc[0]
    assert logged["rows"] == 1000 and sum(logged["score_counts"]) == 1000
    assert logged["score_counts"] == drift.score_buckets(expected, normalize=False)
    assert logged["fields"]["spend"]["fill_rate"] == pytest.approx(df["spend"].notna().mean())
    assert logged["version"] == "3" and logged["run_id"] == "run-x" and record["id"] == logged["id"]
    ids = scorelog.scored_ids(scorelog.batches("leads"))
    assert len(ids) == 1000 and set(ids["id"]) == set(df["lead_id"])
    assert not list(tmp_path.glob(".*.tmp")) and not list((runs_dir / "scores").glob("*.tmp"))


def test_parquet_and_jsonl_inputs_parquet_output_keep_and_reasons(model, runs_dir, tmp_path):
    df = leads(300, seed=2)
    df.to_parquet(tmp_path / "in.parquet")
    df.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    scoring.score_file(tmp_path / "in.parquet", tmp_path / "a.parquet", app="leads", chunksize=64,
                       keep=["visits"], reasons=2)
    a = pd.read_parquet(tmp_path / "a.parquet")
    assert list(a.columns) == ["lead_id", "visits", "score", "label", "model_version",
                                "reason_1", "impact_1", "reason_2", "impact_2"]
    assert a["visits"].tolist() == df["visits"].tolist()
    scoring.score_file(tmp_path / "in.jsonl", tmp_path / "b.csv", app="leads", chunksize=50)
    b = pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6)
    assert scorelog.count_batches(runs_dir) == 2


def test_tsv_output_is_tab_separated_and_reads_back_as_its_input_would(model, runs_dir, tmp_path):
    df = leads(120, seed=5)
    df.to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    scoring.score_file(tmp_path / "in.tsv", tmp_path / "out.tsv", app="leads", chunksize=50)
    header = (tmp_path / "out.tsv").read_text().splitlines()[0]
    assert header.split("\t") == ['"lead_id"', '"score"', '"label"', '"model_version"']
    out = pd.read_csv(tmp_path / "out.tsv", sep="\t")
    assert out["lead_id"].tolist() == df["lead_id"].tolist()
    np.testing.assert_allclose(out["score"], model.score(df[SCHEMA.features]), rtol=1e-6)


def test_score_dataframe_logs_one_batch(model, runs_dir):
    df = leads(200, seed=3)
    out = scoring.score(df, app="leads", keep=["source"])
    assert len(out) == 200 and {"lead_id", "source", "score", "label", "model_version"} <= set(out.columns)
    assert scorelog.count_batches(runs_dir) == 1
    scoring.score(df, app="leads", log_batch=False)
    assert scorelog.count_batches(runs_dir) == 1


def test_unseen_categories_empties_and_safe_coercion(model, runs_dir, tmp_path):
    df = leads(60, seed=4)
    df["source"] = ["tv", "", None] * 20  # unseen and empty categories
    df["spend"] = df["spend"].map(lambda v: "" if np.isnan(v) else f" {v:.2f} ")  # numbers as text
    df["visits"] = df["visits"].astype(float)  # 3.0 for an int column
    out = scoring.score(df, app="leads")
    assert out["score"].between(0, 1).all() and len(out) == 60
    fields = scorelog.batches("leads").iloc[0]["fields"]
    assert fields["source"]["unseen_share"] == 1.0


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_wrong_type_names_column_and_value(model, runs_dir, tmp_path, n_jobs):
    df = leads(300, seed=5).astype({"spend": object})
    df.loc[250, "spend"] = "twelve"
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    df.to_csv(src, index=False)
    before = state(runs_dir)
    with pytest.raises(SchemaError, match=r"'spend'.*'twelve'"):  # fails in the third chunk
        scoring.score_file(src, dst, app="leads", chunksize=100, n_jobs=n_jobs)
    assert state(runs_dir) == before and not dst.exists() and not list(tmp_path.glob(".*.tmp"))
    import multiprocessing
    import threading

    assert not [t.name for t in threading.enumerate() if t.name.startswith("expkit-")]  # reader, writer
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_worker_processes_give_the_same_batch(model, runs_dir, tmp_path, fmt):
    """Chunks scored by 2 forked workers come back in order with the same scores, counts and
    field summaries as in this process (CSV and Parquet go as arrow tables, JSON lines as pandas)."""
    df = leads(1000, seed=8)
    src = tmp_path / f"in.{fmt}"
    {"csv": lambda: df.to_csv(src, index=False), "parquet": lambda: df.to_parquet(src),
     "jsonl": lambda: df.to_json(src, orient="records", lines=True)}[fmt]()
    one = scoring.score_file(src, tmp_path / "one.parquet", app="leads", chunksize=90, n_jobs=1)
    two = scoring.score_file(src, tmp_path / "two.parquet", app="leads", chunksize=90, n_jobs=2)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet"))
    assert pd.read_parquet(tmp_path / "two.parquet")["lead_id"].tolist() == df["lead_id"].tolist()
    assert one["rows"] == two["rows"] == 1000 and one["score_counts"] == two["score_counts"]
    assert one["fields"] == two["fields"]
    assert scorelog.count_batches(runs_dir) == 2
    assert len(scorelog.scored_ids(scorelog.batches("leads"))) == 1000  # the same ids, twice


def test_an_output_failure_mid_batch_leaves_nothing(model, runs_dir, tmp_path, monkeypatch):
    """The disk fills up while chunks are scored: one clear error, nothing written, and no
    process left behind."""
    import multiprocessing

    real, calls = reader.Writer.write, []

    def disk_full(self, df):
        calls.append(1)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        real(self, df)

    monkeypatch.setattr(reader.Writer, "write", disk_full)
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    leads(4000, seed=4).to_csv(src, index=False)  # 40 chunks: most still to score at the failure
    before = state(runs_dir)
    with pytest.raises(OSError, match="No space"):
        scoring.score_file(src, dst, app="leads", chunksize=100, n_jobs=2)
    assert state(runs_dir) == before and not dst.exists() and not list(tmp_path.glob(".*.tmp"))
    assert not multiprocessing.active_children()


def test_a_model_failing_to_load_is_one_clear_error(model, runs_dir, tmp_path, monkeypatch):
    import multiprocessing

    from expkit.errors import ModelError

    def refuse(self):
        raise ModelError("model file 'x' contains untrusted types: ['evil.Type']")

    monkeypatch.setattr(StubBundle, "load", refuse)
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    leads(300).to_csv(src, index=False)
    before = state(runs_dir)
    with pytest.raises(ModelError, match="untrusted types"):
        scoring.score_file(src, dst, app="leads", chunksize=100, n_jobs=2)
    assert state(runs_dir) == before and not dst.exists() and not list(tmp_path.glob(".*.tmp"))
    assert not multiprocessing.active_children()


def test_missing_columns_listed_and_nothing_written(model, runs_dir, tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    leads(50).drop(columns=["spend", "visits"]).to_csv(src, index=False)
    dst.write_text("previous output\n")
    before = state(runs_dir)
    with pytest.raises(SchemaError, match="missing 2 column.*spend, visits"):
        scoring.score_file(src, dst, app="leads")
    with pytest.raises(SchemaError, match="nope"):
        scoring.score(leads(50), app="leads", keep=["nope"])
    assert state(runs_dir) == before and dst.read_text() == "previous output\n"


def test_empty_inputs(model, runs_dir, tmp_path):
    before = state(runs_dir)
    header_only = tmp_path / "h.csv"
    leads(5).head(0).to_csv(header_only, index=False)
    with pytest.raises(DataError, match="no data rows"):
        scoring.score_file(header_only, tmp_path / "o.csv", app="leads")
    leads(5).head(0).to_parquet(tmp_path / "h.parquet")
    with pytest.raises(ScoringError, match="no rows"):
        scoring.score_file(tmp_path / "h.parquet", tmp_path / "o.csv", app="leads")
    (tmp_path / "zero.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        scoring.score_file(tmp_path / "zero.csv", tmp_path / "o.csv", app="leads")
    with pytest.raises(ScoringError, match="no rows"):
        scoring.score(leads(5).head(0), app="leads")
    with pytest.raises(DataError, match="unsupported"):
        scoring.score_file(header_only, tmp_path / "o.xlsx", app="leads")
    assert state(runs_dir) == before and not (tmp_path / "o.csv").exists()


def test_feedback(model, runs_dir, tmp_path):
    with pytest.raises(ScoringError, match="nothing was scored"):
        scoring.feedback(pd.DataFrame({"id": ["x"], "label": [1]}), app="leads")
    df = leads(100, seed=6)
    scoring.score(df, app="leads")
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


def test_chunks_are_bounded(tmp_path):
    df = leads(1000)
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_parquet(tmp_path / "a.parquet")
    for name in ("a.csv", "a.parquet"):
        sizes = [len(c) for c in chunks.iter_chunks(tmp_path / name, ["lead_id", "spend"], 300, ["lead_id"])]
        assert sizes == [300, 300, 300, 100]


TRICKY_HEADER = "lead_id,spend,source,visits,note\n"
TRICKY_ROWS = (
    '007,12.5,web,3,"two\nlines"\n'
    "008,NA,,,None\n"
    "009, 12 ,ads,3.0,<NA>\n"
    "010,,event,4,n/a\n"
    '011,1e3,"",5,"quoted, comma"\n'
)


def test_arrow_csv_reader_matches_pandas(tmp_path):
    """The fast (pyarrow) CSV path gives the frames the pandas path gives: missing-value
    tokens, quoted newlines, ids kept as text, numbers inferred per chunk as pandas does."""
    src = tmp_path / "tricky.csv"
    src.write_text(TRICKY_HEADER + TRICKY_ROWS * 40)
    cols, strings, numbers = ["lead_id", "spend", "source", "visits", "note"], ["lead_id", "source", "note"], \
        ["spend", "visits"]
    fast = list(chunks.iter_chunks(src, cols, 7, strings, numbers))
    slow = list(chunks.iter_chunks(src, cols, 7, strings))
    assert [len(c) for c in fast] == [len(c) for c in slow] == [7] * 28 + [4]
    for a, b in zip(fast, slow):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    whole = pd.concat(fast)
    assert whole["lead_id"].iloc[0] == "007" and whole["note"].iloc[0] == "two\nlines"
    assert whole["spend"].iloc[2] == 12.0 and whole["visits"].dtype == float  # " 12 ", "3.0" as pandas


def test_arrow_csv_reader_hands_over_to_pandas_mid_file(tmp_path):
    """A line pyarrow refuses (too few fields: pandas fills them in) deep in the file: reading
    carries on with pandas from the same row, no row lost or repeated."""
    df = leads(1000, seed=7)
    src = tmp_path / "short.csv"
    df.to_csv(src, index=False)
    lines = src.read_text().splitlines()
    lines[901] = lines[901].rsplit(",", 2)[0]  # drop the last two fields of row 900
    src.write_text("\n".join(lines) + "\n")
    cols = ["lead_id", "spend", "source", "visits"]
    fast = list(chunks.iter_chunks(src, cols, 300, ["lead_id", "source"], ["spend", "visits"]))
    slow = pd.read_csv(src, usecols=cols, dtype={"lead_id": "str", "source": "str"})
    assert all(len(c) <= 300 for c in fast)
    got = pd.concat(fast, ignore_index=True)
    assert got["lead_id"].tolist() == slow["lead_id"].tolist()
    np.testing.assert_allclose(got["spend"].astype(float), slow["spend"].astype(float))


@pytest.mark.parametrize("values", [
    ["2024-04-03 19:50:02", None, " 2024-01-01 00:00:00 ", ""], ["2024-04-03", "", None],
    ["2024-04-03T19:50:02", "2024-04-04T00:00:00"], ["2024-04-03T19:50:02", "2024-04-03 01:02:03"],
    ["2024-02-30"], ["2024-4-3"], ["03/04/2024"], ["2024-04-03 19:50:02+02:00"], ["2024-04-03T19:50+01"],
    ["2024-04-03 00:00:00", "2024-04-03"]])
def test_date_coercion_matches_pandas(values):
    """Plain ISO dates are parsed in arrow; the result (or the error) is pandas'."""
    from expkit.schema import ColumnType

    ct = ColumnType("created", "date", dtype="datetime64[ns]")
    s = pd.Series(values, dtype="str", index=range(5, 5 + len(values)), name="created")
    text = s.str.strip()
    blank = s.isna() | text.eq("")
    expected = pd.to_datetime(text.where(~blank), errors="coerce")
    if (expected.isna() & ~blank).any():
        with pytest.raises(SchemaError, match="'created' should hold a date"):
            scorer.coerce(s, ct)
    else:
        pd.testing.assert_series_equal(scorer.coerce(s, ct), expected)


def test_read_ahead_passes_errors_and_stops_early():
    def frames(fail_at):
        for i in range(5):
            if i == fail_at:
                raise DataError("broken at chunk 2")
            yield pd.DataFrame({"i": [i]})

    with pytest.raises(DataError, match="chunk 2"):
        [c["i"].iloc[0] for c in chunks.read_ahead(frames(2))]
    ahead = chunks.read_ahead(frames(None))
    assert next(ahead)["i"].iloc[0] == 0
    ahead.close()  # the consumer stops: the reading thread ends
    import threading

    assert not [t for t in threading.enumerate() if t.name == "expkit-read"]
