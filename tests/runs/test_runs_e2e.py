"""`expkit run` for real: papermill, a real kernel, the tiny fixture template."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from expkit import runs
from expkit.cli import cli

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY = str(FIXTURES / "tiny.ipynb")
EXPKIT = [sys.executable, "-c", "from expkit.cli import main; main()"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def only_run(runs_dir) -> Path:
    (folder,) = [p for p in runs_dir.iterdir() if p.is_dir()]
    return folder


def test_succeeded_run_has_its_artifacts(runs_dir, tmp_path):
    data = tmp_path / "t.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    result = invoke("run", TINY, "-p", "n", "5", "-p", "data", data, "--tenant", "acme",
                    "--runs-dir", runs_dir)
    assert result.exit_code == 0, result.output
    folder = only_run(runs_dir)
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "succeeded" and meta["tenant"] == "acme" and meta["template"] == "tiny"
    assert meta["params"]["n"] == 5 and meta["params"]["extra"] == 10  # injected + logged in the kernel
    assert meta["template_hash"] == __import__("hashlib").sha256(Path(TINY).read_bytes()).hexdigest()
    assert meta["data"]["rows"] == 2 and len(meta["data"]["fingerprint"]) == 64
    assert meta["ended"] >= meta["started"] and meta["error"] is None
    for name in ("notebook.ipynb", "report.html", "metrics.json", "leaderboard.csv", "figures/line.png"):
        assert (folder / name).is_file(), name
    report = (folder / "report.html").read_text()
    assert "done 5 x False [1, 2] acme" in report and "run.log_params" not in report  # code hidden
    assert "acme" in result.stdout and "succeeded" in result.stdout and "auroc 0.5500" in result.stdout
    row = runs.list(runs_dir=runs_dir).iloc[0]
    assert (row.status, row.tenant, row.metric) == ("succeeded", "acme", 0.55)


def test_failing_cell_leaves_a_failed_run_with_cell_and_report(runs_dir):
    result = invoke("run", TINY, "--tenant", "acme", "-p", "fail_tenant", "acme", "--runs-dir", runs_dir)
    assert result.exit_code == 1
    folder = only_run(runs_dir)
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "failed"
    assert meta["error"]["cell"] == 4 and meta["error"]["message"] == "ValueError: boom for tenant acme"
    assert "raise ValueError" in meta["error"]["source"]
    assert "boom for tenant acme" in (folder / "report.html").read_text()
    assert "ValueError" in (folder / "notebook.ipynb").read_text()
    assert "cell 4 (In [4]): ValueError: boom for tenant acme" in result.stderr


def test_a_killed_kernel_fails_the_run_naming_the_cell(runs_dir):
    result = invoke("run", FIXTURES / "dies.ipynb", "--runs-dir", runs_dir)
    assert result.exit_code == 1
    meta = json.loads((only_run(runs_dir) / "run.json").read_text())
    assert meta["status"] == "failed" and meta["error"]["cell"] == 2
    assert "DeadKernelError" in meta["error"]["message"] and "SIGKILL" in meta["error"]["source"]
    assert (only_run(runs_dir) / "report.html").is_file()


#: A kernel that dies at start the first ``FAILS`` times it is launched (printing
#: ``MESSAGE``, as ipykernel does when a port it was given is taken), then starts.
FLAKY_KERNEL = """
import os, sys
count = os.path.join(os.path.dirname(__file__), "launches")
n = int(open(count).read()) + 1 if os.path.exists(count) else 1
open(count, "w").write(str(n))
if n <= FAILS:
    sys.exit("zmq.error.ZMQError: " + MESSAGE)
