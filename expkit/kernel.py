"""The kernel of a run: its manager (output to ``kernel.log``, process recorded) and
how it is stopped when the command that started the run stops.

A run on a worker (another process, another machine) cannot be reached by the
command's Ctrl-C or SIGTERM; the command sets a stop flag instead
(:meth:`expkit.engine.Engine.stop_flag`) and :class:`Stopper`, a thread beside the
run, polls it: when it is set, the kernel gets SIGINT (a KeyboardInterrupt in the
running cell, which papermill reports like Ctrl-C) and, if it is still alive
``kill_after`` seconds later, SIGKILL.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: Seconds between two looks at the stop flag.
POLL = 0.5
#: Seconds a kernel has to end after SIGINT before it is killed.
KILL_AFTER = 3.0
#: Starts tried for a kernel that died because one of its ports was taken.
#: jupyter_client finds free ports by binding and releasing them; a kernel that
#: another process starts at that moment can take one first (nteract/papermill#511:
#: about 1 start in 200 with 8 processes starting kernels on 2 busy cores).
PORT_TRIES = 3


def last_line(log_file: Path, since: int = 0, limit: int = 300) -> str | None:
    """The last non-blank line the kernel wrote to ``log_file`` after byte ``since`` (at
    most ``limit`` characters), or None: what a kernel that died at start said last."""
    try:
        with open(log_file, "rb") as fh:
            fh.seek(max(since, fh.seek(0, 2) - 4096))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1][:limit] if lines else None


def port_taken(log_file: Path, since: int = 0) -> bool:
    """Whether the kernel died saying that a port it was given was in use (its last line
    after byte ``since`` is ipykernel's ``ZMQError: Address already in use``)."""
    return "Address already in use" in (last_line(log_file, since) or "")


class KernelProcess:
    """The process id and process group of a run's kernel, once it has started."""

    def __init__(self):
        self.pid: int | None = None
        self.pgid: int | None = None

    def signal(self, signum: int) -> bool:
        """Send ``signum`` to the kernel's process group (its own session); False when gone."""
        if self.pid is None:
            return False
        try:
            if self.pgid is not None and self.pgid != os.getpgid(0):
                os.killpg(self.pgid, signum)
            else:
                os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def manager_class(log_file: Path, process: KernelProcess | None = None):
    """A kernel manager class whose kernel writes stdout/stderr to ``log_file``
    (kernel.log in the run folder) instead of the terminal, and whose process is
    recorded in ``process``."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            # start_kernel passes its keywords on to the kernel's Popen (documented)
            with open(log_file, "ab") as fh:
                kw.setdefault("stdout", fh)
                kw.setdefault("stderr", fh)
                out = await super().start_kernel(**kw)
            if process is not None:
                process.pid = getattr(self.provisioner, "pid", None)
                process.pgid = getattr(self.provisioner, "pgid", None)
            return out

    return RunKernelManager


class Stopper:
    """While a run executes: poll ``stop`` and, once it is set, interrupt the kernel,
    then kill it after ``kill_after`` seconds. ``requested`` tells whether the stop
    came while the run executed. Use as a ``with`` block around the execution."""

    def __init__(self, stop, process: KernelProcess, kill_after: float = KILL_AFTER, poll: float = POLL):
        self.stop, self.process = stop, process
        self.kill_after, self.poll = kill_after, poll
        self.requested = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="expkit-run-stopper", daemon=True)

    def __enter__(self) -> "Stopper":
        if self.stop is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _stop_set(self) -> bool:
        try:
            return bool(self.stop.is_set())
        except Exception as exc:  # noqa: BLE001 - a scheduler gone away: keep running, say why
            log.debug("stop flag unreadable: %s", exc)
            return False

    def _watch(self) -> None:
        while not self._done.wait(self.poll):
            if self._stop_set():
                break
        else:
            return
        self.requested = True
        log.info("stop requested: interrupting the kernel")
        interrupted = None
        while not self._done.wait(self.poll / 5):
            if self.process.pid is None:
                continue  # the kernel is still starting
            if interrupted is None:
                self.process.signal(signal.SIGINT)
                interrupted = time.monotonic()
            elif time.monotonic() - interrupted >= self.kill_after:
                log.info("the kernel did not stop in %.0f s: killing it", self.kill_after)
                self.process.signal(signal.SIGKILL)
                return
