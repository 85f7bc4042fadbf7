"""Where work runs: the one executor interface, on this machine or on a Dask cluster.

Callers ask :func:`session` (or :func:`resolve`) for an :class:`Engine` and use four
things: :meth:`Engine.submit` (one call, a future), :meth:`Engine.map` (a function over
items, results in input order, a bounded number in flight), :meth:`Engine.broadcast`
(a large value sent once to every worker) and :meth:`Engine.cancel` /
:meth:`Engine.close` (or a ``with`` block). No other expkit module knows about
processes or clusters.

==========================  ====================================================
``cluster=None``            :class:`LocalEngine`: ``n_jobs=1`` runs in this process,
                            ``n_jobs=N`` in N worker processes (loky)
``"tcp://host:8786"``       :class:`DaskEngine` on an existing Dask scheduler
a ``distributed.Client``    :class:`DaskEngine` on that client (not closed here)
``"local:N"``               :class:`DaskEngine` on a ``LocalCluster`` of N worker
                            processes on 127.0.0.1, closed with the engine
an :class:`Engine`          used as it is (not closed here)
==========================  ====================================================

``$EXPKIT_DASK_SCHEDULER`` stands in for ``cluster`` when it is not given. Engines are
registered by kind in :data:`engines` (the shape of papermill's engine registry), so a
new kind (a thread pool, another scheduler) is one ``engines.register(...)`` away.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator

from .errors import ConfigError, ExpkitError

log = logging.getLogger(__name__)

#: Environment variable naming a Dask scheduler to use when ``cluster`` is not given.
SCHEDULER_ENV = "EXPKIT_DASK_SCHEDULER"
#: Prefix of ``cluster`` values that start a LocalCluster (``local:4``).
LOCAL_CLUSTER = "local:"


class WorkerLost(ExpkitError):
    """A worker process ended in the middle of a call (killed, out of memory, crashed)."""


class Engine:
    """Runs functions somewhere; the contract every engine keeps.

    Functions and their arguments must be picklable (module-level functions; a worker
    imports the function's module). Results come back to the calling process.
    """

    #: Registry name of the engine kind.
    kind = "base"
    #: Processes (or workers) running work at once.
    n_workers = 1
    #: Whether workers see this machine's files at the same paths.
    shares_files = True

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        """Run ``fn(*args, **kwargs)``; a future with ``result()``, ``done()`` and ``cancel()``."""
        raise NotImplementedError

    def map(self, fn: Callable, items: Iterable, /, *args, in_flight: int | None = None,
            **kwargs) -> Iterator:
        """``fn(item, *args, **kwargs)`` for each item, yielded in input order.

        At most ``in_flight`` calls (default: twice the workers) are submitted and not yet
        consumed, so memory stays bounded however many items there are; ``items`` is read
        only as far as needed. The first error is raised when its item's turn comes;
        closing the iterator early (or an error) cancels the calls not yet started.
        """
        limit = max(1, in_flight or 2 * self.n_workers)
        pending: collections.deque = collections.deque()
        try:
            for item in items:
                pending.append(self.submit(fn, item, *args, **kwargs))
                if len(pending) >= limit:
                    yield self.result(pending.popleft())
            while pending:
                yield self.result(pending.popleft())
        finally:
            for future in pending:
                future.cancel()

    def result(self, future):
        """The result of one of this engine's futures (its error raised as it is, a lost
        worker as :class:`WorkerLost`)."""
        return future.result()

    def broadcast(self, value: Any) -> Any:
        """A handle to pass as an argument in place of ``value`` (large: a model's bytes),
        sent to each worker at most once. Locally it is ``value`` itself."""
        return value

    def sees(self, path) -> bool:
        """Whether every worker sees the file ``path`` as this process does."""
        return True

    def cancel(self) -> None:
        """Cancel pending calls and stop running ones, as far as the engine can (see each
        engine). The engine stays usable."""

    def close(self) -> None:
        """Release workers, clients and clusters this engine started."""

    def describe(self) -> str:
        """One line saying where work runs (for logs and messages)."""
        return f"{self.kind} ({self.n_workers} worker(s))"

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                self.cancel()
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class LocalEngine(Engine):
    """This machine: ``n_jobs=1`` runs each call in the calling process (when it is
    submitted; :meth:`map` one item at a time), ``n_jobs=N`` in N worker processes.

    The workers are a ``loky.ProcessPoolExecutor`` (fresh interpreters, not forks of the
    caller; functions pickled with cloudpickle), started at the first call and kept until
    :meth:`close`, so a worker can keep per-process caches (a loaded model) from one call
    to the next. :meth:`cancel` ends the workers at once, running calls included (a new
    pool starts at the next call). ``n_jobs=-1`` means one process per CPU.
    """

    kind = "local"

    def __init__(self, n_jobs: int = 1):
        n = int(n_jobs)
        if n == 0 or n < -1:
            raise ConfigError(f"n_jobs={n_jobs!r} must be a positive number of processes, or -1 for one per CPU")
        self.n_workers = (os.cpu_count() or 1) if n == -1 else n
        self._pool = None
        self._lock = threading.Lock()

    def _executor(self):
        with self._lock:
            if self._pool is None:
                from loky import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(max_workers=self.n_workers)
            return self._pool

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self.n_workers > 1:
            return self._executor().submit(fn, *args, **kwargs)
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future

    def result(self, future):
        from concurrent.futures.process import BrokenProcessPool

        try:
            return future.result()
        except BrokenProcessPool as exc:  # loky's TerminatedWorkerError is one
            raise WorkerLost(f"a worker process ended unexpectedly: {exc}",
                             hint="it may have run out of memory; try fewer --jobs or a smaller --chunksize") \
                from exc

    def map(self, fn, items, /, *args, in_flight=None, **kwargs):
        if self.n_workers > 1:
            return super().map(fn, items, *args, in_flight=in_flight, **kwargs)
        return (fn(item, *args, **kwargs) for item in items)

    def cancel(self) -> None:
        self._shutdown(kill=True)

    def close(self) -> None:
        self._shutdown(kill=False)

    def _shutdown(self, kill: bool) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, kill_workers=kill)

    def describe(self) -> str:
        return "this process" if self.n_workers == 1 else f"{self.n_workers} local worker processes"


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
                dashboard_address=None, silence_logs=logging.ERROR)
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
        return self._client.scatter(value, broadcast=True, hash=False)

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


class Engines:
    """The registry of engine kinds: ``engines.register("name", factory)``; ``factory``
    takes the ``cluster`` value (or ``n_jobs`` for ``"local"``) and returns an Engine."""

    def __init__(self):
        self._kinds: dict[str, Callable[..., Engine]] = {}

    def register(self, kind: str, factory: Callable[..., Engine]) -> None:
        self._kinds[kind] = factory

    def create(self, kind: str, *args, **kwargs) -> Engine:
        try:
            factory = self._kinds[kind]
        except KeyError:
            raise ConfigError(f"no engine of kind {kind!r}", hint=f"known: {', '.join(self._kinds)}") from None
        return factory(*args, **kwargs)


#: The engine kinds expkit knows.
engines = Engines()
engines.register("local", LocalEngine)
engines.register("dask", DaskEngine)


def resolve(cluster=None, n_jobs: int = 1) -> Engine:
    """The engine for ``cluster`` (see the module docs), else ``$EXPKIT_DASK_SCHEDULER``,
    else this machine with ``n_jobs`` processes. The caller closes it (use :func:`session`
    to close only what was created)."""
    if isinstance(cluster, Engine):
        return cluster
    if cluster is None or cluster == "":
        cluster = os.environ.get(SCHEDULER_ENV) or None
    if cluster is None:
        return engines.create("local", n_jobs)
    return engines.create("dask", cluster)


@contextlib.contextmanager
def session(cluster=None, n_jobs: int = 1) -> Iterator[Engine]:
    """The engine of :func:`resolve` for the length of a ``with`` block. On an error,
    Ctrl-C or SIGTERM (a KeyboardInterrupt) inside the block its work is cancelled; at the
    end it is closed if it was created here (an Engine or Client passed in stays open)."""
    engine = resolve(cluster, n_jobs)
    owned = engine is not cluster
    try:
        yield engine
    except BaseException:
        engine.cancel()
        raise
    finally:
        if owned:
            engine.close()
