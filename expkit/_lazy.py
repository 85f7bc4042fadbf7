"""Module attributes resolved on first use (PEP 562): package attributes imported lazily
(``expkit``, ``expkit.models``) and names that moved to another module (kept for one
release with a DeprecationWarning)."""
from __future__ import annotations

import importlib
import warnings
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


def moved(owner: str, table: Mapping[str, str]):
    """A module ``__getattr__`` for names of ``owner`` that moved: ``table[name]`` is
    ``"module"`` or ``"module:new_name"``, where it is now. Each use warns
    (DeprecationWarning) and returns the object."""
    def __getattr__(name: str):
        try:
            module, _, new_name = table[name].partition(":")
        except KeyError:
            raise AttributeError(f"module {owner!r} has no attribute {name!r}") from None
        new_name = new_name or name
        warnings.warn(f"{owner}.{name} moved to {module}.{new_name}; the old name will be removed "
                      "in the next release", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), new_name)

    return __getattr__
