"""The production registry: which run's model serves an (app, tenant).

Every promotion adds a version (who, when, why, the model folder with one sha256
over all its files and each file's own, the hold-out metric, the version it
replaced); exactly one version per (app, tenant) is in production. ``tenant=None``
is the app-wide model; :meth:`Registry.production` falls back to it for tenants
without a model of their own. Promotion loads the model with the trusted loader;
scoring and rollback refuse a folder that changed since, naming the file.

The journal ``<runs>/registry.jsonl`` is the record: each promotion, rollback or
automatic decision is appended to it (fsynced) before the index is changed in one
transaction holding the (app, tenant)'s lock (:func:`expkit.db.session`: concurrent
promotions on PostgreSQL run one after the other); an index that missed an entry (a
kill -9 between the two) is brought up to date on the next use, and
:meth:`Registry.rebuild` recreates it from the journal alone.
:meth:`Registry.promote_if_better` is the automatic path (``promote: if-better`` in a
schedule): the same gate, a refusal an outcome, every decision kept with its reason.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import logging
import math
import os
from pathlib import Path

import pandas as pd
from sqlalchemy import Boolean, Float, Index, Integer, String, Text, delete, func, select, text
from sqlalchemy.orm import Mapped, mapped_column

from . import db
from .errors import ModelError, PromotionError, RegistryError, RunError
from .files import append_line, file_digests, locked, now, read_lines, sha256_dir
from .paths import runs_dir as _runs_dir
from .run import get as get_run

log = logging.getLogger(__name__)

#: Metrics where lower is better (the gate flips its comparison for these).
LOWER_IS_BETTER = ("log_loss", "brier", "rmse", "mae", "mse", "mape")
#: The journal of promotions, rollbacks and automatic promotion decisions, in the runs folder.
JOURNAL = "registry.jsonl"
_LOCK = ".registry.lock"
_ALL = ""  # the tenant key of the app-wide model
_FIELDS = ("app", "tenant", "version", "run_id", "model_dir", "sha256", "files", "metric_name", "metric",
           "promoted_at", "by", "reason", "previous_version")


class ModelVersion(db.Base):
    """One promotion of a run's model for an (app, tenant)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        Index("one_production_model", "app", "tenant_key", unique=True,
              sqlite_where=text("status = 'production'"),
              postgresql_where=text("status = 'production'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(200), index=True)
    tenant_key: Mapped[str] = mapped_column(String(200), default=_ALL)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))  # production | archived | rolled_back
    run_id: Mapped[str] = mapped_column(String(200))
    model_dir: Mapped[str] = mapped_column(Text)
    #: sha256 over the model folder (:func:`expkit.files.sha256_dir`); for versions
    #: promoted before folder digests, the digest of model.skops alone (``files`` empty).
    sha256: Mapped[str] = mapped_column(String(64))
    files: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON {file: sha256}
    metric_name: Mapped[str | None] = mapped_column(String(50))
    metric: Mapped[float | None] = mapped_column(Float)
    promoted_at: Mapped[str] = mapped_column(String(40))
    by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    previous_version: Mapped[int | None] = mapped_column(Integer)

    def to_dict(self) -> dict:
        return {"app": self.app, "tenant": self.tenant_key or None, "version": self.version,
                "status": self.status, "production": self.status == "production",
                "run_id": self.run_id, "model_dir": self.model_dir, "sha256": self.sha256,
                "files": json.loads(self.files) if self.files else None,
                "metric_name": self.metric_name, "metric": self.metric,
                "promoted_at": self.promoted_at, "by": self.by, "reason": self.reason,
                "previous_version": self.previous_version}


class PromotionDecision(db.Base):
    """One automatic promotion attempt: promoted or not, and why."""

    __tablename__ = "promotion_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app: Mapped[str] = mapped_column(String(200), index=True)
    tenant_key: Mapped[str] = mapped_column(String(200), default=_ALL)
    run_id: Mapped[str] = mapped_column(String(200))
    promoted: Mapped[bool] = mapped_column(Boolean)
    version: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[str] = mapped_column(String(40))
    by: Mapped[str] = mapped_column(String(200))

    def to_dict(self) -> dict:
        return {"app": self.app, "tenant": self.tenant_key or None, "run_id": self.run_id,
                "promoted": self.promoted, "version": self.version, "reason": self.reason,
                "decided_at": self.decided_at, "by": self.by}


