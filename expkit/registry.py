"""The production registry: which run's model serves an (app, tenant).

Every promotion adds a version row (who, when, why, the model folder and the
sha256 of its ``model.skops``, the hold-out metric, the version it replaced);
exactly one version per (app, tenant) is in production. Promotion and rollback
each happen in one database transaction, holding the (app, tenant)'s lock (see
:func:`expkit.db.session`), so concurrent promotions on PostgreSQL are checked
against, and replace, one production model after the other. ``tenant=None`` is
the app-wide model; :meth:`Registry.production` falls back to it for tenants
without a model of their own.

:meth:`Registry.promote_if_better` is the automatic path (``promote: if-better``
in a schedule): the same gate, but a refusal is an outcome, not an error, and
every decision, promoted or not, is kept with its reason (:meth:`Registry.decisions`).
"""
from __future__ import annotations

import getpass
import logging
import math
from pathlib import Path

import pandas as pd
from sqlalchemy import Boolean, Float, Index, Integer, String, Text, func, select, text
from sqlalchemy.orm import Mapped, mapped_column

from . import db
from .errors import PromotionError, RegistryError, RunError
from .files import now, sha256_file
from .paths import runs_dir as _runs_dir
from .run import get as get_run

log = logging.getLogger(__name__)

#: Metrics where lower is better (the gate flips its comparison for these).
LOWER_IS_BETTER = ("log_loss", "brier", "rmse", "mae", "mse", "mape")
_ALL = ""  # the tenant key of the app-wide model


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
    sha256: Mapped[str] = mapped_column(String(64))
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


def _lock(app: str, tenant) -> str:
    return f"expkit:registry:{app}:{_key(tenant)}"


class Registry:
    """Production models per (app, tenant), kept in the run index database.

    Parameters
    ----------
    runs_dir : str or Path, optional
        The runs folder (its ``index.db`` holds the registry unless ``$EXPKIT_DB``).
    """

    def __init__(self, runs_dir=None):
        self.root = _runs_dir(runs_dir)

    def production(self, app: str, tenant=None) -> dict:
        """The production entry of (app, tenant), else of (app, all tenants).

        Returns a dict with run_id, version, model_dir, sha256, metric_name,
        metric, promoted_at, by, reason (and app, tenant, previous_version).
        Raises RegistryError when neither exists.
        """
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
        query = select(ModelVersion).order_by(ModelVersion.app, ModelVersion.tenant_key,
                                              ModelVersion.version.desc())
        if app is not None:
            query = query.where(ModelVersion.app == app)
        with db.session(self.root) as s:
            rows = [r.to_dict() for r in s.scalars(query)]
        return pd.DataFrame(rows, columns=COLUMNS)

    def promote(self, run_id: str, app: str, tenant=None, force: bool = False,
                tolerance: float = 0.01, reason: str | None = None, by: str | None = None) -> dict:
        """Put a run's model in production for (app, tenant).

        The run must have succeeded and its metrics.json must say the model is
        above chance. If a production model exists for (app, tenant), the new
        hold-out metric may not be worse than it by more than ``tolerance``
        unless ``force``. Returns the new entry.
        """
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
        model_file = run.dir / "model" / "model.skops"
        if not model_file.is_file():
            raise PromotionError(f"refused: run {run.id} has no model ({model_file} is missing)")
        summary = meta.get("summary") or {}
        name, value = summary.get("metric_name"), summary.get("metric")
        digest = sha256_file(model_file)
        with db.session(self.root, lock=_lock(app, tenant)) as s:  # one transaction: archive the old, add the new
            current = s.scalars(select(ModelVersion).where(
                _where(app, tenant) & (ModelVersion.status == "production"))).first()
            if current is not None and not force:
                gate(current.version, current.metric_name, current.metric, name, value, tolerance)
            latest = s.scalar(select(func.max(ModelVersion.version)).where(_where(app, tenant))) or 0
            if current is not None:
                current.status = "archived"
                s.flush()
            row = ModelVersion(app=app, tenant_key=_key(tenant), version=latest + 1, status="production",
                               run_id=run.id, model_dir=str(run.dir / "model"), sha256=digest,
                               metric_name=name, metric=value, promoted_at=now(),
                               by=by or getpass.getuser(), reason=reason or ("forced" if force and current else None),
                               previous_version=current.version if current is not None else None)
            s.add(row)
            s.flush()
            entry = row.to_dict()
        log.info("app %s (%s): version %d from run %s is in production", app, _who(tenant),
                 entry["version"], run.id)
        return entry

    def rollback(self, app: str, tenant=None, reason: str | None = None, by: str | None = None) -> dict:
        """Put back the model that was in production before the current one.

        The current version is marked ``rolled_back`` and the previous one is
        promoted again as a new version (so the history stays complete).
        """
        with db.session(self.root, lock=_lock(app, tenant)) as s:
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
            latest = s.scalar(select(func.max(ModelVersion.version)).where(_where(app, tenant)))
            current.status = "rolled_back"
            s.flush()
            row = ModelVersion(app=app, tenant_key=_key(tenant), version=latest + 1, status="production",
                               run_id=previous.run_id, model_dir=previous.model_dir, sha256=previous.sha256,
                               metric_name=previous.metric_name, metric=previous.metric,
                               promoted_at=now(), by=by or getpass.getuser(),
                               reason=reason or f"rollback of version {current.version} "
                                                f"to version {previous.version}",
                               previous_version=previous.previous_version)
            s.add(row)
            s.flush()
            entry = row.to_dict()
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
        row = PromotionDecision(app=app, tenant_key=_key(tenant), run_id=str(run_id), by=who,
                                decided_at=now(), **decision)
        with db.session(self.root) as s:
            s.add(row)
            s.flush()
            out = row.to_dict()
        log.log(logging.INFO if out["promoted"] else logging.WARNING, "app %s (%s), run %s: %s",
                app, _who(tenant), run_id, out["reason"])
        return out

    def decisions(self, app: str | None = None) -> pd.DataFrame:
        """Every automatic promotion decision (newest first): promoted or not, and why."""
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
