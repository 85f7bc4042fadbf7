"""The Transmogrifier: one feature matrix from a raw table, per semantic type."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from .. import schema as schema_mod
from ..errors import ConfigError, FeatureError, SchemaError
from .base import PLACEHOLDERS, ColumnVectorizer
from .categorical import CategoricalVectorizer
from .contact import EmailVectorizer, PhoneVectorizer, UrlVectorizer
from .dates import DateVectorizer
from .numeric import NumericVectorizer
from .text import TextVectorizer

log = logging.getLogger(__name__)

DROPPED_TYPES = ("id", "constant")


def _lineage_frame(names, columns, transforms) -> pd.DataFrame:
    return pd.DataFrame({"feature": list(names), "column": list(columns), "transform": list(transforms)})


class Transmogrifier(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Automatic feature engineering: one sparse matrix from a raw DataFrame.

    Each input column gets the vectorizer of its semantic type (see
    :mod:`expkit.schema`): numeric/integer -> :class:`NumericVectorizer`,
    binary/categorical -> :class:`CategoricalVectorizer`, text ->
    :class:`TextVectorizer`, email/url/phone -> :class:`EmailVectorizer` /
    :class:`UrlVectorizer` / :class:`PhoneVectorizer`, date ->
    :class:`DateVectorizer`; id and constant columns are dropped (see
    ``dropped_``).

    Parameters
    ----------
    schema : Schema or dict, optional
        Semantic types. A ``{column: type}`` dict may name only some columns:
        the others are inferred with :func:`expkit.schema.infer`. The schema's
        target column is never used as a feature.
    top_k, min_support : int, default 20 and 10
        Pivot of categorical values, email/url domains and categorical-like text.
    null_indicators : {"auto", True, False}, default "auto"
        Empty-field indicator per column. "auto" adds one only for columns that
        had missing values (or placeholders) at fit time; a value missing only
        at transform time is still imputed. True adds one to every column
        (constant ones are then removed by the SanityChecker).
    numeric_scaling : {"auto", "standard", "robust", "log1p", None}, default "auto"
    numeric_buckets : int, default 8
        Most buckets per numeric column (label-aware when ``y`` is given); 0 = off.
    ordinal : bool, default False
        Give binary and categorical columns one ordinal code column besides their
        pivot (see :class:`CategoricalVectorizer`), for tree models.
    text_features : int, default 4096
        Hashed TF-IDF columns per text column (power of 2); 0 = off.
    text_stats : bool, default True
        Word/character counts and is-English share of text columns.
    sentiment : {"lexicon", "vader", None}, default "lexicon"
        Sentiment of text columns (see :class:`TextVectorizer`).
    text_pivot_coverage : float, default 0.9
        A text column whose top ``top_k`` values cover this share of filled
        rows is pivoted like a categorical.
    placeholders : tuple of str
        Values meaning "missing" ("", "?", "N/A", "unknown", "Select", ...).
    vectorizers : dict, optional
        Replace defaults: ``{type or column: transformer or "drop"}``; a column
        name wins over a type. Text columns are given to a custom transformer
        as a 1-D Series of strings (missing -> ""), other columns as a
        one-column DataFrame. Output may be dense or sparse; names come from
        its ``get_feature_names_out`` when it has one.
    extra : list of (name, transformer, columns), optional
        Hand-made features beside the automatic ones, ColumnTransformer style:
        ``columns`` a list gives a DataFrame, a single name a Series.
    dtype : numpy dtype, default float64
        Of the output matrix (float32 halves memory).
    random_state : int, default 0

    Output is a CSR matrix; after ``set_output(transform="pandas")`` (which
    ``Pipeline.set_output`` calls) it is a DataFrame of sparse columns named by
    feature, whose ``attrs["lineage"]`` holds each column's raw column and
    transform, so that a :class:`SanityChecker` after it in a plain scikit-learn
    ``Pipeline`` reports real names and removes a leaking field's whole group.

    Attributes
    ----------
    schema_ : Schema
    lineage_ : DataFrame with columns feature, column, transform
    dropped_ : dict column -> why it produced no features
    feature_names_out_, feature_columns_, feature_transforms_ : list of str
        Lineage as lists (generated from the fitted vectorizers when read).
    """

    def __init__(self, schema=None, *, top_k=20, min_support=10, null_indicators="auto",
                 numeric_scaling="auto", numeric_buckets=8, ordinal=False, text_features=2 ** 12, text_stats=True,
                 sentiment="lexicon", text_pivot_coverage=0.9, placeholders=PLACEHOLDERS,
                 vectorizers=None, extra=None, dtype=np.float64, random_state=0):
        self.schema = schema
        self.top_k = top_k
        self.min_support = min_support
        self.null_indicators = null_indicators
        self.numeric_scaling = numeric_scaling
        self.numeric_buckets = numeric_buckets
        self.ordinal = ordinal
        self.text_features = text_features
        self.text_stats = text_stats
        self.sentiment = sentiment
        self.text_pivot_coverage = text_pivot_coverage
        self.placeholders = placeholders
        self.vectorizers = vectorizers
        self.extra = extra
        self.dtype = dtype
        self.random_state = random_state

    # -- building blocks -----------------------------------------------------
    def _default(self, typ: str):
        nulls, ph = self.null_indicators, self.placeholders
        if typ in ("numeric", "integer"):
            return NumericVectorizer(self.numeric_scaling, self.numeric_buckets,
                                     null_indicator=nulls, random_state=self.random_state)
        if typ in ("binary", "categorical"):
            return CategoricalVectorizer(self.top_k, self.min_support, nulls, ph, ordinal=self.ordinal)
        if typ == "text":
            return TextVectorizer(self.text_features, self.text_stats, self.sentiment,
                                  self.text_pivot_coverage, self.top_k, self.min_support, nulls, ph)
        if typ == "email":
            return EmailVectorizer(self.top_k, self.min_support, nulls, ph)
        if typ == "url":
            return UrlVectorizer(self.top_k, self.min_support, nulls, ph)
        if typ == "phone":
            return PhoneVectorizer(null_indicator=nulls, placeholders=ph)
        if typ == "date":
            return DateVectorizer(null_indicator=nulls, placeholders=ph)
        raise ConfigError(f"no vectorizer for semantic type {typ!r}")  # pragma: no cover

    def _resolve_schema(self, X: pd.DataFrame):
        given = None if self.schema is None else schema_mod.Schema.coerce(self.schema)
        if given is not None:
            absent = [c for c in given.features if c not in X.columns]
            if absent:
                raise SchemaError(f"schema column(s) {', '.join(map(repr, absent))} not in the data",
                                  hint="pass a table with these columns or drop them from the schema")
        rest = [c for c in X.columns if given is None or c not in given.columns]
        columns = dict(given.columns) if given is not None else {}
        if rest:
            columns.update(schema_mod.infer(X[rest]).columns)
        target = given.target if given is not None else None
        if target in X.columns:
            log.warning("target column %r is in X; it is not used as a feature", target)
        return schema_mod.Schema({c: columns[c] for c in X.columns if c in columns}, target)

    def _plan(self, X: pd.DataFrame):
        """[(key, transformer, input columns, kind)] and the dropped columns."""
        overrides = dict(self.vectorizers or {})
        unknown = [k for k in overrides if k not in X.columns and k not in schema_mod.TYPES]
        if unknown:
            raise ConfigError(f"vectorizers= names {unknown}, neither a column nor a type",
                              hint=f"use a column of the data or one of {schema_mod.TYPES}")
        plan, dropped = [], {}
        for col in self.schema_.features:
            typ = self.schema_[col].type
            chosen = overrides.get(col, overrides.get(typ))
            if isinstance(chosen, str) and chosen == "drop":
                dropped[col] = f"{typ}: dropped by vectorizers="
                continue
            if chosen is None:
                if typ in DROPPED_TYPES:
                    dropped[col] = f"{typ} column: no features"
                    continue
                est = self._default(typ)
            else:
                est = clone(chosen)
            kind = "series" if isinstance(est, ColumnVectorizer) else ("text" if typ == "text" else "frame")
            plan.append((col, est, col, kind))
        for item in self.extra or []:
            try:
                name, est, cols = item
            except (TypeError, ValueError):
                raise ConfigError(f"extra= item {item!r} is not (name, transformer, columns)") from None
            kind = "series" if isinstance(cols, str) else "frame"
            plan.append((str(name), clone(est), cols if isinstance(cols, str) else list(cols), kind))
        return plan, dropped

    @staticmethod
    def _input(X, cols, kind):
        if kind == "text":
            return X[cols].astype(object).where(X[cols].notna(), "").astype(str)
        if kind == "frame" and isinstance(cols, str):
            return X[[cols]]
        return X[cols]

    def _check_columns(self, X, needed):
        if not isinstance(X, pd.DataFrame):
            raise SchemaError(f"expected a pandas DataFrame, got {type(X).__name__}",
                              hint="pass the raw table (without the target) as a DataFrame")
        absent = [c for c in needed if c not in X.columns]
        if absent:
            raise SchemaError(f"input column(s) {', '.join(map(repr, absent))} missing",
                              hint="score tables need every column the model was fitted on")

    # -- sklearn API -----------------------------------------------------------
    def fit(self, X, y=None):
        """Learn every vectorizer from ``X`` (a DataFrame without the target)."""
        self._fit(X, y, transform=False)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit and return the CSR feature matrix, computing each block once."""
        return self._fit(X, y, transform=True)

    def _fit(self, X, y, transform):
        self._check_columns(X, [])
        if y is not None and len(y) != len(X):
            raise SchemaError(f"X has {len(X)} rows but y has {len(y)}")
        y = None if y is None else np.asarray(y)
        self.schema_ = self._resolve_schema(X)
        plan, self.dropped_ = self._plan(X)
        self._check_columns(X, self._needed(plan))
        blocks, widths = [], []
        for key, est, cols, kind in plan:
            data = self._input(X, cols, kind)
            if transform or not isinstance(est, ColumnVectorizer):  # custom ones: width from output
                block = self._sparse(est.fit_transform(data, y))
                if transform:
                    blocks.append(block)
                widths.append(block.shape[1])
            else:
                est.fit(data, y)
                widths.append(len(est.feature_suffixes_))
        self.plan_ = plan
        self.widths_ = widths
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        if not sum(widths):
            if len(X) < 2:  # every column of a one-row table is constant: say why
                raise FeatureError(f"the table has {len(X)} row(s); features are learned from at least 2",
                                   hint="load more rows")
            raise FeatureError("no column produced features",
                               hint=f"dropped: {self.dropped_}; check the schema")
        log.info("transmogrified %d columns into %d features (%d dropped)",
                 len(plan), sum(widths), len(self.dropped_))
        return self._container(self._stack(blocks)) if transform else None

    def set_output(self, *, transform=None):
        """Output container of ``transform`` and ``fit_transform``: ``"default"`` (CSR)
        or ``"pandas"`` (a DataFrame of sparse columns with ``attrs["lineage"]``);
        None leaves it unchanged. Returns self."""
        if transform is None:
            return self
        if transform not in ("default", "pandas"):
            raise ConfigError(f"set_output(transform={transform!r}) is not supported",
                              hint="use 'default' (sparse matrix) or 'pandas'")
        # the attribute scikit-learn's clone() carries over to the copy
        self._sklearn_output_config = {"transform": transform}
        return self

    def _container(self, Xt):
        config = getattr(self, "_sklearn_output_config", {}).get("transform", "default")
        if config != "pandas":
            return Xt
        names, columns, transforms = self.lineage_lists()
        frame = pd.DataFrame.sparse.from_spmatrix(Xt, columns=names)
        frame.attrs["lineage"] = {"column": list(columns), "transform": list(transforms)}
        return frame

    def transform(self, X):
        """The CSR feature matrix of ``X``; same columns as at fit time."""
        check_is_fitted(self, "plan_")
        self._check_columns(X, self._needed(self.plan_))
        blocks = []
        for (key, est, cols, kind), width in zip(self.plan_, self.widths_):
            block = self._sparse(est.transform(self._input(X, cols, kind)))
            if block.shape[1] != width:
                raise FeatureError(f"vectorizer of {key!r} made {block.shape[1]} columns at transform, "
                                   f"{width} at fit", hint="custom transformers must keep their width")
            blocks.append(block)
        return self._container(self._stack(blocks))

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "plan_")
        return np.asarray(self.feature_names_out_, dtype=object)

    # Names and lineage are generated from the fitted vectorizers on demand, not
    # stored: one list entry per output column would dominate a saved model.
    def lineage_lists(self) -> tuple[list[str], list[str], list[str]]:
        """(feature names, raw columns, transforms), one entry per output column."""
        check_is_fitted(self, "plan_")
        names, columns, transforms = [], [], []
        for (key, est, cols, _kind), width in zip(self.plan_, self.widths_):
            n, t = self._names(key, est, width)
            names += n
            transforms += t
            columns += [cols if isinstance(cols, str) else "+".join(cols)] * width
        return self._unique(names), columns, transforms

    @property
    def feature_names_out_(self) -> list[str]:
        return self.lineage_lists()[0]

    @property
    def feature_columns_(self) -> list[str]:
        """Raw column (``a+b`` for extra features on several) of each output column."""
        return self.lineage_lists()[1]

    @property
    def feature_transforms_(self) -> list[str]:
        """Transform that made each output column."""
        return self.lineage_lists()[2]

    @property
    def lineage_(self) -> pd.DataFrame:
        """One row per output column: feature, raw column, transform."""
        return _lineage_frame(*self.lineage_lists())

    # -- helpers -----------------------------------------------------------------
    @staticmethod
    def _needed(plan):
        needed = []
        for _key, _est, cols, _kind in plan:
            needed += [cols] if isinstance(cols, str) else list(cols)
        return list(dict.fromkeys(needed))

    def _sparse(self, block):
        return block.tocsr() if sp.issparse(block) else sp.csr_matrix(np.asarray(block, dtype=np.float64))

    def _stack(self, blocks):
        return sp.hstack(blocks, format="csr", dtype=self.dtype)

    @staticmethod
    def _names(key, est, width):
        """(names, transforms) of one fitted block ``width`` columns wide."""
        if isinstance(est, ColumnVectorizer):
            return list(est.get_feature_names_out()), list(est.feature_transforms_)
        transform = f"custom:{type(est).__name__}"
        try:
            raw = [str(n) for n in est.get_feature_names_out()]
        except Exception:  # many custom transformers cannot name their outputs
            raw = None
        if raw is None or len(raw) != width:
            raw = [str(i) for i in range(width)]
        return [n if n.startswith(f"{key}__") else f"{key}__{n}" for n in raw], [transform] * len(raw)

    @staticmethod
    def _unique(names):
        seen, out = {}, []
        for n in names:
            seen[n] = seen.get(n, 0) + 1
            out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
        return out
