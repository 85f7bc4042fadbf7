"""Categorical (and binary) columns: one-hot pivot of the top values plus OTHER, and
optionally one ordinal code column (for tree models)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import (
    PLACEHOLDERS,
    ColumnVectorizer,
    factorize,
    is_regression,
    one_hot,
    want_null_indicator,
)

#: Pseudo-count pulling a value's label mean towards the overall mean when ordering codes.
ORDER_SMOOTHING = 10


class CategoricalVectorizer(ColumnVectorizer):
    """One-hot pivot of the ``top_k`` most frequent values seen at least
    ``min_support`` times, one ``OTHER`` column for every other value (unseen
    values at transform time included) and an empty-field indicator.

    The OTHER column always exists, so output columns never depend on what a
    transform batch contains. (sklearn's OneHotEncoder only creates its
    infrequent column when fit data had infrequent values, hence this class.)

    With ``ordinal=True`` one more column, ``<column>__ordinal``, holds the same
    values as one code each, for tree models: the pivoted values ``0..k-1``, OTHER
    ``k`` and missing ``k+1``. When ``fit`` gets a binary or continuous label the
    codes are ordered by the value's label mean (smoothed towards the overall mean
    by :data:`ORDER_SMOOTHING` rows), so one split of a tree separates high from low
    (Fisher's ordering for two classes); otherwise by frequency.

    Parameters
    ----------
    top_k : int, default 20
        Most values pivoted.
    min_support : int, default 10
        Fewest rows a value needs at fit time to get its own column.
    null_indicator : {"auto", True, False}, default "auto"
        Empty-field indicator; "auto" adds it only if the column had missing
        values (or placeholders) at fit time.
    placeholders : tuple of str
        Values treated as missing (compared stripped, case-insensitively).
    ordinal : bool, default False
        Add the ordinal code column.
    """

    def __init__(self, top_k=20, min_support=10, null_indicator="auto", placeholders=PLACEHOLDERS,
                 ordinal=False):
        self.top_k = top_k
        self.min_support = min_support
        self.null_indicator = null_indicator
        self.placeholders = placeholders
        self.ordinal = ordinal

    def _fit(self, s, y):
        codes, uniques = factorize(s, self.placeholders)
        self.fit_codes(codes, uniques, y if self.ordinal else None)

    def fit_codes(self, codes, uniques, y=None):
        """Learn the top categories from factorized values (``codes`` into ``uniques``);
        other vectorizers that factorize a column themselves (e-mail domains, short text) call it.
        ``y`` (optional) orders the ordinal codes."""
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        # most frequent first, ties broken by value so fits are reproducible
        order = sorted(range(len(uniques)), key=lambda i: (-counts[i], str(uniques[i])))
        keep = [i for i in order[: self.top_k] if counts[i] >= self.min_support]
        self.categories_ = [str(uniques[i]) for i in keep]
        self.null_ = want_null_indicator(self.null_indicator, codes < 0)
        self.ordinal_ = bool(self.ordinal)
        if self.ordinal_:
            self.order_ = self._order(codes, keep, y)
        self.feature_suffixes_ = (self.categories_ + ["OTHER"] + (["null"] if self.null_ else [])
                                  + (["ordinal"] if self.ordinal_ else []))
        self.feature_transforms_ = (["pivot"] * (len(self.categories_) + 1) + (["null"] if self.null_ else [])
                                    + (["ordinal"] if self.ordinal_ else []))

    def _order(self, codes, keep, y) -> np.ndarray:
        """Ordinal code of each kept value (position in ``categories_`` -> code)."""
        k = len(keep)
        if y is None or k < 2:
            return np.arange(k)
        y = np.asarray(y)
        if is_regression(y):
            target = y.astype(np.float64)
        else:
            classes = np.unique(y)
            if len(classes) != 2:
                return np.arange(k)
            target = (y == classes[1]).astype(np.float64)
        position = np.full(codes.max(initial=-1) + 2, -1, dtype=np.int64)  # code -> kept position
        position[np.asarray(keep, dtype=np.int64)] = np.arange(k)
        at = position[codes]  # code -1 reads the last entry, which stays -1
        seen = at >= 0
        sums = np.bincount(at[seen], weights=target[seen], minlength=k)
        n = np.bincount(at[seen], minlength=k)
        mean = (sums + ORDER_SMOOTHING * target.mean()) / (n + ORDER_SMOOTHING)
        codes_of = np.empty(k, dtype=np.int64)
        codes_of[np.argsort(mean, kind="stable")] = np.arange(k)
        return codes_of

    def _transform(self, s):
        return self.transform_codes(*factorize(s, self.placeholders))

    def transform_codes(self, codes, uniques) -> sp.csr_matrix:
        """The one-hot block (and ordinal column) of factorized values (see :meth:`fit_codes`)."""
        position = {c: i for i, c in enumerate(self.categories_)}
        other = len(self.categories_)
        at = np.array([position.get(str(u), other) for u in uniques] + [-1], dtype=np.int64)[codes]
        column = at.copy()
        if self.null_:
            column[at < 0] = other + 1  # missing -> null column
        width = other + 1 + int(self.null_)
        block = one_hot(column, width + int(getattr(self, "ordinal_", False)))
        if not getattr(self, "ordinal_", False):
            return block
        code = np.where(at < 0, other + 1, np.where(at == other, other, 0)).astype(np.float64)
        known = (at >= 0) & (at < other)
        code[known] = self.order_[at[known]]
        return (block + sp.csr_matrix((code, (np.arange(len(code)), np.full(len(code), width))),
                                      shape=block.shape)).tocsr()
