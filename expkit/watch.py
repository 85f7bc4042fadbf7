"""Live progress of template runs, for the command that started them.

``expkit run`` executes notebooks in kernels it cannot talk to; what it can read
is what the runs write: ``run.json`` (status, start time, parameters such as
``budget``) and ``study.log``, the Optuna journal a tournament keeps there. A
:class:`Watcher` thread finds the run folders of the current command, says which
``notebook.ipynb`` is being written, then prints a line per running tenant:
time spent of its budget, trials finished and the best score so far. On a
terminal the lines are tqdm bars redrawn in place; elsewhere (logs, CI) a line
per tenant every ``interval`` seconds when something changed.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .files import read_json
from .formatting import fmt

log = logging.getLogger(__name__)

#: Seconds between two progress lines of a run when the output is not a terminal.
INTERVAL = 10.0


@dataclass
class Progress:
    """What a run folder says about a run in progress."""

    run_id: str
    tenant: str | None
    notebook: Path
    status: str
    elapsed: float | None = None
    budget: float | None = None
    trials: int = 0
    best: float | None = None
    metric: str | None = None
    studies: int = 0
    #: seconds since the first trial started (None before the search)
    search: float | None = None
    #: whether a trial is running now (False after the search: refit, evaluation)
    searching: bool = False

    @property
    def label(self) -> str:
        return self.tenant if self.tenant is not None else "all"

    def line(self) -> str:
        """``search 12 s of 20 s, 14 trials, best roc_auc 0.8123`` (what is known)."""
        if not self.studies or self.search is None:
            return f"starting: kernel, data, profile ({self.elapsed or 0:.0f} s)"
        if self.searching or self.budget is None:
            spent = f"search {self.search:.0f} s" + (f" of {fmt(self.budget)} s" if self.budget else "")
        else:
            spent = "search done, finishing (refit, evaluation)"
        parts = [spent, f"{self.trials} trial{'s' if self.trials != 1 else ''}"
                 + (f" in {self.studies} studies" if self.studies > 1 else "")]
        if self.best is not None:
            parts.append(f"best {self.metric or 'score'} {fmt(self.best)}")
        return ", ".join(parts)


def journal(path):
    """A read-only view of the Optuna journal file ``path`` (None while it is missing or
    empty: opening a journal file that does not exist would create it)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    import optuna
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def study_progress(storage) -> dict:
    """Trials finished, the best value and the metric in an Optuna storage (every study in
    it; the best is the latest study's): ``{"studies", "trials", "best", "metric"}``."""
    out = {"studies": 0, "trials": 0, "best": None, "metric": None, "first_start": None,
           "running": False}
    if storage is None:
        return out
    import optuna

    try:
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                    optuna.trial.TrialState.FAIL)
        for frozen in storage.get_all_studies():
            study = optuna.load_study(study_name=frozen.study_name, storage=storage)
            every = study.get_trials(deepcopy=False)
            trials = [t for t in every if t.state in finished]
            starts = [t.datetime_start for t in every if t.datetime_start is not None]
            if starts and out["first_start"] is None:
                out["first_start"] = min(starts)
            out["running"] = any(t.state == optuna.trial.TrialState.RUNNING for t in every)
            out["studies"] += 1
            out["trials"] += len(trials)
            out["metric"] = out["metric"] or study.user_attrs.get("metric")
            values = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE
                      and t.value is not None and math.isfinite(t.value)]
            if values and len(study.directions) == 1:
                maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
                out["best"] = max(values) if maximize else min(values)
    except Exception as exc:  # a journal being written: read it on the next tick
        log.debug("cannot read the study yet: %s", exc)
    return out


