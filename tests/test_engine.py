"""The executor interface: ordered, bounded map; errors; cancellation that stops running
work; the resolver; local worker processes, a LocalCluster and a real Dask cluster."""
from __future__ import annotations

import os
import time

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
