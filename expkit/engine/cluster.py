"""A Dask distributed cluster: an address, a client or a LocalCluster of this machine."""
from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading

from ..errors import ConfigError
from .base import Engine, StopFlag, WorkerLost

#: Prefix of ``cluster`` values that start a LocalCluster (``local:4``).
LOCAL_CLUSTER = "local:"


class _DaskFlag(StopFlag):
    """Calls on a Dask cluster: a ``distributed.Event`` (state kept by the scheduler, so
    it stays set for calls still running after the caller left)."""

    def __init__(self, name: str, client=None):
        self.name = name
        self._event = None
        self._client = client

    def __getstate__(self):
        return {"name": self.name}

    def __setstate__(self, state):
        self.__init__(state["name"])

    def _get(self):
        if self._event is None:
            from distributed import Event

            self._event = Event(self.name, client=self._client)
        return self._event

    def set(self) -> None:
        self._get().set()

    def is_set(self) -> bool:
        return self._get().is_set()



class DaskEngine(Engine):
    """A Dask distributed cluster: an address (``tcp://host:8786``), a
    ``distributed.Client``, or ``"local:N"`` for a ``LocalCluster`` of N single-threaded
    worker processes on 127.0.0.1 that lives as long as the engine.

    :meth:`broadcast` scatters a value to every worker once. :meth:`cancel` cancels this
    engine's futures; on a local cluster it also ends the worker processes (running calls
    included). A call already running on an external cluster runs to its end (Dask
    cannot stop a running task), its result discarded. Needs ``pip install 'expkit[dask]'``.
    """

    kind = "dask"

    def __init__(self, cluster):
        try:
            import distributed
        except ImportError as exc:
            raise ConfigError(f"cluster={cluster!r} needs Dask distributed, which is not installed",
                              hint="pip install 'expkit[dask]'") from exc
        self._cluster = self._client = None
        self._owns_client = True
        self._futures: set = set()
        self._lock = threading.Lock()
        if isinstance(cluster, distributed.Client):
            self._client, self._owns_client = cluster, False
        elif isinstance(cluster, str) and cluster.startswith(LOCAL_CLUSTER):
            n = _local_workers(cluster)
            self._cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
            self._client = distributed.Client(self._cluster, set_as_default=False)
        elif isinstance(cluster, str) and cluster.strip():
            try:
                self._client = distributed.Client(cluster, timeout=30, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {cluster!r}: {exc}",
                                  hint="start it with `dask scheduler` or pass another --cluster") from exc
        else:
            raise ConfigError(f"cluster={cluster!r} is not a Dask scheduler address",
                              hint="use tcp://HOST:PORT, local:N or a distributed.Client")

    @property
    def client(self):
        """The ``distributed.Client`` work goes through."""
        return self._client

    @property
    def n_workers(self) -> int:
        return max(1, sum(self._client.nthreads().values()))

    @property
    def shares_files(self) -> bool:
        return self._cluster is not None

    def submit(self, fn, /, *args, **kwargs):
        future = self._client.submit(fn, *args, pure=False, **kwargs)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future) -> None:
        with self._lock:
            self._futures.discard(future)

    def broadcast(self, value):
        return self._client.scatter([value], broadcast=True, hash=False)[0]  # a list: one value, whatever its type

    def put(self, value):
        return self._client.scatter([value], hash=False)[0]

    def _new_flag(self) -> StopFlag:
        return _DaskFlag(f"expkit-stop-{secrets.token_hex(8)}", client=self._client)

    def wait(self, futures, timeout=None, first=False):
        from distributed import wait

        if futures:
            with contextlib.suppress(TimeoutError), self._client.as_current():  # wait() asks for the current client
                wait(futures, timeout=timeout, return_when="FIRST_COMPLETED" if first else "ALL_COMPLETED")
        done = {f for f in futures if f.done()}
        return done, set(futures) - done

    def result(self, future):
        from distributed.scheduler import KilledWorker

        try:
            return future.result()
        except KilledWorker as exc:
            raise WorkerLost(f"Dask workers died running this call: {exc}",
                             hint="a worker may have run out of memory; see the workers' logs") from exc

    def ask_workers(self, fn, /, *args) -> list:
        return list(self._client.run(fn, *args).values())

    def sees(self, path) -> bool:
        if self._cluster is not None:
            return True
        try:
            here = _stat(str(path))
            there = self._client.run(_stat, str(path))
        except Exception:  # noqa: BLE001 - unreachable workers: they do not see it
            return False
        return here is not None and bool(there) and all(v == here for v in there.values())

    def cancel(self) -> None:
        self._set_flags()
        with self._lock:
            futures, self._futures = list(self._futures), set()
        if futures:
            with contextlib.suppress(Exception):
                self._client.cancel(futures, force=True)
        if self._cluster is not None:
            self.close()

    def close(self) -> None:
        client, cluster = self._client, self._cluster
        self._cluster = None
        if client is not None and (self._owns_client or cluster is not None):
            with contextlib.suppress(Exception):
                client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()

    def describe(self) -> str:
        where = "local cluster" if self._cluster is not None else self._client.scheduler.address
        return f"Dask {where} ({self.n_workers} worker thread(s))"


def _stat(path: str):
    """(size, modification time) of a file, or None (run on Dask workers by ``sees``)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _local_workers(value: str) -> int:
    try:
        n = int(value[len(LOCAL_CLUSTER):])
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"cluster {value!r}: the number after 'local:' must be a positive whole number",
                          hint="e.g. --cluster local:2")
    return n


