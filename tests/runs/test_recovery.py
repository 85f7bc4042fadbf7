"""What a killed command or a full disk leaves, and how the next command deals with it."""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from expkit import db, runs
from expkit import run as run_module
from expkit.cli import cli
from expkit.errors import IndexDatabaseError, RunError, WriteError
from expkit.files import tmp_path
from expkit.runs import Run

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY = FIXTURES / "tiny.ipynb"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_a_run_is_not_created_when_the_index_is_corrupt(runs_dir):
    db.dispose()
    (runs_dir / "index.db").write_bytes(b"not a database at all, but long enough" * 50)
    with pytest.raises(IndexDatabaseError, match="rebuild-index"):
        Run.create("tiny", runs_dir=runs_dir)
    assert sorted(p.name for p in runs_dir.iterdir()) == ["index.db"]
    db.dispose()


def test_the_cli_run_on_a_corrupt_index_is_one_line_and_makes_no_folder(runs_dir):
    db.dispose()
    (runs_dir / "index.db").write_bytes(b"garbage" * 300)
    result = CliRunner().invoke(cli, ["run", str(TINY), "--runs-dir", str(runs_dir)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: the run index ")
    assert "`expkit runs rebuild-index`" in result.stderr
    assert sorted(p.name for p in runs_dir.iterdir()) == ["index.db"]
    db.dispose()


def test_a_run_folder_appears_whole_or_not_at_all(runs_dir, monkeypatch):
    def no_space(path, data):
        raise WriteError(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(run_module, "write_json", no_space)
    with pytest.raises(WriteError, match="no space left on device while writing .*tiny-all"):
        Run.create("tiny", runs_dir=runs_dir)
    assert [p.name for p in runs_dir.iterdir() if p.is_dir()] == []


def test_a_full_disk_at_the_end_uses_the_reserve_to_record_the_status(runs_dir, monkeypatch):
    run = Run.create("tiny", runs_dir=runs_dir)
    run.start()
    assert (run.dir / ".reserve").stat().st_size == run_module.RESERVE_BYTES
    real = run_module.write_json

    def full_until_space_is_freed(path, data):
        if (run.dir / ".reserve").exists():
            raise WriteError(path, OSError(errno.ENOSPC, "No space left on device"))
        return real(path, data)

    monkeypatch.setattr(run_module, "write_json", full_until_space_is_freed)
    run.finish("failed", {"message": "no space left on device while writing report.html"})
    assert run.meta["status"] == "failed" and "report.html" in run.meta["error"]["message"]
    assert runs.list(runs_dir=runs_dir).status.tolist() == ["failed"]
    assert not (run.dir / ".reserve").exists() and leftovers(runs_dir) == []


def test_sweep_cleans_what_a_kill_left_and_reconciles_the_index(runs_dir):
    pid = dead_pid()
    killed = Run.create("tiny", tenant="a", runs_dir=runs_dir)
    killed.update(status="running", pid=pid)
    for name in ("run.json", "notebook.ipynb", "model/model.skops"):
        (killed.dir / name).parent.mkdir(exist_ok=True)
        stale = tmp_path(killed.dir / name)
        stale.with_name(stale.name.replace(f".{os.getpid()}-", f".{pid}-")).write_text("half")
    half_made = tmp_path(runs_dir / "20250101-000000-tiny-b-abcdef")
    half_made = half_made.with_name(half_made.name.replace(f".{os.getpid()}-", f".{pid}-"))
    half_made.mkdir()
    (half_made / "run.json").write_text("{}")
    unindexed = Run.create("tiny", tenant="c", runs_dir=runs_dir)
    unindexed.update(status="running", pid=pid)
    with db.session(runs_dir) as s:  # killed between writing run.json and the index
        s.query(run_module.RunRecord).filter_by(run_id=unindexed.id).delete()
    assert sorted(runs.sweep(runs_dir)) == sorted([killed.id, unindexed.id])
    assert leftovers(runs_dir) == [] and not half_made.exists()
    table = runs.list(runs_dir=runs_dir).set_index("run_id")
    assert table.status.to_dict() == {killed.id: "interrupted", unindexed.id: "interrupted"}
    assert runs.sweep(runs_dir) == []  # nothing more to do
    # a kernel that outlived its killed `expkit run` left a file after the run was marked
    late = tmp_path(killed.dir / "model" / "model.skops")
    late = late.with_name(late.name.replace(f".{os.getpid()}-", f".{pid}-"))
    late.write_text("half")
    assert runs.sweep(runs_dir) == [] and not late.exists()


def test_a_truncated_run_json_is_named_and_skipped_by_rebuild(runs_dir):
    good = Run.create("tiny", tenant="a", runs_dir=runs_dir)
    good.start()
    good.finish()
    bad = Run.create("tiny", tenant="b", runs_dir=runs_dir)
    text = (bad.dir / "run.json").read_text()
    (bad.dir / "run.json").write_text(text[: len(text) // 2])
    with pytest.raises(RunError, match=f"cannot read {bad.dir / 'run.json'}"):
        runs.show(bad.id, runs_dir)
    out = runs.rebuild_index(runs_dir)
    assert out.runs == 1 and [p for p, _ in out.skipped] == [bad.dir]
    result = CliRunner().invoke(cli, ["runs", "rebuild-index", "--runs-dir", str(runs_dir)])
    assert result.exit_code == 0 and "indexed 1 run(s)" in result.stdout
    assert f"skipped {bad.dir}: cannot read {bad.dir / 'run.json'}" in result.stderr
    shown = CliRunner().invoke(cli, ["runs", "show", bad.id, "--runs-dir", str(runs_dir)])
    assert shown.exit_code == 1 and shown.stderr.startswith(f"error: cannot read {bad.dir / 'run.json'}")
    assert "Traceback" not in shown.output


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


@pytest.mark.slow
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -rm` (user and mount namespaces) "
                                                 "to mount a small tmpfs")
@pytest.mark.parametrize("size,file", [("360k", "notebook.ipynb"), ("600k", "report.html")])
def test_a_full_disk_during_a_run(tmp_path, size, file):
    """`expkit run` on a runs folder that is a tiny tmpfs (its own mount namespace): the run
    ends failed with the cause, notebook.ipynb stays valid JSON, nothing .tmp is left,
    and the index agrees."""
    folder = tmp_path / "runs"
    folder.mkdir()
    script = (f"mount -t tmpfs -o size={size} none {folder} && "
              f"{sys.executable} -c 'from expkit.cli import main; main()' run {TINY} --runs-dir {folder}; "
              f"echo exit=$?; echo ===; cat {folder}/*/run.json; echo ===; ls -a {folder} {folder}/*/; "
              f"{sys.executable} -c 'from expkit.cli import main; main()' runs list --runs-dir {folder}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert "exit=1" in out and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    meta = json.loads(out.split("===")[1])
    assert meta["status"] == "failed"
    assert meta["error"]["message"] == f"no space left on device while writing {file}"
    assert f"no space left on device while writing {file}" in proc.stderr
    assert ".tmp" not in out and " failed " in out.splitlines()[-1]
