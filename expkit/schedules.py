"""Schedules: which template runs when (``schedules.yaml``), and the ledger of their starts.

The project's ``schedules.yaml`` (``$EXPKIT_SCHEDULES``, else in the project root)::

    schedules:
      retrain:
        template: tournament
        cron: "0 3 1 * *"            # minute hour day month weekday, in `timezone` (default UTC)
        params: {budget: 60}
        tenants_from: leads.csv:tenant
        promote: if-better           # through the gate of `expkit promote model`
        app: leads
      monitor:
        template: monitor
        cron: "0 * * * *"
        alert: true                  # send the run's alerts (alerts.json) to the sinks
    alerts:                          # see expkit.monitoring.alerts
      sinks: [log, {webhook: "https://hooks.example/${HOOK_TOKEN}", format: slack}]

A schedule is *due* at its latest cron slot at or before "now" that is later than
both its ``since`` time (when it was added) and the last slot it was started for;
slots missed while nothing called ``run-due`` are caught up once, by that one start.
Each start is claimed in the ledger (:class:`ScheduleStart`, unique per schedule and
slot) before anything runs, so two overlapping ``run-due`` calls never start the same
slot twice, on SQLite or PostgreSQL. The runner is :mod:`expkit.scheduler`.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import pandas as pd
from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from . import db, sql
from .errors import ConfigError
from .files import write_text
from .paths import project_root, safe_name

log = logging.getLogger(__name__)

#: The file name of the schedules in the project root.
FILE = "schedules.yaml"
#: What a schedule may do with a succeeded run.
PROMOTE = ("if-better",)
#: Ledger statuses.
STATUSES = ("running", "succeeded", "failed", "interrupted")
FLEET_COLUMNS = ["schedule", "template", "cron", "tenants", "then", "last_slot", "last_started",
                 "last_status", "last_detail", "next_run"]
_HEADER = ("# expkit schedules: `expkit schedule run-due` starts what is due (call it every minute;\n"
           "# `expkit schedule cron` prints the crontab line). `expkit schedule add/remove` rewrite this\n"
           "# file; comments are not kept.\n")


def utcnow() -> dt.datetime:
    """Aware UTC now."""
    return dt.datetime.now(dt.timezone.utc)


def parse_time(value) -> dt.datetime:
    """An aware datetime from an ISO string or datetime (naive means UTC)."""
    if isinstance(value, dt.datetime):
        when = value
    else:
        try:
            when = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{value!r} is not a date and time",
                              hint="use ISO 8601, e.g. 2024-05-01T03:05 or 2024-05-01 03:05+02:00") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _naive_utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.timezone.utc).replace(tzinfo=None)


# -- one schedule -------------------------------------------------------------------------
@dataclass
class Schedule:
    """One entry of schedules.yaml (see the module docstring)."""

    name: str
    template: str
    cron: str
    params: dict = field(default_factory=dict)
    tenants: list | None = None
    tenants_from: str | None = None
    promote: str | None = None
    app: str | None = None
    tolerance: float = 0.01
    alert: bool = False
    timezone: str = "UTC"
    workers: int = 1
    since: str | None = None

    def __post_init__(self):
        from croniter import croniter

        safe_name(self.name, "schedule name")
        if not isinstance(self.template, str) or not self.template:
            raise ConfigError(f"schedule {self.name!r}: 'template' is missing")
        if not isinstance(self.cron, str) or not croniter.is_valid(self.cron):
            raise ConfigError(f"schedule {self.name!r}: {self.cron!r} is not a cron expression",
                              hint="five fields: minute hour day-of-month month day-of-week, "
                                   "e.g. '0 3 1 * *' (03:00 on the 1st) or '0 * * * *' (hourly)")
        if not isinstance(self.params, dict):
            raise ConfigError(f"schedule {self.name!r}: 'params' must be a mapping of NAME: VALUE")
        for key, value in self.params.items():
            sql.check_no_password(f"schedule {self.name!r}, parameter {key!r}", value)
        if self.tenants is not None and self.tenants_from is not None:
            raise ConfigError(f"schedule {self.name!r}: give 'tenants' or 'tenants_from', not both")
        if self.promote not in (None, *PROMOTE):
            raise ConfigError(f"schedule {self.name!r}: promote {self.promote!r} is not known",
                              hint=f"use {', '.join(PROMOTE)} (or leave it out)")
        try:
            self.tolerance = float(self.tolerance)
            self.workers = int(self.workers)
        except (TypeError, ValueError):
            raise ConfigError(f"schedule {self.name!r}: tolerance must be a number and workers "
                              "a whole number") from None
        if self.tolerance < 0 or self.workers < 1:
            raise ConfigError(f"schedule {self.name!r}: tolerance must be >= 0 and workers >= 1")
        self.zone()
        if self.since is not None:
            self.since = parse_time(self.since).isoformat()

    def zone(self):
        """The schedule's time zone."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(str(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"schedule {self.name!r}: unknown time zone {self.timezone!r}",
                              hint="use an IANA name such as UTC or Europe/Berlin") from None

    def latest_slot(self, now) -> dt.datetime:
        """The latest cron slot at or before ``now`` (aware UTC)."""
        from croniter import croniter

        local = parse_time(now).astimezone(self.zone())
        slot = croniter(self.cron, local + dt.timedelta(seconds=1)).get_prev(dt.datetime)
        if slot > local:
            slot = croniter(self.cron, slot).get_prev(dt.datetime)
        return slot.astimezone(dt.timezone.utc)

    def next_slot(self, now) -> dt.datetime:
        """The first cron slot after ``now`` (aware UTC)."""
        from croniter import croniter

        local = parse_time(now).astimezone(self.zone())
        return croniter(self.cron, local).get_next(dt.datetime).astimezone(dt.timezone.utc)

    def slots_between(self, after: dt.datetime, until: dt.datetime, cap: int = 10_000) -> int:
        """How many slots lie in (after, until] (counted up to ``cap``)."""
        from croniter import croniter

        it = croniter(self.cron, after.astimezone(self.zone()))
        n = 0
        while n < cap and it.get_next(dt.datetime) <= until:
            n += 1
        return n

    @property
    def promote_app(self) -> str | None:
        """The app a promoted model serves: ``app``, else the ``app`` parameter."""
        return self.app or self.params.get("app")

    def to_dict(self) -> dict:
        """The entry as written to schedules.yaml (defaults left out, name as the key)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if f.name != "name" and value != default:
                out[f.name] = value
        return out


# -- the file ---------------------------------------------------------------------------------
def path(file=None) -> Path:
    """The schedules file: ``file``, else ``$EXPKIT_SCHEDULES``, else ``schedules.yaml`` in the
    project root (see :func:`expkit.paths.project_root`), else in the working folder."""
    chosen = file or os.environ.get("EXPKIT_SCHEDULES")
    if chosen:
        return Path(chosen).expanduser().absolute()
    root = project_root() or Path.cwd()
    return (root / FILE).absolute()


def read(file=None) -> dict:
    """The whole schedules file as a mapping (empty when there is none)."""
    import yaml

    target = path(file)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{target} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("schedules") or {}, dict):
        raise ConfigError(f"{target} must hold a mapping with a 'schedules' mapping of NAME: entry")
    return data


def load(file=None) -> list[Schedule]:
    """The schedules of the file, checked (ConfigError naming the entry and the problem)."""
    out = []
    for name, entry in (read(file).get("schedules") or {}).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"schedule {name!r} in {path(file)} must be a mapping")
        known = set(Schedule.__dataclass_fields__) - {"name"}
        unknown = set(entry) - known
        if unknown:
            raise ConfigError(f"schedule {name!r}: unknown key(s) {', '.join(sorted(unknown))}",
                              hint=f"keys: {', '.join(sorted(known))}")
        out.append(Schedule(name=str(name), **entry))
    return out


def get(name: str, file=None) -> Schedule:
    """One schedule by name (ConfigError listing the others when missing)."""
    found = {s.name: s for s in load(file)}
    if name not in found:
        raise ConfigError(f"no schedule {name!r} in {path(file)}",
                          hint=f"schedules: {', '.join(found)}" if found else "add one with `expkit schedule add`")
    return found[name]


def _write(data: dict, file=None) -> Path:
    import yaml

    target = path(file)
    return write_text(target, _HEADER + yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def add(schedule: Schedule, file=None, replace: bool = False, now=None) -> Path:
    """Add ``schedule`` to the file (``since`` defaults to ``now``); ConfigError if the name is
    taken unless ``replace``. Returns the file's path."""
    data = read(file)
    entries = dict(data.get("schedules") or {})
    if schedule.name in entries and not replace:
        raise ConfigError(f"schedule {schedule.name!r} already exists in {path(file)}",
                          hint="remove it first, or pass --replace")
    if schedule.since is None:
        schedule.since = parse_time(now or utcnow()).isoformat()
    entries[schedule.name] = schedule.to_dict()
    data["schedules"] = entries
    return _write(data, file)


