"""The progress bar of a tournament: it fills against the budget, not per trial.

A :class:`Bar` is a tqdm bar (a widget in notebooks, :mod:`tqdm.auto`) whose total
is the budget in seconds, counted from the start of the whole call, or
``n_trials`` when trials are the stop rule. A small thread redraws it every
:data:`REFRESH` seconds, so the bar moves while a slow family fits; the search
tells it each finished trial (:meth:`Bar.trial`), the training what it does after
the search (:meth:`Bar.stage`). The text after the bar says the trials done, the
best score so far and the time left; the description names the tenant of a
per-tenant run. A finished call fills the bar (its total becomes what was used).
"""
from __future__ import annotations

import threading
import time

from ..formatting import fmt

#: Seconds between two redraws of the bar.
REFRESH = 0.5


class Bar:
    """A tournament's progress bar (see the module docstring).

    Parameters
    ----------
    budget : float or None
        Seconds of the whole call (``None``: no time limit).
    n_trials : int or None
        Trials to run; the bar counts trials when given (or when there is no budget).
    started : float
        ``time.monotonic()`` at which the call started (the budget counts from there).
    metric : str
        Name of the ranking metric (shown with the best score).
    label : str or None
        Tenant label, shown in the description.
    file : file-like, optional
        Where a text bar is written (tqdm's default: stderr).
    """

    def __init__(self, *, budget, n_trials, started, metric, label=None, file=None):
        from tqdm.auto import tqdm

        self.budget = float(budget) if budget else None
        self.by_trials = n_trials is not None or self.budget is None
        self.started = started
        self.metric = metric
        self.trials = 0
        self.best = None
        self.best_family = None
        self.doing = None
        desc = f"tournament [{label}]" if label else "tournament"
        if self.by_trials:
            fmt_ = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} trials{postfix}"
        else:
            fmt_ = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s{postfix}"
        self.bar = tqdm(total=n_trials if self.by_trials else self.budget, desc=desc, bar_format=fmt_,
                        leave=True, file=file, dynamic_ncols=True)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="expkit-progress", daemon=True)
        self._thread.start()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def postfix(self) -> str:
        """``3 trials, best roc_auc 0.8123 (lightgbm), 12 s of 20 s, 8 s left``."""
        parts = [] if self.by_trials else [f"{self.trials} trial{'s' if self.trials != 1 else ''}"]
        if self.best is not None:
            parts.append(f"best {self.metric} {fmt(self.best)} ({self.best_family})")
        elapsed = self.elapsed
        if self.doing == "done":
            parts.append(f"done in {elapsed:.0f} s" + (f" of {self.budget:.0f} s" if self.budget else ""))
        elif self.doing:
            parts.append(self.doing)
        if self.doing == "done":
            pass
        elif self.budget is not None:
            parts.append(f"{elapsed:.0f} s of {self.budget:.0f} s, {max(self.budget - elapsed, 0):.0f} s left")
        else:
            parts.append(f"{elapsed:.0f} s")
        return ", ".join(parts)

    def trial(self, done: int, best=None, family=None):
        """A trial finished: ``done`` trials so far, the best score and its family."""
        with self._lock:
            self.trials = done
            if best is not None:
                self.best, self.best_family = best, family
            self._draw()

    def stage(self, doing: str | None):
        """What the call does now, after the search (e.g. ``"refit and evaluation"``)."""
        with self._lock:
            self.doing = doing
            self._draw()

    def _draw(self):
        bar = self.bar
        if self.by_trials:
            bar.n = min(self.trials, bar.total) if bar.total else self.trials
        else:
            bar.n = min(self.elapsed, self.budget)
        bar.set_postfix_str(self.postfix(), refresh=False)
        bar.refresh()

    def _tick(self):
        while not self._stop.wait(REFRESH):
            with self._lock:
                if self.bar.disable:
                    return
                self._draw()

    def close(self, finished: bool = True):
        """Stop redrawing. A finished call fills the bar: its total becomes the seconds (or
        trials) used, so a notebook bar turns green; an error leaves it where it was (red)."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            self.doing = "done" if finished else "stopped by an error"
            self._draw()
            if finished:
                self.bar.total = max(self.bar.n, 1e-9)
                self.bar.refresh()
            self.bar.close()


__all__ = ["Bar", "REFRESH"]
