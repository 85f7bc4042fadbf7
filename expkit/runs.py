"""The runs of a project: list, show and compare them; rebuild their index.

Each run is a folder under the runs folder (see :mod:`expkit.run`); the index
(:class:`expkit.run.RunRecord` rows in :mod:`expkit.db`) mirrors their
``run.json`` files so listing is fast, and :func:`rebuild_index` recreates it
from the folders. ``expkit.runs.list()`` is what notebooks and the CLI call.
"""
from __future__ import annotations

import builtins
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
from sqlalchemy import delete
from sqlalchemy import select as select_rows

from . import _lazy, db
from .errors import ConfigError, ExpkitError, RunError
from .files import clean_stale
from .formatting import missing
from .paths import runs_dir, runs_dir_source
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
#: Comparison operators of :func:`select` (``=`` and ``==`` alike; ``~``: contains).
OPERATORS = (">=", "<=", "!=", "==", "=", ">", "<", "~")
_CONDITION = re.compile(r"^\s*([\w.\-]+)\s*(>=|<=|!=|==|=|>|<|~)\s*([^<>=!~\s].*?)\s*$")


class RunTable(pd.DataFrame):
    """What :func:`list` returns: a DataFrame of runs that says which runs folder it read
    (``runs_dir``; shown above the table in notebooks and in ``repr``)."""

    _metadata = ["runs_dir", "runs_dir_source"]

    @property
    def _constructor(self):
        return RunTable

    def folder_line(self) -> str:
        """``runs folder /x/runs (project root /x)``: where these runs come from."""
        return f"runs folder {getattr(self, 'runs_dir', '?')} ({getattr(self, 'runs_dir_source', '?')})"

    def __repr__(self) -> str:
        return f"{self.folder_line()}\n{super().__repr__()}"

    def _repr_html_(self) -> str:
        import html

        return f"<p><small>{html.escape(self.folder_line())}</small></p>{super()._repr_html_()}"


def list(template: str | None = None, tenant: str | None = None, status: str | None = None,  # noqa: A001
         since=None, runs_dir=None, *, where: str | None = None, sort: str | None = None,
         fields: bool = False) -> RunTable:
    """The runs in the index, newest first, as a DataFrame (a :class:`RunTable`).

    Parameters
    ----------
    template, tenant, status : str, optional
        Keep runs with this template name, tenant or status.
    since : str or datetime, optional
        Keep runs created since a date/time (ISO) or an age such as ``"12h"``, ``"7d"``.
    runs_dir : str or Path, optional
        The runs folder (see :func:`runs_dir`); the table's ``runs_dir`` says which one was read.
    where : str, optional
        Conditions on metrics, parameters and columns joined by ``and``, e.g.
        ``"auroc > 0.8 and budget >= 30"`` (see :func:`select`).
    sort : str, optional
        A column, metric or parameter to sort by, e.g. ``"auroc desc"`` (see :func:`select`).
    fields : bool, default False
        Add every parameter (``params.<name>``) and metric (``metrics.<name>``, nested
        names joined by dots) as a column.
    """
    if status is not None and status not in STATUSES:
        raise ConfigError(f"unknown status {status!r}", hint=f"use one of {', '.join(STATUSES)}")
    root = _runs_dir(runs_dir)
    if not root.is_dir():
        return _table([], LIST_COLUMNS, runs_dir)
    query = select_rows(RunRecord).order_by(RunRecord.created.desc(), RunRecord.run_id.desc())
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
    records = [{c: getattr(r, c) for c in LIST_COLUMNS} for r in rows]
    columns = list_columns = builtins.list(LIST_COLUMNS)
    if fields or where or sort:
        for rec, r in zip(records, rows):
            rec.update({f"params.{k}": v for k, v in flatten(_loads(r.params)).items()})
            rec.update({f"metrics.{k}": v for k, v in _loads(r.metrics).items()})
        extra = sorted({k for rec in records for k in rec} - set(list_columns))
        columns = list_columns + extra
    table = _table(records, columns, runs_dir)
    table = select(table, where=where, sort=sort)
    if not fields:
        table = table[[c for c in table.columns if not c.startswith(("params.", "metrics."))]]
    return table


