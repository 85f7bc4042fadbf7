"""The score log's files are its record: batches and feedback survive a lost index, and a
record written just before a kill is picked up by the next reader."""
from __future__ import annotations

import json
from datetime import datetime

from expkit import db
from expkit.db import session
from expkit.scoring import scorelog
from expkit.scoring.scorelog import Feedback, ScoreBatch


def record(i: int, app="leads", tenant="acme") -> dict:
    return {"id": f"20250101-00000{i}-{app}-abc00{i}", "app": app, "tenant": tenant, "model_tenant": None,
            "version": "1", "run_id": "r1", "rows": 10 * i, "started_at": datetime(2025, 1, 1, 0, i),
            "finished_at": datetime(2025, 1, 1, 0, i, 30), "score_counts": [i] * 10,
            "fields": {"spend": {"kind": "numeric", "n": i}}, "ids_path": f"scores/b{i}.parquet",
            "output": None}


def _drop_index(runs_dir):
    db.dispose()
    for f in runs_dir.glob("index.db*"):
        f.unlink()


def state(runs_dir):
    b = scorelog.batches(runs_dir=runs_dir).to_dict("records")
    f = scorelog.feedback(runs_dir=runs_dir).to_dict("records")
    return b, f


def test_batches_and_feedback_are_files_first(runs_dir):
    for i in (1, 2):
        scorelog.record_batch(record(i), runs_dir)
    assert sorted(p.name for p in (runs_dir / "scores").glob("*.json")) == sorted(
        f"{record(i)['id']}.json" for i in (1, 2))
    assert json.loads(scorelog.record_file(record(1)["id"], runs_dir).read_text())["rows"] == 10
    assert scorelog.add_feedback("leads", "acme", ["a", "b"], [1, 0], runs_dir) == 2
    assert len(list((runs_dir / "feedback").glob("*.parquet"))) == 1
    before = state(runs_dir)
    _drop_index(runs_dir)
    assert scorelog.count_batches(runs_dir) == 2 and scorelog.count_feedback(runs_dir) == 2  # read back
    assert state(runs_dir) == before
    _drop_index(runs_dir)
    assert scorelog.rebuild(runs_dir) == (2, 2)
    assert state(runs_dir) == before


def test_a_record_written_before_a_kill_is_indexed_by_the_next_reader(runs_dir):
    scorelog.record_batch(record(1), runs_dir)
    with session(runs_dir) as s:  # the index row never made it
        s.query(ScoreBatch).delete()
    assert scorelog.batches(runs_dir=runs_dir)["id"].tolist() == [record(1)["id"]]


def test_index_rows_from_before_the_files_are_written_out(runs_dir):
    scorelog.record_batch(record(1), runs_dir)
    scorelog.add_feedback("leads", "acme", ["a"], [1], runs_dir)
    before = state(runs_dir)
    for p in [*(runs_dir / "scores").glob("*.json"), *(runs_dir / "feedback").glob("*.parquet")]:
        p.unlink()  # as an expkit without these files left them
    with session(runs_dir) as s:
        s.query(Feedback).update({"load_id": None})
    assert scorelog.rebuild(runs_dir) == (1, 1)
    assert state(runs_dir) == before
    assert len(list((runs_dir / "scores").glob("*.json"))) == 1


def test_a_damaged_record_file_is_skipped(runs_dir):
    scorelog.record_batch(record(1), runs_dir)
    scorelog.record_batch(record(2), runs_dir)
    path = scorelog.record_file(record(2)["id"], runs_dir)
    path.write_text(path.read_text()[:40])
    assert scorelog.rebuild(runs_dir) == (1, 0)


def test_a_failed_index_write_takes_the_file_back(runs_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("index down")

    monkeypatch.setattr(scorelog, "session", broken)
    try:
        scorelog.record_batch(record(1), runs_dir)
    except RuntimeError:
        pass
    assert list((runs_dir / "scores").glob("*.json")) == []
