"""What a worker does with one part of a batch, on any engine (this process, local worker
processes, Dask workers): load the model once per process, read the part's rows itself,
convert them to the model's types, summarize them for drift and score them.

The model is loaded from bytes checked against the digest the calling process verified
(read from the model file, or handed over once per worker by :meth:`Engine.broadcast`),
and kept per process by that digest, so a worker loads it once however many parts it
scores, and a changed file can never be scored under the old digest.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import drift
from ..errors import ModelError
from ..models.bundle import TRUSTED_TYPES, ModelBundle, trust_types, trusted_types
from .reader import Part, Source, read_part
from .scorer import Scorer, scored
from .writer import Spill, neutralise

#: Models kept per worker process (by digest).
CACHED_MODELS = 2
_models: collections.OrderedDict = collections.OrderedDict()
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """Everything a worker needs to rebuild the calling process's :class:`Scorer`."""

    sha256: str
    file: str | None
    card: dict
    version: str
    run_id: str | None = None
    reasons: int = 0
    keep: tuple[str, ...] = ()
    model_tenant: str | None = None
    #: Types trusted with ``trust_types`` in the calling process (workers trust them too).
    trusted: tuple[str, ...] = ()

    @classmethod
    def of(cls, scorer: Scorer) -> "ModelRef":
        return cls(scorer.model_sha256, None if scorer.model_file is None else str(scorer.model_file),
                   scorer.bundle.card, scorer.version, scorer.run_id, scorer.reasons, tuple(scorer.keep),
                   scorer.model_tenant, tuple(sorted(trusted_types() - TRUSTED_TYPES)))


@dataclasses.dataclass(frozen=True)
class Job:
    """What every part of one batch shares."""

    source: Source
    model: ModelRef
    chunksize: int
    #: Output tables as arrow (files) or pandas (score() in memory).
    arrow: bool = True
    #: Text cells are neutralised against spreadsheet formulas (CSV/TSV outputs).
    neutralise: bool = False
    #: Workers write their parts' tables there and send back only the files' names.
    spill: Spill | None = None
    #: The model predicts in one thread (worker processes: the parallelism is across parts,
    #: and joblib inside a Dask worker would fall back with a warning per part).
    sequential: bool = False


@dataclasses.dataclass
class PartResult:
    """A scored part: its output rows, ids with scores, score counts and drift summary.
    Without id columns the ``row`` numbers (and ids) count from 0 within the part. With
    :attr:`Job.spill`, ``out`` and ``ids`` are the :class:`~.writer.Spilled` files."""

    number: int
    rows: int
    out: Any
    ids: Any
    counts: np.ndarray | None
    summary: dict


def model_bytes(ref: ModelRef) -> bytes:
    """The model file's bytes, checked against ``ref.sha256`` (ModelError if they differ)."""
    if ref.file is None:
        raise ModelError("the model has no file to load", hint="score with a model saved by expkit")
    try:
        data = Path(ref.file).read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read the model file {ref.file!r} in a worker: {exc}",
                         hint="the workers must see the runs folder at the same path") from exc
    _check(data, ref)
    return data


def _check(data: bytes, ref: ModelRef) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if ref.sha256 and digest != ref.sha256:
        raise ModelError(f"model file {ref.file!r} has sha256 {digest[:12]}…, expected {ref.sha256[:12]}…",
                         hint="the file was changed after it was checked; restore it or retrain")


def scorer_of(ref: ModelRef, data: bytes | None = None) -> Scorer:
    """The Scorer of ``ref`` in this process (its pipeline loaded once per digest)."""
    with _lock:
        pipeline = _models.get(ref.sha256)
        if pipeline is None:
            if data is None:
                data = model_bytes(ref)
            else:
                _check(data, ref)
            trust_types(*ref.trusted)
            pipeline = ModelBundle(None, ref.card, data=data, file=ref.file).load().pipeline
            _models[ref.sha256] = pipeline
            while len(_models) > CACHED_MODELS:
                _models.popitem(last=False)
        _models.move_to_end(ref.sha256)
    directory = None if ref.file is None else Path(ref.file).parent
    return Scorer(ModelBundle(pipeline, ref.card, directory), version=ref.version, run_id=ref.run_id,
                  reasons=ref.reasons, keep=ref.keep, model_tenant=ref.model_tenant, model_sha256=ref.sha256)


def score_part(part: Part, job: Job, model_data: bytes | None = None) -> PartResult:
    """Read, check, summarize and score one part (the function every engine runs)."""
    if job.sequential:
        import joblib

        with joblib.parallel_config(backend="sequential"):
            return _score_part(part, job, model_data)
    return _score_part(part, job, model_data)


def _score_part(part: Part, job: Job, model_data: bytes | None) -> PartResult:
    scorer = scorer_of(job.model, model_data)
    outs, ids, summaries, counts, rows = [], [], [], None, 0
    for raw in read_part(job.source, part, job.chunksize):
        prepared = scorer.prepare(raw)
        summaries.append(drift.summarize(prepared, scorer.reference))
        out, chunk_ids, chunk_counts = scored(scorer, prepared, rows, raw=raw)
        rows += len(out)
        if chunk_counts is not None:
            counts = np.asarray(chunk_counts) if counts is None else counts + chunk_counts
        outs.append(out)
        ids.append(chunk_ids)
    if not outs:
        return PartResult(part.number, 0, None, None, None, {"fields": {}, "rows": 0})
    out = pd.concat(outs, ignore_index=True) if len(outs) > 1 else outs[0]
    id_frame = pd.concat(ids, ignore_index=True) if len(ids) > 1 else ids[0]
    if job.arrow:
        import pyarrow as pa

        out = pa.Table.from_pandas(out, preserve_index=False)
        if job.neutralise:
            out = neutralise(out)
        id_frame = pa.Table.from_pandas(id_frame, preserve_index=False)
        if job.spill is not None:
            out, id_frame = job.spill.write(part.number, out, id_frame)
    summary = drift.merge(summaries) if len(summaries) > 1 else summaries[0]
    return PartResult(part.number, rows, out, id_frame, counts, summary)
