"""Semantic column types inferred from values, not dtypes.

A :class:`Schema` maps each column to one of :data:`TYPES` with the evidence
behind the decision, knows the target, and round-trips through JSON.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

from .errors import SchemaError

#: Every semantic type expkit knows, in the order reports show them.
TYPES = (
    "numeric", "integer", "binary", "categorical", "text",
    "email", "url", "phone", "date", "id", "constant",
)


@dataclass
class ColumnType:
    """The semantic type of one column and why it was chosen."""

    name: str
    type: str
    evidence: str = ""
    dtype: str = ""
    overridden: bool = False

    def __post_init__(self):
        if self.type not in TYPES:
            raise SchemaError(
                f"column {self.name!r}: unknown semantic type {self.type!r}",
                hint=f"use one of {', '.join(TYPES)}",
            )


@dataclass
class Schema:
    """Column name -> :class:`ColumnType`, plus the target column (if any)."""

    columns: dict[str, ColumnType] = field(default_factory=dict)
    target: str | None = None

    # -- mapping-like access -------------------------------------------------
    def __getitem__(self, name: str) -> ColumnType:
        try:
            return self.columns[name]
        except KeyError:
            raise SchemaError(f"column {name!r} is not in the schema",
                              hint=f"known columns: {', '.join(self.columns)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __iter__(self):
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def types(self) -> dict[str, str]:
        """``{column: semantic type}`` for every column (target included)."""
        return {c.name: c.type for c in self.columns.values()}

    @property
    def features(self) -> list[str]:
        """The input columns: every column except the target."""
        return [c for c in self.columns if c != self.target]

    def of_type(self, *types: str) -> list[str]:
        """Input columns whose semantic type is one of ``types``."""
        return [c for c in self.features if self.columns[c].type in types]

    def override(self, overrides: Mapping[str, str] | None) -> "Schema":
        """A copy with ``{column: type}`` overrides applied (overrides win)."""
        out = Schema.from_dict(self.to_dict())
        for name, typ in (overrides or {}).items():
            if name not in out.columns:
                raise SchemaError(f"override names column {name!r}, which is not in the table",
                                  hint=f"known columns: {', '.join(out.columns)}")
            out.columns[name] = ColumnType(name, typ, "set by the user", out.columns[name].dtype, True)
        return out

    def select(self, names: Iterable[str]) -> "Schema":
        """A schema restricted to ``names`` (target kept if present)."""
        keep = [n for n in self.columns if n in set(names) or n == self.target]
        return Schema({n: self.columns[n] for n in keep}, self.target)

    # -- serialisation -------------------------------------------------------
    def to_dict(self) -> dict:
        return {"target": self.target, "columns": [asdict(c) for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Schema":
        cols = {c["name"]: ColumnType(**c) for c in d.get("columns", [])}
        return cls(cols, d.get("target"))

    def to_json(self, path=None, **kw) -> str:
        text = json.dumps(self.to_dict(), indent=2, **kw)
        if path is not None:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        return text

    @classmethod
    def from_json(cls, text_or_path) -> "Schema":
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        return cls.from_dict(json.loads(text))

    @classmethod
    def coerce(cls, schema) -> "Schema":
        """Accept a Schema, a ``{column: type}`` dict or a Schema dict."""
        if isinstance(schema, Schema):
            return schema
        if isinstance(schema, Mapping) and "columns" in schema:
            return cls.from_dict(schema)
        if isinstance(schema, Mapping):
            return cls({k: ColumnType(k, v) for k, v in schema.items()})
        raise SchemaError(f"cannot use {type(schema).__name__} as a schema",
                          hint="pass an expkit Schema or a {column: type} dict")

    # -- display ---------------------------------------------------------------
    def to_frame(self):
        import pandas as pd
        return pd.DataFrame([asdict(c) for c in self.columns.values()]).set_index("name")

    def _repr_html_(self) -> str:
        return self.to_frame()._repr_html_()

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {v}" for k, v in self.types.items())
        return f"Schema(target={self.target!r}, {{{inner}}})"


def infer(df, target: str | None = None, overrides: Mapping[str, str] | None = None) -> Schema:
    """Infer the semantic type of every column of ``df`` from its values.

    Parameters
    ----------
    df : pandas.DataFrame
    target : str, optional
        The label column; it is typed like the others and recorded as target.
    overrides : dict, optional
        ``{column: type}`` that win over inference.

    Returns
    -------
    Schema
    """
    raise NotImplementedError  # filled in by the schema work (issue 2)
