"""Scoring a file in forked processes: a reader prepares chunks, a model host loads the
model and forks the workers that score them.

::

    this process ──┬── model host (forked first) ──┬── worker 0
      writes the   │   imports scikit-learn, loads ├── worker 1
      output       │   the model, watches workers  └── ...
                   └── reader (forked once the input is checked): reads, coerces
                       and summarizes chunks for the workers

The model host is forked before this process imports the database layer, looks the
model up or opens the input (``expkit score`` forks it right after importing pandas,
which both need), so importing scikit-learn and skops (most of a scoring command's
start-up) runs beside that work instead of after it. The model host receives the scorer, with the model
bytes whose hash this process checked, through a pipe, loads it and forks the workers,
which share the loaded model's memory. This module imports only the standard library.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import time
from multiprocessing.connection import wait
from typing import Iterator

from .errors import ConfigError, ScoringError

#: Prepared chunks the reading process may hold ready for the workers: AHEAD while the
#: model loads (the workers cannot take any yet), STEADY_AHEAD once they score.
AHEAD = 10
STEADY_AHEAD = 4


def n_workers(n_jobs: int | None) -> int:
    """Scoring worker processes for ``n_jobs`` (``-1``: one per CPU); 1 (score in this
    process) where fork is unavailable."""
    if n_jobs is None or n_jobs == 1:
        return 1
    if n_jobs == 0:
        raise ConfigError("n_jobs (--jobs) 0 would score with no process",
                          hint="use 1 (this process), N workers, or -1 (one per CPU)")
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return 1  # spawned workers would have to re-import and reload the model
    cpus = len(os.sched_getaffinity(0))
    if n_jobs < 0:
        return max(1, cpus + 1 + n_jobs)
    return int(n_jobs)


class ScoringProcesses:
    """The processes that score one file (see the module's docstring), ``n`` workers.

    Create it as early as possible (it forks the model host at once), then call
    :meth:`start` with the scorer (its bundle loaded lazily, so its bytes were hash-checked
    but not built) and a function returning the chunk iterator; iterate for
    ``(output, ids, counts, summary)`` per chunk in input order; :meth:`close` always.
    Memory stays bounded whatever the file size: the reader holds at most ``AHEAD``
    prepared chunks while the model loads and ``STEADY_AHEAD`` after, each worker one.
    """

    @classmethod
    def for_jobs(cls, n_jobs: int | None) -> "ScoringProcesses | None":
        """The processes for ``n_jobs`` (see :func:`n_workers`), forked now; None when
        chunks are to be scored in the calling process."""
        n = n_workers(n_jobs)
        return cls(n) if n > 1 else None

    def __init__(self, n: int):
        self.ctx = multiprocessing.get_context("fork")
        self.n = n
        self.tasks = self.ctx.Queue(maxsize=AHEAD)
        self.results = self.ctx.Queue(maxsize=2 * n + 2)  # workers wait when this process lags
        self.scoring = self.ctx.Event()
        receive, self._send = self.ctx.Pipe(duplex=False)
        # not a daemon: daemonic processes may not fork; close() ends it in any case
        self.host = self.ctx.Process(target=_host, name="expkit-model", daemon=False,
                                     args=(receive, n, self.tasks, self.results, self.scoring))
        _start(self.host)
        receive.close()
        self.reader = None
        self._closed = False

    def start(self, scorer, read) -> None:
        """Fork the reader of ``read()``'s chunks, then hand ``scorer`` to the model host.

        In that order: a scorer larger than the pipe's buffer (64 KB) waits here until the
        model host has imported scikit-learn, and the reader must not wait with it.
        """
        self.reader = self.ctx.Process(target=_read_and_prepare, name="expkit-read", daemon=True,
                                       args=(scorer, read, self.tasks, self.results, self.n, self.scoring))
        _start(self.reader)
        try:
            self._send.send(scorer)
        except OSError as exc:  # the model host is gone
            self._check_alive()
            raise ScoringError(f"the model-loading process ended early ({exc})",
                               hint="run again; nothing was written") from exc
        finally:
            self._send.close()

    def __iter__(self) -> Iterator[tuple]:
        """(output, ids, counts, summary) per chunk, in input order."""
        done, total, waiting = 0, None, {}
        while total is None or done < total:
            try:
                kind, seq, payload = self.results.get(timeout=1.0)
            except queue.Empty:
                self._check_alive()
                continue
            if kind == "error":
                raise payload
            if kind == "end":
                total = seq
                continue
            waiting[seq] = payload
            while done in waiting:
                yield waiting.pop(done)
                done += 1

    def _check_alive(self) -> None:
        for proc in (self.reader, self.host):
            if proc is not None and proc.exitcode not in (None, 0):
                raise _died(proc)

    def close(self) -> None:
        """End every process (the workers end with the model host) and the queues. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._send.closed:
            self._send.close()  # a host still waiting for the scorer ends on EOF
        procs = [p for p in (self.reader, self.host) if p is not None]
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():  # stuck where SIGTERM cannot end it
                proc.kill()
                proc.join()
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()


_HELD = {signal.SIGINT, signal.SIGTERM}


def _start(proc) -> None:
    """Start (fork) ``proc`` with Ctrl-C and SIGTERM held; the child releases them in
    :func:`_child`.

    A child inherits this process's Python handlers (Ctrl-C raises KeyboardInterrupt,
    ``expkit``'s SIGTERM handler raises Terminated). One arriving before the child set its
    own could raise in the child before multiprocessing's guard, and a copy of this
    process would run on (under pytest-xdist, a second process on the controller's
    channel, which hung CI). Here a signal waits until the child's handlers are set.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _child() -> None:
    """Set-up of a forked process: Ctrl-C is the command's to handle (it stops the
    children), SIGTERM ends the child at once (whatever handler the command set), and a
    child whose parent dies is terminated (Linux). Signals held since the fork
    (:func:`_start`) are then delivered."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # the parent died before the death signal was set


