"""Where things are: the project root, the runs folder and the database URL.

The runs folder is the same wherever you stand in a project: ``$EXPKIT_RUNS``
when set, else ``runs/`` in the project root, found by walking up from the
working folder to the first folder that holds ``runs/``, ``expkit.toml`` or
``pyproject.toml``; outside any project, ``./runs``. So ``make demo`` at the
root and a notebook in ``notebooks/`` read and write the same runs.
"""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from urllib.parse import quote

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
    return runs_dir_source(path)[0]


def runs_dir_source(path=None) -> tuple[Path, str]:
    """The runs folder (see :func:`runs_dir`) and why it is that one, in words
    ("given", "$EXPKIT_RUNS", "project root /x", "working folder: no project root above it")."""
    if path:
        chosen, why = path, "given"
    elif os.environ.get("EXPKIT_RUNS"):
        chosen, why = os.environ["EXPKIT_RUNS"], "$EXPKIT_RUNS"
    else:
        root = project_root()
        chosen, why = ((root / "runs"), f"project root {root}") if root is not None else \
            ("runs", "working folder: no project root above it")
    return Path(chosen).expanduser().absolute(), why


def describe_runs_dir(path=None) -> str:
    """One line saying which runs folder is read and why, e.g.
    ``runs folder /work/proj/runs (project root /work/proj)``: what every front end shows."""
    folder, why = runs_dir_source(path)
    return f"runs folder {folder} ({why})"


def href(path) -> str:
    """A link to the local file ``path`` that opens where it is shown.

    In a kernel of a Jupyter server (JupyterLab, Notebook) whose root folder holds
    ``path``, the server's ``files/`` URL: it opens in a browser tab from JupyterLab
    and from any browser pointed at that server. Elsewhere (a page opened from disk,
    a file outside the server's root) a ``file://`` URI, which a plain browser opens.
    """
    path = Path(path).expanduser().absolute()
    server = jupyter_server()
    if server is not None:
        root = Path(server["root_dir"]).absolute()
        if path.is_relative_to(root):
            base = "/" + server.get("base_url", "/").strip("/")
            return f"{base.rstrip('/')}/files/{quote(path.relative_to(root).as_posix())}"
    return path.as_uri()


def jupyter_server() -> dict | None:
    """The running Jupyter server that started this kernel (its server-info record:
    ``root_dir``, ``base_url``, ...), or None outside a Jupyter server's kernel.

    Kernels know their server's process id (``$JPY_PARENT_PID``, set by jupyter_client);
    servers list themselves in Jupyter's runtime folder (``list_running_servers``).
    """
    parent = os.environ.get("JPY_PARENT_PID")
    if not parent:
        return None
    from jupyter_core.paths import jupyter_runtime_dir

    return _server_info(parent, jupyter_runtime_dir())


@functools.lru_cache(maxsize=4)
def _server_info(parent: str, runtime_dir: str) -> dict | None:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:  # a kernel without jupyter_server next to it
        return None
    return next((info for info in list_running_servers(runtime_dir)
                 if str(info.get("pid")) == parent), None)


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
