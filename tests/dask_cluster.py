"""A real Dask cluster for tests: one ``dask scheduler`` and ``n`` ``dask worker`` processes
on 127.0.0.1, each in its own process group, started by the test and torn down for sure.

The scheduler listens on a free port and writes a scheduler file that the workers read
(all start at once). Teardown sends SIGTERM to every process group (workers first), then
SIGKILL after a grace period. Should the test runner itself be killed, the scheduler's
``--idle-timeout`` and the workers' ``--death-timeout`` end the cluster on their own.

    from tests.dask_cluster import dask_cluster  # noqa: F401 - the fixture
    def test_x(dask_cluster): Client(dask_cluster.address) ...
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@dataclasses.dataclass
class Cluster:
    address: str
    procs: list
    log_dir: Path

    def pids(self) -> list[int]:
        """Every live process of the cluster (nannies' worker processes included)."""
        import psutil

        out = []
        for p in self.procs:
            try:
                top = psutil.Process(p.pid)
                out += [q.pid for q in [top, *top.children(recursive=True)] if q.status() != psutil.STATUS_ZOMBIE]
            except psutil.Error:
                pass
        return out

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.log_dir.glob("*.log")))


@contextlib.contextmanager
def real_cluster(folder: Path, n_workers: int = 2, timeout: float = 90.0):
    folder.mkdir(parents=True, exist_ok=True)
    sched_file = folder / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    commands = {"scheduler": [*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                              "--scheduler-file", str(sched_file), "--idle-timeout", "900s"]}
    for i in range(n_workers):
        commands[f"worker{i}"] = [*dask, "worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                                  "--nthreads", "1", "--nworkers", "1", "--name", f"w{i}", "--no-dashboard",
                                  "--death-timeout", "60s", "--local-directory", str(folder / f"w{i}")]
    # the repository on the path, so tasks may call functions of test modules (by reference)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    procs = []
    try:
        for name, cmd in commands.items():
            with open(folder / f"{name}.log", "wb") as log:
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True, cwd=folder, env=env))
        cluster = Cluster("", procs, folder)
        deadline = time.monotonic() + timeout
        while True:
            try:
                cluster.address = json.loads(sched_file.read_text())["address"]
                break
            except (OSError, ValueError, KeyError):
                if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                    raise RuntimeError("the Dask cluster did not start:\n" + cluster.logs()) from None
                time.sleep(0.1)
        from distributed import Client

        with Client(cluster.address, timeout=timeout) as client:
            client.wait_for_workers(n_workers, timeout=max(deadline - time.monotonic(), 1))
        yield cluster
    finally:
        _stop(procs)


def _stop(procs, grace: float = 10.0) -> None:
    for p in reversed(procs):  # workers first, the scheduler last
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(max(deadline - time.monotonic(), 0.01))
    for p in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)  # also any worker process left in the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers, real processes on 127.0.0.1."""
    pytest.importorskip("distributed")
    with real_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster
