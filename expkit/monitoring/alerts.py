"""Alerts that reach someone: sinks, and each alert sent once until it clears.

Sinks are set in the ``alerts`` section of the project's ``schedules.yaml``::

    alerts:
      level: alert                  # send alerts (default), or also warnings: warning
      sinks:
        - log                       # the Python log (WARNING)
        - file: alerts.jsonl        # one JSON object per line (relative to the project root)
        - webhook: https://hooks.slack.com/services/${SLACK_HOOK}
          format: slack             # json (default), slack or teams
          headers: {Authorization: "Bearer ${TOKEN}"}
          timeout: 10

Without that section alerts go to the log and to ``alerts.jsonl`` in the runs folder.
``${NAME}`` in a webhook address or header is read from the environment when sending.

An alert is identified by (app, tenant, check). :func:`notify` is told what fired and
what was evaluated: a key that fires and is not open yet is opened and sent to every
sink; while it stays open it is not sent again; a key that was evaluated and did not
fire is cleared, and sent again when it next fires. When it clears, the sinks that got
it are sent one "resolved" message (level ``resolved``; not retried if a sink fails).
A sink that fails (webhook down) gets the alert on a later tick that still sees it
firing. The state lives in the run index (:class:`AlertState`); concurrent callers
decide under one lock, so an alert is sent once even when two monitors run at the same
time.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd
from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from .. import db, schedules
from ..errors import ConfigError
from ..files import jsonable, write_text
from ..paths import runs_dir as _runs_dir
from ..scoring.scorelog import utcnow

log = logging.getLogger(__name__)

LEVELS = ("warning", "alert")
#: The level of the message sent when an alert clears.
RESOLVED = "resolved"
FORMATS = ("json", "slack", "teams")
#: The checks :func:`expkit.monitor` evaluates for every production model.
MONITOR_CHECKS = ("drift", "fill rate", "unseen categories", "live auroc", "no scores")
#: Seconds a caller may take to deliver the alerts it claimed before another may retry them.
LEASE = 120
STATE_COLUMNS = ["app", "tenant", "check", "status", "level", "message", "opened_at", "last_seen_at",
                 "cleared_at", "times_opened", "delivered"]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class AlertState(db.Base):
    """The state of one (app, tenant, check): open (sent) or cleared."""

    __tablename__ = "alert_state"
    __table_args__ = (Index("one_state_per_alert", "app_key", "tenant_key", "check_name", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    app_key: Mapped[str] = mapped_column(String(200))
    tenant_key: Mapped[str] = mapped_column(String(200))
    check_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))  # open | cleared
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    record: Mapped[dict] = mapped_column(JSON)
    opened_at: Mapped[datetime] = mapped_column(DateTime)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime)
    times_opened: Mapped[int] = mapped_column(Integer, default=1)
    delivered: Mapped[list] = mapped_column(JSON, default=list)  # sink ids that have this episode
    sending_until: Mapped[float | None] = mapped_column(Float)  # a caller's lease on delivering it

    def to_dict(self) -> dict:
        return {"app": self.app_key or None, "tenant": self.tenant_key or None, "check": self.check_name,
                "status": self.status, "level": self.level, "message": self.message,
                "opened_at": self.opened_at, "last_seen_at": self.last_seen_at, "cleared_at": self.cleared_at,
                "times_opened": self.times_opened, "delivered": list(self.delivered or [])}


# -- sinks --------------------------------------------------------------------------------
@dataclass
class Sink:
    """Where alerts go: ``kind`` is log, file or webhook."""

    kind: str
    target: str = ""
    format: str = "json"
    headers: dict = field(default_factory=dict)
    timeout: float = 10.0

    @property
    def id(self) -> str:
        """A stable name for the sink: a webhook by its host and a digest of its address
        (which often holds a token: it is not stored or printed)."""
        if self.kind == "webhook":
            digest = hashlib.sha256(self.target.encode()).hexdigest()[:8]
            return f"webhook:{urllib.parse.urlsplit(self.target).netloc or '?'}#{digest}"
        return f"{self.kind}:{self.target}" if self.target else self.kind

    def send(self, alert: Mapping) -> None:
        """Deliver one alert (raises OSError/ConfigError when it could not)."""
        if self.kind == "log":
            log.log(logging.INFO if alert["level"] == RESOLVED else logging.WARNING, "%s: %s",
                    alert["level"].upper(), alert["message"])
        elif self.kind == "file":
            _append_line(Path(self.target), json.dumps(jsonable(dict(alert)), default=str))
        else:
            body = json.dumps(jsonable(payload(alert, self.format)), default=str).encode("utf-8")
            headers = {"Content-Type": "application/json", **{k: _expand(str(v)) for k, v in self.headers.items()}}
            request = urllib.request.Request(_expand(self.target), data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - the user's URL
                response.read()


def _expand(text: str) -> str:
    def value(match):
        if match[1] not in os.environ:
            raise ConfigError(f"environment variable {match[1]} (named in an alert sink) is not set")
        return os.environ[match[1]]

    return _ENV.sub(value, text)


def _append_line(target: Path, line: str) -> None:
    """Append one line to a JSON-lines file: rewritten atomically, under a lock for other writers."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            before = target.read_text(encoding="utf-8") if target.exists() else ""
            if before and not before.endswith("\n"):
                before += "\n"
            write_text(target, before + line + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def payload(alert: Mapping, fmt: str = "json") -> dict:
    """The webhook body of an alert: ``json`` (the alert plus a ``text`` line, which Slack
    also accepts), ``slack`` (text and blocks) or ``teams`` (an Adaptive Card message, as a
    Teams workflow webhook takes it)."""
    who = "/".join(str(p) for p in (alert.get("app"), alert.get("tenant")) if p) or "expkit"
    title = f"{alert['level'].upper()} {who}: {alert['check']}"
    text = f"[expkit] {title}: {alert['message']}"
    if fmt == "slack":
        return {"text": text, "blocks": [{"type": "section", "text": {
            "type": "mrkdwn", "text": f"*{title}*\n{alert['message']}"}}]}
    if fmt == "teams":
        facts = [{"title": k, "value": str(alert[k])} for k in ("app", "tenant", "check", "source", "fired_at")
                 if alert.get(k) is not None]
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                "version": "1.4", "body": [
                    {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
                     "color": {"alert": "Attention", RESOLVED: "Good"}.get(alert["level"], "Warning")},
                    {"type": "TextBlock", "text": alert["message"], "wrap": True},
                    {"type": "FactSet", "facts": facts}]}
        return {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    return {"text": text, **alert}


def config(file=None, runs_dir=None) -> tuple[str, list[Sink]]:
    """(lowest level sent, sinks) from the ``alerts`` section of the schedules file."""
    section = schedules.read(file).get("alerts")
    root = schedules.path(file).parent
    if section is None:
        return "alert", [Sink("log"), Sink("file", str(_runs_dir(runs_dir) / "alerts.jsonl"))]
    if not isinstance(section, dict):
        raise ConfigError(f"'alerts' in {schedules.path(file)} must be a mapping with 'sinks' (and 'level')")
    level = section.get("level", "alert")
    if level not in LEVELS:
        raise ConfigError(f"alerts level {level!r} is not one of {', '.join(LEVELS)}")
    out = []
    for item in section.get("sinks") or []:
        out.append(_sink(item, root))
    return level, out


def _sink(item, root: Path) -> Sink:
    if item == "log" or item == {"log": True}:
        return Sink("log")
    if not isinstance(item, dict) or len({"file", "webhook"} & set(item)) != 1:
        raise ConfigError(f"alert sink {item!r} is not understood",
                          hint="use `log`, `{file: alerts.jsonl}` or `{webhook: URL, format: json|slack|teams}`")
    if "file" in item:
        target = Path(str(item["file"])).expanduser()
        return Sink("file", str(target if target.is_absolute() else root / target))
    fmt = item.get("format", "json")
    if fmt not in FORMATS:
        raise ConfigError(f"webhook format {fmt!r} is not one of {', '.join(FORMATS)}")
    headers = item.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigError("webhook headers must be a mapping of NAME: VALUE")
    try:
        timeout = float(item.get("timeout", 10))
    except (TypeError, ValueError):
        raise ConfigError(f"webhook timeout {item.get('timeout')!r} is not a number of seconds") from None
    return Sink("webhook", str(item["webhook"]), fmt, dict(headers), timeout)


# -- notify ------------------------------------------------------------------------------------
def _key(app, tenant, check) -> tuple[str, str, str]:
    return ("" if _blank(app) else str(app), "" if _blank(tenant) else str(tenant), str(check))


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _merge(firing: Iterable[Mapping], min_level: str) -> dict:
    """Alerts at ``min_level`` or above, one per key (messages of one key joined)."""
    out: dict = {}
    rank = {lvl: i for i, lvl in enumerate(LEVELS)}
    for a in firing:
        if rank.get(a.get("level"), -1) < rank[min_level]:
            continue
        key = _key(a.get("app"), a.get("tenant"), a["check"])
        if key in out:
            prev = out[key]
            prev["message"] = f"{prev['message']}; {a['message']}"
            if rank[a["level"]] > rank[prev["level"]]:
                prev["level"] = a["level"]
        else:
            out[key] = {k: (None if _blank(v) else v) for k, v in dict(a).items()}
    return out


def notify(firing: Iterable[Mapping], evaluated: Iterable[tuple] = (), *, source: str | None = None,
           file=None, runs_dir=None, now: datetime | None = None, sinks: list[Sink] | None = None,
           level: str | None = None) -> list[dict]:
    """Send what newly fired to the sinks; clear what was evaluated and did not fire.

    Parameters
    ----------
    firing : iterable of dict
        Alerts with ``level`` (warning or alert), ``app``, ``tenant``, ``check`` and
        ``message`` (other keys are passed on).
    evaluated : iterable of (app, tenant, check)
        Every key that was checked this time; those not firing are cleared.
    source : str, optional
        What raised them (``monitor``, ``schedule retrain``), passed on to the sinks.
    file, runs_dir
        The schedules file (sinks) and the runs folder (state).
    now : datetime, optional
        Naive UTC time recorded as ``fired_at`` (default: now).
    sinks, level : optional
        Instead of the configured ones.

    Returns
    -------
    list of dict
        The alerts delivered this time, each with ``sinks`` (ids it reached).
    """
    if sinks is None or level is None:
        conf_level, conf_sinks = config(file, runs_dir)
        sinks = conf_sinks if sinks is None else sinks
        level = conf_level if level is None else level
    now = now or utcnow()
    fired = _merge(firing, level)
    checked = {_key(*k) for k in evaluated} | set(fired)
    project = schedules.path(file).parent.name
    todo = _decide(fired, checked, now, source, project, {k.id for k in sinks}, runs_dir)
    sent = []
    for key, record, have in todo:
        reached = []
        resolved = record["level"] == RESOLVED
        for sink in sinks:
            if (sink.id not in have) if resolved else (sink.id in have):  # resolved: to those that got it
                continue
            try:
                sink.send(record)
                reached.append(sink.id)
            except (OSError, ConfigError, http.client.HTTPException, ValueError) as exc:
                log.error("alert %s/%s/%s not delivered to %s: %s", *key, sink.id, exc)
        if not resolved:
            _delivered(key, reached, runs_dir)
        if reached:
            sent.append({**record, "sinks": reached})
    return sent


def _decide(fired: dict, checked: set, now: datetime, source, project, sink_ids: set, runs_dir) -> list:
    """Open, keep or clear states; claim (lease) those to deliver: [(key, record, delivered)]."""
    todo = []
    with db.session(runs_dir, lock="expkit:alerts") as s:
        rows = {(r.app_key, r.tenant_key, r.check_name): r for r in s.scalars(select(AlertState))}
        for key, alert in fired.items():
            record = {"level": alert["level"], "app": alert.get("app"), "tenant": alert.get("tenant"),
                      "check": alert["check"], "message": alert["message"], "source": source,
                      "project": project, "fired_at": now.isoformat(timespec="seconds"),
                      **{k: v for k, v in alert.items() if k not in ("level", "app", "tenant", "check", "message")}}
            row = rows.get(key)
            if row is None:
                row = AlertState(app_key=key[0], tenant_key=key[1], check_name=key[2], times_opened=0,
                                 status="cleared", level=record["level"], message=record["message"],
                                 record=jsonable(record), opened_at=now, last_seen_at=now, delivered=[])
                s.add(row)
            if row.status != "open":
                row.status, row.opened_at, row.cleared_at = "open", now, None
                row.times_opened = (row.times_opened or 0) + 1
                row.delivered, row.sending_until = [], None
                row.record, row.level, row.message = jsonable(record), record["level"], record["message"]
            row.last_seen_at = now
            if sink_ids - set(row.delivered or []) and (row.sending_until is None
                                                       or row.sending_until < time.time()):
                row.sending_until = time.time() + LEASE
                todo.append((key, dict(row.record), list(row.delivered or [])))
        for key in checked - set(fired):
            row = rows.get(key)
            if row is not None and row.status == "open":
                row.status, row.cleared_at, row.sending_until = "cleared", now, None
                log.info("alert %s/%s/%s cleared", *key)
                if row.delivered:
                    opened = row.opened_at.isoformat(timespec="seconds")
                    todo.append((key, {**row.record, "level": RESOLVED, "source": source,
                                       "message": f"resolved (open since {opened}): {row.message}",
                                       "resolved_at": now.isoformat(timespec="seconds")}, list(row.delivered)))
    return todo


def _delivered(key, reached: list, runs_dir) -> None:
    with db.session(runs_dir, lock="expkit:alerts") as s:
        row = s.scalars(select(AlertState).where(
            (AlertState.app_key == key[0]) & (AlertState.tenant_key == key[1])
            & (AlertState.check_name == key[2]))).first()
        if row is not None:
            row.delivered = sorted(set(row.delivered or []) | set(reached))
            row.sending_until = None


def state(runs_dir=None, open_only: bool = False) -> pd.DataFrame:
    """The alert states (open first, newest first)."""
    with db.session(runs_dir) as s:
        rows = [r.to_dict() for r in s.scalars(select(AlertState))]
    df = pd.DataFrame(rows, columns=STATE_COLUMNS)
    if open_only:
        df = df[df["status"] == "open"]
    return df.sort_values(["status", "opened_at"], ascending=[False, False], kind="stable").reset_index(drop=True)


# -- the monitor's alerts -----------------------------------------------------------------------
#: The file a run writes its alerts to, for a schedule with ``alert: true``.
ALERTS_FILE = "alerts.json"


def from_monitor(result) -> tuple[list[dict], list[tuple]]:
    """(firing, evaluated) of a :class:`~expkit.monitoring.result.MonitorResult`."""
    firing = [{k: (None if _blank(v) else v) for k, v in a.items()}
              for a in result.alerts.to_dict("records")]
    models = result.models[["app", "tenant"]].drop_duplicates().itertuples(index=False) \
        if len(result.models) else []
    evaluated = [(m.app, m.tenant, check) for m in models for check in MONITOR_CHECKS]
    return firing, evaluated


def save(result, folder) -> Path:
    """Write a monitor result's (firing, evaluated) alerts to ``folder/alerts.json``."""
    firing, evaluated = from_monitor(result)
    target = Path(folder) / ALERTS_FILE
    write_text(target, json.dumps(jsonable({"alerts": firing, "evaluated": [list(k) for k in evaluated]}),
                                  indent=2, default=str) + "\n")
    return target


def load_saved(folder) -> tuple[list[dict], list[tuple]] | None:
    """(firing, evaluated) saved by :func:`save` in a run folder, or None when there is none."""
    with contextlib.suppress(FileNotFoundError):
        data = json.loads((Path(folder) / ALERTS_FILE).read_text(encoding="utf-8"))
        return list(data.get("alerts") or []), [tuple(k) for k in data.get("evaluated") or []]
    return None
