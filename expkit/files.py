"""Files as expkit writes and reads them: atomically, as JSON, with digests.

Every file expkit writes goes through :func:`write_bytes` (or the JSON and text
helpers on top of it): a temporary file in the same folder, flushed and fsynced,
then renamed over the target, so a reader never sees half a file and a crash or
a full disk never truncates what was there before. The temporary file is removed
when writing fails, and a failure is a :class:`~expkit.errors.WriteError` naming the
file and the cause ("no space left on device while writing .../report.html").

Journals (the registry's promotions) are the one exception to replace-on-write:
:func:`append_line` adds one line under a file lock and fsyncs it; a line cut short
by a crash is skipped by :func:`read_lines` and never glued to the next one.

Temporary names carry the writer's process id and host (:func:`tmp_path`), so
:func:`clean_stale` can remove what a killed process left behind and nothing that a
live one is still writing.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import shutil
import socket
import sys
import time
from importlib import metadata
from pathlib import Path

from .errors import WriteError

log = logging.getLogger(__name__)

#: Packages whose versions a run and a model card record.
VERSIONED = ("expkit", "pandas", "numpy", "scikit-learn", "scipy", "optuna", "lightgbm",
             "papermill", "skops", "matplotlib", "pyarrow")
#: Suffix of the temporary files :func:`write_bytes` creates next to their target.
TMP_SUFFIX = ".tmp"
#: Temporary files of another host are removed by :func:`clean_stale` after this many seconds.
FOREIGN_TMP_AGE = 24 * 3600
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_TMP_NAME = re.compile(r"^\..+\.(\d+)-([0-9a-f]{6})\.[0-9a-f]{6}\.tmp$")


def now() -> str:
    """Current UTC time, ISO 8601 with milliseconds and offset."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def tmp_path(path: Path) -> Path:
    """A fresh temporary name next to ``path``: ``.<name>.<pid>-<host>.<random>.tmp``
    (hidden, ends in :data:`TMP_SUFFIX`; :func:`clean_stale` knows its writer)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{_HOST}.{secrets.token_hex(3)}{TMP_SUFFIX}")


def write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Raises
    ------
    WriteError
        The file could not be written (an OSError naming the file and the cause);
        ``path`` is left as it was and no temporary file remains.
    """
    path = Path(path)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(path, exc) from exc
        raise
    return path


def check_writable(path, *, folder: bool = False) -> Path:
    """Make sure ``path`` can be written (its folder is created if missing), before work
    that ends by writing it; WriteError naming the file and the cause otherwise.
    ``folder``: ``path`` is a folder to be written as a whole (a Parquet dataset)."""
    path = Path(path)
    probe = tmp_path(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file stands where a folder of the path should be
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory") from None
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as exc:
        raise WriteError(path, exc) from exc
    if path.is_dir() and not folder:
        raise WriteError(path, IsADirectoryError(errno.EISDIR, "Is a directory"))
    return path


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON atomically (numpy values, paths and dates allowed)."""
    return write_text(path, json.dumps(jsonable(data), indent=2) + "\n")


def append_line(path, line: str) -> int:
    """Append one line of text to a journal file, durably; returns the file's size before.

    The append happens under an exclusive lock on the file and is fsynced. If the file
    ends in a line cut short (a crash while appending), that line is ended first so the
    new one stays whole. The returned size lets a caller take the line back
    (:func:`os.truncate`) when what it records did not happen after all.
    """
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WriteError(path, exc) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        try:
            os.write(fd, data)
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise WriteError(path, exc) from exc
        return size
    finally:
        os.close(fd)  # closing releases the lock


def read_lines(path) -> list[dict]:
    """The JSON objects of a journal written by :func:`append_line`, in order ([] when the
    file does not exist). A line that is not valid JSON (cut short by a crash) is skipped
    with a warning naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d is not valid JSON (cut short?); skipped", path, number)
            continue
        if isinstance(item, dict):
            out.append(item)
    return out


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock on the file ``path`` (created if needed), across processes."""
    try:
        fh = open(path, "a")
    except OSError as exc:
        raise WriteError(path, exc) from exc
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder) -> list[Path]:
    """Remove the temporary files and folders (:func:`tmp_path` names) in ``folder`` that a
    process which no longer runs left behind (a kill -9, a power cut); returns them.

    Those of a process on another host (a shared runs folder) are removed only once
    they are :data:`FOREIGN_TMP_AGE` seconds old; those of live processes stay.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TMP_NAME.match(entry.name)
        if not match:
            continue
        pid, host = int(match[1]), match[2]
        if host == _HOST:
            if pid_alive(pid):
                continue
        else:
            with contextlib.suppress(OSError):
                if time.time() - entry.stat(follow_symlinks=False).st_mtime < FOREIGN_TMP_AGE:
                    continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
            log.info("removed %s, left behind by process %d", path, pid)
    return removed


def write_csv(path, frame, **to_csv) -> Path:
    """Write a DataFrame as CSV (UTF-8, no index unless asked) atomically."""
    to_csv.setdefault("index", False)
    return write_bytes(path, frame.to_csv(**to_csv).encode("utf-8"))


def write_png(path, figure, **savefig) -> Path:
    """Write a matplotlib figure as PNG atomically."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig)
    return write_bytes(path, buffer.getvalue())


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


def sha256_dir(folder, digests: dict[str, str] | None = None) -> str:
    """One sha256 over a folder's files: their relative paths and digests
    (:func:`file_digests`, or ``digests`` when already computed); any change, addition
    or removal changes it."""
    h = hashlib.sha256()
    for name, digest in sorted((file_digests(folder) if digests is None else digests).items()):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def changed(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """What differs between two :func:`file_digests`: ``"card.json (changed)"``,
    ``"x.txt (added)"``, ``"model.skops (missing)"``, by file name."""
    out = []
    for name in sorted(set(expected) | set(actual)):
        if name not in actual:
            out.append(f"{name} (missing)")
        elif name not in expected:
            out.append(f"{name} (added)")
        elif expected[name] != actual[name]:
            out.append(f"{name} (changed)")
    return out
