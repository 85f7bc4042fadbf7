"""One run: its folder, its lifecycle and its row in the index.

A run folder (``runs/<run_id>/``) holds ``run.json`` (parameters, status,
template and its content hash, times, error, data fingerprint, package
versions, git commit), the executed ``notebook.ipynb``, ``report.html``,
``metrics.json``, ``leaderboard.csv``, ``model/``, ``figures/`` and the
Optuna ``study.log``. ``run.json`` is rewritten atomically under a file lock,
and every change is mirrored into the index (:class:`RunRecord`), which
:func:`expkit.runs.rebuild_index` can recreate from the folders.

Status lifecycle: ``created -> running -> succeeded | failed | interrupted``.
A run still marked ``created`` or ``running`` whose process is gone is shown,
and stored, as ``interrupted``.

A run folder appears whole: it is made under a temporary name, given its
``run.json``, then renamed; if it cannot be indexed it is removed again. It also
holds a small reserve file (``.reserve``) that is given up when the disk is full,
so the final status and its cause can still be written to run.json.

Inside a template executed by ``expkit run``, ``Run.current(run_dir)`` returns
the run that papermill injected through the ``run_dir`` parameter; used by
hand it creates an interactive run (call :meth:`Run.finish` when done).
The collection of runs (list, show, compare, rebuild) is :mod:`expkit.runs`.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import getpass
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Mapping

import pandas as pd
from sqlalchemy import Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from . import db
from .errors import ConfigError, IndexDatabaseError, RunError, WriteError
from .files import now, pid_alive, read_json, tmp_path, versions, write_bytes, write_csv, write_json, write_png
from .paths import runs_dir as _runs_dir
from .paths import safe_name
from .sql import redact

log = logging.getLogger(__name__)

STATUSES = ("created", "running", "succeeded", "failed", "interrupted")
FINAL = ("succeeded", "failed", "interrupted")
#: The hold-out metric runs, comparisons and the registry gate use, per task.
HEADLINE = {"binary": "auroc", "multiclass": "auroc", "regression": "r2"}
#: Bytes set aside in each unfinished run folder (``.reserve``) for writing its final
#: status when the disk is full.
RESERVE_BYTES = 256 * 1024
_RESERVE = ".reserve"
_current: "Run | None" = None


class RunRecord(db.Base):
    """One row per run in the index (a copy of the essentials of run.json)."""

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), default="template")
    template: Mapped[str] = mapped_column(String(100), index=True)
    template_hash: Mapped[str | None] = mapped_column(String(64))
    tenant: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    created: Mapped[str] = mapped_column(String(40), index=True)
    started: Mapped[str | None] = mapped_column(String(40))
    ended: Mapped[str | None] = mapped_column(String(40))
    duration: Mapped[float | None] = mapped_column(Float)
    winner: Mapped[str | None] = mapped_column(String(100))
    metric_name: Mapped[str | None] = mapped_column(String(50))
    metric: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[str] = mapped_column(Text, default="{}")
    metrics: Mapped[str] = mapped_column(Text, default="{}")
    path: Mapped[str] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(200))


# -- small helpers ---------------------------------------------------------------
def _git_commit(cwd: Path) -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def alive(pid: int | None, host: str | None) -> bool:
    """Whether process ``pid`` on ``host`` may still run (True when it cannot be told)."""
    if not pid or (host and host != socket.gethostname()):
        return True  # cannot tell: trust the recorded status
    return pid_alive(pid)


def flatten(metrics: Mapping, prefix: str = "") -> dict:
    """Nested metrics as one level of ``a.b`` keys (scalar values only)."""
    out = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            out[name] = value
    return out


def summarize_metrics(metrics: Mapping) -> dict:
    """Winner, headline hold-out metric and verdict from a metrics.json dict.

    The headline metric is ``metric_name`` when given, else the task's
    (:data:`HEADLINE`), read from ``holdout`` when there is one.
    """
    flat = flatten(metrics or {})
    name = metrics.get("metric_name") or HEADLINE.get(metrics.get("task"))
    if not isinstance(name, str):
        name = next((m for m in HEADLINE.values() if m in flat or f"holdout.{m}" in flat), None)
    value = flat.get(f"holdout.{name}", flat.get(name)) if name else None
    return {
        "winner": metrics.get("winner") or metrics.get("family"),
        "metric_name": name,
        "metric": value if isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) else None,
        "above_chance": metrics.get("above_chance"),
    }


# -- the run -------------------------------------------------------------------
class Run:
    """A run folder and its lifecycle.

    Use :meth:`current` inside notebooks, :meth:`create` to start a run and
    :meth:`open` (or :func:`get`) to read one.
    """

    def __init__(self, directory):
        self.dir = Path(directory).absolute()
        if not (self.dir / "run.json").is_file():
            raise RunError(f"{self.dir} is not a run folder (no run.json)")

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self.status!r})"

    # -- construction ---------------------------------------------------------
    @classmethod
    def create(cls, template: str, *, tenant=None, params: Mapping | None = None,
               runs_dir=None, kind: str = "template", template_path=None,
               template_hash: str | None = None, template_version: int | None = None) -> "Run":
        """Create a run folder (status ``created``) and index it."""
        root = _runs_dir(runs_dir)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        tenant_part = "all" if tenant is None else safe_name(tenant, "tenant")
        run_id = f"{stamp}-{safe_name(template, 'template')}-{tenant_part}-{secrets.token_hex(3)}"
        directory = root / run_id
        meta = {
            "id": run_id, "kind": kind, "template": template,
            "template_path": str(template_path) if template_path else None,
            "template_hash": template_hash, "template_version": template_version,
            "tenant": None if tenant is None else str(tenant),
            "params": dict(params or {}), "status": "created", "created": now(),
            "started": None, "ended": None, "duration": None, "error": None,
            "data": None, "summary": {}, "versions": versions(),
            "git_commit": _git_commit(Path.cwd()), "user": getpass.getuser(),
            "pid": os.getpid(), "host": socket.gethostname(),
        }
        building = tmp_path(directory)  # the folder appears only once it holds run.json
        try:
            root.mkdir(parents=True, exist_ok=True)
            building.mkdir()
            write_bytes(building / _RESERVE, bytes(RESERVE_BYTES))
            write_json(building / "run.json", meta)
            os.rename(building, directory)
        except OSError as exc:  # named after the run folder, not its temporary name
            shutil.rmtree(building, ignore_errors=True)
            raise WriteError(directory, exc) from exc
        run = cls(directory)
        try:
            run._index(meta)
        except BaseException:  # no run folder the index does not know
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return run

    @classmethod
    def open(cls, directory) -> "Run":
        """The run in ``directory``."""
        return cls(directory)

    @classmethod
    def current(cls, run_dir=None) -> "Run":
        """The run this code executes in.

        Parameters
        ----------
        run_dir : str or Path, optional
            The run folder ``expkit run`` injects into a template's ``run_dir``
            parameter. When None (``$EXPKIT_RUN_DIR`` unset too) an interactive
            run is created under :func:`runs_dir` once per process, marked
            ``running`` until :meth:`finish` is called.
        """
        global _current
        run_dir = run_dir or os.environ.get("EXPKIT_RUN_DIR")
        if run_dir:
            return cls(run_dir)
        if _current is None:
            _current = cls.create("interactive", kind="interactive")
            _current.start()
        return _current

    # -- run.json -----------------------------------------------------------------
    @property
    def meta(self) -> dict:
        """The content of run.json (read from disk); RunError naming the file when it
        cannot be read or is not a JSON object (cut short, edited by hand)."""
        path = self.dir / "run.json"
        try:
            meta = read_json(path, {})
        except (OSError, ValueError) as exc:
            raise RunError(f"cannot read {path}: {exc}",
                           hint="restore the file, or move the run folder away; `expkit runs rebuild-index` "
                                "skips it") from None
        if not isinstance(meta, dict):
            raise RunError(f"{path} does not hold a JSON object",
                           hint="restore the file, or move the run folder away")
        return meta

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def params(self) -> dict:
        return self.meta.get("params", {})

    @property
    def status(self) -> str:
        return self.meta.get("status")

    @property
    def metrics(self) -> dict:
        """The content of metrics.json ({} before any metric is logged)."""
        path = self.dir / "metrics.json"
        try:
            metrics = read_json(path, {})
        except (OSError, ValueError) as exc:
            raise RunError(f"cannot read {path}: {exc}", hint="restore the file or re-run") from None
        return metrics if isinstance(metrics, dict) else {}

    @contextlib.contextmanager
    def _locked(self):
        with open(self.dir / ".run.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def update(self, **fields) -> dict:
        """Merge ``fields`` into run.json (atomically, under a lock) and the index."""
        meta = self._write(fields)
        self._index(meta)
        return meta

    def _write(self, fields: Mapping) -> dict:
        """Merge ``fields`` into run.json. When the disk is full, the folder's reserve
        file is given up and the write tried once more."""
        with self._locked():
            meta = self.meta
            for key, value in fields.items():
                if isinstance(value, Mapping) and isinstance(meta.get(key), Mapping) \
                        and key in ("params", "summary"):
                    meta[key] = {**meta[key], **value}
                else:
                    meta[key] = value
            try:
                write_json(self.dir / "run.json", meta)
            except WriteError as exc:
                reserve = self.dir / _RESERVE
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or not reserve.exists():
                    raise
                log.warning("run %s: disk full, using the reserve to write run.json", self.id)
                reserve.unlink()
                write_json(self.dir / "run.json", meta)
        return meta

    def _index(self, meta: Mapping) -> None:
        """Write ``meta`` into the run's index row. Another process may index the same run
        at once (a sweep finds the folder before its own process has indexed it), so the
        row's read-then-write holds the run's lock (on PostgreSQL; SQLite writes one at a
        time anyway), and a finished run's row is never taken back to an unfinished status
        read from run.json before it finished."""
        record = index_record(meta, self.dir, self.metrics)
        with db.session(self.dir.parent, lock=f"expkit:run:{self.id}") as s:
            row = s.get(RunRecord, record.run_id)
            if row is not None and row.status in FINAL and record.status not in FINAL:
                return
            s.merge(record)

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Mark the run ``running`` in this process."""
        self.update(status="running", started=now(), pid=os.getpid(), host=socket.gethostname())

    def finish(self, status: str = "succeeded", error: Mapping | None = None) -> dict:
        """Mark the run ended with ``status`` (succeeded, failed or interrupted)."""
        if status not in FINAL:
            raise ConfigError(f"status {status!r} is not a final status", hint=f"use one of {FINAL}")
        meta = self.meta
        ended = now()
        started = meta.get("started") or meta.get("created")
        duration = (dt.datetime.fromisoformat(ended) - dt.datetime.fromisoformat(started)).total_seconds()
        try:
            summary = summarize_metrics(self.metrics)
        except RunError:  # a metrics.json cut short must not keep the run from ending
            summary = meta.get("summary") or {}
        meta = self._write({"status": status, "ended": ended, "duration": round(duration, 3),
                            "error": error, "summary": summary})
        with contextlib.suppress(OSError):
            (self.dir / _RESERVE).unlink()
        try:
            self._index(meta)
        except IndexDatabaseError as exc:  # run.json is the record; the index catches up on listing
            log.warning("run %s ended %s, but the index could not be updated: %s", self.id, status, exc)
        return meta

    # -- logging from notebooks -------------------------------------------------------
    def log_params(self, params: Mapping | None = None, **more) -> None:
        """Record parameters (merged into run.json ``params``; passwords in database URLs hidden)."""
        self.update(params={k: redact(v) for k, v in {**(params or {}), **more}.items()})

    def log_metrics(self, metrics: Mapping | None = None, **more) -> None:
        """Record metrics (merged into metrics.json)."""
        new = {**(metrics or {}), **more}
        with self._locked():
            write_json(self.dir / "metrics.json", {**self.metrics, **new})
        self.update(summary=summarize_metrics(self.metrics))

    def log_data(self, df: pd.DataFrame, source=None) -> str:
        """Record the data fingerprint, shape and source of the table the run used."""
        from .data import fingerprint

        fp = fingerprint(df)
        self.update(data={"fingerprint": fp, "rows": int(len(df)), "columns": int(df.shape[1]),
                          "source": None if source is None else redact(str(source))})
        return fp

    def save_model(self, result, card: Mapping | None = None) -> Path:
        """Save a tournament result (model/, metrics.json, leaderboard.csv, figures/)
        or a fitted pipeline (model/) into the run; returns the model folder."""
        logged = self.metrics
        if hasattr(result, "save"):
            result.save(self.dir)
        else:
            from .models.bundle import save_model

            save_model(result, self.dir / "model", dict(card or {}))
        if logged:  # metrics logged before keep their values next to the result's
            with self._locked():
                write_json(self.dir / "metrics.json", {**logged, **self.metrics})
        self.update(summary=summarize_metrics(self.metrics))
        return self.dir / "model"

    def save_figure(self, name: str, fig) -> Path:
        """Save a matplotlib figure as figures/<name>.png."""
        path = self.dir / "figures" / f"{safe_name(name, 'figure name')}.png"
        path.parent.mkdir(exist_ok=True)
        return write_png(path, fig, dpi=100, bbox_inches="tight")

    def save_table(self, name: str, df: pd.DataFrame) -> Path:
        """Save a DataFrame as <name>.csv in the run folder."""
        path = self.dir / f"{safe_name(name, 'table name')}.csv"
        return write_csv(path, df)

    def reindex(self) -> dict:
        """:meth:`reconcile`, then write run.json's content into the index (which may lag
        behind it after a crash or a full disk); returns run.json's content."""
        meta = self.reconcile()
        self._index(meta)
        return meta

    def reconcile(self) -> dict:
        """Mark the run ``interrupted`` if it is unfinished but its process is gone."""
        meta = self.meta
        if meta.get("status") in ("created", "running") and not alive(meta.get("pid"), meta.get("host")):
            log.info("run %s: process %s is gone, marking it interrupted", self.id, meta.get("pid"))
            meta = self.finish("interrupted", error={"message": "the process running it ended "
                                                     "before the run finished"})
        return meta


