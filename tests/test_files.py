"""Atomic writes, journals and the clean-up of what killed processes leave behind."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from expkit import files
from expkit.errors import ExpkitError, WriteError


def test_write_error_names_the_file_and_the_cause_and_leaves_nothing(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("the old report")
    tmp_path.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root writes anyway: use a folder that is a file instead
            tmp_path.chmod(0o700)
            target = tmp_path / "report.html" / "inner.html"
        with pytest.raises(WriteError) as info:
            files.write_text(target, "new")
    finally:
        tmp_path.chmod(0o700)
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, ExpkitError)
    assert err.errno in (errno.EACCES, errno.ENOTDIR) and err.name == target.name
    assert str(err).startswith(f"{err.reason} while writing {target}")
    assert (tmp_path / "report.html").read_text() == "the old report"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_error_of_a_full_disk(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(WriteError, match="no space left on device while writing .*run.json") as info:
        files.write_json(tmp_path / "run.json", {"a": 1})
    assert "free some space" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_append_line_ends_a_torn_line_and_read_lines_skips_it(tmp_path):
    journal = tmp_path / "j.jsonl"
    assert files.append_line(journal, json.dumps({"n": 1})) == 0
    with open(journal, "a") as fh:
        fh.write('{"n": 2, "cut sh')  # a crash in the middle of an append
    files.append_line(journal, json.dumps({"n": 3}))
    assert [r["n"] for r in files.read_lines(journal)] == [1, 3]
    assert files.read_lines(tmp_path / "none.jsonl") == []


def test_clean_stale_removes_only_what_dead_processes_left(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    mine = files.tmp_path(tmp_path / "run.json")
    mine.write_text("being written")
    left = tmp_path / mine.name.replace(f".{os.getpid()}-", f".{dead}-")
    left.write_text("left by a kill -9")
    left_dir = tmp_path / left.name.replace("run.json", "20250101-000000-x-all-abcdef")
    left_dir.mkdir()
    (left_dir / "run.json").write_text("{}")
    other = tmp_path / ".notebook.ipynb.123.abcdef.tmp"  # not expkit's naming: left alone
    other.write_text("?")
    assert sorted(p.name for p in files.clean_stale(tmp_path)) == sorted([left.name, left_dir.name])
    assert mine.exists() and other.exists() and not left.exists() and not left_dir.exists()


def test_check_writable(tmp_path):
    assert files.check_writable(tmp_path / "new" / "dash.html") == tmp_path / "new" / "dash.html"
    assert list((tmp_path / "new").iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="while writing .*file/dash.html"):
        files.check_writable(tmp_path / "file" / "dash.html")


def test_folder_digests_name_what_changed(tmp_path):
    (tmp_path / "model.skops").write_bytes(b"m")
    (tmp_path / "card.json").write_text("{}")
    before = files.file_digests(tmp_path)
    digest = files.sha256_dir(tmp_path)
    (tmp_path / "card.json").write_text('{"threshold": 0}')
    (tmp_path / "new.txt").write_text("x")
    (tmp_path / "model.skops").unlink()
    assert files.sha256_dir(tmp_path) != digest
    assert files.changed(before, files.file_digests(tmp_path)) == [
        "card.json (changed)", "model.skops (missing)", "new.txt (added)"]
