"""Where things are: the project root, the runs folder and the database URL.

The runs folder is the same wherever you stand in a project: ``$EXPKIT_RUNS``
when set, else ``runs/`` in the project root, found by walking up from the
working folder to the first folder that holds ``runs/``, ``expkit.toml`` or
``pyproject.toml``; outside any project, ``./runs``. So ``make demo`` at the
root and a notebook in ``notebooks/`` read and write the same runs.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError

#: What marks a folder as a project root (checked in this order, walking up).
ROOT_MARKERS = ("runs", "expkit.toml", "pyproject.toml")
#: The longest tenant, template or app name accepted (it becomes part of a folder name).
MAX_NAME = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def project_root(start=None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working folder) holding
    ``runs/``, ``expkit.toml`` or ``pyproject.toml``; None when there is none."""
    here = Path(start or Path.cwd()).expanduser().absolute()
    for folder in (here, *here.parents):
        if (folder / "runs").is_dir() or (folder / "expkit.toml").is_file() \
                or (folder / "pyproject.toml").is_file():
            return folder
    return None


def runs_dir(path=None) -> Path:
    """The runs folder: ``path``, else ``$EXPKIT_RUNS``, else ``<project root>/runs``,
    else ``./runs`` (absolute; not created here)."""
    chosen = path or os.environ.get("EXPKIT_RUNS")
    if not chosen:
        root = project_root()
        chosen = (root / "runs") if root is not None else "runs"
    return Path(chosen).expanduser().absolute()


def db_url(runs=None) -> str:
    """The database URL: ``$EXPKIT_DB`` if set, else ``sqlite:///<runs folder>/index.db``."""
    return os.environ.get("EXPKIT_DB") or f"sqlite:///{runs_dir(runs) / 'index.db'}"


def safe_name(value, what: str = "name") -> str:
    """``value`` as one file-name component (runs, tenants, templates, apps).

    Refuses, with a ConfigError naming ``what``, values that are empty, would escape a
    folder (``/``, ``\\``, ``..``), hold control characters or are longer than
    :data:`MAX_NAME`; other characters outside ``A-Za-z0-9._-`` become ``-``.
    """
    text = str(value)
    if not text.strip() or "/" in text or "\\" in text or text.strip(".") == "" \
            or any(ord(c) < 32 for c in text):
        raise ConfigError(f"{what} {text!r} would escape the runs folder",
                          hint="use letters, digits, '.', '_', '-' or spaces; no '/', '\\', '..' "
                               "or control characters")
    if len(text) > MAX_NAME:
        raise ConfigError(f"{what} {text[:40]!r}... is {len(text)} characters long",
                          hint=f"use at most {MAX_NAME} characters")
    return _UNSAFE.sub("-", text).strip("-") or "x"
