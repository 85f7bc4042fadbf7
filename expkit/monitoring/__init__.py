"""Monitoring: fleet KPIs, per-model health, drift against the training reference, alerts.

:func:`monitor` reads the registry (production models and their cards), the score
log and the run index and returns a :class:`~expkit.monitoring.result.MonitorResult`
with tables (``kpis``, ``models``, ``drift``, ``alerts``, ``batches``, ``scores``),
their history (``history``, ``auroc_history``, ``drift_history``), figures and a
self-contained HTML dashboard.

Modules: :mod:`~expkit.monitoring.health` (the computations),
:mod:`~expkit.monitoring.history` (the KPIs as series over time),
:mod:`~expkit.monitoring.thresholds` (alert thresholds and table columns),
:mod:`~expkit.monitoring.result` and :mod:`~expkit.monitoring.dashboard` (figures, HTML),
:mod:`~expkit.monitoring.alerts` (sinks, and each alert sent once until it clears).
"""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import pandas as pd

from .. import runs, schedules
from ..errors import ConfigError, RegistryError
from ..files import read_json
from ..paths import runs_dir_source
from ..registry import Registry
from ..scoring import scorelog
from .health import _empty, _isna, _kpis, eval_auroc, evaluate, live_auroc  # noqa: F401
from .result import MonitorResult
from .thresholds import DEFAULT_THRESHOLDS
from .thresholds import thresholds as _thresholds

log = logging.getLogger(__name__)

__all__ = ["monitor", "MonitorResult", "DEFAULT_THRESHOLDS", "evaluate", "production_models"]


def monitor(app: str | None = None, runs_dir=None, thresholds: Mapping | None = None,
            now: datetime | str | None = None, schedules_file=None) -> MonitorResult:
    """Fleet KPIs, per-model health, drift and alerts.

    Parameters
    ----------
    app : str, optional
        Only the production models of this app (KPIs on runs stay fleet-wide).
    runs_dir : str or Path, optional
        Runs folder (default ``$EXPKIT_RUNS``, else ``runs/`` at the project root; the
        result's ``folder_line`` says which). An empty or missing folder gives an empty
        result, not an error.
    thresholds : dict, optional
        Overrides of :data:`DEFAULT_THRESHOLDS`.
    now : datetime or str, optional
        "Now" (naive means UTC; ISO text accepted), for reproducible reports and tests.
    schedules_file : str or Path, optional
        The schedules shown in ``result.schedules`` (default: the project's schedules.yaml).

    Returns
    -------
    MonitorResult
    """
    th = _thresholds(thresholds)
    now = schedules.parse_time(now).astimezone(timezone.utc).replace(tzinfo=None) if now is not None \
        else scorelog.utcnow()
    root, why = runs_dir_source(runs_dir)
    if not (root / "index.db").exists() and not _external_db():
        result = _empty(th, now, _kpis([], pd.DataFrame(), pd.DataFrame(columns=["created", "path"]), now))
        result.schedules = _fleet(now, schedules_file, root, with_ledger=False)
    else:
        prod = production_models(root, app)
        batches = scorelog.batches(app, runs_dir=root)
        fb = scorelog.feedback(app, runs_dir=root)
        runs = _runs(root)
        result = evaluate(prod, batches, fb, runs, th, now, scored=lambda b: scorelog.scored_ids(b, root),
                          versions=_versions(root, app))
        result.schedules = _fleet(now, schedules_file, root)
    result.runs_dir, result.runs_dir_source = root, why
    return result


def _fleet(now, file, root: Path, with_ledger: bool = True) -> pd.DataFrame:
    """The schedules table; a broken schedules file is logged, not raised (monitoring goes on)."""
    try:
        if not schedules.path(file).is_file():
            return pd.DataFrame(columns=schedules.FLEET_COLUMNS)
        return schedules.fleet(now, file, root, with_ledger=with_ledger)
    except ConfigError as exc:
        log.warning("schedules not shown: %s", exc)
        return pd.DataFrame(columns=schedules.FLEET_COLUMNS)


def _external_db() -> bool:
    return bool(os.environ.get("EXPKIT_DB"))


def production_models(root: Path, app=None) -> list[dict]:
    """The registry's production entries (optionally of ``app``), each with its ``card``."""
    try:
        table = Registry(root).list()
    except RegistryError:
        return []
    if table is None or len(table) == 0:
        return []
    if "production" in table.columns:  # a history listing: keep the live entries
        table = table[table["production"].astype(bool)]
    if app is not None:
        table = table[table["app"] == app]
    out = []
    for entry in table.to_dict("records"):
        entry = {k: (None if _isna(v) else v) for k, v in entry.items()}
        model_dir = Path(entry.get("model_dir") or root / str(entry.get("run_id")) / "model")
        if not model_dir.is_absolute():
            model_dir = root / model_dir
        try:
            entry["card"] = read_json(model_dir / "card.json", {})
        except (OSError, ValueError):
            log.warning("production model %s/%s: cannot read %s", entry.get("app"),
                        entry.get("tenant"), model_dir / "card.json")
            entry["card"] = {}
        out.append(entry)
    return out


def _versions(root: Path, app=None) -> pd.DataFrame:
    """Every promotion in the registry (for the models-in-production series)."""
    try:
        return Registry(root).list(app)
    except RegistryError:
        return pd.DataFrame()


def _runs(root: Path) -> pd.DataFrame:
    try:
        return runs.list(runs_dir=root)
    except Exception as exc:  # the run index is informational here
        log.warning("cannot read the run index: %s", exc)
        return pd.DataFrame(columns=runs.LIST_COLUMNS)


