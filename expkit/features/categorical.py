"""Categorical (and binary) columns: one-hot pivot of the top values plus OTHER."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import (
    PLACEHOLDERS,
    ColumnVectorizer,
    factorize,
    one_hot,
    want_null_indicator,
)


class CategoricalVectorizer(ColumnVectorizer):
    """One-hot pivot of the ``top_k`` most frequent values seen at least
    ``min_support`` times, one ``OTHER`` column for every other value (unseen
    values at transform time included) and an empty-field indicator.

    The OTHER column always exists, so output columns never depend on what a
    transform batch contains. (sklearn's OneHotEncoder only creates its
    infrequent column when fit data had infrequent values, hence this class.)

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
    """

    def __init__(self, top_k=20, min_support=10, null_indicator="auto", placeholders=PLACEHOLDERS):
        self.top_k = top_k
        self.min_support = min_support
        self.null_indicator = null_indicator
        self.placeholders = placeholders

    def _fit(self, s, y):
        codes, uniques = factorize(s, self.placeholders)
        self.fit_codes(codes, uniques)

    def fit_codes(self, codes, uniques):
        """Learn the top categories from factorized values (``codes`` into ``uniques``);
        other vectorizers that factorize a column themselves (e-mail domains, short text) call it."""
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        # most frequent first, ties broken by value so fits are reproducible
        order = sorted(range(len(uniques)), key=lambda i: (-counts[i], str(uniques[i])))
        keep = [i for i in order[: self.top_k] if counts[i] >= self.min_support]
        self.categories_ = [str(uniques[i]) for i in keep]
        self.null_ = want_null_indicator(self.null_indicator, codes < 0)
        self.feature_suffixes_ = self.categories_ + ["OTHER"] + (["null"] if self.null_ else [])
        self.feature_transforms_ = ["pivot"] * (len(self.categories_) + 1) + (["null"] if self.null_ else [])

    def _transform(self, s):
        return self.transform_codes(*factorize(s, self.placeholders))

    def transform_codes(self, codes, uniques) -> sp.csr_matrix:
        """The one-hot block of factorized values (see :meth:`fit_codes`)."""
        position = {c: i for i, c in enumerate(self.categories_)}
        other = len(self.categories_)
        column_of_unique = np.array([position.get(str(u), other) for u in uniques] + [-1], dtype=np.int64)
        if self.null_:
            column_of_unique[-1] = other + 1  # code -1 (missing) -> null column
        return one_hot(column_of_unique[codes], len(self.feature_suffixes_))
