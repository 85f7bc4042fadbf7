"""The executor interface every engine keeps: :class:`Engine`, stop flags and what
:meth:`Engine.run_each` reports for items left without a result."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import os
import secrets
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator

from ..errors import ExpkitError

#: Seconds :meth:`Engine.run_each` gives running calls to return after a stop.
GRACE = 15.0


class WorkerLost(ExpkitError):
    """A worker process ended in the middle of a call (killed, out of memory, crashed)."""


class StopFlag:
    """A flag the calling process sets (:meth:`set`) and a call polls (:meth:`is_set`),
    wherever the call runs; it is passed to calls as an argument. Made by
    :meth:`Engine.stop_flag`; :meth:`Engine.cancel` sets every flag of its engine."""

    def set(self) -> None:
        raise NotImplementedError

    def is_set(self) -> bool:
        raise NotImplementedError


class _ThreadFlag(StopFlag):
    """Calls in this process."""

    def __init__(self):
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


class _FileFlag(StopFlag):
    """Calls in worker processes of this machine: a file that exists once set. A worker
    also reads it as set when the process that made it is gone (killed with -9), so work
    started by a dead command stops instead of running on unseen."""

    def __init__(self, path: str):
        self.path = path
        self.owner = os.getpid()

    def set(self) -> None:
        with open(self.path, "w"):
            pass

    def is_set(self) -> bool:
        orphaned = os.getpid() != self.owner and os.getppid() != self.owner
        return orphaned or os.path.exists(self.path)



class Unfinished:
    """What :meth:`Engine.run_each` reports for an item without a result after a stop:
    ``started`` tells whether its call had been handed to a worker."""

    def __init__(self, started: bool):
        self.started = started

    def __repr__(self) -> str:
        return f"Unfinished(started={self.started})"


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
    #: Whether calls run in the calling process (where Ctrl-C reaches them directly).
    in_process = False

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

    def put(self, value: Any) -> Any:
        """A handle to pass as an argument in place of ``value`` (one call's data: a
        tenant's rows), sent to one worker once rather than inside the call. Locally it is
        ``value`` itself; the data are freed when no handle and no call holds them."""
        return value

    def sees(self, path) -> bool:
        """Whether every worker sees the file ``path`` as this process does."""
        return True

    def sees_folder(self, folder) -> bool:
        """Whether every worker sees ``folder`` (a probe file written there and removed)."""
        if self.shares_files:
            return True
        probe = os.path.join(str(folder), f".probe-{secrets.token_hex(8)}")
        try:
            with open(probe, "wb") as fh:
                fh.write(secrets.token_bytes(64))
            return self.sees(probe)
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.remove(probe)

    def ask_workers(self, fn: Callable, /, *args) -> list:
        """``fn(*args)`` once in each worker process that exists now (here: in this
        process, whose environment local workers inherit); small answers only."""
        return [fn(*args)]

    def stop_flag(self) -> StopFlag:
        """A new :class:`StopFlag` that calls of this engine can poll; set by
        :meth:`cancel` (and by :meth:`run_each` on a stop)."""
        flag = self._new_flag()
        self._flags().append(flag)
        return flag

    def _new_flag(self) -> StopFlag:
        return _ThreadFlag()

    def _flags(self) -> list:
        if "_stop_flags" not in self.__dict__:
            self._stop_flags = []
        return self._stop_flags

    def _set_flags(self) -> None:
        for flag in self._flags():
            with contextlib.suppress(Exception):
                flag.set()

    def wait(self, futures, timeout: float | None = None, first: bool = False) -> tuple[set, set]:
        """(done, not done) of ``futures`` after waiting up to ``timeout`` seconds for all
        of them (``first``: for the first one)."""
        done, rest = cf.wait(futures, timeout=timeout,
                             return_when=cf.FIRST_COMPLETED if first else cf.ALL_COMPLETED)
        return set(done), set(rest)

    def run_each(self, fn: Callable, items: Iterable, /, *args, on_result: Callable | None = None,
                 in_flight: int | None = None, grace: float = GRACE, **kwargs) -> list:
        """``fn(item, *args, stop=flag, **kwargs)`` for each item, for long calls that must
        stop when the caller stops; their results in input order. Calls in the calling
        process (:attr:`in_process`) get ``stop=None``: Ctrl-C reaches them directly.

        At most ``in_flight`` calls (default: one per worker) run at once; the next item
        starts when one ends. ``on_result(index, result)`` is called in this process as
        each call ends; a call's error is passed as the result (an exception instance, a
        lost worker as :class:`WorkerLost`). On Ctrl-C or SIGTERM (a KeyboardInterrupt)
        or an error in ``on_result``, ``flag`` is set (``fn`` should poll
        ``flag.is_set()`` and end early), no further item starts, the running calls get
        ``grace`` seconds to return (``on_result`` is called for them), every item left
        without a result gets ``on_result(index, Unfinished(started))``, and the
        exception is re-raised.
        """
        items = list(items)
        limit = max(1, in_flight or self.n_workers)
        stop = None if self.in_process else self.stop_flag()
        results: list = [None] * len(items)
        settled: set[int] = set()
        started: set[int] = set()
        running: dict = {}

        def settle(index, value):
            results[index] = value
            settled.add(index)
            if on_result is not None:
                on_result(index, value)

        def collect(timeout=None, first=True):
            done, _ = self.wait(list(running), timeout=timeout, first=first)
            for future in done:
                settle(running.pop(future), self._outcome(future))

        try:
            for index, item in enumerate(items):
                started.add(index)  # in this process the call runs inside submit
                running[self.submit(fn, item, *args, stop=stop, **kwargs)] = index
                if len(running) >= limit:
                    collect()
            while running:
                collect()
        except BaseException:
            if stop is not None:
                stop.set()
            try:
                collect(timeout=grace, first=False)
            finally:
                for index in range(len(items)):
                    if index not in settled:
                        results[index] = Unfinished(index in started)
                        if on_result is not None:
                            with contextlib.suppress(Exception):
                                on_result(index, results[index])
            raise
        return results

    def _outcome(self, future):
        try:
            return self.result(future)
        except Exception as exc:  # noqa: BLE001 - handed to the caller as the item's result
            return exc

    def cancel(self) -> None:
        """Set this engine's stop flags, cancel pending calls and stop running ones, as far
        as the engine can (see each engine). The engine stays usable."""
        self._set_flags()

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