def progress(run_dir, storage=None) -> Progress:
    """The :class:`Progress` of the run in ``run_dir`` (its run.json and study.log; pass
    ``storage`` from :func:`journal` to read the journal incrementally)."""
    run_dir = Path(run_dir)
    meta = read_json(run_dir / "run.json", {}) or {}
    started = meta.get("started")
    elapsed = None
    if started:
        end = meta.get("ended")
        stop = dt.datetime.fromisoformat(end) if end else dt.datetime.now(dt.timezone.utc)
        elapsed = max(0.0, (stop - dt.datetime.fromisoformat(started)).total_seconds())
    budget = (meta.get("params") or {}).get("budget")
    study = study_progress(storage if storage is not None else journal(run_dir / "study.log"))
    search = None
    if study["first_start"] is not None:  # Optuna records local wall-clock times
        search = max(0.0, (dt.datetime.now() - study["first_start"]).total_seconds())
    return Progress(run_id=run_dir.name, tenant=meta.get("tenant"), notebook=run_dir / "notebook.ipynb",
                    status=meta.get("status", "created"), elapsed=elapsed,
                    budget=float(budget) if isinstance(budget, (int, float)) and budget > 0 else None,
                    trials=study["trials"], best=study["best"], metric=study["metric"],
                    studies=study["studies"], search=search, searching=study["running"])


class Watcher:
    """Report the progress of the runs a command starts (use it as a ``with`` block).

    Parameters
    ----------
    root : Path
        The runs folder.
    template : str
        The template's name (run folders are ``<time>-<template>-<tenant>-<random>``).
    echo : callable(str)
        Where lines go (the CLI passes ``click.echo`` to stderr).
    interval : float
        Seconds between lines of one run when not on a terminal.
    bars : bool, optional
        tqdm bars redrawn in place (default: when stderr is a terminal).
    """

    def __init__(self, root, template: str, echo: Callable[[str], None], *,
                 interval: float = INTERVAL, bars: bool | None = None, poll: float = 1.0):
        self.root, self.template, self.interval, self.poll = Path(root), template, interval, poll
        self._echo = echo
        self.bars = sys.stderr.isatty() if bars is None else bars
        self._since = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(seconds=1)
        self._seen: dict[str, dict] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="expkit-run-progress", daemon=True)

    def __enter__(self) -> "Watcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            for state in self._seen.values():
                if state.get("bar") is not None:
                    state["bar"].close()

    def echo(self, text: str) -> None:
        """Print ``text`` without breaking the bars (use it for other lines meanwhile)."""
        with self._lock:
            if self.bars and any(s.get("bar") is not None for s in self._seen.values()):
                from tqdm.auto import tqdm

                tqdm.write(text, file=sys.stderr)
            else:
                self._echo(text)

    def check(self) -> None:
        """Look at the run folders once (the thread calls this every ``poll`` seconds)."""
        for run_dir in self._new_runs():
            self._seen.setdefault(run_dir.name, {"dir": run_dir, "last": 0.0, "text": None, "bar": None})
        for state in list(self._seen.values()):
            if state.get("finished"):  # read no more (with 100s of tenants, rereading them all is the cost)
                continue
            if state.get("journal") is None:
                state["journal"] = journal(state["dir"] / "study.log")
            p = progress(state["dir"], state["journal"])
            if state["text"] is None:
                self.echo(f"[{p.label}] writing {p.notebook}")
                state["text"] = ""
            if p.status not in ("created", "running"):
                state["finished"] = True
                if state.get("bar") is not None:
                    with self._lock:
                        state["bar"].close()
                        state["bar"] = None
                continue
            text = p.line()
            if self.bars:
                self._draw(state, p, text)
            elif text != state["text"] and time.monotonic() - state["last"] >= self.interval:
                self.echo(f"[{p.label}] {text}")
                state["text"], state["last"] = text, time.monotonic()

    def _draw(self, state, p: Progress, text: str) -> None:
        from tqdm.auto import tqdm

        with self._lock:
            if state["bar"] is None:
                state["bar"] = tqdm(total=p.budget, desc=f"[{p.label}]", unit="s", leave=False,
                                    file=sys.stderr, bar_format="{desc} {bar:20} {postfix}")
            spent = p.search or 0.0
            state["bar"].n = min(spent, p.budget) if p.budget else spent
            state["bar"].set_postfix_str(text, refresh=True)

    def _new_runs(self) -> list[Path]:
        stamp = self._since.strftime("%Y%m%d-%H%M%S")
        found = []
        for path in self.root.glob(f"*-{self.template}-*"):
            if path.name[:15] >= stamp and path.name not in self._seen \
                    and (read_json(path / "run.json", {}) or {}).get("template") == self.template:
                found.append(path)
        return sorted(found)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check()
            except Exception as exc:  # progress is a courtesy: never break the command
                log.debug("progress: %s", exc)
