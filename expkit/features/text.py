"""Free-text columns: pivot when they behave like categoricals, otherwise text
statistics (word counts, length, is-English share, sentiment) and hashed TF-IDF.

Work is done once per distinct value, and tokenisation happens once (see
:class:`Tokens`). The distinct tokens are then looked up once each: English stop word or not, VADER
valence, VADER negator, and their murmurhash3 bucket (the hash sklearn's
HashingVectorizer uses). Every per-row statistic is then a weighted
``bincount`` over the token stream, and the hashed counts one sparse matrix.
"""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfTransformer
from sklearn.utils import murmurhash3_32

from ..errors import ConfigError
from .base import (
    PLACEHOLDERS,
    ColumnVectorizer,
    factorize,
    strings,
    want_null_indicator,
)
from .categorical import CategoricalVectorizer

SENTIMENTS = ("lexicon", "vader", None)
_WORD = re.compile(r"\w+")
NEGATION_WINDOW = 3  # VADER looks this many words back for a negator
_STATS = [("log_words", "words"), ("log_content_words", "content_words"),
          ("log_chars", "chars"), ("english_share", "english")]


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=1)
def _negators() -> frozenset:
    import vaderSentiment.vaderSentiment as vs
    return frozenset(w.replace("'", "") for w in vs.NEGATE)


class Tokens:
    """The token stream (words: runs of word characters, lower-cased,
    apostrophes removed) of a list of documents.

    Whitespace splitting and de-duplication run in Arrow; only the distinct
    whitespace-separated chunks ("demo.", "(pricing") go through a Python
    regex to become words, so the cost per row is a few array operations.

    Attributes
    ----------
    rows : ndarray of int, document of each token (tokens in document order)
    ids : ndarray of int, index of each token into ``vocab``
    vocab : ndarray of str objects, distinct tokens
    n_docs : int
    """

    def __init__(self, docs):
        arr = pa.array(list(docs), type=pa.large_string())
        low = pc.utf8_lower(arr)
        for apostrophe in ("'", "\u2019"):
            low = pc.replace_substring(low, apostrophe, "")
        parts = pc.utf8_split_whitespace(low)
        chunk_rows = pc.list_parent_indices(parts).to_numpy(zero_copy_only=False).astype(np.int64)
        encoded = pc.dictionary_encode(pc.list_flatten(parts))
        chunk_ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        chunks = encoded.dictionary
        plain = pc.match_substring_regex(chunks, r"^[a-z0-9_]+$").to_numpy(zero_copy_only=False)
        words_of_chunk = [[c] if ok else _WORD.findall(c) for c, ok in zip(chunks.to_pylist(), plain)]
        n_words = np.array([len(w) for w in words_of_chunk], dtype=np.int64)
        word_ids, self.vocab = pd.factorize(
            np.array([w for ws in words_of_chunk for w in ws], dtype=object))
        # expand each chunk occurrence into its words, keeping document order
        per_chunk = n_words[chunk_ids]
        total = int(per_chunk.sum())
        start = np.repeat(np.cumsum(n_words)[chunk_ids] - per_chunk, per_chunk)
        within = np.arange(total) - np.repeat(np.cumsum(per_chunk) - per_chunk, per_chunk)
        self.rows = np.repeat(chunk_rows, per_chunk)
        self.ids = word_ids[start + within].astype(np.int64)
        self.n_docs = len(arr)

    def per_doc(self, token_weights: np.ndarray | None = None) -> np.ndarray:
        """Sum over each document's tokens of ``token_weights`` (count if None)."""
        return np.bincount(self.rows, weights=token_weights, minlength=self.n_docs).astype(np.float64)

    def of_vocab(self, values: np.ndarray) -> np.ndarray:
        """Per-token values from per-vocabulary ``values``."""
        return values[self.ids]

    def hashed_counts(self, n_features: int) -> sp.csr_matrix:
        """Token counts hashed into ``n_features`` columns (murmurhash3, as
        sklearn's HashingVectorizer with ``alternate_sign=False``)."""
        buckets = np.array([abs(murmurhash3_32(t, seed=0)) for t in self.vocab], dtype=np.int64) % n_features
        m = sp.coo_matrix((np.ones(len(self.ids)), (self.rows, buckets[self.ids])),
                          shape=(self.n_docs, n_features))
        return m.tocsr()  # sums duplicates


def lexicon_sentiment(tokens: Tokens) -> np.ndarray:
    """Vectorised VADER-lexicon sentiment in [-1, 1] per document.

    Sum of the VADER valences of the tokens, each scaled by VADER's -0.74 when
    a negator is among the three tokens before it, normalised like VADER's
    compound (``s / sqrt(s^2 + 15)``). VADER's finer rules (boosters,
    capitals, "but", idioms) are left out: this runs at array speed instead
    of ~100 µs per document.
    """
    lexicon, negators = _vader().lexicon, _negators()
    valence = np.array([lexicon.get(t, 0.0) for t in tokens.vocab])
    negator = np.array([t in negators for t in tokens.vocab], dtype=bool)
    tok_val, tok_neg = tokens.of_vocab(valence), tokens.of_vocab(negator)
    negated = np.zeros(len(tok_val), dtype=bool)
    for k in range(1, NEGATION_WINDOW + 1):
        negated[k:] |= tok_neg[:-k] & (tokens.rows[k:] == tokens.rows[:-k])
    score = tokens.per_doc(np.where(negated, -0.74, 1.0) * tok_val)
    return score / np.sqrt(score * score + 15.0)


