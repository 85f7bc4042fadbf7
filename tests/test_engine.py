"""The executor interface: ordered, bounded map; errors; cancellation that stops running
work; the resolver; local worker processes, a LocalCluster and a real Dask cluster."""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from expkit import engine
from expkit.errors import ConfigError


def pid_and_square(x, k=1):
    return os.getpid(), x * x * k


def slow_then(x, seconds):
    time.sleep(seconds)
    return x


def fail_at(x, bad):
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


def gone(pids, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]:
            return True
        time.sleep(0.05)
    return False


def test_in_process_engine_runs_each_item_when_asked_in_this_process():
    pulled = []

    def items():
        for i in range(5):
            pulled.append(i)
            yield i

    with engine.session(None, n_jobs=1) as e:
        assert isinstance(e, engine.LocalEngine) and e.n_workers == 1
        results = e.map(pid_and_square, items(), 2)
        assert next(results) == (os.getpid(), 0) and pulled == [0]  # lazy: one item at a time
        assert [v for _, v in results] == [2, 8, 18, 32]
        assert e.submit(pid_and_square, 3).result() == (os.getpid(), 9)


def test_worker_processes_keep_input_order_and_a_bounded_number_in_flight():
    pulled = []

    def items():
        for i in range(12):
            pulled.append(i)
            yield i

    with engine.LocalEngine(2) as e:
        results = e.map(slow_then, items(), 0.05, in_flight=3)
        got = []
        for value in results:
            got.append(value)
            assert len(pulled) <= len(got) + 3  # never more than 3 submitted and not consumed
        assert got == list(range(12))
        pids = {pid for pid, _ in e.map(pid_and_square, range(6))}
        assert os.getpid() not in pids


def test_an_error_reaches_the_caller_at_its_items_turn():
    with engine.LocalEngine(2) as e:
        results = e.map(fail_at, range(10), 6)
        assert [next(results) for _ in range(6)] == list(range(6))
        with pytest.raises(ValueError, match="item 6 is bad"):
            next(results)


@pytest.mark.parametrize("how", ["cancel", "keyboard-interrupt"])
def test_cancel_stops_running_work_and_ends_the_workers(how):
    """Work of minutes (a tenant's run) is stopped at once, its workers ended."""
    start = time.monotonic()
    e = engine.LocalEngine(2)
    pids = {pid for pid, _ in e.map(pid_and_square, range(4))}
    running = e.submit(slow_then, 1, 120)
    time.sleep(0.5)
    if how == "cancel":
        e.cancel()
    else:
        with pytest.raises(KeyboardInterrupt), engine.session(e):
            raise KeyboardInterrupt
    assert gone(pids) and time.monotonic() - start < 60
    with pytest.raises(Exception):  # noqa: B017 - the pool that ran it is gone
        running.result(timeout=10)
    assert e.submit(pid_and_square, 2).result()[1] == 4  # the engine starts a new pool when used again
    e.close()


def test_resolve_and_session(monkeypatch):
    monkeypatch.delenv(engine.SCHEDULER_ENV, raising=False)
    assert isinstance(engine.resolve(), engine.LocalEngine) and engine.resolve(n_jobs=3).n_workers == 3
    assert engine.resolve(n_jobs=-1).n_workers == os.cpu_count()
    mine = engine.LocalEngine(1)
    assert engine.resolve(mine) is mine
    with engine.session(mine) as e:
        assert e is mine
    for bad in ("local:0", "local:x", "local:-2"):
        with pytest.raises(ConfigError, match="local:"):
            engine.resolve(bad)
    with pytest.raises(ConfigError, match="n_jobs"):
        engine.resolve(n_jobs=0)
    monkeypatch.setenv(engine.SCHEDULER_ENV, "local:0")  # the variable is read when cluster is not given
    with pytest.raises(ConfigError, match="local:0"):
        engine.resolve()
    with pytest.raises(ConfigError, match="no engine of kind"):
        engine.engines.create("yarn")


def test_a_local_cluster_lives_as_long_as_its_engine():
    pytest.importorskip("distributed")
    e = engine.resolve("local:2")
    try:
        assert isinstance(e, engine.DaskEngine) and e.n_workers == 2 and e.shares_files
        got = list(e.map(pid_and_square, range(8), 2, in_flight=3))
        assert [v for _, v in got] == [2 * i * i for i in range(8)]
        worker_pids = {pid for pid, _ in got}
        assert os.getpid() not in worker_pids
        data = e.broadcast(b"x" * 1000)
        assert e.submit(len, data).result() == 1000
    finally:
        e.close()
    assert gone(worker_pids)


def test_a_real_cluster_runs_work_in_order_on_both_workers(dask_cluster):
    with engine.session(dask_cluster.address) as e:
        assert isinstance(e, engine.DaskEngine) and e.n_workers == 2 and not e.shares_files
        got = list(e.map(slow_then, range(20), 0.05))
        assert got == list(range(20))
        pids = {pid for pid, _ in e.map(pid_and_square, range(40))}
        assert len(pids) == 2 and not pids & {os.getpid()}
        assert e.sees(__file__) and not e.sees("/no/such/file")
        with pytest.raises(ValueError, match="item 3"):
            list(e.map(fail_at, range(6), 3))
    assert dask_cluster.pids()  # an external cluster stays up after the engine closes


def kill_myself(x):
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_call_is_one_clear_error():
    with engine.LocalEngine(2) as e, pytest.raises(engine.WorkerLost, match="ended unexpectedly"):
        list(e.map(kill_myself, range(3)))