os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *sys.argv[1:]])
"""


@pytest.mark.parametrize("fails, message, status, launches", [
    (1, "Address already in use (addr='tcp://127.0.0.1:39467')", "succeeded", 2),
    (9, "Address already in use (addr='tcp://127.0.0.1:39467')", "failed", 3),
    (9, "No such device", "failed", 1),
])
def test_a_kernel_whose_port_was_taken_is_started_again(runs_dir, tmp_path, monkeypatch,
                                                        fails, message, status, launches):
    spec = tmp_path / "jupyter" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    (spec / "kernel.py").write_text(f"FAILS = {fails}\nMESSAGE = {message!r}\n{FLAKY_KERNEL}")
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, str(spec / "kernel.py"), "-f", "{connection_file}"],
        "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    from expkit.execute import execute

    result = execute(TINY, runs_dir=runs_dir, kernel_name="flaky")
    assert result["status"] == status, result["error"]
    assert int((spec / "launches").read_text()) == launches
    assert message in (only_run(runs_dir) / "kernel.log").read_text()
    if status == "failed":  # what the kernel said last is in the run's error
        assert result["error"].endswith(f"(kernel.log ends: zmq.error.ZMQError: {message})"), result["error"]


def test_three_tenants_two_workers_one_fails(runs_dir):
    result = invoke("run", TINY, "--tenants", "acme,globex,initech", "-p", "fail_tenant", "globex",
                    "--workers", "2", "--runs-dir", runs_dir)
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("tenant")))
    table = {line.split()[0]: line.split()[1] for line in lines[header + 1:]}
    assert table == {"acme": "succeeded", "globex": "failed", "initech": "succeeded"}
    listed = runs.list(runs_dir=runs_dir)
    assert sorted(zip(listed.tenant, listed.status)) == [("acme", "succeeded"), ("globex", "failed"),
                                                         ("initech", "succeeded")]
    assert all((Path(p) / "report.html").is_file() for p in listed.path)


def test_two_run_processes_at_once_keep_the_index_intact(runs_dir):
    env = {**os.environ, "EXPKIT_RUNS": str(runs_dir)}
    procs = [subprocess.Popen([*EXPKIT, "run", TINY, "--tenant", f"t{i}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    assert [p.wait(timeout=180) for p in procs] == [0, 0]
    table = runs.list(runs_dir=runs_dir)
    assert sorted(table.tenant) == ["t0", "t1"] and set(table.status) == {"succeeded"}
    with sqlite3.connect(runs_dir / "index.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert runs.rebuild_index(runs_dir).runs == 2


def _wait_running(runs_dir, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        # a run folder is written as a hidden temporary and renamed into place: skip those
        for meta in runs_dir.glob("[!.]*/run.json"):
            nb = meta.parent / "notebook.ipynb"
            try:
                if json.loads(meta.read_text())["status"] == "running" and nb.exists() \
                        and '"execution_count": 2' in nb.read_text():
                    return meta.parent
            except FileNotFoundError:  # renamed between the glob and the read
                continue
        time.sleep(0.3)
    raise AssertionError("the run never started")


def test_ctrl_c_marks_the_run_interrupted(runs_dir):
    proc = subprocess.Popen([*EXPKIT, "run", TINY, "-p", "sleep", "60", "--runs-dir", str(runs_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    folder = _wait_running(runs_dir)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert proc.wait(timeout=60) != 0
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "interrupted" and (folder / "report.html").is_file()


def test_sigterm_marks_the_run_interrupted(runs_dir):
    """A scheduler's timeout (SIGTERM to the driver alone) ends the run like Ctrl-C."""
    proc = subprocess.Popen([*EXPKIT, "run", TINY, "-p", "sleep", "60", "--runs-dir", str(runs_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    folder = _wait_running(runs_dir)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    assert proc.stderr.read().decode().strip().splitlines()[-1] == "error: terminated"
    meta = json.loads((folder / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["error"]["message"] == "terminated (SIGTERM)"
    assert (folder / "report.html").is_file()


def test_killed_driver_never_leaves_a_running_run(runs_dir):
    proc = subprocess.Popen([*EXPKIT, "run", TINY, "-p", "sleep", "60", "--runs-dir", str(runs_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    folder = _wait_running(runs_dir)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert json.loads((folder / "run.json").read_text())["status"] == "running"  # nobody could update it
    assert runs.list(runs_dir=runs_dir).status.tolist() == ["interrupted"]
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"