class TextVectorizer(ColumnVectorizer):
    """Features of a free-text column.

    If the ``top_k`` most frequent values cover at least ``pivot_coverage`` of
    the filled rows, the column is pivoted like a categorical. Otherwise:
    ``log1p`` word count, ``log1p`` word count without English stop words
    (sklearn's list), ``log1p`` character length, share of tokens that are
    English stop words (an is-English score), sentiment, and hashed TF-IDF
    of the tokens.

    Parameters
    ----------
    n_features : int, default 4096
        Hashed TF-IDF columns; 0 turns them off.
    stats : bool, default True
        Word/character counts and the English share.
    sentiment : {"lexicon", "vader", None}, default "lexicon"
        "lexicon" is a vectorised score from VADER's lexicon and negators
        (see :func:`lexicon_sentiment`); "vader" runs vaderSentiment's
        SentimentIntensityAnalyzer on every distinct value (exact, about
        100 µs per distinct value); None turns it off.
    pivot_coverage : float, default 0.9
    top_k, min_support : int
        Pivot settings when the column is pivoted.
    null_indicator : {"auto", True, False}, default "auto"
    placeholders : tuple of str
    sublinear_tf : bool, default True
        ``1 + log(tf)`` in the TF-IDF.
    """

    def __init__(self, n_features=2 ** 12, stats=True, sentiment="lexicon", pivot_coverage=0.9,
                 top_k=20, min_support=10, null_indicator="auto", placeholders=PLACEHOLDERS,
                 sublinear_tf=True):
        self.n_features = n_features
        self.stats = stats
        self.sentiment = sentiment
        self.pivot_coverage = pivot_coverage
        self.top_k = top_k
        self.min_support = min_support
        self.null_indicator = null_indicator
        self.placeholders = placeholders
        self.sublinear_tf = sublinear_tf

    def _fit_transform(self, s, y, transform):
        if self.sentiment not in SENTIMENTS:
            raise ConfigError(f"sentiment={self.sentiment!r} is not known", hint=f"use one of {SENTIMENTS}")
        self.column_ = str(s.name) if s.name is not None else "x"
        codes, uniques = factorize(s, self.placeholders)
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        filled = counts.sum()
        if filled and np.sort(counts)[::-1][: self.top_k].sum() >= self.pivot_coverage * filled:
            self.pivot_ = CategoricalVectorizer(self.top_k, self.min_support, self.null_indicator,
                                                self.placeholders)
            self.pivot_.column_ = self.column_
            self.pivot_.fit_codes(codes, uniques)
            return self._finish(self.pivot_.transform_codes(codes, uniques)) if transform else None
        self.pivot_ = None
        self.null_ = want_null_indicator(self.null_indicator, codes < 0)
        stats, tf = self._vectorize(codes, uniques)
        if self.n_features:
            self.tfidf_ = TfidfTransformer(sublinear_tf=self.sublinear_tf).fit(tf)
        return self._finish(self._assemble(stats, tf, codes)) if transform else None

    # Output names are generated, not stored: thousands of ``tfidf_<i>`` names
    # would dominate the size and load time of a saved model.
    def _outputs(self) -> list[tuple[str, str]]:
        """(suffix, transform) of every output column."""
        if self.pivot_ is not None:
            return list(zip(self.pivot_.feature_suffixes_, self.pivot_.feature_transforms_))
        names = list(_STATS) if self.stats else []
        names += [("sentiment", "sentiment")] if self.sentiment else []
        names += [(f"tfidf_{i}", "tfidf") for i in range(self.n_features or 0)]
        return names + ([("null", "null")] if self.null_ else [])

    @property
    def feature_suffixes_(self) -> list[str]:
        return [n for n, _ in self._outputs()]

    @property
    def feature_transforms_(self) -> list[str]:
        return [t for _, t in self._outputs()]

    def _transform(self, s):
        codes, uniques = factorize(s, self.placeholders)
        if self.pivot_ is not None:
            return self.pivot_.transform_codes(codes, uniques)
        return self._assemble(*self._vectorize(codes, uniques), codes)

    def _vectorize(self, codes, uniques):
        """Dense statistics per row and raw hashed term counts per row."""
        tokens = Tokens(uniques)
        columns = []
        if self.stats:
            stop = np.array([t in ENGLISH_STOP_WORDS for t in tokens.vocab], dtype=np.float64)
            words = tokens.per_doc()
            stops = tokens.per_doc(tokens.of_vocab(stop))
            chars = strings(uniques).str.len().to_numpy(np.float64)
            columns += [np.log1p(words), np.log1p(words - stops), np.log1p(chars),
                        np.divide(stops, words, out=np.zeros_like(words), where=words > 0)]
        if self.sentiment == "lexicon":
            columns.append(lexicon_sentiment(tokens))
        elif self.sentiment == "vader":
            analyzer = _vader()
            columns.append(np.array([analyzer.polarity_scores(u)["compound"] for u in uniques]))
        # one extra all-zero row at the end for missing values (code -1)
        stats = np.zeros((len(uniques) + 1, len(columns)))
        if columns:
            stats[:-1] = np.column_stack(columns)
        tf = None
        if self.n_features:
            hashed = tokens.hashed_counts(self.n_features)
            tf = sp.vstack([hashed, sp.csr_matrix((1, self.n_features))], format="csr")[codes]
        return stats[codes], tf

    def _assemble(self, stats, tf, codes):
        blocks = [sp.csr_matrix(stats)]
        if self.n_features:
            blocks.append(self.tfidf_.transform(tf))
        if self.null_:
            blocks.append(sp.csr_matrix((codes < 0).astype(np.float64).reshape(-1, 1)))
        return sp.hstack(blocks, format="csr")
