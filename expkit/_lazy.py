"""Package attributes imported on first use (PEP 562), shared by ``expkit`` and ``expkit.models``."""
from __future__ import annotations

import importlib
from typing import Mapping


def attribute(namespace: dict, table: Mapping[str, tuple], name: str, owner: str):
    """``table[name]`` = (module, attribute or None for the module itself), imported now and
    cached in ``namespace`` (the package's globals) so the next access is a plain lookup."""
    try:
        module_name, attr = table[name]
    except KeyError:
        raise AttributeError(f"module {owner!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    namespace[name] = value
    return value
