"""One exception hierarchy for expkit.

Every error says what was wrong and what to do about it. The CLI prints
``str(error)`` on one line and exits with ``error.exit_code``; it shows a
traceback only with ``--debug``.
"""
from __future__ import annotations

import errno


class ExpkitError(Exception):
    """Base class of every error expkit raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class DataError(ExpkitError):
    """A table could not be read or does not fit what was asked of it."""

    exit_code = 2


class SchemaError(DataError):
    """Columns are missing, of the wrong type, or do not match a schema."""


class TargetError(DataError):
    """The target column is missing, empty, single-class or otherwise unusable."""


class ConfigError(ExpkitError):
    """A parameter, option or setting is wrong (name, type or range)."""

    exit_code = 2


class FeatureError(ExpkitError):
    """Feature engineering could not produce a usable feature matrix."""


class TournamentError(ExpkitError):
    """The tournament could not produce a winner."""


class ModelError(ExpkitError):
    """A model file is missing, untrusted, tampered with or incompatible."""


class RunError(ExpkitError):
    """A run, template or runs folder is missing, invalid or failed."""


class PromotionError(ExpkitError):
    """A notebook or model was refused promotion; the message says why."""


class RegistryError(ExpkitError):
    """The production registry has no such entry or refused a change."""


class ScoringError(ExpkitError):
    """A batch could not be scored."""


class MonitorError(ExpkitError):
    """Monitoring could not run (no registry, no score log, bad thresholds)."""


class IndexDatabaseError(ExpkitError):
    """The index database cannot be used: ``EXPKIT_DB`` is not a URL, its driver is not
    installed, it cannot be reached, or the file is corrupt or not a database."""


class WriteError(ExpkitError, OSError):
    """A file could not be written (disk full, permission, read-only file system, missing
    folder). It is an :class:`OSError` too, with ``errno``, ``strerror`` and ``filename``
    set, so code that handles OSError keeps working."""

    def __init__(self, path, exc: OSError):
        from pathlib import Path

        reason = (exc.strerror or str(exc)).lower()
        super().__init__(f"{reason} while writing {path}", hint=_WRITE_HINTS.get(exc.errno, _WRITE_HINT))
        self.errno, self.strerror, self.filename = exc.errno, reason, str(path)
        #: What went wrong ("no space left on device") and the file's name ("report.html").
        self.reason, self.name = reason, Path(path).name

    def __str__(self) -> str:  # the message and hint, not OSError's "[Errno n] ..."
        return BaseException.__str__(self)


class Terminated(KeyboardInterrupt):
    """SIGTERM received by the ``expkit`` command (a scheduler's timeout, ``kill``). It
    unwinds like Ctrl-C, so every command cleans up as on Ctrl-C: a run is marked
    interrupted, a scoring batch leaves no output, temporary file or score-log record."""


_WRITE_HINT = "check the folder exists and can be written, or choose another path"
_WRITE_HINTS = {
    errno.ENOSPC: "free some space on that disk or choose a folder on another one",
    errno.EDQUOT: "free some space (disk quota exceeded) or choose another folder",
    errno.EFBIG: "the file is larger than this system allows; choose another folder",
    errno.EACCES: "choose a folder you can write to, or fix its permissions",
    errno.EPERM: "choose a folder you can write to, or fix its permissions",
    errno.EROFS: "that file system is read-only; choose a folder on a writable one",
    errno.ENOENT: "create the folder first, or choose an existing one",
    errno.ENOTDIR: "part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "that is a folder; give a file name inside it",
    errno.ENAMETOOLONG: "use a shorter path",
}


__all__ = [name for name in dir() if name.endswith("Error")] + ["Terminated"]
