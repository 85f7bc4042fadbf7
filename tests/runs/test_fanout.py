"""Tenant runs on the engine: a real Dask cluster (a `dask scheduler` and two `dask worker`
processes started by the test on 127.0.0.1), a local cluster and local worker processes.
One tenant failing leaves the others alone; Ctrl-C or SIGTERM stops every run within
seconds, marks it interrupted, and leaves no process of the command behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from expkit import engine, runs
from expkit.cli import cli
from expkit.errors import RunError
from expkit.execute import STOPPED, run_template

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parents[1] / "fixtures"
TINY = str(FIXTURES / "tiny.ipynb")
EXPKIT = [sys.executable, "-c", "from expkit.cli import main; main()"]


def table_of(output: str) -> dict:
    lines = output.strip().splitlines()
    header = lines.index(next(line for line in lines if line.startswith("tenant")))
    return {line.split()[0]: line.split()[1] for line in lines[header + 1:]}


def test_tenants_fan_out_over_a_real_cluster_one_failing(runs_dir, dask_cluster):
    result = CliRunner().invoke(cli, ["run", TINY, "--tenants", "acme,globex,initech", "-p", "fail_tenant", "globex",
                                      "--cluster", dask_cluster.address, "--runs-dir", str(runs_dir)])
    assert result.exit_code == 1, result.output
    assert table_of(result.stdout) == {"acme": "succeeded", "globex": "failed", "initech": "succeeded"}
    listed = runs.list(runs_dir=runs_dir)
    assert sorted(zip(listed.tenant, listed.status)) == [("acme", "succeeded"), ("globex", "failed"),
                                                         ("initech", "succeeded")]
    assert all((Path(p) / "report.html").is_file() for p in listed.path)
    metas = [json.loads((Path(p) / "run.json").read_text()) for p in listed.path]
    assert {m["pid"] for m in metas} <= set(dask_cluster.pids())  # executed by the cluster's workers
    assert "boom for tenant globex" in next(m for m in metas if m["tenant"] == "globex")["error"]["message"]


class FarCluster(engine.DaskEngine):
    """The test cluster, as if its workers saw none of this machine's files."""

    def sees(self, path) -> bool:
        return False


class OtherIndex(engine.DaskEngine):
    """The test cluster, as if its workers indexed runs in another database."""

    def ask_workers(self, fn, /, *args):
        return ["postgresql://expkit:secret@elsewhere/expkit"]


@pytest.mark.parametrize("kind, pattern", [(FarCluster, "do not see the runs folder"),
                                           (OtherIndex, r"index runs in postgresql://expkit:\*\*\*@elsewhere")])
def test_workers_that_cannot_reach_the_runs_are_refused_before_any_run(runs_dir, dask_cluster, kind, pattern):
    from distributed import Client

    with Client(dask_cluster.address, set_as_default=False) as client:
        with pytest.raises(RunError, match=pattern):
            run_template(TINY, tenants=["acme"], runs_dir=runs_dir, cluster=kind(client))
    assert not [p for p in runs_dir.iterdir() if p.is_dir()]


# -- stopping -----------------------------------------------------------------------------
def _start(runs_dir, *where, tenants="a,b,c,d,e"):
    log = open(runs_dir.parent / "command.log", "wb")
    proc = subprocess.Popen([*EXPKIT, "run", TINY, "--tenants", tenants, "-p", "sleep", "120",
                             "--runs-dir", str(runs_dir), *where],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # two runs are in their sleeping cell
        books = [p.read_text() for p in runs_dir.glob("[!.]*/notebook.ipynb")]  # not the hidden temporaries
        if sum('"execution_count": 3' in b for b in books) >= 2:
            return proc
        assert proc.poll() is None, (runs_dir.parent / "command.log").read_text()
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("the runs never started")


def _gone(pids, timeout=15.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _assert_stopped(runs_dir, proc, elapsed, code, n_runs=2):
    output = (runs_dir.parent / "command.log").read_text()
    assert proc.returncode == code, output
    assert elapsed < 40, output  # the 120 s runs were stopped (kernel start-up and the report included)
    metas = [json.loads(p.read_text()) for p in runs_dir.glob("*/run.json")]
    assert len(metas) == n_runs and {m["status"] for m in metas} == {"interrupted"}, metas
    assert all(m["error"]["message"] == STOPPED and m["error"]["cell"] == 4 for m in metas)  # the sleeping cell
    listed = runs.list(runs_dir=runs_dir)
    assert set(listed.status) == {"interrupted"} and len(listed) == n_runs
    for tenant in ("c", "d", "e"):
        assert f"[{tenant}] interrupted (not started" in output
    return output


@pytest.mark.parametrize("where", [["--workers", "2"], ["--cluster", "local:2"]])
@pytest.mark.parametrize("sig", ["SIGTERM", "Ctrl-C"])
def test_a_stopped_fan_out_stops_every_run_and_leaves_no_process(runs_dir, where, sig):
    """SIGTERM to the command (a scheduler's timeout) or Ctrl-C in its terminal (SIGINT to
    the whole process group, workers included) while two tenants run and three wait."""
    if "local:2" in where:
        pytest.importorskip("distributed")
    if sig == "Ctrl-C" and where == ["--workers", "2"]:
        pytest.skip("covered by the local cluster case and test_engine (worker processes get SIGINT too)")
    proc = _start(runs_dir, *where)
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len([p for p in family if "ipykernel" in " ".join(p.cmdline())]) == 2
    start = time.monotonic()
    if sig == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=90)
    output = _assert_stopped(runs_dir, proc, time.monotonic() - start, 143 if sig == "SIGTERM" else 130)
    assert not _gone([p.pid for p in family]), output  # workers, kernels, resource trackers
    assert "Traceback" not in output


def test_sigterm_stops_the_runs_on_an_external_cluster_which_stays_up(runs_dir, dask_cluster):
    before = set(dask_cluster.pids())
    proc = _start(runs_dir, "--cluster", dask_cluster.address, tenants="a,b,c,d,e")
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=90)
    _assert_stopped(runs_dir, proc, time.monotonic() - start, 143)
    assert not _gone(set(dask_cluster.pids()) - before)  # the kernels the workers started are gone
    assert set(dask_cluster.pids()) == before  # the cluster is not ours: it stays up
