"""The runs of a project: list, show and compare them; rebuild their index.

Each run is a folder under the runs folder (see :mod:`expkit.run`); the index
(:class:`expkit.run.RunRecord` rows in :mod:`expkit.db`) mirrors their
``run.json`` files so listing is fast, and :func:`rebuild_index` recreates it
from the folders. ``expkit.runs.list()`` is what notebooks and the CLI call.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd
from sqlalchemy import delete, select

from . import _lazy, db
from .errors import ConfigError, ExpkitError, RunError
from .files import clean_stale
from .paths import runs_dir
from .run import (  # noqa: F401
    FINAL,
    HEADLINE,
    STATUSES,
    Run,
    RunRecord,
    alive,
    flatten,
    get,
    index_record,
    summarize_metrics,
)

log = logging.getLogger(__name__)
_runs_dir = runs_dir  # functions below take a ``runs_dir`` argument that hides the name
#: Finished runs this recent are still swept for temporary files (see :func:`sweep`).
SWEEP_RECENT = dt.timedelta(hours=24)


def _since(value) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        when = value
    else:
        text = str(value).strip()
        match = re.fullmatch(r"(\d+)\s*([mhdw])", text)
        if match:
            unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match[2]]
            when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(**{unit: int(match[1])})
        else:
            try:
                when = dt.datetime.fromisoformat(text)
            except ValueError:
                raise ConfigError(f"--since {text!r} is not a date or an age",
                                  hint="use e.g. 2024-05-01, '2024-05-01 14:00', 30m, 12h or 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


LIST_COLUMNS = ["run_id", "template", "tenant", "status", "created", "duration", "winner",
                "metric_name", "metric", "path"]


def list(template: str | None = None, tenant: str | None = None, status: str | None = None,  # noqa: A001
         since=None, runs_dir=None) -> pd.DataFrame:
    """The runs in the index, newest first, as a DataFrame.

    Parameters
    ----------
    template, tenant, status : str, optional
        Keep runs with this template name, tenant or status.
    since : str or datetime, optional
        Keep runs created since a date/time (ISO) or an age such as ``"12h"``, ``"7d"``.
    runs_dir : str or Path, optional
        The runs folder (see :func:`runs_dir`).
    """
    if status is not None and status not in STATUSES:
        raise ConfigError(f"unknown status {status!r}", hint=f"use one of {', '.join(STATUSES)}")
    root = _runs_dir(runs_dir)
    if not root.is_dir():
        return pd.DataFrame(columns=LIST_COLUMNS)
    query = select(RunRecord).order_by(RunRecord.created.desc(), RunRecord.run_id.desc())
    with db.session(root) as s:
        rows = s.scalars(query).all()
    stale = [r.run_id for r in rows if r.status in ("created", "running") and not alive(r.pid, r.host)]
    for run_id in stale:
        with contextlib.suppress(RunError):
            Run(root / run_id).reindex()
    if stale:
        with db.session(root) as s:
            rows = s.scalars(query).all()
    cut = _since(since)
    rows = [r for r in rows
            if (template is None or r.template == template) and (tenant is None or r.tenant == tenant)
            and (status is None or r.status == status) and (cut is None or r.created >= cut)]
    return pd.DataFrame([{c: getattr(r, c) for c in LIST_COLUMNS} for r in rows], columns=LIST_COLUMNS)


def show(run_id: str, runs_dir=None) -> dict:
    """run.json of a run plus its metrics and the files it holds."""
    run = get(run_id, runs_dir)
    meta = run.reconcile()
    files = sorted(str(p.relative_to(run.dir)) for p in run.dir.rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    return {**meta, "path": str(run.dir), "metrics": run.metrics, "files": files}


def compare(run_ids: Iterable[str], runs_dir=None) -> pd.DataFrame:
    """Parameters and metrics of runs side by side (one column per run).

    The ``differs`` column is True where the runs do not all agree.
    """
    runs = [get(r, runs_dir) for r in run_ids]
    if len(runs) < 2:
        raise ConfigError("compare needs at least two runs")
    columns = {}
    for run in runs:
        meta = run.meta
        values = {"template": meta.get("template"), "template_hash": meta.get("template_hash"),
                  "tenant": meta.get("tenant"), "status": meta.get("status"),
                  "duration": meta.get("duration"),
                  "data.fingerprint": (meta.get("data") or {}).get("fingerprint")}
        values.update({f"param.{k}": v for k, v in flatten(meta.get("params", {})).items()})
        values.update({f"metric.{k}": v for k, v in flatten(run.metrics).items()})
        columns[run.id] = values
    frame = pd.DataFrame(columns)
    frame = frame.astype(object).where(frame.notna(), None)
    frame["differs"] = [len({json.dumps(v, default=str) for v in row}) > 1
                        for row in frame[[r.id for r in runs]].itertuples(index=False)]
    return frame


@dataclass
class Rebuilt:
    """What :func:`rebuild_index` (and :func:`expkit.index.rebuild`) did."""

    runs: int = 0
    #: (folder, why) of every folder that could not be indexed
    skipped: list = field(default_factory=lambda: [])  # (``list`` is this module's function)
    #: where a corrupt index file was moved before the rebuild (None if it was sound)
    moved: Path | None = None
    versions: int = 0
    batches: int = 0
    feedback: int = 0


def rebuild_index(runs_dir=None) -> Rebuilt:
    """Recreate the runs table of the index from the run folders.

    A corrupt SQLite index is moved aside first (:func:`expkit.db.move_aside`). A
    folder whose run.json cannot be read is skipped and listed in ``skipped``.
    :func:`expkit.index.rebuild` also rebuilds the registry and the score log.
    """
    root = _runs_dir(runs_dir)
    if not root.is_dir():
        raise RunError(f"runs folder {root} does not exist",
                       hint="pass --runs-dir or set EXPKIT_RUNS to the folder holding the runs")
    out = Rebuilt(moved=db.move_aside(root))
    records = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not (directory / "run.json").exists():
            if any(directory.iterdir()) and directory.name[:8].isdigit():
                out.skipped.append((directory, "no run.json"))
            continue
        try:
            run = Run(directory)
            meta = run.meta
            if "id" not in meta or meta["id"] != directory.name:
                raise RunError(f"{directory / 'run.json'} belongs to run {meta.get('id')!r}, not to this folder")
            if meta.get("status") in ("created", "running") and not alive(meta.get("pid"), meta.get("host")):
                meta = run.reconcile()
            records.append(index_record(meta, directory, run.metrics))
        except (ExpkitError, OSError, KeyError, TypeError, ValueError) as exc:
            why = exc.message if isinstance(exc, ExpkitError) else f"{type(exc).__name__}: {exc}"
            log.warning("skipping %s: %s", directory, why)
            out.skipped.append((directory, why))
    with db.session(root) as s:
        s.execute(delete(RunRecord))
        s.add_all(records)
    out.runs = len(records)
    return out


def sweep(runs_dir=None) -> list[str]:
    """Clean up after commands that were killed (kill -9, power cut); returns the run ids
    whose state changed.

    Temporary files and half-made run folders of processes that no longer run are
    removed; unfinished runs whose process is gone are marked interrupted; run folders
    the index does not know (killed between the two writes) are indexed. Only folders
    the index does not show as finished, or as finished within :data:`SWEEP_RECENT`
    (a kernel outlives a killed ``expkit run`` by a moment and may leave a temporary
    file after its run was marked interrupted), are looked at, so this stays fast.
    """
    root = _runs_dir(runs_dir)
    if not root.is_dir():
        return []
    clean_stale(root)
    recent = (dt.datetime.now(dt.timezone.utc) - SWEEP_RECENT).isoformat()
    with db.session(root) as s:
        rows = s.execute(select(RunRecord.run_id, RunRecord.status, RunRecord.ended)).all()
    known = {run_id: status for run_id, status, _ in rows}
    settled = {run_id for run_id, status, ended in rows if status in FINAL and (ended or "") < recent}
    changed = []
    for entry in os.scandir(root):
        if entry.name.startswith(".") or not entry.is_dir() or entry.name in settled:
            continue
        for folder in (entry.path, os.path.join(entry.path, "model"), os.path.join(entry.path, "figures")):
            clean_stale(folder)
        if not os.path.exists(os.path.join(entry.path, "run.json")):
            continue
        try:
            run = Run(entry.path)
            if run.meta.get("status") in FINAL and known.get(entry.name) == run.meta.get("status"):
                continue
            meta = run.reindex()
        except ExpkitError as exc:
            log.warning("sweep: cannot check %s: %s", entry.path, exc)
            continue
        if known.get(entry.name) != meta.get("status"):
            changed.append(entry.name)
    return changed


#: Names that moved elsewhere (deprecated aliases for one release).
__getattr__ = _lazy.moved(__name__, {
    'now': 'expkit.files',
    'write_json': 'expkit.files',
    'read_json': 'expkit.files',
    'safe_name': 'expkit.paths',
})