DECISION_COLUMNS = ["app", "tenant", "run_id", "promoted", "version", "reason", "decided_at", "by"]
COLUMNS = ["app", "tenant", "version", "status", "production", "run_id", "metric_name", "metric",
           "promoted_at", "by", "reason", "previous_version", "model_dir", "sha256"]


def _key(tenant) -> str:
    return _ALL if tenant is None else str(tenant)


def _where(app: str, tenant):
    return (ModelVersion.app == app) & (ModelVersion.tenant_key == _key(tenant))


def _who(tenant) -> str:
    return "all tenants" if tenant is None else f"tenant {tenant!r}"


def _event_key(event: dict) -> tuple:
    if event.get("event") == "decision":
        return ("decision", event["app"], _key(event.get("tenant")), event["run_id"], event["decided_at"])
    return ("version", event["app"], _key(event.get("tenant")), event["version"])


def _row_key(row) -> tuple:
    if isinstance(row, PromotionDecision):
        return ("decision", row.app, row.tenant_key, row.run_id, row.decided_at)
    return ("version", row.app, row.tenant_key, row.version)


def _decision_event(row: "PromotionDecision") -> dict:
    return {"event": "decision", **row.to_dict()}


def _lock(app: str, tenant) -> str:
    return f"expkit:registry:{app}:{_key(tenant)}"


def verify(entry: dict) -> None:
    """ModelError naming each file of ``entry``'s model folder that changed, appeared or
    went missing since it was promoted (``entry`` as :meth:`Registry.production` returns);
    the model is not built."""
    from .models.bundle import load_model

    load_model(entry["model_dir"], expected_sha256=entry["sha256"], digests=entry.get("files"), lazy=True)