def remove(name: str, file=None) -> Path:
    """Remove a schedule from the file (its ledger rows stay)."""
    data = read(file)
    entries = dict(data.get("schedules") or {})
    if name not in entries:
        raise ConfigError(f"no schedule {name!r} in {path(file)}")
    del entries[name]
    data["schedules"] = entries
    return _write(data, file)


# -- the ledger ---------------------------------------------------------------------------------
class ScheduleStart(db.Base):
    """One start of a schedule for one slot (the claim that makes starts happen once)."""

    __tablename__ = "schedule_starts"
    __table_args__ = (Index("one_start_per_slot", "schedule", "slot", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule: Mapped[str] = mapped_column(String(200), index=True)
    slot: Mapped[dt.datetime] = mapped_column(DateTime)  # naive UTC
    missed: Mapped[int] = mapped_column(Integer, default=0)  # earlier slots caught up by this start
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(20))
    runs: Mapped[list] = mapped_column(JSON, default=list)
    detail: Mapped[str | None] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(200))

    def to_dict(self) -> dict:
        return {"id": self.id, "schedule": self.schedule, "slot": self.slot, "missed": self.missed,
                "started_at": self.started_at, "finished_at": self.finished_at, "status": self.status,
                "runs": list(self.runs or []), "detail": self.detail, "pid": self.pid, "host": self.host}


