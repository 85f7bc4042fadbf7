"""Batch scoring with production models, the score log and feedback.

================================  ====================================================
``score(df, app=...)``            score a DataFrame with the production model of (app, tenant)
``score_file(in, out, app=...)``  score a CSV/Parquet/JSON-lines file in chunks
``feedback(file, app=...)``       load actual outcomes of scored ids (live AUROC)
================================  ====================================================

Modules: :mod:`~expkit.scoring.scorer` (the model side: validate, coerce, score a
chunk), :mod:`~expkit.scoring.reader` (tables read and written in chunks),
:mod:`~expkit.scoring.batch` (one batch end to end), :mod:`~expkit.scoring.feedback`
and :mod:`~expkit.scoring.scorelog` (the score-log tables).
"""
from .batch import score, score_file
from .feedback import feedback

__all__ = ["score", "score_file", "feedback"]
