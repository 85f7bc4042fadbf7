"""Per-tenant results kept on disk as they arrive, read back on access.

A fitted tournament result weighs a few megabytes in memory (the fitted pipelines, the
trials, the hold-out scores), so a thousand tenants' results would not fit in the
caller's memory. :class:`ResultStore` is the ``tenant -> TournamentResult`` mapping of
:class:`~expkit.models.result.TenantTournamentResult`: each result is written as one
pickle (zlib-compressed: a sixth of the size for ~10 ms) to a private temporary folder
when it arrives (workers send those bytes, so the caller never holds the object) and
read when asked for, with the last few kept in memory. The folder goes when the store
does; folders of processes that died without removing theirs are removed by the next
store. Pickling a store (``joblib.dump`` of a fitted :class:`~expkit.Tournament`)
carries every result with it.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from ..files import pid_alive

#: Results kept in memory besides the files (the most recently read).
CACHED = 8
PREFIX = "expkit-tenants-"


def dumps(result) -> bytes:
    """``result`` as the bytes a store keeps (what a worker sends back)."""
    return zlib.compress(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), 1)


def loads(payload: bytes):
    return pickle.loads(zlib.decompress(payload))  # bytes of our own dumps, from our own private folder


def sweep(root: Path) -> None:
    """Remove the store folders under ``root`` whose process is gone (killed: no cleanup ran)."""
    for folder in root.glob(f"{PREFIX}*-*"):
        pid = folder.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)


class ResultStore(Mapping):
    """``tenant -> TournamentResult`` held in files; fallback tenants point at the global result.

    ``add(name, result)`` takes a result or its :func:`dumps` bytes; ``store[name]``
    reads it back (the same object while it stays among the last :data:`CACHED` read).
    """

    def __init__(self, global_result=None, cached: int | None = None):
        self.global_result = global_result
        self._cached = CACHED if cached is None else cached
        self._files: dict = {}  # name -> file name, or None for the global result
        self._memory: OrderedDict = OrderedDict()
        self._folder: Path | None = None

    @property
    def folder(self) -> Path | None:
        """Where the results are (a private temporary folder; None while empty)."""
        return self._folder

    def _dir(self) -> Path:
        if self._folder is None:
            sweep(Path(tempfile.gettempdir()))
            self._folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
            weakref.finalize(self, shutil.rmtree, str(self._folder), True)
        return self._folder

    def add(self, name, result) -> None:
        """Keep ``result`` (a TournamentResult or its pickle) for tenant ``name``."""
        payload = result if isinstance(result, bytes) else dumps(result)
        file = f"{len(self._files):07d}.pkl"
        (self._dir() / file).write_bytes(payload)
        self._files[name] = file
        self._memory.pop(name, None)

    def add_global(self, name) -> None:
        """Tenant ``name`` uses the global result."""
        self._files[name] = None

    def __getitem__(self, name):
        file = self._files[name]
        if file is None:
            return self.global_result
        if name in self._memory:
            self._memory.move_to_end(name)
            return self._memory[name]
        result = loads((self._folder / file).read_bytes())
        self._memory[name] = result
        while len(self._memory) > self._cached:
            self._memory.popitem(last=False)
        return result

    def __iter__(self):
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, name) -> bool:
        return name in self._files

    def __getstate__(self):
        return {"global_result": self.global_result, "cached": self._cached,
                "payloads": {name: None if file is None else (self._folder / file).read_bytes()
                             for name, file in self._files.items()}}

    def __setstate__(self, state):
        self.__init__(state["global_result"], state["cached"])
        for name, payload in state["payloads"].items():
            self.add_global(name) if payload is None else self.add(name, payload)

    def __repr__(self) -> str:
        return f"ResultStore({len(self)} tenants, {len(self._memory)} in memory)"
