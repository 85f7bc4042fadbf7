"""The raw feature filter: drop fields whose scoring data differ from the training data.

A model learns from the training table and is used on new rows. A field that is
filled differently there (a form field dropped from the new app, a column that a
nightly job no longer loads) or whose values moved (another unit, another coding)
teaches the model something that will not hold when it scores. TransmogrifAI's
RawFeatureFilter compares each raw field between the training data and the data to
be scored *before* training and leaves such fields out; :func:`raw_feature_filter`
does the same:

* fill rate: dropped when it is below ``min_fill`` in either table, when the two
  differ by more than ``max_fill_difference`` or when one is more than
  ``max_fill_ratio`` times the other;
* distribution: dropped when the Jensen-Shannon divergence (base 2, so between 0
  and 1) of the two distributions exceeds ``max_js_divergence``: numbers on the
  training data's quantile bins, categories on their top values (the bins
  :func:`expkit.drift.reference_profile` uses for monitoring), text on length bins;
* a field missing from the scoring data is dropped.

Id and constant fields make no features and are not judged; the target is never
touched. The defaults follow TransmogrifAI's ``withRawFeatureFilter`` (minimum fill
0.001, fill ratio 20) except two stricter limits: a fill-rate difference of 0.5
(theirs 0.9) and a JS divergence of 0.5 (theirs 0.9, which lets through a field
whose values moved almost entirely out of the training range).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..drift import reference_profile, summarize
from ..errors import ConfigError

REPORT_COLUMNS = ["field", "type", "fill_train", "fill_scoring", "fill_difference", "js_divergence",
                  "dropped", "reason"]


def js_divergence(p, q) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two distributions (shares)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(min(max(0.5 * kl(p) + 0.5 * kl(q), 0.0), 1.0))


def _shares(ref: dict, new: dict) -> tuple[list, list]:
    """The two distributions of one field on the same bins."""
    if isinstance(ref["shares"], dict):
        keys = list(dict.fromkeys([*ref["shares"], *new["shares"]]))
        return [ref["shares"].get(k, 0.0) for k in keys], [new["shares"].get(k, 0.0) for k in keys]
    return list(ref["shares"]), list(new["shares"])


def raw_feature_filter(train: pd.DataFrame, scoring: pd.DataFrame, schema, *, min_fill: float = 0.001,
                       max_fill_difference: float = 0.5, max_fill_ratio: float = 20.0,
                       max_js_divergence: float = 0.5, bins: int = 20) -> pd.DataFrame:
    """Compare every raw field of ``train`` with ``scoring``; say which to drop and why.

    Parameters
    ----------
    train : DataFrame
        The training table (the target and other columns outside ``schema`` are ignored).
    scoring : DataFrame
        Rows the model will score (a sample of them is enough).
    schema : Schema or dict
        Semantic types of ``train``'s fields.
    min_fill, max_fill_difference, max_fill_ratio, max_js_divergence : float
        The thresholds (see the module docstring).
    bins : int
        Quantile bins of numbers and text lengths.

    Returns
    -------
    DataFrame
        One row per judged field: field, type, fill_train, fill_scoring,
        fill_difference, js_divergence, dropped (bool), reason.
    """
    from ..schema import Schema

    if not isinstance(scoring, pd.DataFrame):
        raise ConfigError(f"scoring_data must be a table of the rows to score, got {type(scoring).__name__}",
                          hint="pass a DataFrame (or a path to one) with the same columns as the training data")
    if scoring.empty:
        raise ConfigError("scoring_data has no rows", hint="pass a sample of the rows the model will score")
    schema = Schema.coerce(schema)
    fields = [c for c in schema.features if c in train.columns
              and schema.types[c] not in ("id", "constant")]
    reference = reference_profile(train[fields], schema.select(fields), bins=bins)
    new = summarize(scoring, reference)
    rows = []
    for col in fields:
        ref = reference["fields"].get(col)
        if ref is None:
            continue
        row = {"field": col, "type": schema.types[col], "fill_train": ref["fill_rate"], "fill_scoring": np.nan,
               "fill_difference": np.nan, "js_divergence": np.nan, "dropped": False, "reason": ""}
        got = new["fields"].get(col)
        if got is None:
            row.update(dropped=True, reason="not in the scoring data")
            rows.append(row)
            continue
        a, b = ref["fill_rate"], got["fill_rate"]
        row.update(fill_scoring=b, fill_difference=abs(a - b))
        if "shares" in ref and "shares" in got and a > 0 and b > 0:
            row["js_divergence"] = js_divergence(*_shares(ref, got))
        reasons = []
        if min(a, b) < min_fill:
            reasons.append(f"fill rate {min(a, b):.3g} < {min_fill:g} in the "
                           f"{'training' if a < b else 'scoring'} data")
        if abs(a - b) > max_fill_difference:
            reasons.append(f"fill rate {a:.2f} in training vs {b:.2f} in scoring "
                           f"(difference > {max_fill_difference:g})")
        elif min(a, b) > 0 and max(a, b) / min(a, b) > max_fill_ratio:
            reasons.append(f"fill rate {a:.3g} in training vs {b:.3g} in scoring (ratio > {max_fill_ratio:g})")
        if row["js_divergence"] > max_js_divergence:
            reasons.append(f"distribution moved: JS divergence {row['js_divergence']:.2f} > {max_js_divergence:g}")
        row.update(dropped=bool(reasons), reason="; ".join(reasons))
        rows.append(row)
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


__all__ = ["raw_feature_filter", "js_divergence", "REPORT_COLUMNS"]
