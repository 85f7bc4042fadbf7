"""The model side of scoring: :class:`Scorer` validates, coerces and scores chunks with one
model bundle; :func:`load_scorer` finds that bundle in the registry.

This module imports neither the database layer nor scikit-learn at import time, so a
scoring worker process that imports it starts quickly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import drift
from ..errors import ModelError, SchemaError
from ..files import sha256_file
from ..models.bundle import MODEL_FILE, load_model
from ..paths import runs_dir as _runs_dir
from ..registry import Registry
from .types import coerce, storage_kind  # noqa: F401 - storage_kind: part of this module's face


# -- the model ------------------------------------------------------------------
def load_scorer(app: str, tenant=None, run=None, runs_dir=None, reasons: int = 0,
                keep: Sequence[str] = (), lazy: bool = False) -> "Scorer":
    """The :class:`Scorer` of the production model of ``(app, tenant)``, or of ``run``'s model.

    The model file's sha256 must match the registry's record (else ModelError). With
    ``lazy`` the pipeline is built only by ``scorer.bundle.load()`` (the card, schema
    and checks are there at once).
    """
    root = _runs_dir(runs_dir)
    if run is not None:
        model_dir = root / str(run) / "model"
        if not model_dir.is_dir():
            raise ModelError(f"run {run!r} has no model folder ({model_dir})",
                             hint="check the run id with `expkit runs list`")
        bundle = load_model(model_dir, lazy=lazy)
        return Scorer(bundle, version=f"run:{run}", run_id=str(run), reasons=reasons, keep=keep,
                      model_tenant=tenant, model_sha256=bundle.card.get("sha256"))
    prod = Registry(root).production(app, tenant)
    model_dir = Path(prod["model_dir"])
    if not model_dir.is_absolute():
        model_dir = root / model_dir
    bundle = load_model(model_dir, expected_sha256=prod["sha256"], lazy=lazy)
    return Scorer(bundle, version=str(prod["version"]), run_id=prod["run_id"],
                  reasons=reasons, keep=keep, model_tenant=prod.get("tenant"), model_sha256=prod["sha256"])


class Scorer:
    """Validate, coerce and score chunks with one loaded model bundle.

    Parameters
    ----------
    bundle : expkit.models.bundle.ModelBundle
    version : str
        Model version written to every output row and to the score log.
    run_id : str, optional
        The run that trained the model.
    reasons : int
        Top reasons per row to add (``reason_1`` ...); 0 for none.
    keep : sequence of str
        Input columns passed through to the output unchanged.
    model_tenant : str, optional
        Tenant of the registry entry the model serves (``None``: app-wide).
    model_sha256 : str, optional
        The digest the model file was checked against (worker processes check the bytes
        they load against it); by default the sha256 of the bundle's model file.
    """

    def __init__(self, bundle, version: str, run_id=None, reasons: int = 0, keep: Sequence[str] = (),
                 model_tenant=None, model_sha256: str | None = None):
        self.bundle = bundle
        directory = getattr(bundle, "directory", None)
        self.model_file = None if directory is None else Path(directory) / MODEL_FILE
        if model_sha256 is None and self.model_file is not None and self.model_file.is_file():
            model_sha256 = sha256_file(self.model_file)
        self.model_sha256 = model_sha256
        self.version = version
        self.run_id = run_id
        self.model_tenant = model_tenant
        self.reasons = int(reasons or 0)
        self.keep = [k for k in (keep or ()) if k]
        card = bundle.card
        self.schema = bundle.schema
        self.task = card.get("task", "binary")
        self.threshold = card.get("threshold", 0.5)
        self.reference = card.get("reference") or {"fields": {}}
        self.features = list(self.schema.features)
        ids = card.get("id_columns") or self.schema.of_type("id")
        self.id_columns = list(ids)
        classes = list(card.get("classes") or [0, 1])
        self.positive = card.get("positive_class", classes[-1])
        self.negative = next((c for c in classes if c != self.positive), None)

    # the columns a batch must have, and the ones it reads
    @property
    def needed(self) -> list[str]:
        return list(dict.fromkeys([*self.id_columns, *self.features, *self.keep]))

    def check_columns(self, columns: Sequence[str], source: str) -> None:
        """SchemaError listing every column the model needs that ``columns`` lacks."""
        present = set(columns)
        kept = [c for c in self.keep if c not in present and c not in self.schema]
        missing = [c for c in self.needed if c not in present and c not in kept]
        if missing:
            raise SchemaError(
                f"{source} is missing {len(missing)} column(s) the model needs: {', '.join(missing)}",
                hint="add them (empty values are fine); extra columns are ignored")
        if kept:
            raise SchemaError(f"{source} has no column {', '.join(map(repr, kept))} to keep (--keep)",
                              hint=f"pass through columns it has: {', '.join(columns)}")

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model's columns of ``df`` coerced to the types it was trained on."""
        out = {}
        for col in self.needed:
            out[col] = coerce(df[col], self.schema.columns[col] if col in self.schema else None)
        return pd.DataFrame(out, index=df.index)

    def score(self, df: pd.DataFrame, row_offset: int = 0, raw: pd.DataFrame | None = None
              ) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
        """Score a prepared chunk -> (output frame, scores, ids as strings). Id and kept
        columns are passed through as read (``raw``, the chunk before :meth:`prepare`)."""
        X = df[self.features]
        raw = df if raw is None else raw
        out = pd.DataFrame(index=df.index)
        if self.id_columns:
            for c in self.id_columns:
                out[c] = raw[c]
            ids = _id_strings(raw[self.id_columns])
        else:
            out["row"] = np.arange(row_offset, row_offset + len(df))
            ids = out["row"].astype(str)
        for c in self.keep:
            if c not in out:
                out[c] = raw[c]
        if self.task == "regression":
            scores = np.asarray(self.bundle.score(X), dtype=float)
            out["prediction"] = scores
        elif self.task == "multiclass":
            proba = np.asarray(self.bundle.predict_proba(X))
            best = proba.argmax(axis=1)
            scores = proba[np.arange(len(best)), best]
            out["score"] = scores
            out["label"] = np.asarray(self.bundle.classes)[best]
        else:
            scores = np.asarray(self.bundle.score(X), dtype=float)
            out["score"] = scores
            out["label"] = np.where(scores >= self.threshold, self.positive, self.negative)
        out["model_version"] = self.version
        if self.reasons > 0:
            out = out.join(_reason_columns(self.bundle.reasons(X, k=self.reasons), self.reasons, X.index))
        return out.reset_index(drop=True), scores, ids.reset_index(drop=True)