START_COLUMNS = ["id", "schedule", "slot", "missed", "started_at", "finished_at", "status", "runs",
                 "detail", "pid", "host"]


def last_start(name: str, runs_dir=None) -> dict | None:
    """The latest start (by slot) of schedule ``name``, or None."""
    with db.session(runs_dir) as s:
        row = s.scalars(select(ScheduleStart).where(ScheduleStart.schedule == name)
                        .order_by(ScheduleStart.slot.desc()).limit(1)).first()
        return None if row is None else row.to_dict()


def due(schedule: Schedule, now, runs_dir=None) -> tuple[dt.datetime, int] | None:
    """(slot, missed) when ``schedule`` is due at ``now``, else None.

    The slot is the latest one at or before ``now``; ``missed`` counts the earlier
    slots since the last start (or since the schedule was added) that it catches up.
    """
    now = parse_time(now)
    slot = schedule.latest_slot(now)
    last = last_start(schedule.name, runs_dir)
    after = None
    if last is not None:
        after = last["slot"].replace(tzinfo=dt.timezone.utc)
    if schedule.since is not None:
        since = parse_time(schedule.since) - dt.timedelta(microseconds=1)  # a slot at `since` counts
        after = since if after is None else max(after, since)
    if after is not None and slot <= after:
        return None
    missed = 0 if after is None else max(0, schedule.slots_between(after, slot) - 1)
    return slot, missed


def claim(name: str, slot: dt.datetime, missed: int = 0, runs_dir=None) -> int | None:
    """Record the start of ``name`` for ``slot``; its id, or None when another caller has it."""
    row = ScheduleStart(schedule=name, slot=_naive_utc(slot), missed=missed, status="running",
                        started_at=_naive_utc(utcnow()), runs=[], pid=os.getpid(), host=socket.gethostname())
    try:
        with db.session(runs_dir) as s:
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:
        return None


def finish(start_id: int, status: str, runs=(), detail: str | None = None, runs_dir=None) -> None:
    """Close a start with its status, run ids and a one-line detail."""
    if status not in STATUSES:
        raise ConfigError(f"status {status!r} is not one of {STATUSES}")
    with db.session(runs_dir) as s:
        row = s.get(ScheduleStart, start_id)
        row.status, row.runs, row.detail = status, list(runs), detail
        row.finished_at = _naive_utc(utcnow())


def starts(name: str | None = None, runs_dir=None) -> pd.DataFrame:
    """Every start (newest slot first), optionally of one schedule."""
    query = select(ScheduleStart).order_by(ScheduleStart.slot.desc(), ScheduleStart.id.desc())
    if name is not None:
        query = query.where(ScheduleStart.schedule == name)
    with db.session(runs_dir) as s:
        rows = [r.to_dict() for r in s.scalars(query)]
    return pd.DataFrame(rows, columns=START_COLUMNS)


def fleet(now=None, file=None, runs_dir=None, with_ledger: bool = True) -> pd.DataFrame:
    """One row per schedule: template, cron, tenants, what follows a run, last start
    (slot, real start time, status, detail) and next run after ``now``.
    ``with_ledger=False`` leaves the database alone (every schedule "never run")."""
    now = parse_time(now or utcnow())
    rows = []
    for sched in load(file):
        last = last_start(sched.name, runs_dir) if with_ledger else None
        then = ", ".join(w for w in (f"promote {sched.promote}" if sched.promote else "",
                                     "alert" if sched.alert else "") if w)
        rows.append({
            "schedule": sched.name, "template": sched.template, "cron": sched.cron
            + ("" if sched.timezone == "UTC" else f" ({sched.timezone})"),
            "tenants": sched.tenants_from or (", ".join(map(str, sched.tenants)) if sched.tenants else "-"),
            "then": then or "-",
            "last_slot": last["slot"] if last else None, "last_started": last["started_at"] if last else None,
            "last_status": last["status"] if last else "never run",
            "last_detail": last["detail"] if last else None,
            "next_run": _naive_utc(sched.next_slot(now))})
    return pd.DataFrame(rows, columns=FLEET_COLUMNS)
