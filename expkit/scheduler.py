"""Start what is due: ``expkit schedule run-due``, called every minute by one crontab line.

For each schedule of ``schedules.yaml`` that is due (:func:`expkit.schedules.due`), the
slot is claimed in the ledger first (another caller that is a moment late gets nothing
and moves on), then the template runs once per tenant (runs of kind ``schedule``, in the
run index like any other), and then:

- ``promote: if-better``: every succeeded run goes through the registry's gate
  (:meth:`expkit.registry.Registry.promote_if_better`) for (app, the run's tenant); the
  decision and its reason are kept in the registry, and a refusal is an alert;
- ``alert: true``: the alerts a run saved (``alerts.json``, written by the monitor
  template) go to the alert sinks, once per (app, tenant, check) until they clear;
- a run that did not succeed, or a schedule that could not start, is an alert.

A schedule whose previous start is still running (its process alive) is not started
again; its slot stays due and is caught up once when that start has ended.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path

from . import schedules
from .errors import ExpkitError
from .execute import check_runs_dir, run_template, tenants_from
from .monitoring import alerts
from .registry import Registry
from .run import Run, alive
from .sql import literal_password
from .templates import find_template, template_parameters

log = logging.getLogger(__name__)


def run_due(now=None, file=None, runs_dir=None, templates_dir=None, names=None) -> list[dict]:
    """Start every schedule that is due at ``now`` (default: the current time).

    Parameters
    ----------
    now : datetime or str, optional
        The scheduler's clock (ISO text or datetime; naive means UTC). Templates with a
        ``now`` parameter receive it, so a monitor sees the same clock.
    file : str or Path, optional
        The schedules file (see :func:`expkit.schedules.path`).
    runs_dir, templates_dir : optional
        As for ``expkit run``.
    names : iterable of str, optional
        Only these schedules.

    Returns
    -------
    list of dict
        One entry per start: schedule, slot, missed, status, detail, runs (run summaries),
        promotions (registry decisions) and alerts (the alerts delivered).
    """
    now = schedules.parse_time(now or schedules.utcnow())
    root = check_runs_dir(runs_dir)
    alerts.config(file, root)  # a broken alerts section is an error before anything starts
    wanted = set(names) if names else None
    out = []
    for sched in schedules.load(file):
        if wanted is not None and sched.name not in wanted:
            continue
        found = schedules.due(sched, now, root)
        if found is None:
            continue
        slot, missed = found
        if _still_running(sched.name, root):
            log.info("schedule %s: the previous start is still running; slot %s waits", sched.name, slot)
            continue
        start_id = schedules.claim(sched.name, slot, missed, root)
        if start_id is None:
            log.info("schedule %s: slot %s was started by another caller", sched.name, slot)
            continue
        out.append(_start(sched, slot, missed, start_id, now, file, root, templates_dir))
    return out


def _still_running(name: str, root) -> bool:
    last = schedules.last_start(name, root)
    if last is None or last["status"] != "running":
        return False
    if alive(last["pid"], last["host"]):
        return True
    schedules.finish(last["id"], "interrupted", last["runs"],
                     "the process that started it ended before it finished", root)
    return False


def _start(sched: schedules.Schedule, slot, missed: int, start_id: int, now, file, root, templates_dir) -> dict:
    log.info("schedule %s: starting slot %s%s", sched.name, slot,
             f" ({missed} earlier slot(s) caught up)" if missed else "")
    entry = {"schedule": sched.name, "slot": slot, "missed": missed, "status": "interrupted",
             "detail": None, "runs": [], "promotions": [], "alerts": []}
    app = sched.promote_app
    check = f"schedule {sched.name}"
    try:
        try:
            path = find_template(sched.template, templates_dir)
            values = dict(sched.params)
            if "now" in template_parameters(path) and "now" not in values:
                values["now"] = now.isoformat()
            tenants = sched.tenants or (tenants_from(sched.tenants_from) if sched.tenants_from else None)
            entry["runs"] = run_template(path, values=values, tenants=tenants, workers=sched.workers,
                                         runs_dir=root, templates_dir=templates_dir, kind="schedule")
        except ExpkitError as exc:
            entry["status"], entry["detail"] = "failed", f"could not start: {exc}"
            firing = [{"level": "alert", "app": app, "tenant": None, "check": check,
                       "message": f"schedule {sched.name}: could not start template {sched.template}: {exc}"}]
            entry["alerts"] = _notify(firing, [], sched, file, root, now)
            return entry
        for r in entry["runs"]:
            if r["run_id"]:
                Run(Path(r["path"])).update(schedule={"name": sched.name, "slot": slot.isoformat()})
        firing, evaluated = _run_alerts(sched, entry["runs"], app, check)
        if sched.promote == "if-better":
            entry["promotions"] = _promote(sched, entry["runs"], app, root, firing, evaluated)
        entry["alerts"] = _notify(firing, evaluated, sched, file, root, now)
        if sched.alert:
            entry["alerts"] += _monitor_alerts(sched, entry["runs"], file, root, now)
        ok = all(r["status"] == "succeeded" for r in entry["runs"])
        entry["status"] = "succeeded" if ok else "failed"
        entry["detail"] = _detail(entry)
        return entry
    finally:
        schedules.finish(start_id, entry["status"], [r["run_id"] for r in entry["runs"] if r["run_id"]],
                         entry["detail"] or ("interrupted" if entry["status"] == "interrupted" else None), root)
        log.info("schedule %s: slot %s %s", sched.name, slot, entry["status"])


def _run_alerts(sched, results, app, check) -> tuple[list, list]:
    firing, evaluated = [], []
    for r in results:
        evaluated.append((app, r["tenant"], check))
        if r["status"] != "succeeded":
            who = f" for tenant {r['tenant']}" if r["tenant"] is not None else ""
            firing.append({"level": "alert", "app": app, "tenant": r["tenant"], "check": check,
                           "run_id": r["run_id"],
                           "message": f"schedule {sched.name}: run {r['run_id'] or '-'} of template "
                                      f"{sched.template}{who} {r['status']}: {r['error'] or 'see its report'}"})
    return firing, evaluated


def _promote(sched, results, app, root, firing, evaluated) -> list[dict]:
    decisions = []
    registry = Registry(root)
    for r in results:
        if r["status"] != "succeeded":
            continue
        decision = registry.promote_if_better(r["run_id"], app, r["tenant"], tolerance=sched.tolerance,
                                              by=f"schedule {sched.name}", why=f"schedule {sched.name}")
        decisions.append(decision)
        evaluated.append((app, r["tenant"], "promotion"))
        if not decision["promoted"]:
            who = f"{app}/{r['tenant']}" if r["tenant"] is not None else app
            firing.append({"level": "alert", "app": app, "tenant": r["tenant"], "check": "promotion",
                           "run_id": r["run_id"],
                           "message": f"{who}: run {r['run_id']} was not promoted: {decision['reason']}"})
    return decisions


def _monitor_alerts(sched, results, file, root, now) -> list[dict]:
    sent = []
    for r in results:
        if r["status"] != "succeeded":
            continue
        try:
            saved = alerts.load_saved(r["path"])
        except ValueError as exc:
            log.error("schedule %s: run %s: %s is not valid JSON (%s)", sched.name, r["run_id"],
                      alerts.ALERTS_FILE, exc)
            continue
        if saved is None:
            log.warning("schedule %s: run %s saved no %s, so it has no alerts to send (the template "
                        "should call result.save_alerts(run.dir))", sched.name, r["run_id"], alerts.ALERTS_FILE)
            continue
        firing, evaluated = saved
        sent += _notify(firing, evaluated, sched, file, root, now, source=f"monitor (schedule {sched.name})")
    return sent


def _notify(firing, evaluated, sched, file, root, now, source=None) -> list[dict]:
    naive = now.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return alerts.notify(firing, evaluated, source=source or f"schedule {sched.name}", file=file,
                         runs_dir=root, now=naive)


def _detail(entry: dict) -> str:
    runs = entry["runs"]
    ok = sum(r["status"] == "succeeded" for r in runs)
    parts = [f"{ok} of {len(runs)} run(s) succeeded"]
    promoted = [d for d in entry["promotions"] if d["promoted"]]
    refused = [d for d in entry["promotions"] if not d["promoted"]]
    if promoted:
        parts.append("promoted " + ", ".join(f"{d['tenant'] or 'all'} v{d['version']}" for d in promoted))
    if refused:
        parts.append("not promoted " + ", ".join(str(d["tenant"] or "all") for d in refused))
    if entry["alerts"]:
        parts.append(f"{len(entry['alerts'])} alert(s) sent")
    return "; ".join(parts)


def cron_line(file=None, runs_dir=None) -> str:
    """The crontab line that calls ``expkit schedule run-due`` every minute from the project root."""
    exe = Path(sys.executable).with_name("expkit")
    command = str(exe) if exe.exists() else (shutil.which("expkit") or "expkit")
    target = schedules.path(file)
    root = check_runs_dir(runs_dir)
    env = [f"EXPKIT_SCHEDULES={shlex.quote(str(target))}", f"EXPKIT_RUNS={shlex.quote(str(root))}"]
    db_url = os.environ.get("EXPKIT_DB")
    if db_url and not literal_password(db_url):
        env.append(f"EXPKIT_DB={shlex.quote(db_url)}")
    return (f"* * * * * cd {shlex.quote(str(target.parent))} && {' '.join(env)} "
            f"{shlex.quote(command)} schedule run-due >> {shlex.quote(str(root / 'schedule.log'))} 2>&1")