# -- long calls that stop when the caller stops -------------------------------------------
def wait_for_stop(x, seconds=60.0, stop=None):
    """Return x at once for even x; for odd x, poll ``stop`` until it is set (or time runs out)."""
    deadline = time.monotonic() + seconds
    while x % 2 and time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            return ("stopped", x)
        time.sleep(0.05)
    return ("done", x)


def test_run_each_reports_as_calls_end_and_returns_in_input_order():
    seen = []
    with engine.LocalEngine(2) as e:
        out = e.run_each(wait_for_stop, [0, 2, 4, 6, 8], on_result=lambda i, r: seen.append(i))
    assert out == [("done", x) for x in (0, 2, 4, 6, 8)] and sorted(seen) == [0, 1, 2, 3, 4]


def fail_at_or_stop(x, bad, stop=None):
    return fail_at(x, bad)


def test_run_each_passes_errors_as_results():
    with engine.LocalEngine(2) as e:
        out = e.run_each(fail_at_or_stop, range(4), 2)
    assert out[:2] == [0, 1] and isinstance(out[2], ValueError) and out[3] == 3


@pytest.mark.parametrize("cluster", [2, "local:2"])
def test_a_stop_reaches_running_calls_and_no_further_call_starts(cluster):
    """Ctrl-C while two long calls run: both see the flag and return, the rest never start."""
    import signal
    import threading

    if cluster == "local:2":
        pytest.importorskip("distributed")
    seen = {}
    e = engine.LocalEngine(cluster) if cluster == 2 else engine.resolve(cluster)
    try:
        assert e.run_each(wait_for_stop, [0, 2]) == [("done", 0), ("done", 2)]  # workers are up
        threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C, while 1 and 3 run
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            e.run_each(wait_for_stop, [1, 3, 5, 7], on_result=seen.__setitem__, in_flight=2, grace=30)
        assert time.monotonic() - start < 25  # the 60 s calls stopped
    finally:
        e.close()
    assert seen[0] == ("stopped", 1) and seen[1] == ("stopped", 3)
    assert [(type(seen[i]).__name__, seen[i].started) for i in (2, 3)] == [("Unfinished", False)] * 2


def test_in_process_calls_get_no_flag_and_ctrl_c_reaches_them():
    def interrupted(x, stop=None):
        assert stop is None
        if x == 1:
            raise KeyboardInterrupt
        return x

    seen = {}
    with pytest.raises(KeyboardInterrupt):
        engine.LocalEngine(1).run_each(interrupted, range(3), on_result=seen.__setitem__)
    assert seen[0] == 0 and seen[1].started and not seen[2].started


def flag_seen_by_orphan(path):
    """In a child process: a flag made by the parent, read after the parent is gone."""
    import subprocess
    import sys

    code = ("import os, sys, time, pickle\n"
            "flag = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
            "first = flag.is_set()\n"
            "time.sleep(1.5)\n"  # the parent (this function's process) has ended by then
            "open(sys.argv[2], 'w').write(f'{first} {flag.is_set()}')\n")
    import pickle

    from expkit.engine.base import _FileFlag

    flag = _FileFlag(path + ".flag")
    subprocess.Popen([sys.executable, "-c", code, pickle.dumps(flag).hex(), path], start_new_session=True)
    time.sleep(0.5)
    return True


def test_a_local_flag_reads_as_set_in_a_worker_whose_caller_is_gone(tmp_path):
    """kill -9 of the command: work it started on local worker processes stops on its own."""
    import subprocess
    import sys

    out = tmp_path / "seen.txt"
    subprocess.run([sys.executable, "-c", f"from tests.test_engine import flag_seen_by_orphan as f; "
                                          f"f({str(out)!r})"], check=True, cwd=Path(__file__).parents[1])
    deadline = time.monotonic() + 20
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.read_text() == "False True"


def test_dask_flags_are_shared_by_the_caller_and_the_workers(dask_cluster):
    with engine.session(dask_cluster.address) as e:
        flag = e.stop_flag()
        assert e.submit(wait_for_stop, 1, 0.2, stop=flag).result() == ("done", 1)  # not set: runs out
        running = e.submit(wait_for_stop, 1, 60, stop=flag)
        time.sleep(1)
        flag.set()
        assert running.result(timeout=30) == ("stopped", 1)
        workers = e.ask_workers(os.getpid)
        assert len(set(workers)) == 2 and set(workers) <= set(dask_cluster.pids())


def _pid_then_sleep(folder: str, seconds: float) -> None:
    Path(folder, str(os.getpid())).write_text("")
    time.sleep(seconds)


def test_workers_end_when_their_caller_is_killed(tmp_path):
    """kill -9 of the command alone (not its process group): its worker processes follow it."""
    import signal
    import subprocess
    import sys

    code = ("import sys, time; from expkit.engine import LocalEngine; from tests.test_engine import _pid_then_sleep; "
            "e = LocalEngine(2); [e.submit(_pid_then_sleep, sys.argv[1], 120) for _ in range(2)]; time.sleep(120)")
    caller = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=Path(__file__).parents[1],
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [int(p.name) for p in tmp_path.iterdir()]
        assert len(workers) == 2
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
        while _group(caller.pid) and time.monotonic() < deadline:  # loky's resource tracker too
            time.sleep(0.1)
        assert not _group(caller.pid)
    finally:  # whatever is left of the caller's process group
        try:
            os.killpg(caller.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _group(pgid: int) -> list[int]:
    """Live processes of the process group ``pgid``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and _alive(proc.pid):
                found.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
