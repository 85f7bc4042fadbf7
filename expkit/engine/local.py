"""This machine: calls in the calling process or in worker processes (loky)."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from concurrent.futures import Future

from ..errors import ConfigError
from .base import Engine, StopFlag, WorkerLost, _FileFlag, _ThreadFlag


class LocalEngine(Engine):
    """This machine: ``n_jobs=1`` runs each call in the calling process (when it is
    submitted; :meth:`map` one item at a time), ``n_jobs=N`` in N worker processes.

    The workers are a ``loky.ProcessPoolExecutor`` (fresh interpreters, not forks of the
    caller; functions pickled with cloudpickle), started at the first call and kept until
    :meth:`close` or until idle for :attr:`idle_timeout` seconds (loky starts new ones
    when needed), so a worker can keep per-process caches (a loaded model) from one call
    to the next. :meth:`cancel` ends the workers at once, running calls included (a new
    pool starts at the next call). ``n_jobs=-1`` means one process per CPU.

    Should the calling process be killed (``kill -9``), its workers end on their own
    within about a second (:func:`watch_parent`, loky's documented ``initializer``): a
    worker blocked handing back a result nobody reads any more would otherwise live on.
    Stop flags also read as set in a worker whose parent is gone, and a worker idle for
    :attr:`idle_timeout` exits (loky's documented ``timeout``).
    """

    kind = "local"
    #: Seconds an idle worker process waits for work before it exits.
    idle_timeout = 30.0

    def __init__(self, n_jobs: int = 1):
        n = int(n_jobs)
        if n == 0 or n < -1:
            raise ConfigError(f"n_jobs={n_jobs!r} must be a positive number of processes, or -1 for one per CPU")
        self.n_workers = (os.cpu_count() or 1) if n == -1 else n
        self.in_process = self.n_workers == 1
        self._pool = None
        self._lock = threading.Lock()
        self._flag_dir = None

    def _new_flag(self) -> StopFlag:
        if self.n_workers == 1:
            return _ThreadFlag()
        with self._lock:
            if self._flag_dir is None:
                self._flag_dir = tempfile.mkdtemp(prefix="expkit-stop-")
        return _FileFlag(os.path.join(self._flag_dir, secrets.token_hex(8)))

    def _executor(self):
        with self._lock:
            if self._pool is None:
                from loky import ProcessPoolExecutor

                self._pool = ProcessPoolExecutor(max_workers=self.n_workers, timeout=self.idle_timeout,
                                                 initializer=watch_parent, initargs=(os.getpid(),))
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
        self._set_flags()
        self._shutdown(kill=True)

    def close(self) -> None:
        self._shutdown(kill=False)
        with self._lock:
            folder, self._flag_dir = self._flag_dir, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def _shutdown(self, kill: bool) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, kill_workers=kill)

    def describe(self) -> str:
        return "this process" if self.n_workers == 1 else f"{self.n_workers} local worker processes"


def watch_parent(parent: int, every: float = 0.5) -> None:
    """Worker initializer: end this worker process once ``parent`` (the process that
    started it) is gone, e.g. after a ``kill -9`` of the command. Runs only in worker
    processes expkit starts; what such a worker was writing is a temporary file that the
    next start of the command removes."""
    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="expkit-parent-watch", daemon=True).start()
