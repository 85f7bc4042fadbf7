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
import re
from typing import Iterable

import pandas as pd
from sqlalchemy import delete, select

from . import _lazy, db
from .errors import ConfigError, RunError
from .files import read_json
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
            Run(root / run_id).reconcile()
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


def rebuild_index(runs_dir=None) -> int:
    """Recreate the index from the run folders; returns the number of runs indexed."""
    root = _runs_dir(runs_dir)
    if not root.is_dir():
        raise RunError(f"runs folder {root} does not exist")
    records = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        meta = read_json(directory / "run.json")
        if not isinstance(meta, dict) or "id" not in meta:
            log.warning("skipping %s: no valid run.json", directory)
            continue
        if meta.get("status") in ("created", "running") and not alive(meta.get("pid"), meta.get("host")):
            meta = Run(directory).reconcile()
        records.append(index_record(meta, directory, read_json(directory / "metrics.json", {})))
    with db.session(root) as s:
        s.execute(delete(RunRecord))
        s.add_all(records)
    return len(records)


#: Names that moved elsewhere (deprecated aliases for one release).
__getattr__ = _lazy.moved(__name__, {
    'now': 'expkit.files',
    'write_json': 'expkit.files',
    'read_json': 'expkit.files',
    'safe_name': 'expkit.paths',
})
