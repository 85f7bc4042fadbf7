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
from ..models.bundle import load_model
from ..paths import runs_dir as _runs_dir
from ..registry import Registry


# -- the model ------------------------------------------------------------------
def load_scorer(app: str, tenant=None, run=None, runs_dir=None, reasons: int = 0,
                keep: Sequence[str] = (), lazy: bool = False) -> "Scorer":
    """The :class:`Scorer` of the production model of ``(app, tenant)``, or of ``run``'s model.

    The model folder must match the digests the registry recorded at promotion (else
    ModelError naming the file that changed). With
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
                      model_tenant=tenant)
    prod = Registry(root).production(app, tenant)
    model_dir = Path(prod["model_dir"])
    if not model_dir.is_absolute():
        model_dir = root / model_dir
    bundle = load_model(model_dir, expected_sha256=prod["sha256"], digests=prod.get("files"), lazy=lazy)
    return Scorer(bundle, version=str(prod["version"]), run_id=prod["run_id"],
                  reasons=reasons, keep=keep, model_tenant=prod.get("tenant"))


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
    """

    def __init__(self, bundle, version: str, run_id=None, reasons: int = 0, keep: Sequence[str] = (),
                 model_tenant=None):
        self.bundle = bundle
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

    def score(self, df: pd.DataFrame, row_offset: int = 0) -> tuple[pd.DataFrame, np.ndarray, pd.Series]:
        """Score a prepared chunk -> (output frame, scores, ids as strings)."""
        X = df[self.features]
        out = pd.DataFrame(index=df.index)
        if self.id_columns:
            for c in self.id_columns:
                out[c] = df[c]
            ids = _id_strings(df[self.id_columns])
        else:
            out["row"] = np.arange(row_offset, row_offset + len(df))
            ids = out["row"].astype(str)
        for c in self.keep:
            if c not in out:
                out[c] = df[c]
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


# -- type coercion --------------------------------------------------------------
def storage_kind(ct) -> str | None:
    """How a column was stored in training: 'number', 'datetime', 'bool', 'string' or None."""
    if ct is None:
        return None
    dt = (ct.dtype or "").lower()
    if dt.startswith(("int", "uint", "float")):
        return "number"
    if dt.startswith("datetime"):
        return "datetime"
    if dt in ("bool", "boolean"):
        return "bool"
    if dt in ("str", "string", "object", "category") or dt.startswith("string"):
        return "string"
    return {"numeric": "number", "integer": "number", "date": "datetime"}.get(ct.type)


def coerce(s: pd.Series, ct) -> pd.Series:
    """Coerce ``s`` to how column ``ct`` was stored in training, or raise SchemaError."""
    kind = storage_kind(ct)
    if kind is None or len(s) == 0:
        return s
    if kind == "number":
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            return s
        if pd.api.types.is_bool_dtype(s):
            return s.astype(float)
        text = s.astype("str").str.strip()
        blank = s.isna() | text.eq("")
        values = pd.to_numeric(text.where(~blank), errors="coerce")
        _raise_bad(ct, s, values.isna() & ~blank, "a number")
        return values
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(s):
            return s
        parsed = _iso_datetimes(s)
        if parsed is not None:
            return parsed
        text = s.astype("str").str.strip()
        blank = s.isna() | text.eq("")
        values = pd.to_datetime(text.where(~blank), errors="coerce")
        _raise_bad(ct, s, values.isna() & ~blank, "a date")
        return values
    if kind == "string" and not pd.api.types.is_string_dtype(s):
        if pd.api.types.is_float_dtype(s) and s.dropna().eq(s.dropna().round()).all():
            return s.astype("Int64").astype("str").where(s.notna())  # 12.0 read from CSV -> "12"
        return s.astype("str").where(s.notna())
    return s


#: Plain ISO formats parsed in arrow when every value of a chunk has the same one (pandas
#: infers one format from the first value, so a mix goes the pandas way, errors and all):
#: the characters at each position ("d": a digit; " " may also be "T", the same in every value).
_ISO_DATETIMES = ("dddd-dd-dd", "dddd-dd-dd dd:dd:dd")


def _iso_datetimes(s: pd.Series) -> pd.Series | None:
    """Dates held as arrow strings all in one of _ISO_DATETIMES, parsed in arrow exactly as
    ``pd.to_datetime`` parses them (blank -> NaT); None for anything else."""
    arr = drift.arrow_strings(s)
    if arr is None:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(arr)
    text = pc.if_else(pc.equal(pc.binary_length(text), 0), pa.scalar(None, text.type), text)
    values = text.drop_null().combine_chunks()
    widths = pc.min_max(pc.binary_length(values)).as_py()
    layout = next((f for f in _ISO_DATETIMES if widths["min"] == widths["max"] == len(f)), None)
    if layout is None or len(values) == 0:
        return None
    fixed = values.cast(pa.binary(len(layout)))  # fixed width: a (rows, width) byte matrix
    chars = np.frombuffer(fixed.buffers()[1], dtype=np.uint8)[
        fixed.offset * len(layout):(fixed.offset + len(fixed)) * len(layout)].reshape(len(fixed), -1)
    for i, want in enumerate(layout):
        col = chars[:, i]
        if want == "d":
            ok = ((col >= ord("0")) & (col <= ord("9"))).all()
        elif want == " ":
            ok = (col == col[0]).all() and col[0] in (ord(" "), ord("T"))
        else:
            ok = (col == ord(want)).all()
        if not ok:
            return None
    try:
        stamps = pc.cast(text, pa.timestamp("us"))
    except pa.ArrowInvalid:  # e.g. 2024-02-30: pandas names it
        return None
    return pd.Series(stamps.to_numpy(zero_copy_only=False), index=s.index, name=s.name)


def _raise_bad(ct, s: pd.Series, bad: pd.Series, what: str) -> None:
    if bad.any():
        example = s[bad].iloc[0]
        raise SchemaError(
            f"column {ct.name!r} should hold {what} but has {int(bad.sum())} value(s) that are not, "
            f"e.g. {example!r}",
            hint="fix or blank those values (empty values are scored normally)")


# -- one chunk ------------------------------------------------------------------------
def summarized(scorer: Scorer, chunk: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """A chunk coerced to the model's types, and its drift summary (no model needed)."""
    prepared = scorer.prepare(chunk)
    return prepared, drift.summarize(prepared, scorer.reference)


def scored(scorer: Scorer, prepared: pd.DataFrame, row_offset: int) -> tuple:
    """(output, ids with scores, bucket counts) of a prepared chunk."""
    out, scores, ids = scorer.score(prepared, row_offset=row_offset)
    counts = drift.score_buckets(scores, normalize=False) if scorer.task == "binary" else None
    return out, pd.DataFrame({"id": ids, "score": scores}), counts


