"""The index database: every way it cannot be used is said in words, and a corrupt file
is moved aside (never someone's CSV)."""
from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import select

from expkit import db
from expkit.errors import IndexDatabaseError
from expkit.run import RunRecord


@pytest.fixture(autouse=True)
def _fresh_engines():
    db.dispose()
    yield
    db.dispose()


@pytest.mark.parametrize("url,pattern", [
    ("not a url", r"EXPKIT_DB 'not a url' is not a database URL \(use a SQLAlchemy URL"),
    ("foo://x", r"names an unknown kind of database 'foo'"),
    ("mysql+mysqldb://u:secret@localhost/db", r"needs the database driver 'MySQLdb', which is not installed "
                                              r"\(pip install 'mysqlclient'"),
])
def test_expkit_db_errors_in_words(runs_dir, monkeypatch, url, pattern):
    monkeypatch.setenv("EXPKIT_DB", url)
    with pytest.raises(IndexDatabaseError, match=pattern) as info:
        with db.session(runs_dir):
            pass
    assert "secret" not in str(info.value)


def test_expkit_db_pointing_at_a_csv_is_refused_and_left_alone(runs_dir, tmp_path, monkeypatch):
    csv = tmp_path / "leads.csv"
    csv.write_text("a,b\n1,2\n")
    monkeypatch.setenv("EXPKIT_DB", f"sqlite:///{csv}")
    with pytest.raises(IndexDatabaseError, match=r"leads.csv is not a usable SQLite database"):
        with db.session(runs_dir):
            pass
    with pytest.raises(IndexDatabaseError, match="is not a SQLite database; it is left as it is"):
        db.move_aside(runs_dir)
    assert csv.read_text() == "a,b\n1,2\n"


def test_a_corrupt_index_names_the_rebuild_command_and_is_moved_aside(runs_dir):
    (runs_dir / "index.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 2000)
    with pytest.raises(IndexDatabaseError, match=r"index.db is corrupt .*`expkit runs rebuild-index`"):
        with db.session(runs_dir):
            pass
    moved = db.move_aside(runs_dir)
    assert moved.name.startswith("index.db.corrupt-") and moved.read_bytes().startswith(b"SQLite format 3")
    assert not (runs_dir / "index.db").exists()
    with db.session(runs_dir) as s:  # a fresh index
        assert s.scalars(select(RunRecord)).all() == []
    assert db.move_aside(runs_dir) is None  # a sound index stays


def test_columns_declared_since_are_added_to_an_old_index(runs_dir):
    with sqlite3.connect(runs_dir / "index.db") as con:  # model_versions as an older expkit made it
        con.execute("CREATE TABLE model_versions (id INTEGER PRIMARY KEY, app VARCHAR(200), tenant_key "
                    "VARCHAR(200), version INTEGER, status VARCHAR(20), run_id VARCHAR(200), model_dir TEXT, "
                    "sha256 VARCHAR(64), metric_name VARCHAR(50), metric FLOAT, promoted_at VARCHAR(40), "
                    "by VARCHAR(200), reason TEXT, previous_version INTEGER)")
        con.execute("INSERT INTO model_versions VALUES (1, 'leads', '', 1, 'production', 'r', '/m', 'abc', "
                    "'auroc', 0.8, '2025-01-01', 'me', NULL, NULL)")
    from expkit.registry import ModelVersion

    with db.session(runs_dir) as s:
        row = s.scalars(select(ModelVersion)).one()
    assert row.files is None and row.sha256 == "abc"