def _table(records, columns, runs_dir) -> RunTable:
    table = RunTable(records, columns=columns)
    table.runs_dir, table.runs_dir_source = runs_dir_source(runs_dir)
    return table


def _loads(text) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def resolve(table: pd.DataFrame, name: str) -> str:
    """The column of ``table`` (from :func:`list` with ``fields=True``) that ``name`` means:
    the column itself, ``metrics.<name>``, the hold-out metric ``metrics.holdout.<name>``,
    ``params.<name>``, else the one metric or parameter whose name ends with it (any case)."""
    columns = {str(c).lower(): str(c) for c in table.columns}
    key = name.lower()
    for candidate in (key, f"metrics.{key}", f"metrics.holdout.{key}", f"params.{key}"):
        if candidate in columns:
            return columns[candidate]
    ends = [c for low, c in columns.items() if low.startswith(("metrics.", "params."))
            and low.endswith(f".{key}")]
    if len(ends) == 1:
        return ends[0]
    if ends:
        raise ConfigError(f"{name!r} is ambiguous: {', '.join(ends[:6])}",
                          hint="write the full name, e.g. " + ends[0])
    known = sorted({c.split(".")[-1] for c in columns.values() if c.startswith(("metrics.", "params."))}
                   - set(LIST_COLUMNS))
    raise ConfigError(f"no column, metric or parameter named {name!r} in these runs",
                      hint=f"use one of {', '.join((LIST_COLUMNS + known)[:40])}")


def select(table: pd.DataFrame, where: str | None = None, sort: str | None = None) -> pd.DataFrame:
    """Rows of ``table`` (from :func:`list` with ``fields=True``) that meet ``where``, sorted.

    Parameters
    ----------
    where : str, optional
        Conditions joined by ``and``: ``NAME OP VALUE`` with OP one of
        ``> >= < <= = == != ~`` (``~``: contains, ignoring case). NAME is a column,
        a metric or a parameter (see :func:`resolve`); ``auroc`` means the hold-out AUROC.
        Numbers compare as numbers; runs without the value are left out.
    sort : str, optional
        NAME, optionally followed by ``asc`` or ``desc`` (or prefixed by ``-`` for
        descending); runs without the value come last.

    The columns named are moved next to the standard ones, under the name written.
    """
    shown = []
    if where and where.strip():
        mask = pd.Series(True, index=table.index)
        for part in re.split(r"\s+and\s+", where.strip(), flags=re.IGNORECASE):
            match = _CONDITION.match(part)
            if not match:
                raise ConfigError(f"cannot read the condition {part!r}",
                                  hint="write NAME OP VALUE, e.g. auroc > 0.8 and tenant = acme "
                                       f"(OP: {' '.join(OPERATORS)})")
            name, op, value = match.groups()
            column = resolve(table, name)
            mask &= _compare(table[column], op, value.strip("'\""), name)
            shown.append((name, column))
        table = table[mask]
    if sort and sort.strip():
        text = sort.strip()
        descending = text.startswith("-") or text.lower().endswith(" desc")
        name = re.sub(r"\s+(asc|desc)$", "", text.lstrip("-"), flags=re.IGNORECASE).strip()
        column = resolve(table, name)
        key = pd.to_numeric(table[column], errors="coerce")
        if key.notna().sum() < table[column].notna().sum():  # not numbers: sort as text
            key = table[column].map(lambda v: None if v is None else str(v))
        table = table.assign(_key=key.values).sort_values("_key", ascending=not descending,
                                                          na_position="last", kind="stable")
        table = table.drop(columns="_key")
        shown.append((name, column))
    for name, column in shown:
        if name not in table.columns:
            table = table.assign(**{name: table[column]})
    return table


