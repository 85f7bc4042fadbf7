"""The index as a whole: everything it holds is rebuilt from files under the runs folder.

=====================  ==========================================================
runs                   each run folder's ``run.json`` (and ``metrics.json``)
registry               ``registry.jsonl``, the journal of promotions and rollbacks
score log              ``scores/<batch>.json``, one record per scoring batch
feedback               ``feedback/<load>.parquet``, one file per feedback load
=====================  ==========================================================

:func:`rebuild` is what ``expkit runs rebuild-index`` runs: it moves a corrupt
SQLite index aside, then recreates every table from those files, skipping (and
listing) run folders it cannot read.
"""
from __future__ import annotations

from . import db
from .paths import runs_dir as _runs_dir
from .registry import Registry
from .runs import Rebuilt, rebuild_index
from .scoring import scorelog


def rebuild(runs_dir=None) -> Rebuilt:
    """Recreate the whole index (runs, registry, score log, feedback) from the files.

    Returns
    -------
    expkit.runs.Rebuilt
        Runs, registry versions, batches and feedback rows indexed; the run folders
        skipped and why; where a corrupt index was moved.
    """
    root = _runs_dir(runs_dir)
    out = rebuild_index(root)
    out.versions = Registry(root).rebuild()
    out.batches, out.feedback = scorelog.rebuild(root)
    db.dispose()  # the next command checkpoints a fresh connection
    return out


__all__ = ["rebuild"]
