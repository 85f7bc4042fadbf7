"""Actual outcomes for rows scored before, so that the monitor can compute live AUROC."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..data import load
from ..errors import SchemaError, ScoringError
from ..files import read_json
from ..paths import runs_dir as _runs_dir
from . import scorelog

log = logging.getLogger(__name__)


def feedback(file, app: str, tenant=None, id_column: str | None = None,
             label_column: str | None = None, runs_dir=None) -> int:
    """Load actual outcomes (id + label) for rows scored before by ``(app, tenant)``.

    Parameters
    ----------
    file : str, Path or DataFrame
        Table with an id column and a 0/1 (or positive-class / other) label column.
    id_column, label_column : str, optional
        Default: the id column of the batches' model output (``id`` if the table
        has it) and ``label`` / the model's target.

    Returns
    -------
    int
        Number of outcomes stored.

    Raises
    ------
    ScoringError
        Nothing was scored for ``(app, tenant)``, or some ids were never scored
        (nothing is stored then), or a label is not 0/1.
    """
    df = file if isinstance(file, pd.DataFrame) else load(file)
    name = "the feedback" if isinstance(file, pd.DataFrame) else f"feedback file {str(file)!r}"
    past = scorelog.batches(app, tenant, all_tenants=False, runs_dir=runs_dir)
    if past.empty:
        raise ScoringError(f"nothing was scored for app {app!r}" + (f", tenant {tenant!r}" if tenant else ""),
                           hint="score a batch first; feedback refers to scored ids")
    id_col = id_column or _pick(df, ["id", *_model_ids(past, runs_dir)], name, "id")
    label_col = label_column or _pick(df, ["label", "actual", "outcome", *_model_target(past, runs_dir)],
                                      name, "label")
    for c in (id_col, label_col):
        if c not in df.columns:
            raise SchemaError(f"{name} has no column {c!r}", hint=f"columns: {', '.join(map(str, df.columns))}")
    df = df[[id_col, label_col]].dropna()
    if df.empty:
        raise ScoringError(f"{name} has no rows with both an id and a label")
    ids = df[id_col].astype(str)
    labels = _binary_labels(df[label_col], name, label_col)
    scored = set(scorelog.scored_ids(past, runs_dir)["id"])
    unknown = ids[~ids.isin(scored)]
    if len(unknown):
        raise ScoringError(
            f"{len(unknown)} of {len(ids)} ids in {name} were never scored for app {app!r}"
            + (f", tenant {tenant!r}" if tenant else "") + f", e.g. {unknown.iloc[0]!r}",
            hint="check the app/tenant and the id column; nothing was loaded")
    n = scorelog.add_feedback(app, tenant, ids, labels, runs_dir)
    log.info("loaded %d outcomes for %s/%s", n, app, tenant)
    return n


def _pick(df, candidates, name, what):
    for c in candidates:
        if c in df.columns:
            return c
    raise SchemaError(f"{name} has no {what} column (looked for {', '.join(dict.fromkeys(candidates))})",
                      hint=f"name it or pass --{what}-column")


def _latest_card(past: pd.DataFrame, runs_dir) -> dict:
    run_id = past["run_id"].dropna().iloc[-1] if past["run_id"].notna().any() else None
    path = _runs_dir(runs_dir) / str(run_id) / "model" / "card.json"
    if run_id is None or not path.exists():
        return {}
    return read_json(path, {})


def _model_ids(past, runs_dir) -> list:
    card = _latest_card(past, runs_dir)
    ids = card.get("id_columns") or [c["name"] for c in card.get("schema", {}).get("columns", [])
                                      if c.get("type") == "id"]
    return list(ids) + ["row"]


def _model_target(past, runs_dir) -> list:
    target = _latest_card(past, runs_dir).get("target")
    return [target] if target else []


def _binary_labels(s: pd.Series, name: str, col: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(int).to_numpy()
    values = pd.to_numeric(s, errors="coerce")
    if values.notna().all() and values.isin([0, 1]).all():
        return values.astype(int).to_numpy()
    text = s.astype(str).str.strip().str.lower()
    mapping = {"true": 1, "yes": 1, "1": 1, "false": 0, "no": 0, "0": 0}
    mapped = text.map(mapping)
    if mapped.isna().any():
        raise ScoringError(f"{name}: label column {col!r} must be 0/1, got {s[mapped.isna()].iloc[0]!r}",
                           hint="use 1 for the positive outcome and 0 otherwise")
    return mapped.astype(int).to_numpy()
