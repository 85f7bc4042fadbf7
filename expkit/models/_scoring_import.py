"""Importing scikit-learn and skops faster in processes that only load expkit's models.

Two import-time costs that a process which only scores does not need to pay, each
replaced for the duration of the import only (:func:`patched_on_import`):

- When ``skops.io`` is imported it builds its default trust lists; for scipy's ufuncs,
  which have no ``__module__``, it finds each one's module by a ``getattr`` on every
  loaded module (pickle's ``whichmodule``): 422 ufuncs times ~1,700 modules, about 0.4 s.
  :func:`indexed_whichmodule` gives the same answers from an index of the loaded
  modules' values of that type, built once.
- scikit-learn imports ``scipy.stats``, whose functions are decorated with scipy's
  ``xp_capabilities``: it parses each function's numpydoc docstring to append a note on
  array-API support, about 0.5 s. :class:`UnparsedDoc` leaves the docstrings as they are.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import sys
import types
import warnings


def indexed_whichmodule(real):
    """``real`` (skops' ``whichmodule(obj, name)``: the first module in ``sys.modules``
    order whose attribute ``name`` is ``obj``), answered from an index.

    Plain modules are indexed by their ``__dict__``, for the values of one type at a time
    (the type of the objects asked about: scipy's ufuncs); modules that compute attributes
    (a module ``__getattr__``, module subclasses) are asked with ``getattr`` as skops
    does, in their place in the order. Anything the index cannot settle goes to ``real``.
    """
    @functools.cache
    def index(kind: type):
        """Built at the first lookup of a ``kind``, when the modules that hold it are loaded."""
        first, computed, names = {}, [], []
        for position, (name, module) in enumerate(list(sys.modules.items())):
            names.append(name)
            if name in ("__main__", "__mp_main__") or module is None:
                continue
            namespace = getattr(module, "__dict__", None) if type(module) is types.ModuleType else None
            if namespace is None or "__getattr__" in namespace:
                computed.append((position, name, module))
                continue
            for attr, value in list(namespace.items()):
                if type(value) is kind:
                    first.setdefault((attr, id(value)), position)
        return first, computed, names

    def whichmodule(obj, name):
        if getattr(obj, "__module__", None) is not None or "." in name:
            return real(obj, name)
        first, computed, names = index(type(obj))
        position = first.get((name, id(obj)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for at, module_name, module in computed:
                if position is not None and at > position:
                    break
                try:
                    if getattr(module, name, None) is obj:
                        return module_name
                except (AttributeError, ImportError):
                    continue
        if position is not None:
            module = sys.modules.get(names[position])
            if module is not None and vars(module).get(name) is obj:  # still there
                return names[position]
        return real(obj, name)

    return whichmodule


class UnparsedDoc:
    """Stands in for scipy's ``FunctionDoc`` (numpydoc parser) in ``xp_capabilities``,
    which does ``doc = FunctionDoc(f); doc["Notes"].append(note); str(doc)`` and drops
    the first line (the signature): here the note is dropped and ``str`` gives the
    docstring unparsed. Any other use goes to the real parser, so a scipy that uses it
    differently still imports, only without the saving."""

    def __init__(self, real, *args, **kwargs):
        self._make = lambda: real(*args, **kwargs)
        self._func = args[0] if args else kwargs.get("func")
        self._sections: dict = {}

    def __getitem__(self, section):
        return self._sections.setdefault(section, [])

    def __str__(self):
        return "\n" + (getattr(self._func, "__doc__", None) or "")

    def __getattr__(self, name):
        if name in ("_make", "_func", "_sections"):  # not set up (e.g. a copy): no recursion
            raise AttributeError(name)
        return getattr(self._make(), name)


def unparsed_docs(real):
    """``make`` for :func:`patched_on_import` of ``scipy._lib._array_api.FunctionDoc``."""
    return functools.partial(UnparsedDoc, real)


class _AfterExec(importlib.abc.MetaPathFinder):
    """Finds module ``name`` as the import system would and calls ``patch(module)``
    right after it is executed."""

    def __init__(self, name: str, patch):
        self.name, self.patch = name, patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute, patch = spec.loader.exec_module, self.patch

        def exec_module(module):
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def patched_on_import(name: str, attribute: str, make):
    """While the block runs, module ``name``, when imported, gets
    ``attribute = make(original)``; the original is put back when the block ends.
    Nothing happens if the module was imported before or is not found."""
    patched = []

    def patch(module):
        original = getattr(module, attribute, None)
        if original is not None:
            setattr(module, attribute, make(original))
            patched.append((module, original))

    finder = _AfterExec(name, patch)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for module, original in patched:
            setattr(module, attribute, original)