class Registry:
    """Production models per (app, tenant): a journal under the runs folder, mirrored in
    the index database.

    Parameters
    ----------
    runs_dir : str or Path, optional
        The runs folder (its ``registry.jsonl`` and ``index.db`` unless ``$EXPKIT_DB``).
    """

    def __init__(self, runs_dir=None):
        self.root = _runs_dir(runs_dir)
        self.journal = self.root / JOURNAL

    # -- reading -----------------------------------------------------------------------
    def production(self, app: str, tenant=None) -> dict:
        """The production entry of (app, tenant), else of (app, all tenants).

        Returns a dict with run_id, version, model_dir, sha256 (of the folder), files
        (each file's sha256), metric_name, metric, promoted_at, by, reason (and app,
        tenant, previous_version). Raises RegistryError when neither exists.
        """
        self.sync()
        with db.session(self.root) as s:
            for key in dict.fromkeys([tenant, None]):
                row = s.scalars(select(ModelVersion).where(
                    _where(app, key) & (ModelVersion.status == "production"))).first()
                if row is not None:
                    return row.to_dict()
        raise RegistryError(f"no production model for app {app!r} ({_who(tenant)})",
                            hint="promote one with `expkit promote model RUN --app APP`")

    def list(self, app: str | None = None) -> pd.DataFrame:
        """Every version ever promoted (newest first), with a ``production`` flag."""
        self.sync()
        query = select(ModelVersion).order_by(ModelVersion.app, ModelVersion.tenant_key,
                                              ModelVersion.version.desc())
        if app is not None:
            query = query.where(ModelVersion.app == app)
        with db.session(self.root) as s:
            rows = [r.to_dict() for r in s.scalars(query)]
        return pd.DataFrame(rows, columns=COLUMNS)

    # -- the journal -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        """One registry change at a time across processes (a lock file in the runs folder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.root / _LOCK):
            yield

    def _pending(self, s) -> tuple[list[dict], list]:
        """(journal entries missing from the index, index rows missing from the journal):
        versions (keyed by app, tenant, version) and decisions (app, tenant, run, time)."""
        events = read_lines(self.journal)
        rows = [*s.scalars(select(ModelVersion).order_by(ModelVersion.id)),
                *s.scalars(select(PromotionDecision).order_by(PromotionDecision.id))]
        indexed = {_row_key(r) for r in rows}
        journaled = {_event_key(e) for e in events}
        return ([e for e in events if _event_key(e) not in indexed],
                [r for r in rows if _row_key(r) not in journaled])

    def sync(self) -> int:
        """Bring the index and the journal into agreement; returns the entries applied.

        Journal entries the index lacks (a command killed after journaling) are applied;
        index rows the journal lacks (promoted by an expkit without a journal) are
        appended to it, so a later rebuild keeps them.
        """
        with db.session(self.root) as s:
            missing, unjournaled = self._pending(s)
        if not missing and not unjournaled:
            return 0
        with self._locked(), db.session(self.root) as s:
            return self._fix(s)

    def _fix(self, s) -> int:
        """:meth:`sync` in session ``s``, the lock being held."""
        missing, unjournaled = self._pending(s)
        for row in unjournaled:
            event = _decision_event(row) if isinstance(row, PromotionDecision) else self._export(s, row)
            append_line(self.journal, json.dumps(event))
        for event in missing:
            self._apply(s, event)
        if missing:
            log.info("registry: applied %d journal entries the index lacked", len(missing))
        return len(missing)

    @staticmethod
    def _export(s, row: ModelVersion) -> dict:
        """The journal entry of an index row made without a journal."""
        event = {**{k: v for k, v in row.to_dict().items() if k in _FIELDS}, "event": "promote"}
        later = s.scalars(select(ModelVersion).where(
            _where(row.app, row.tenant_key or None) & (ModelVersion.id > row.id))
            .order_by(ModelVersion.id)).first()
        event["replaces"] = row.previous_version
        event["replaced_status"] = None
        if later is not None:  # the status this row ended with is set by the entry after it
            event["status_after"] = row.status
        return event

    @staticmethod
    def _apply(s, event: dict):
        """Apply one journal entry to the index (no-op when it is there already)."""
        app, tenant = event["app"], event.get("tenant")
        if event.get("event") == "decision":
            row = s.scalars(select(PromotionDecision).where(
                (PromotionDecision.app == app) & (PromotionDecision.tenant_key == _key(tenant))
                & (PromotionDecision.run_id == event["run_id"])
                & (PromotionDecision.decided_at == event["decided_at"]))).first()
            if row is None:
                row = PromotionDecision(app=app, tenant_key=_key(tenant), run_id=event["run_id"],
                                        promoted=bool(event["promoted"]), version=event.get("version"),
                                        reason=event["reason"], decided_at=event["decided_at"], by=event["by"])
                s.add(row)
                s.flush()
            return row
        row = s.scalars(select(ModelVersion).where(
            _where(app, tenant) & (ModelVersion.version == event["version"]))).first()
        if row is not None:
            return row
        for current in s.scalars(select(ModelVersion).where(
                _where(app, tenant) & (ModelVersion.status == "production"))):
            current.status = event.get("replaced_status") or "archived" \
                if current.version == event.get("replaces") else "archived"
        s.flush()
        row = ModelVersion(app=app, tenant_key=_key(tenant), version=event["version"], status="production",
                           run_id=event["run_id"], model_dir=event["model_dir"], sha256=event["sha256"],
                           files=json.dumps(event["files"]) if event.get("files") else None,
                           metric_name=event.get("metric_name"), metric=event.get("metric"),
                           promoted_at=event["promoted_at"], by=event["by"], reason=event.get("reason"),
                           previous_version=event.get("previous_version"))
        s.add(row)
        s.flush()
        if event.get("status_after") and event["status_after"] != "production":
            row.status = event["status_after"]
            s.flush()
        return row

    @contextlib.contextmanager
    def _change(self, lock: str | None = None):
        """The lock, a session brought up to date with the journal, and ``record(event)``,
        which journals an entry (durably) and applies it. If anything fails before the
        session commits, the journal line is taken back: the change did not happen.
        ``lock``: the database's lock of the (app, tenant) (PostgreSQL)."""
        sizes = []

        def record(event: dict) -> dict:
            sizes.append(append_line(self.journal, json.dumps(event)))
            return self._apply(s, event).to_dict()

        with self._locked():
            try:
                with db.session(self.root, lock=lock) as s:
                    self._fix(s)
                    yield s, record
            except BaseException:
                for size in reversed(sizes):
                    os.truncate(self.journal, size)
                raise

    def rebuild(self) -> int:
        """Recreate the registry's index rows (versions and automatic decisions) from the
        journal; returns the versions."""
        with self._locked(), db.session(self.root) as s:
            self._fix(s)  # rows only the index holds go to the journal first
            s.execute(delete(ModelVersion))
            s.execute(delete(PromotionDecision))
            events = read_lines(self.journal)
            for event in events:
                self._apply(s, event)
        return sum(e.get("event") != "decision" for e in events)

    # -- changing --------------------------------------------------------------------------
    def promote(self, run_id: str, app: str, tenant=None, force: bool = False,
                tolerance: float = 0.01, reason: str | None = None, by: str | None = None) -> dict:
        """Put a run's model in production for (app, tenant).

        The run must have succeeded, its metrics.json must say the model is above
        chance, and its model must load with the trusted loader (skops, expkit's list
        of types; the model file matching its card). If a production model exists for
        (app, tenant), the new hold-out metric may not be worse than it by more than
        ``tolerance`` unless ``force``. The folder's digests are recorded. Returns the
        new entry.
        """
        from .models.bundle import load_model

        if not app or "/" in app:
            raise PromotionError(f"app name {app!r} is not valid")
        try:
            run = get_run(run_id, self.root)
        except RunError as exc:
            raise PromotionError(f"refused: {exc.message}", hint=exc.hint) from None
        meta = run.reconcile()
        if meta.get("status") != "succeeded":
            raise PromotionError(f"refused: run {run.id} is {meta.get('status')}, not succeeded")
        metrics = run.metrics
        if metrics.get("above_chance") is not True:
            raise PromotionError(f"refused: the model of run {run.id} is not above chance",
                                 hint="metrics.json must say above_chance: true")
        model_dir = run.dir / "model"
        if not (model_dir / "model.skops").is_file():
            raise PromotionError(f"refused: run {run.id} has no model ({model_dir / 'model.skops'} is missing)")
        digests = file_digests(model_dir)
        try:
            load_model(model_dir, digests=digests)
        except ModelError as exc:
            raise PromotionError(f"refused: {exc.message}", hint=exc.hint) from None
        summary = meta.get("summary") or {}
        name, value = summary.get("metric_name"), summary.get("metric")
        with self._change(_lock(app, tenant)) as (s, record):  # one transaction: archive the old, add the new
            current = s.scalars(select(ModelVersion).where(
                _where(app, tenant) & (ModelVersion.status == "production"))).first()
            if current is not None and not force:
                gate(current.version, current.metric_name, current.metric, name, value, tolerance)
            latest = s.scalar(select(func.max(ModelVersion.version)).where(_where(app, tenant))) or 0
            entry = record({
                "event": "promote", "app": app, "tenant": tenant, "version": latest + 1,
                "run_id": run.id, "model_dir": str(model_dir), "sha256": sha256_dir(model_dir, digests),
                "files": digests, "metric_name": name, "metric": value, "promoted_at": now(),
                "by": by or getpass.getuser(), "reason": reason or ("forced" if force and current else None),
                "previous_version": current.version if current is not None else None,
                "replaces": current.version if current is not None else None,
                "replaced_status": "archived"})
        log.info("app %s (%s): version %d from run %s is in production", app, _who(tenant),
                 entry["version"], run.id)
        return entry

    def rollback(self, app: str, tenant=None, reason: str | None = None, by: str | None = None) -> dict:
        """Put back the model that was in production before the current one.

        The current version is marked ``rolled_back`` and the previous one is
        promoted again as a new version (so the history stays complete), once its
        model folder is checked against the digests recorded when it was promoted.
        """
        with self._change(_lock(app, tenant)) as (s, record):
            current = s.scalars(select(ModelVersion).where(
                _where(app, tenant) & (ModelVersion.status == "production"))).first()
            if current is None:
                raise RegistryError(f"no production model for app {app!r} ({_who(tenant)}) to roll back")
            if current.previous_version is None:
                raise RegistryError(f"app {app!r} ({_who(tenant)}): version {current.version} "
                                    "has no previous production model to roll back to")
            previous = s.scalars(select(ModelVersion).where(
                _where(app, tenant) & (ModelVersion.version == current.previous_version))).one()
            if not Path(previous.model_dir, "model.skops").is_file():
                raise RegistryError(f"cannot roll back: the model of version {previous.version} "
                                    f"is gone ({previous.model_dir})")
            try:
                verify(previous.to_dict())
            except ModelError as exc:
                raise RegistryError(f"cannot roll back: {exc.message}", hint=exc.hint) from None
            latest = s.scalar(select(func.max(ModelVersion.version)).where(_where(app, tenant)))
            entry = record({
                "event": "rollback", "app": app, "tenant": tenant, "version": latest + 1,
                "run_id": previous.run_id, "model_dir": previous.model_dir, "sha256": previous.sha256,
                "files": json.loads(previous.files) if previous.files else None,
                "metric_name": previous.metric_name, "metric": previous.metric, "promoted_at": now(),
                "by": by or getpass.getuser(),
                "reason": reason or f"rollback of version {current.version} to version {previous.version}",
                "previous_version": previous.previous_version,
                "replaces": current.version, "replaced_status": "rolled_back"})
        log.info("app %s (%s): rolled back to the model of version %d", app, _who(tenant), previous.version)
        return entry

    # -- automatic promotion ----------------------------------------------------------
    def promote_if_better(self, run_id: str, app: str, tenant=None, tolerance: float = 0.01,
                          by: str | None = None, why: str | None = None) -> dict:
        """Promote a run's model through the gate of :meth:`promote`, never raising on a refusal.

        The decision is recorded (:meth:`decisions`) with its reason: the hold-out
        metric against production's when promoted, the gate's message when not.
        ``why`` (e.g. ``"schedule retrain"``) starts the reason.

        Returns
        -------
        dict
            app, tenant, run_id, promoted, version (when promoted), reason, decided_at, by.
        """
        before = self._current(app, tenant)
        who = by or getpass.getuser()
        prefix = f"{why}: " if why else ""
        try:
            entry = self.promote(run_id, app, tenant, tolerance=tolerance, by=who,
                                 reason=f"{prefix}promoted automatically (if better)")
        except PromotionError as exc:
            decision = {"promoted": False, "version": None, "reason": f"{prefix}{exc.message}"}
        else:
            if before is None or before.metric is None:
                compared = "no production model to compare with" if before is None else \
                    f"production version {before.version} has no metric"
            else:
                compared = (f"hold-out {entry['metric_name']} {_num(entry['metric'])} vs "
                            f"{_num(before.metric)} of production version {before.version} "
                            f"(tolerance {tolerance:g})")
            decision = {"promoted": True, "version": entry["version"],
                        "reason": f"{prefix}promoted as version {entry['version']}: {compared}"}
        with self._change() as (_, record):
            out = record({"event": "decision", "app": app, "tenant": tenant, "run_id": str(run_id), "by": who,
                          "decided_at": now(), **decision})
        log.log(logging.INFO if out["promoted"] else logging.WARNING, "app %s (%s), run %s: %s",
                app, _who(tenant), run_id, out["reason"])
        return out

    def decisions(self, app: str | None = None) -> pd.DataFrame:
        """Every automatic promotion decision (newest first): promoted or not, and why."""
        self.sync()
        query = select(PromotionDecision).order_by(PromotionDecision.id.desc())
        if app is not None:
            query = query.where(PromotionDecision.app == app)
        with db.session(self.root) as s:
            rows = [r.to_dict() for r in s.scalars(query)]
        return pd.DataFrame(rows, columns=DECISION_COLUMNS)

    def _current(self, app: str, tenant) -> ModelVersion | None:
        with db.session(self.root) as s:
            return s.scalars(select(ModelVersion).where(
                _where(app, tenant) & (ModelVersion.status == "production"))).first()


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def gate(version: int, metric_name, metric, name, value, tolerance: float) -> None:
    """The promotion gate against production ``version`` (its ``metric_name`` = ``metric``):
    PromotionError when the new hold-out ``name`` = ``value`` is measured differently or is
    worse by more than ``tolerance`` (lower is better for :data:`LOWER_IS_BETTER`)."""
    if metric is None or metric_name is None:
        return
    if name != metric_name or value is None or not math.isfinite(value):
        raise PromotionError(
            f"refused: production version {version} is measured by {metric_name}, "
            f"the new run by {name}", hint="use --force to promote anyway")
    lower = name in LOWER_IS_BETTER
    worse = value - metric if lower else metric - value
    if worse > tolerance:
        raise PromotionError(
            f"refused: hold-out {name} {value:.4f} is worse than production version "
            f"{version} ({metric:.4f}) by more than {tolerance}",
            hint="use --force (and --reason) to promote anyway")