def _died(proc) -> ScoringError:
    code = proc.exitcode
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    return ScoringError(f"scoring process {proc.name} died ({how})",
                        hint="out of memory? lower --chunksize or --jobs; nothing was written")


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives the trip to the command (pickling), else a ScoringError
    carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any exception that cannot be rebuilt on the other side
        return ScoringError(f"{type(exc).__name__}: {exc}")


def _keep_freed_memory() -> None:
    """Have glibc keep freed memory for the next chunk instead of returning it to the
    system after every array: without this, a worker spends a tenth of its time in page
    faults. Memory stays bounded by the largest chunk(s) the process held at once."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: large arrays from the heap, not mmap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not trim the heap after each chunk
    except (OSError, AttributeError):
        pass


def _host(receive, n: int, tasks, results, scoring) -> None:
    """The model host: import scikit-learn and skops while the command starts, load the
    model it sends, fork ``n`` workers sharing it and report a worker that dies."""
    _child()
    # GNU OpenMP's thread pool does not survive fork: a runtime this process inherited (the
    # caller trained or predicted in-process) may hang a worker that starts OpenMP threads
    openmp_threads = 1 if _openmp_loaded() else None
    try:
        from .models.bundle import preload, skip_skops_estimator_scan

        skip_skops_estimator_scan()  # this process only loads expkit's model
        preload()
        try:
            scorer = receive.recv()
        except EOFError:  # the command failed before scoring: nothing to do
            return
        finally:
            receive.close()
        scorer.bundle.load()
        gc.freeze()  # the model outlives the batch: keep the collector off its (shared) pages
        _keep_freed_memory()
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_score_tasks, name=f"expkit-score-{i}", daemon=True,
                               args=(scorer, tasks, results, n, openmp_threads)) for i in range(n)]
        for worker in workers:
            worker.start()
        scoring.set()
        running = workers
        while running:
            wait([worker.sentinel for worker in running])
            for worker in running:
                if worker.exitcode not in (None, 0):
                    raise _died(worker)
            running = [worker for worker in running if worker.exitcode is None]
    except BaseException as exc:  # noqa: BLE001 - handed to the command
        results.put(("error", None, _portable(exc)))
        results.close()
        results.join_thread()
        os._exit(1)  # the remaining workers end with this process (daemons, death signal)


def _read_and_prepare(scorer, read, tasks, results, n_workers: int, scoring) -> None:
    """The reading process: chunks coerced and summarized, queued for the workers.

    Up to AHEAD chunks wait while the model loads; once ``scoring`` is set, the queue
    is only topped up to STEADY_AHEAD, so memory does not depend on the file's size.
    """
    _child()
    _keep_freed_memory()  # chunk after chunk of the same size: ~0.15 s less system time per 1M rows
    from .scorer import summarized

    seq = offset = 0
    chunks = read()
    try:
        while True:
            # wait for room before reading the next chunk, so no chunk waits outside the queue
            while tasks.qsize() >= (STEADY_AHEAD if scoring.is_set() else AHEAD):
                time.sleep(0.005)
            chunk = next(chunks, None)
            if chunk is None:
                break
            prepared, summary = summarized(scorer, chunk)
            # pickled here, not by the queue's feeder thread: a waiting chunk then costs its
            # bytes, not a DataFrame (about half the memory)
            tasks.put(pickle.dumps((seq, offset, prepared, summary), protocol=pickle.HIGHEST_PROTOCOL))
            seq, offset = seq + 1, offset + len(prepared)
            del chunk, prepared
        for _ in range(n_workers):
            tasks.put(None)
        results.put(("end", seq, None))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent
        results.put(("error", seq, _portable(exc)))
    tasks.close()
    results.close()
    tasks.join_thread()
    results.join_thread()


def _openmp_loaded() -> bool:
    """Whether an OpenMP runtime is loaded in this process (Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            return any(name in line for line in maps for name in ("libgomp", "libomp", "libiomp"))
    except OSError:
        return True  # cannot tell: assume the worst


def _score_tasks(scorer, tasks, results, n_workers: int, openmp_threads: int | None) -> None:
    """A scoring worker: prepared chunks in, arrow tables out (several times cheaper to pass).

    The workers share the CPUs: native thread pools (BLAS, OpenMP) are sized to a worker's
    share, OpenMP to ``openmp_threads`` when given (1 where its runtime was inherited).
    """
    import pyarrow as pa
    from threadpoolctl import threadpool_limits

    from .scorer import scored

    _child()
    share = max(1, len(os.sched_getaffinity(0)) // n_workers)
    threadpool_limits({"blas": share, "openmp": openmp_threads or share})
    while (task := tasks.get()) is not None:
        seq, offset, prepared, summary = pickle.loads(task)
        try:
            out, ids, counts = scored(scorer, prepared, offset)
            results.put(("chunk", seq, (pa.Table.from_pandas(out, preserve_index=False),
                                        pa.Table.from_pandas(ids, preserve_index=False), counts, summary)))
        except BaseException as exc:  # noqa: BLE001 - handed to the parent
            results.put(("error", seq, _portable(exc)))
            break
    results.close()
    results.join_thread()
