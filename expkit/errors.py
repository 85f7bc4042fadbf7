"""One exception hierarchy for expkit.

Every error says what was wrong and what to do about it. The CLI prints
``str(error)`` on one line and exits with ``error.exit_code``; it shows a
traceback only with ``--debug``.
"""
from __future__ import annotations


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


class Terminated(KeyboardInterrupt):
    """SIGTERM received by the ``expkit`` command (a scheduler's timeout, ``kill``). It
    unwinds like Ctrl-C, so every command cleans up as on Ctrl-C: a run is marked
    interrupted, a scoring batch leaves no output, temporary file or score-log record."""


__all__ = [name for name in dir() if name.endswith("Error")] + ["Terminated"]