def _compare(values: pd.Series, op: str, text: str, name: str) -> pd.Series:
    number = pd.to_numeric(pd.Series([text]), errors="coerce").iloc[0]
    present = values.map(lambda v: not missing(v))
    if op == "~":
        return present & values.map(lambda v: text.lower() in str(v).lower())
    numbers = pd.to_numeric(values, errors="coerce")
    if not pd.isna(number) and (numbers.notna() | ~present).all():
        ops = {">": numbers.gt, ">=": numbers.ge, "<": numbers.lt, "<=": numbers.le,
               "=": numbers.eq, "==": numbers.eq, "!=": numbers.ne}
        return present & ops[op](float(number)).fillna(False)
    if op in (">", ">=", "<", "<="):
        what = f"{text!r} is not a number" if pd.isna(number) else f"{name!r} is not a number in every run"
        raise ConfigError(f"{name} {op} {text}: {what}", hint="compare text with =, != or ~ (contains)")
    equal = values.map(lambda v: str(v) == text)
    return present & (equal if op in ("=", "==") else ~equal)


def show(run_id: str, runs_dir=None) -> dict:
    """run.json of a run plus its metrics and the files it holds."""
    run = get(run_id, runs_dir)
    meta = run.reconcile()
    files = sorted(str(p.relative_to(run.dir)) for p in run.dir.rglob("*")
                   if p.is_file() and not p.name.startswith("."))
    return {**meta, "path": str(run.dir), "metrics": run.metrics, "files": files}


#: Nested metrics that :func:`compare` shows with the headline ones (a tournament's hold-out).
HEADLINE_GROUPS = ("holdout.",)


def _weight(key: str) -> int:
    """Where a row of :func:`compare` goes: what people compare first, details last."""
    if key in ("tenant", "template", "status"):
        return 0
    if key.startswith("param."):
        return 1
    if key.startswith("metric."):
        name = key[len("metric."):]
        # headline metrics: the top-level ones and a tournament's hold-out metrics; nested details
        return 2 if "." not in name or name.startswith(HEADLINE_GROUPS) else 4
    return 3  # duration, fingerprints


def compare(run_ids: Iterable[str], runs_dir=None) -> pd.DataFrame:
    """Parameters and metrics of runs side by side (one column per run).

    Rows come in the order people compare runs: tenant, template and status, the
    parameters, the headline metrics, then duration and fingerprints, and the nested
    details (e.g. an ensemble's members' hyperparameters) last. The ``differs`` column is
    True where the runs do not all agree.
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
    frame = frame.loc[sorted(frame.index, key=_weight)]  # a stable sort: within a group, as written
    frame = frame.astype(object).where(frame.notna(), None)
    frame["differs"] = [len({json.dumps(v, default=str) for v in row}) > 1
                        for row in frame[[r.id for r in runs]].itertuples(index=False)]
    return frame


#: The hold-out rows a tournament run saves for comparisons (label ``y`` as 0/1 for binary
#: tasks, calibrated ``score``), read by :func:`holdout_scores`.
HOLDOUT_FILE = "holdout.csv"


def holdout_scores(run_ids: Iterable[str], runs_dir=None) -> dict:
    """``{label: DataFrame[y, score]}`` of the runs that saved binary hold-out scores
    (:data:`HOLDOUT_FILE`); the label names the run by tenant (or template) and id."""
    out = {}
    for run_id in run_ids:
        run = get(run_id, runs_dir)
        path = run.dir / HOLDOUT_FILE
        if not path.is_file():
            continue
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            log.warning("run %s: cannot read %s (%s)", run.id, HOLDOUT_FILE, exc)
            continue
        if {"y", "score"} <= set(frame.columns) and frame["y"].nunique() == 2:
            meta = run.meta
            out[f"{meta.get('tenant') or meta.get('template')} {run.id[-6:]}"] = frame[["y", "score"]]
    return out


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
        rows = s.execute(select_rows(RunRecord.run_id, RunRecord.status, RunRecord.ended)).all()
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
