"""Runs also logged to MLflow (optional: ``pip install -e '.[mlflow]'``).

With ``$MLFLOW_TRACKING_URI`` set, or ``--mlflow URI`` (``mlflow=`` in Python),
every run that :func:`expkit.execute.run_template` executes is copied to MLflow
when it ends: one MLflow run per expkit run, in the experiment
``expkit-<template>``, with

- parameters: the run's template parameters (nested values flattened, as text);
- metrics: every number of ``metrics.json`` (``holdout.auroc``, ``cv_score``, ...)
  and the run's duration;
- tags: ``template``, ``tenant``, ``status``, ``expkit.run_id``, ``expkit.path``, the
  template's hash and the git commit (``mlflow.source.git.commit``);
- artifacts: ``report.html``, ``notebook.ipynb``, ``run.json``, ``metrics.json``,
  the leaderboard and trials, ``figures/``, ``study.log`` and the model folder
  ``model/`` (skops file and model card: expkit never pickles models, so the model
  is logged as those files, not as an MLflow sklearn flavour).

The MLflow run ends FINISHED, FAILED or KILLED like the expkit run, and its id is
recorded in run.json (``mlflow``). Only MLflow's client API (``MlflowClient``) is
used: nothing process-wide (no active run, no global tracking URI) is set. A
failure to log never changes the expkit run; it is recorded and reported.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
from typing import Mapping

from .errors import ConfigError
from .run import flatten

log = logging.getLogger(__name__)

#: What MLflow allows in a parameter or metric key (others become "_").
_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
#: MLflow's limits on parameter values and keys.
MAX_PARAM = 6000
MAX_KEY = 250
#: expkit status -> MLflow run status.
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}
ARTIFACT_FILES = ("report.html", "notebook.ipynb", "run.json", "metrics.json", "leaderboard.csv",
                  "trials.csv", "study.log", "holdout.csv")
ARTIFACT_FOLDERS = ("figures", "model")


def tracking_uri(uri: str | None = None) -> str | None:
    """The MLflow tracking URI to log runs to: ``uri``, else ``$MLFLOW_TRACKING_URI``, else None."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def check(uri: str | None) -> None:
    """Before any run starts: ConfigError when ``uri`` is given but MLflow is not installed."""
    if uri is None:
        return
    try:
        import mlflow.tracking  # noqa: F401
    except ImportError:
        raise ConfigError(f"runs are to be logged to MLflow ({uri}) but mlflow is not installed",
                          hint="pip install -e '.[mlflow]' (or unset MLFLOW_TRACKING_URI)") from None


def _key(name: str) -> str:
    return _KEY.sub("_", str(name))[:MAX_KEY]


def _millis(iso: str | None) -> int | None:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000) if iso else None


def log_run(run, uri: str, experiment: str | None = None) -> str:
    """Copy ``run`` (a finished :class:`expkit.run.Run`) to the MLflow tracking server or
    store at ``uri``; returns the MLflow run id (also recorded in run.json as ``mlflow``)."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    meta = run.meta
    client = MlflowClient(tracking_uri=uri)
    name = experiment or f"expkit-{meta.get('template', 'run')}"
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(name)
    tags = {"template": meta.get("template"), "tenant": meta.get("tenant") or "all",
            "status": meta.get("status"), "expkit.run_id": run.id, "expkit.path": str(run.dir),
            "expkit.template_hash": meta.get("template_hash"), "expkit.kind": meta.get("kind"),
            "mlflow.source.git.commit": meta.get("git_commit"), "mlflow.user": meta.get("user")}
    created = client.create_run(experiment_id, start_time=_millis(meta.get("started") or meta.get("created")),
                                tags={k: str(v) for k, v in tags.items() if v is not None},
                                run_name=run.id)
    mlflow_id = created.info.run_id
    stamp = _millis(meta.get("ended")) or int(dt.datetime.now().timestamp() * 1000)
    params = {_key(k): _text(v)[:MAX_PARAM] for k, v in _flat_params(
        {k: v for k, v in (meta.get("params") or {}).items() if k != "run_dir"}).items()}
    numbers = {**flatten(run.metrics), "duration_s": meta.get("duration")}
    metrics = {_key(k): float(v) for k, v in numbers.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    status = "FAILED"
    try:
        items = [Param(k, v) for k, v in params.items()]
        values = [Metric(k, v, stamp, 0) for k, v in metrics.items()]
        for i in range(0, max(len(items), len(values), 1), 100):  # MLflow takes 100 params per call
            client.log_batch(mlflow_id, metrics=values[i:i + 100], params=items[i:i + 100], tags=[])
        error = meta.get("error") or {}
        if error.get("message"):
            client.log_batch(mlflow_id, tags=[RunTag("expkit.error", str(error["message"])[:5000])])
        for file in ARTIFACT_FILES:
            if (run.dir / file).is_file():
                client.log_artifact(mlflow_id, str(run.dir / file))
        for folder in ARTIFACT_FOLDERS:
            if (run.dir / folder).is_dir():
                client.log_artifacts(mlflow_id, str(run.dir / folder), artifact_path=folder)
        status = STATUS.get(meta.get("status"), "FAILED")
    finally:
        client.set_terminated(mlflow_id, status=status, end_time=stamp)
    run.update(mlflow={"uri": _redact(uri), "experiment_id": experiment_id, "run_id": mlflow_id})
    return mlflow_id


def _flat_params(params: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update(_flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _text(value) -> str:
    """A parameter value as MLflow stores it: text (lists as JSON)."""
    return json.dumps(value, default=str) if isinstance(value, (list, tuple)) else str(value)


def log_run_safely(run, uri: str | None) -> dict | None:
    """:func:`log_run` when ``uri`` is set; a failure is logged and recorded in run.json
    (``mlflow.error``), never raised. Returns what was recorded (None without ``uri``)."""
    if not uri:
        return None
    try:
        log_run(run, uri)
    except Exception as exc:  # MLflow down or refusing: the expkit run stays as it ended
        log.warning("run %s: not logged to MLflow at %s: %s", run.id, _redact(uri), exc)
        run.update(mlflow={"uri": _redact(uri), "error": f"{type(exc).__name__}: {exc}"[:500]})
    return run.meta.get("mlflow")


def _redact(uri: str) -> str:
    """A tracking URI without a password (``https://user:secret@host`` -> ``https://user:***@host``)."""
    return re.sub(r"(//[^/:@]+:)[^/@]+@", r"\1***@", str(uri))


__all__ = ["tracking_uri", "check", "log_run", "log_run_safely"]

