"""The score log: one record per scoring batch, the ids it scored, and feedback.

Tables live in the run index (:mod:`expkit.db`):

- ``score_batches``: app, tenant (the rows' tenant), model_tenant (the tenant of
  the registry entry that served them: ``None`` for the app-wide model), model
  version, run id, rows, start/end,
  score counts per probability bucket and per-field summaries
  (:func:`expkit.drift.summarize`), plus the path of the batch's ids file;
- ``score_feedback``: actual outcomes (app, tenant, id, label, loaded_at).

The ids and scores of a batch can be millions of rows, so they are not stored
as table rows but in one Parquet file per batch (``<runs>/scores/<batch>.parquet``
with columns ``id`` and ``score``); the table keeps its path relative to the
runs folder. Times are naive UTC.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import JSON, DateTime, Integer, String, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, session
from ..paths import runs_dir as _runs_dir

#: Folder under the runs folder that holds one ids+scores Parquet file per batch.
SCORES_FOLDER = "scores"


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


def record_batch(record: dict, runs_dir=None) -> None:
    """Append one batch record (keys: the :class:`ScoreBatch` columns)."""
    with session(runs_dir) as s:
        s.add(ScoreBatch(**record))


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
    cols = BATCH_COLUMNS
    q = select(ScoreBatch).where(*_where(ScoreBatch, app, tenant, all_tenants))
    if since is not None:
        q = q.where(ScoreBatch.finished_at >= since)
    with session(runs_dir) as s:
        rows = [{c: getattr(b, c) for c in cols} for b in s.scalars(q.order_by(ScoreBatch.finished_at))]
    return pd.DataFrame(rows, columns=cols)


def count_batches(runs_dir=None) -> int:
    """Number of batches in the score log."""
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
    """Store outcomes ``labels`` (0/1) for ``ids``; returns the number of rows stored."""
    now = utcnow()
    rows = [{"app": app, "tenant": tenant, "row_id": str(i), "label": int(v), "loaded_at": now}
            for i, v in zip(ids, np.asarray(labels))]
    if rows:
        with session(runs_dir) as s:
            s.execute(insert(Feedback), rows)
    return len(rows)


def feedback(app=None, tenant=None, *, all_tenants=True, runs_dir=None) -> pd.DataFrame:
    """Feedback rows ``app, tenant, id, label, loaded_at`` (latest label per id wins)."""
    q = select(Feedback.app, Feedback.tenant, Feedback.row_id, Feedback.label, Feedback.loaded_at)
    q = q.where(*_where(Feedback, app, tenant, all_tenants)).order_by(Feedback.pk)
    with session(runs_dir) as s:
        df = pd.DataFrame(s.execute(q).all(), columns=["app", "tenant", "id", "label", "loaded_at"])
    return df.drop_duplicates(["app", "tenant", "id"], keep="last").reset_index(drop=True)


def count_feedback(runs_dir=None) -> int:
    """Number of feedback rows stored."""
    with session(runs_dir) as s:
        return int(s.scalar(select(func.count()).select_from(Feedback)))