def index_record(meta: Mapping, directory: Path, metrics: Mapping) -> RunRecord:
    """The index row of a run from its run.json content, folder and metrics."""
    summary = meta.get("summary") or {}
    error = meta.get("error")
    return RunRecord(
        run_id=meta["id"], kind=meta.get("kind", "template"), template=meta.get("template", ""),
        template_hash=meta.get("template_hash"), tenant=meta.get("tenant"),
        status=meta.get("status"), created=meta.get("created"), started=meta.get("started"),
        ended=meta.get("ended"), duration=meta.get("duration"), winner=summary.get("winner"),
        metric_name=summary.get("metric_name"), metric=summary.get("metric"),
        error=(error or {}).get("message") if isinstance(error, Mapping) else error,
        params=json.dumps(meta.get("params", {}), default=str),
        metrics=json.dumps(flatten(metrics or {}), default=str),
        path=str(directory), pid=meta.get("pid"), host=meta.get("host"),
    )

# -- finding a run ---------------------------------------------------------------------
def get(run_id: str, runs_dir=None) -> Run:
    """The run ``run_id`` (or a unique prefix of it) in the runs folder."""
    root = _runs_dir(runs_dir)
    text = str(run_id)
    if text and "/" not in text and "\\" not in text and text.strip(".") and (root / text / "run.json").is_file():
        return Run(root / text)
    matches = sorted(p for p in root.glob(f"{glob_escape(text)}*") if (p / "run.json").is_file()) \
        if text and "/" not in text and text.strip(".") else []
    if len(matches) == 1:
        return Run(matches[0])
    if len(matches) > 1:
        raise RunError(f"run id {text!r} is ambiguous in {root}",
                       hint="matches " + ", ".join(p.name for p in matches[:5]))
    raise RunError(f"no run {text!r} in {root}", hint="`expkit runs list` shows the runs")


def glob_escape(text: str) -> str:
    """``text`` with glob wildcards escaped (a run id prefix matches itself only)."""
    return re.sub(r"([*?\[])", r"[\1]", text)
