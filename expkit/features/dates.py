"""Date and datetime columns: calendar parts (circular sin/cos), year, days
since a reference date, weekend flag and an empty-field indicator."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .base import PLACEHOLDERS, ColumnVectorizer, factorize, want_null_indicator


def to_datetime(s: pd.Series, placeholders=PLACEHOLDERS) -> pd.Series:
    """Naive UTC datetimes; strings parsed once per distinct value, bad ones NaT."""
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s
    else:
        codes, uniques = factorize(s, placeholders)
        parsed = pd.to_datetime(pd.Series(uniques, dtype=object), errors="coerce", utc=True,
                                format="mixed")
        out = pd.Series(np.append(parsed.to_numpy(), pd.NaT)[codes], index=s.index)
        out = pd.to_datetime(out, utc=True)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert("UTC").dt.tz_localize(None)
    return out


class DateVectorizer(ColumnVectorizer):
    """Calendar features of a date column.

    Output: ``year`` (minus the reference year), ``month_sin/cos``,
    ``dow_sin/cos`` (day of week), ``hour_sin/cos`` (only when fit data has
    times of day), ``years_since_ref`` (days before the reference date / 365.25;
    the reference is the latest fit-time date unless given), ``weekend`` and an
    empty-field indicator. Missing dates get the fit-time median date's
    year/recency and zeros elsewhere.

    Parameters
    ----------
    reference : str or Timestamp, optional
        Reference date for recency; default the latest date seen in fit.
    cyclical : bool, default True
        sin/cos of month, day of week and hour (else their raw numbers).
    null_indicator : {"auto", True, False}, default "auto"
    placeholders : tuple of str
    """

    def __init__(self, reference=None, cyclical=True, null_indicator="auto", placeholders=PLACEHOLDERS):
        self.reference = reference
        self.cyclical = cyclical
        self.null_indicator = null_indicator
        self.placeholders = placeholders

    def _fit(self, s, y):
        t = to_datetime(s, self.placeholders)
        seen = t.dropna()
        ref = pd.Timestamp(self.reference) if self.reference is not None else (
            seen.max() if len(seen) else pd.Timestamp("1970-01-01"))
        self.reference_ = str(ref)
        self.median_ = str(seen.quantile(0.5)) if len(seen) else self.reference_
        self.hours_ = bool(len(seen)) and bool(((seen.dt.hour != 0) | (seen.dt.minute != 0)).any())
        self.null_ = want_null_indicator(self.null_indicator, t.isna().to_numpy())
        parts = ["month", "dow"] + (["hour"] if self.hours_ else [])
        cyc = [f"{p}_{f}" for p in parts for f in ("sin", "cos")] if self.cyclical else parts
        self.feature_suffixes_ = ["year"] + cyc + ["years_since_ref", "weekend"] + (["null"] if self.null_ else [])
        self.feature_transforms_ = (["year"] + [c.split("_")[0] for c in cyc] + ["recency", "weekend"]
                                    + (["null"] if self.null_ else []))

    def _transform(self, s):
        t = to_datetime(s, self.placeholders)
        missing = t.isna().to_numpy()
        ref, median = pd.Timestamp(self.reference_), pd.Timestamp(self.median_)
        filled = t.fillna(median)
        cols = [(filled.dt.year - ref.year).to_numpy(np.float64)]
        periods = [(filled.dt.month - 1, 12), (filled.dt.day_of_week, 7)]
        if self.hours_:
            periods.append((filled.dt.hour + filled.dt.minute / 60, 24))
        for value, period in periods:
            v = value.to_numpy(np.float64)
            if self.cyclical:
                angle = 2 * np.pi * v / period
                cols += [np.where(missing, 0.0, np.sin(angle)), np.where(missing, 0.0, np.cos(angle))]
            else:
                cols.append(np.where(missing, 0.0, v))
        cols.append(((ref - filled).dt.total_seconds() / 86400 / 365.25).to_numpy(np.float64))
        cols.append(np.where(missing, 0.0, (filled.dt.day_of_week >= 5).to_numpy(np.float64)))
        if self.null_:
            cols.append(missing.astype(np.float64))
        return sp.csr_matrix(np.column_stack(cols))
