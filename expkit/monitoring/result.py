"""What :func:`expkit.monitor` returns: the tables, and their figures and HTML."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from ..files import check_writable, write_text
from ..schedules import FLEET_COLUMNS
from ..scoring.scorelog import utcnow
from . import dashboard
from .history import AUROC_HISTORY_COLUMNS, DRIFT_HISTORY_COLUMNS, KPI_HISTORY_COLUMNS
from .thresholds import DEFAULT_THRESHOLDS


@dataclass
class MonitorResult:
    """What :func:`monitor` found. Tables are DataFrames; see the module docstring."""

    kpis: pd.DataFrame
    models: pd.DataFrame
    drift: pd.DataFrame
    alerts: pd.DataFrame
    batches: pd.DataFrame
    scores: pd.DataFrame
    thresholds: dict = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    generated_at: datetime = field(default_factory=utcnow)
    #: One row per schedule (:func:`expkit.schedules.fleet`): last and next run, last status.
    schedules: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FLEET_COLUMNS))
    #: The KPIs per day (``day, kpi, value``): scores, experiments, models in production.
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=KPI_HISTORY_COLUMNS))
    #: Live AUROC per production model and day of scoring, with the evaluation AUROC.
    auroc_history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=AUROC_HISTORY_COLUMNS))
    #: PSI per production model, batch and field (the score is ``(score)``).
    drift_history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DRIFT_HISTORY_COLUMNS))
    #: Which runs folder was read, and why that one (:func:`expkit.paths.runs_dir_source`).
    runs_dir: Path | None = None
    runs_dir_source: str = ""

    @property
    def folder_line(self) -> str:
        """``runs folder /x/runs (project root /x)``: where the monitor looked."""
        return f"runs folder {self.runs_dir} ({self.runs_dir_source})" if self.runs_dir else ""

    @property
    def ok(self) -> bool:
        """True when no alert-level alert fired (warnings allowed)."""
        return not (self.alerts["level"] == "alert").any()

    def kpi(self, name: str):
        """The value of one KPI by name."""
        return self.kpis.set_index("kpi").loc[name, "value"]

    def save_alerts(self, folder) -> Path:
        """Write the alerts and what was checked to ``folder/alerts.json``: what a schedule
        with ``alert: true`` sends to the alert sinks (see :mod:`expkit.monitoring.alerts`)."""
        from .alerts import save

        return save(self, folder)

    # -- figures ------------------------------------------------------------------
    def figures(self) -> dict:
        """``{name: matplotlib Figure}``: the KPIs over time, scores over time, score
        distributions, drift per field, AUROC per model, live AUROC and PSI over time."""
        return dashboard.figures(self)

    # -- HTML -----------------------------------------------------------------------
    def to_html(self, path=None) -> str:
        """A self-contained HTML dashboard (figures embedded as PNG); written to ``path`` if given."""
        page = dashboard.page(self)
        if path is not None:
            check_writable(path)
            write_text(path, page)
        return page

    def _repr_html_(self) -> str:
        return dashboard.body(self)

    def __repr__(self) -> str:
        return (f"MonitorResult({len(self.models)} production model(s), "
                f"{int((self.alerts['level'] == 'alert').sum())} alert(s), "
                f"{int((self.alerts['level'] == 'warning').sum())} warning(s))")
