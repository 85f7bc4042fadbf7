"""Files as expkit writes and reads them: atomically, as JSON, with digests.

Every file expkit writes goes through :func:`write_bytes` (or the JSON and text
helpers on top of it): a temporary file in the same folder, flushed and fsynced,
then renamed over the target, so a reader never sees half a file and a crash or
a full disk never truncates what was there before. The temporary file is removed
when writing fails.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import secrets
import sys
from importlib import metadata
from pathlib import Path

#: Packages whose versions a run and a model card record.
VERSIONED = ("expkit", "pandas", "numpy", "scikit-learn", "scipy", "optuna", "lightgbm",
             "papermill", "skops", "matplotlib", "pyarrow")
#: Suffix of the temporary files :func:`write_bytes` creates next to their target.
TMP_SUFFIX = ".tmp"


def now() -> str:
    """Current UTC time, ISO 8601 with milliseconds and offset."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def tmp_path(path: Path) -> Path:
    """A fresh temporary name next to ``path`` (hidden, ends in :data:`TMP_SUFFIX`)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}{TMP_SUFFIX}")


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON atomically (numpy values, paths and dates allowed)."""
    return write_text(path, json.dumps(jsonable(data), indent=2) + "\n")


def read_json(path, default=None):
    """The JSON content of ``path``, or ``default`` when the file does not exist.

    A file that exists but is not valid JSON raises :class:`json.JSONDecodeError`
    (callers name the file in their own error).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return default
    return json.loads(text)


def jsonable(value):
    """``value`` with numpy scalars and arrays, non-finite floats (-> None), dates and
    paths made JSON-safe; dict keys become strings."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy arrays and scalars
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


def versions(packages=VERSIONED) -> dict:
    """Versions of Python and of the installed ``packages`` (absent ones are left out)."""
    out = {"python": sys.version.split()[0]}
    for name in packages:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def sha256_file(path) -> str:
    """The sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder) -> dict[str, str]:
    """``{relative posix path: sha256}`` of every file under ``folder`` (hidden and
    temporary files left out), sorted by path."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}


def sha256_dir(folder) -> str:
    """One sha256 over a folder's files: their relative paths and digests
    (:func:`file_digests`); any change, addition or removal changes it."""
    h = hashlib.sha256()
    for name, digest in file_digests(folder).items():
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()