def _reason_columns(reasons: pd.DataFrame, k: int, index) -> pd.DataFrame:
    """``reason_i`` (field) and ``impact_i`` (score change) columns of ``bundle.reasons``."""
    cols = [c for i in range(1, k + 1) for c in (f"reason_{i}", f"impact_{i}") if c in reasons.columns]
    return reasons[cols].set_axis(index)


def _id_strings(ids: pd.DataFrame) -> pd.Series:
    if ids.shape[1] == 1:
        return ids.iloc[:, 0].astype(str)
    return ids.astype(str).agg("|".join, axis=1)


# -- one chunk ------------------------------------------------------------------------
def summarized(scorer: Scorer, chunk: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A chunk coerced to the model's types, and its drift summary (no model needed)."""
    prepared = scorer.prepare(chunk)
    return prepared, drift.summarize(prepared, scorer.reference)


def scored(scorer: Scorer, prepared: pd.DataFrame, row_offset: int, raw: pd.DataFrame | None = None) -> tuple:
    """(output, ids with scores, bucket counts) of a prepared chunk."""
    out, scores, ids = scorer.score(prepared, row_offset=row_offset, raw=raw)
    counts = drift.score_buckets(scores, normalize=False) if scorer.task == "binary" else None
    return out, pd.DataFrame({"id": ids, "score": scores}), counts


