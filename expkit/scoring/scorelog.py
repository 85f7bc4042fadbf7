"""The score log: one record per scoring batch, the ids it scored, and feedback.

Tables live in the run index (:mod:`expkit.db`):

- ``score_batches``: app, tenant (the rows' tenant), model_tenant (the tenant of
  the registry entry that served them: ``None`` for the app-wide model), model
  version, run id, rows, start/end,
  score counts per probability bucket and per-field summaries
  (:func:`expkit.drift.summarize`), plus the path of the batch's ids file;
- ``score_feedback``: actual outcomes (app, tenant, id, label, loaded_at, load_id).

The ids and scores of a batch can be millions of rows, so they are not stored
as table rows but in one Parquet file per batch (``<runs>/scores/<batch>.parquet``
with columns ``id`` and ``score``); the table keeps its path relative to the
runs folder. Times are naive UTC.

The files are the record and the tables a copy: each batch record is written to
``<runs>/scores/<batch>.json`` and each feedback load to
``<runs>/feedback/<load>.parquet`` (atomically) before its rows go into the index.
Every read first brings the tables up to date with the files (:func:`sync`: a
record written just before a kill -9 is added, an index row from before these files
existed is written out), and :func:`rebuild` recreates the tables from the files.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import JSON, DateTime, Integer, String, delete, func, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, session
from ..files import locked, write_bytes, write_json
from ..paths import runs_dir as _runs_dir

log = logging.getLogger(__name__)

#: Folder under the runs folder that holds one ids+scores Parquet file per batch.
SCORES_FOLDER = "scores"
#: Folder under the runs folder that holds one Parquet file per feedback load.
FEEDBACK_FOLDER = "feedback"
_LOCK = ".scorelog.lock"


class ScoreBatch(Base):
    """One scoring batch (one file or one DataFrame scored)."""

    __tablename__ = "score_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app: Mapped[str] = mapped_column(String(200), index=True)
    tenant: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)
    model_tenant: Mapped[str | None] = mapped_column(String(200), nullable=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    rows: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    score_counts: Mapped[list] = mapped_column(JSON)
    fields: Mapped[dict] = mapped_column(JSON)
    ids_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    output: Mapped[str | None] = mapped_column(String(1000), nullable=True)


#: Columns of :func:`batches`.
BATCH_COLUMNS = [c.name for c in ScoreBatch.__table__.columns]


class Feedback(Base):
    """An actual outcome for a scored id."""

    __tablename__ = "score_feedback"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(200), index=True)
    tenant: Mapped[str | None] = mapped_column(String(200), index=True, nullable=True)
    row_id: Mapped[str] = mapped_column(String(200), index=True)
    label: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[datetime] = mapped_column(DateTime)
    load_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)


def utcnow() -> datetime:
    """Naive UTC now (what the score log stores)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def new_batch_id(app: str) -> str:
    """``<UTC yyyymmdd-HHMMSS>-<app>-<random>``: sortable and unique."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in app)[:40]
    return f"{utcnow():%Y%m%d-%H%M%S}-{safe}-{secrets.token_hex(3)}"


def ids_file(batch_id: str, runs_dir=None) -> Path:
    """Where the ids and scores of ``batch_id`` are kept."""
    return _runs_dir(runs_dir) / SCORES_FOLDER / f"{batch_id}.parquet"


def record_file(batch_id: str, runs_dir=None) -> Path:
    """The file that records batch ``batch_id`` (the index's row is a copy of it)."""
    return _runs_dir(runs_dir) / SCORES_FOLDER / f"{batch_id}.json"


def record_batch(record: dict, runs_dir=None) -> None:
    """Append one batch record (keys: the :class:`ScoreBatch` columns).

    The record is written to :func:`record_file` first, then indexed; if indexing
    fails the file is removed again, so the batch is either recorded or not at all.
    """
    path = record_file(record["id"], runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(_runs_dir(runs_dir) / _LOCK):  # a reader's sync never sees the file without the row
        write_json(path, record)
        try:
            with session(runs_dir) as s:
                s.add(ScoreBatch(**_columns(record)))
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise


def _columns(record: dict) -> dict:
    """A batch record (as stored in its file) as :class:`ScoreBatch` keyword arguments."""
    out = {k: record.get(k) for k in BATCH_COLUMNS}
    for k in ("started_at", "finished_at"):
        if isinstance(out[k], str):
            out[k] = datetime.fromisoformat(out[k])
    return out


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("score log: skipping %s (%s)", path, exc)
        return None
    return record if isinstance(record, dict) and record.get("id") == path.stem else None


# -- the files are the record: sync and rebuild ---------------------------------------------
def _files(folder: Path, suffix: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name[:-len(suffix)]: p for p in folder.iterdir()
            if p.name.endswith(suffix) and not p.name.startswith(".")}


def _differences(s, root: Path) -> tuple[dict, set, dict, bool]:
    """(batch files the index lacks, indexed batches without a file, feedback files the
    index lacks, whether feedback rows without a file exist)."""
    batch_files = _files(root / SCORES_FOLDER, ".json")
    indexed = set(s.scalars(select(ScoreBatch.id)))
    feedback_files = _files(root / FEEDBACK_FOLDER, ".parquet")
    loads = set(s.scalars(select(Feedback.load_id).distinct()))
    return ({k: p for k, p in batch_files.items() if k not in indexed}, indexed - set(batch_files),
            {k: p for k, p in feedback_files.items() if k not in loads}, None in loads)


def sync(runs_dir=None) -> int:
    """Bring the score-log tables and files into agreement; returns the records added.

    Records whose file exists but whose row does not (a kill -9 between the two) are
    indexed; rows from before the files existed are written out to files.
    """
    root = _runs_dir(runs_dir)
    with session(root) as s:
        pending = _differences(s, root)
    if not any(pending):
        return 0
    with locked(root / _LOCK), session(root) as s:
        return _fix(s, root)


def _fix(s, root: Path) -> int:
    missing, unfiled, feedback_missing, legacy = _differences(s, root)
    added = 0
    for path in missing.values():
        record = _read_record(path)
        if record is not None:
            s.add(ScoreBatch(**_columns(record)))
            added += 1
    for batch in s.scalars(select(ScoreBatch).where(ScoreBatch.id.in_(unfiled))):
        write_json(record_file(batch.id, root), {c: getattr(batch, c) for c in BATCH_COLUMNS})
    for load_id, path in feedback_missing.items():
        rows = _read_feedback(path)
        if rows is not None:
            s.execute(insert(Feedback), [{**r, "load_id": load_id} for r in rows])
            added += 1
    if legacy:
        load_id = f"{utcnow():%Y%m%d-%H%M%S}-before-files-{secrets.token_hex(3)}"
        rows = s.execute(select(Feedback.app, Feedback.tenant, Feedback.row_id, Feedback.label,
                                Feedback.loaded_at).where(Feedback.load_id.is_(None))).all()
        _write_feedback(root, load_id, [r._asdict() for r in rows])
        s.execute(update(Feedback).where(Feedback.load_id.is_(None)).values(load_id=load_id))
    if added:
        log.info("score log: indexed %d record(s) found only in files", added)
    return added


def rebuild(runs_dir=None) -> tuple[int, int]:
    """Recreate the score-log tables from the files; returns (batches, feedback rows)."""
    root = _runs_dir(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / _LOCK), session(root) as s:
        _fix(s, root)  # rows only the index holds are written out first
        s.execute(delete(ScoreBatch))
        s.execute(delete(Feedback))
        records = [r for r in map(_read_record, _files(root / SCORES_FOLDER, ".json").values()) if r]
        records.sort(key=lambda r: (str(r.get("finished_at")), r["id"]))
        s.add_all([ScoreBatch(**_columns(r)) for r in records])
        n_feedback = 0
        for load_id, path in sorted(_files(root / FEEDBACK_FOLDER, ".parquet").items()):
            rows = _read_feedback(path)
            if rows:
                s.execute(insert(Feedback), [{**r, "load_id": load_id} for r in rows])
                n_feedback += len(rows)
    return len(records), n_feedback


def _where(model, app=None, tenant=None, all_tenants=False):
    clauses = []
    if app is not None:
        clauses.append(model.app == app)
    if not all_tenants:
        clauses.append(model.tenant.is_(None) if tenant is None else model.tenant == tenant)
    return clauses


def batches(app=None, tenant=None, *, all_tenants=True, since=None, runs_dir=None) -> pd.DataFrame:
    """Score batches as a DataFrame (one row per batch, oldest first).

    ``all_tenants=False`` restricts to ``tenant`` (``None`` meaning the app-wide model).
    """
    sync(runs_dir)
    cols = BATCH_COLUMNS
    q = select(ScoreBatch).where(*_where(ScoreBatch, app, tenant, all_tenants))
    if since is not None:
        q = q.where(ScoreBatch.finished_at >= since)
    with session(runs_dir) as s:
        rows = [{c: getattr(b, c) for c in cols} for b in s.scalars(q.order_by(ScoreBatch.finished_at))]
    return pd.DataFrame(rows, columns=cols)


def count_batches(runs_dir=None) -> int:
    """Number of batches in the score log."""
    sync(runs_dir)
    with session(runs_dir) as s:
        return int(s.scalar(select(func.count()).select_from(ScoreBatch)))


def scored_ids(batch_table: pd.DataFrame, runs_dir=None) -> pd.DataFrame:
    """The ``id, score, batch`` rows of the given batches (latest score per id wins)."""
    root = _runs_dir(runs_dir)
    parts = []
    for batch_id, rel in zip(batch_table["id"], batch_table["ids_path"]):
        if rel and (root / rel).exists():
            part = pd.read_parquet(root / rel, columns=["id", "score"])
            part["batch"] = batch_id
            parts.append(part)
    if not parts:
        return pd.DataFrame({"id": pd.Series(dtype=str), "score": pd.Series(dtype=float),
                             "batch": pd.Series(dtype=str)})
    out = pd.concat(parts, ignore_index=True)
    return out.drop_duplicates("id", keep="last").reset_index(drop=True)


def add_feedback(app: str, tenant, ids, labels, runs_dir=None) -> int:
    """Store outcomes ``labels`` (0/1) for ``ids``; returns the number of rows stored.

    The load is written to ``<runs>/feedback/<load>.parquet`` first, then indexed (the
    file is removed again if indexing fails).
    """
    now = utcnow()
    rows = [{"app": app, "tenant": tenant, "row_id": str(i), "label": int(v), "loaded_at": now}
            for i, v in zip(ids, np.asarray(labels))]
    if not rows:
        return 0
    root = _runs_dir(runs_dir)
    load_id = new_batch_id(app)
    with locked(root / _LOCK):
        path = _write_feedback(root, load_id, rows)
        try:
            with session(root) as s:
                s.execute(insert(Feedback), [{**r, "load_id": load_id} for r in rows])
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(path)
            raise
    return len(rows)


_FEEDBACK_COLUMNS = ["app", "tenant", "row_id", "label", "loaded_at"]


def _write_feedback(root: Path, load_id: str, rows: list[dict]) -> Path:
    frame = pd.DataFrame(rows, columns=_FEEDBACK_COLUMNS).astype(
        {"app": "object", "tenant": "object", "row_id": "object", "label": "int64"})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    path = root / FEEDBACK_FOLDER / f"{load_id}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, buffer.getvalue())


def _read_feedback(path: Path) -> list[dict] | None:
    try:
        frame = pd.read_parquet(path, columns=_FEEDBACK_COLUMNS)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is skipped and named
        log.warning("score log: skipping %s (%s)", path, exc)
        return None
    frame["loaded_at"] = pd.to_datetime(frame["loaded_at"])
    frame = frame.astype(object).where(frame.notna(), None)
    return [{**r, "label": int(r["label"]), "loaded_at": r["loaded_at"].to_pydatetime()}
            for r in frame.to_dict("records")]


def feedback(app=None, tenant=None, *, all_tenants=True, runs_dir=None) -> pd.DataFrame:
    """Feedback rows ``app, tenant, id, label, loaded_at`` (latest label per id wins)."""
    sync(runs_dir)
    q = select(Feedback.app, Feedback.tenant, Feedback.row_id, Feedback.label, Feedback.loaded_at)
    q = q.where(*_where(Feedback, app, tenant, all_tenants)).order_by(Feedback.pk)
    with session(runs_dir) as s:
        df = pd.DataFrame(s.execute(q).all(), columns=["app", "tenant", "id", "label", "loaded_at"])
    return df.drop_duplicates(["app", "tenant", "id"], keep="last").reset_index(drop=True)


def count_feedback(runs_dir=None) -> int:
    """Number of feedback rows stored."""
    sync(runs_dir)
    with session(runs_dir) as s:
        return int(s.scalar(select(func.count()).select_from(Feedback)))
