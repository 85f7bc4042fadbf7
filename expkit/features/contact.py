"""Contact columns: email (domain pivot, free-mail and valid flags), URL
(domain pivot, valid flag) and phone (valid flag). Each value is parsed once
per distinct value."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..domains import FREE_MAIL
from .base import (
    PLACEHOLDERS,
    ColumnVectorizer,
    factorize,
    strings,
    want_null_indicator,
)
from .categorical import CategoricalVectorizer

EMAIL = r"^[\w.%+'-]+@(?:[\w-]+\.)+[A-Za-z]{2,}$"
HOST = r"^(?:[\w-]+\.)+[A-Za-z]{2,}$"
PHONE = r"^[\d\s().+/-]+$"
EXTENSION = r"\s*(?:[xX]|[eE][xX][tT]\.?)\s*\d+$"
NO_DOMAIN = "(none)"  # domain of a filled value that has none (pivoted like any other)


class _ParsedColumn(ColumnVectorizer):
    """Shared flow: parse each distinct value into (domain, flags), pivot the
    domain and add the flags and an empty-field indicator."""

    FLAGS: tuple[str, ...] = ()
    PIVOT = True

    def _parse(self, uniques) -> tuple[np.ndarray, np.ndarray]:
        """(domain per unique, flags per unique as an (n, len(FLAGS)) array)."""
        raise NotImplementedError

    def _fit_transform(self, s, y, transform):
        self.column_ = str(s.name) if s.name is not None else "x"
        codes, uniques = factorize(s, self.placeholders)
        domains, flags = self._parse(uniques)
        self.null_ = want_null_indicator(self.null_indicator, codes < 0)
        self.feature_suffixes_, self.feature_transforms_ = [], []
        if self.PIVOT:
            self.domains_ = CategoricalVectorizer(self.top_k, self.min_support, False, self.placeholders)
            dom_codes, dom_uniques = self._domain_codes(codes, domains)
            self.domains_.fit_codes(dom_codes, dom_uniques)
            self.feature_suffixes_ += [f"domain={d}" for d in self.domains_.feature_suffixes_]
            self.feature_transforms_ += ["domain"] * len(self.domains_.feature_suffixes_)
        self.feature_suffixes_ += list(self.FLAGS) + (["null"] if self.null_ else [])
        self.feature_transforms_ += list(self.FLAGS) + (["null"] if self.null_ else [])
        return self._finish(self._assemble(codes, domains, flags)) if transform else None

    @staticmethod
    def _domain_codes(codes, domains):
        """Row codes into the distinct domains (-1 for missing values)."""
        dom_of_unique, dom_uniques = pd.factorize(domains, use_na_sentinel=True)
        lookup = np.append(dom_of_unique, -1)
        return lookup[codes], np.asarray(dom_uniques, dtype=object)

    def _transform(self, s):
        codes, uniques = factorize(s, self.placeholders)
        return self._assemble(codes, *self._parse(uniques))

    def _assemble(self, codes, domains, flags):
        blocks = []
        if self.PIVOT:
            dom_codes, dom_uniques = self._domain_codes(codes, domains)
            blocks.append(self.domains_.transform_codes(dom_codes, dom_uniques))
        flags = np.vstack([flags, np.zeros((1, flags.shape[1]))])[codes]
        blocks.append(sp.csr_matrix(flags))
        if self.null_:
            blocks.append(sp.csr_matrix((codes < 0).astype(np.float64).reshape(-1, 1)))
        return sp.hstack(blocks, format="csr")


class _DomainColumn(_ParsedColumn):
    """A parsed column whose domain is pivoted: the parameters email and URL share."""

    def __init__(self, top_k=20, min_support=10, null_indicator="auto", placeholders=PLACEHOLDERS):
        self.top_k = top_k
        self.min_support = min_support
        self.null_indicator = null_indicator
        self.placeholders = placeholders


class EmailVectorizer(_DomainColumn):
    """Email addresses: pivot of the top ``top_k`` domains (+ OTHER), a
    free-mail flag, a valid-address flag and an empty-field indicator.

    Parameters
    ----------
    top_k, min_support : int
        Domain pivot settings (see :class:`CategoricalVectorizer`).
    null_indicator : {"auto", True, False}, default "auto"
    placeholders : tuple of str
    """

    FLAGS = ("free_mail", "valid")

    def _parse(self, uniques):
        u = strings(uniques)
        valid = u.str.match(EMAIL)
        domain = u.str.replace(r"^.*@", "", regex=True).str.lower()
        domain = domain.where(u.str.contains("@", regex=False) & (domain != ""), NO_DOMAIN)
        flags = np.column_stack([domain.isin(FREE_MAIL).to_numpy(float), valid.to_numpy(float)])
        return domain.to_numpy(dtype=object), flags


class UrlVectorizer(_DomainColumn):
    """URLs: pivot of the top ``top_k`` host names (``www.`` removed, + OTHER),
    a valid flag and an empty-field indicator. Parameters as
    :class:`EmailVectorizer`."""

    FLAGS = ("valid",)

    def _parse(self, uniques):
        u = strings(uniques)
        host = (u.str.replace(r"^[A-Za-z][\w+.-]*://", "", regex=True)
                 .str.replace(r"[/?#].*$", "", regex=True)
                 .str.replace(r"^.*@", "", regex=True)
                 .str.replace(r":\d*$", "", regex=True)
                 .str.lower().str.replace(r"^www\.", "", regex=True))
        valid = host.str.match(HOST) & ~u.str.contains(" ", regex=False)
        return host.where(valid, NO_DOMAIN).to_numpy(dtype=object), valid.to_numpy(float).reshape(-1, 1)


class PhoneVectorizer(_ParsedColumn):
    """Phone numbers: a valid flag (``min_digits``..``max_digits`` digits and
    only phone punctuation) and an empty-field indicator.

    Parameters
    ----------
    min_digits, max_digits : int, default 7 and 15 (E.164)
    null_indicator : {"auto", True, False}, default "auto"
    placeholders : tuple of str
    """

    FLAGS = ("valid",)
    PIVOT = False

    def __init__(self, min_digits=7, max_digits=15, null_indicator="auto", placeholders=PLACEHOLDERS):
        self.min_digits = min_digits
        self.max_digits = max_digits
        self.null_indicator = null_indicator
        self.placeholders = placeholders

    def _parse(self, uniques):
        main = strings(uniques).str.replace(EXTENSION, "", regex=True)
        digits = main.str.count(r"\d")
        valid = main.str.match(PHONE) & digits.between(self.min_digits, self.max_digits)
        return None, valid.to_numpy(float).reshape(-1, 1)
