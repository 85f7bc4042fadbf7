"""Notebook templates: where they are, their parameters, and their versions.

A template is a notebook whose cell tagged ``parameters`` holds literal defaults.
:func:`find_template` finds one by name (``$EXPKIT_TEMPLATES``, the project's
``templates/``, the templates next to the package); :func:`resolve_params` checks
and converts the values a user gives (``-p NAME VALUE`` or a YAML file) against
those defaults *before* anything runs. Each promotion that changes a template
records a version (the sha256 of its file) in ``templates/.history.json``
(:func:`history`, :func:`template_version`); runs record the hash and version of
the template they executed.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any, Mapping

import nbformat

from . import sql
from .errors import ConfigError, DataError, RunError
from .files import read_json, sha256_file
from .paths import project_root

#: Parameters expkit injects itself; users do not pass them.
INJECTED = ("run_dir",)
#: The file, in a templates folder, that records each template's versions.
HISTORY = ".history.json"
_REPO_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
_NONLITERAL = object()


# -- templates ------------------------------------------------------------------------
def template_dirs(templates_dir=None) -> list[Path]:
    """Folders searched for templates: ``templates_dir``, else ``$EXPKIT_TEMPLATES``,
    ``./templates``, the project root's ``templates/`` and the templates next to the package."""
    if templates_dir:
        return [Path(templates_dir).absolute()]
    root = project_root()
    dirs = [Path(p) for p in (os.environ.get("EXPKIT_TEMPLATES"), "templates") if p]
    if root is not None:
        dirs.append(root / "templates")
    dirs.append(_REPO_TEMPLATES)
    out: list[Path] = []
    for d in (p.absolute() for p in dirs):
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def available_templates(templates_dir=None) -> list[str]:
    """Names of the templates found in :func:`template_dirs`."""
    return sorted({p.stem for d in template_dirs(templates_dir) for p in d.glob("*.ipynb")})


def find_template(name, templates_dir=None) -> Path:
    """The template file for a name (``tournament``) or a path to an ``.ipynb``."""
    text = str(name)
    if text.endswith(".ipynb"):
        path = Path(text)
        try:
            if path.is_file():
                return path.absolute()
        except OSError as exc:  # e.g. a file name longer than the file system allows
            raise RunError(f"template file {text[:60]}... cannot be used: {(exc.strerror or str(exc)).lower()}",
                           hint="use a shorter path") from None
        raise RunError(f"template file {text} does not exist")
    for d in template_dirs(templates_dir):
        if "/" not in text and (d / f"{text}.ipynb").is_file():
            return d / f"{text}.ipynb"
    names = available_templates(templates_dir)
    raise RunError(f"unknown template {text!r}",
                   hint=f"available: {', '.join(names)}" if names else "no templates found")


def parameters_cell(nb) -> tuple[int, Any]:
    """Index and cell of a notebook's cell tagged ``parameters`` (RunError if none)."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            return index, cell
    raise RunError("the notebook has no cell tagged 'parameters'",
                   hint="tag the cell holding the parameter defaults with 'parameters'")


def literal_parameters(source: str) -> dict:
    """Parameter name -> default value from a parameters cell's source.

    Statements that are not a plain ``name = <literal>`` map to a marker that
    :func:`nonliteral` reports; a syntax error raises ConfigError.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"the parameters cell does not parse: {exc.msg} (line {exc.lineno})") from None
    out: dict[str, Any] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AnnAssign) and node.value is not None else None
        if not targets or not all(isinstance(t, ast.Name) for t in targets):
            out[f"<line {node.lineno}>"] = _NONLITERAL
            continue
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = _NONLITERAL
        for target in targets:
            out[target.id] = value
    return out


def nonliteral(params: Mapping) -> list[str]:
    """Names (or lines) of parameters whose default is not a literal."""
    return [name for name, value in params.items() if value is _NONLITERAL]


def read_notebook(path):
    """The notebook at ``path`` (nbformat v4); RunError naming it when it cannot be read."""
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several kinds for bad files
        raise RunError(f"template {path} is not a readable notebook: {type(exc).__name__}: {exc}",
                       hint="open and save it in Jupyter, or restore it") from None


def template_parameters(path) -> dict:
    """Parameter name -> default of a template (non-literal defaults map to None)."""
    nb = read_notebook(path)
    try:
        _, cell = parameters_cell(nb)
    except RunError:
        return {}
    return {k: (None if v is _NONLITERAL else v) for k, v in literal_parameters(cell.source).items()
            if not k.startswith("<")}


# -- parameter values ------------------------------------------------------------------
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def _wrong(name, value, default) -> ConfigError:
    kind = type(default).__name__
    return ConfigError(f"parameter {name!r}: {value!r} is not a valid {kind}",
                       hint=f"the template's default is {default!r}")


def coerce(name: str, value, default, *, from_string: bool):
    """``value`` converted to the type of the template default ``default``.

    Strings (from ``-p NAME VALUE``) are parsed; typed values (from a YAML
    file) are checked. A ``None`` default accepts any literal.
    """
    if from_string:
        text = str(value)
        if isinstance(default, bool):
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise _wrong(name, text, default)
        if isinstance(default, int):
            try:
                return int(text)
            except ValueError:
                raise _wrong(name, text, default) from None
        if isinstance(default, float):
            try:
                return float(text)
            except ValueError:
                raise _wrong(name, text, default) from None
        if isinstance(default, str):
            return text
        if text.lower() in ("none", "null"):
            return None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            if isinstance(default, (list, tuple)):
                value = [part.strip() for part in text.split(",") if part.strip()]
            else:
                return text  # a None default takes a plain string as is
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = type(default)(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise _wrong(name, value, default)
    return value


def resolve_params(path, strings: Mapping[str, str] | None = None,
                   values: Mapping[str, Any] | None = None) -> dict:
    """Check and convert parameters for the template at ``path``.

    Parameters
    ----------
    strings : mapping, optional
        Values given as text (``-p NAME VALUE``), parsed to the default's type.
    values : mapping, optional
        Typed values (a YAML file or Python), checked against the default's type.
        ``strings`` win over ``values``.
    """
    defaults = template_parameters(path)
    out: dict[str, Any] = {}
    for source, from_string in ((values or {}, False), (strings or {}, True)):
        for name, value in source.items():
            if name not in defaults or name in INJECTED:
                known = [k for k in defaults if k not in INJECTED]
                raise ConfigError(f"unknown parameter {name!r} for template {Path(path).stem!r}",
                                  hint=f"parameters: {', '.join(known)}" if known else "it has none")
            out[name] = coerce(name, value, defaults[name], from_string=from_string)
    for name, value in out.items():  # parameters are saved with the run: no passwords in them
        sql.check_no_password(f"parameter {name!r}", value)
    check_data_paths({**defaults, **out})
    return out


def check_data_paths(params: Mapping) -> None:
    """DataError (or ConfigError), before anything runs, for what a template would fail on later.

    ``data``: a table that is missing or that :func:`expkit.data.check` finds
    unreadable from its first bytes, or a file on another machine (``https://``,
    ``s3://``, ...), which is refused; a database URL needs the template's ``query``
    (ConfigError); with a ``target`` parameter, the target must be one of a local
    table's columns. ``*_path``/``*_file``: the local file must exist. Database URLs
    and ``scheme:name`` sources are otherwise left to the template.
    """
    from .data import REMOTE_SCHEMES, check, local_path, url_scheme

    if sql.is_url(params.get("data")) and url_scheme(params["data"]) not in REMOTE_SCHEMES \
            and "query" in params and not params.get("query"):
        raise ConfigError(f"parameter 'data' is a database URL ({sql.redact(params['data'])}) "
                          "but 'query' is not given",
                          hint="add -p query TABLE or -p query \"select ...\"")
    columns = None
    for name, value in params.items():
        if not (name == "data" or name.endswith(("_path", "_file"))) or not isinstance(value, str):
            continue
        scheme = url_scheme(value)
        try:
            if scheme in REMOTE_SCHEMES:
                local_path(value)  # refuses, saying what to do
            elif scheme not in (None, "file"):
                continue  # e.g. a database URL: the template reads it itself
            elif name == "data" and local_path(value).exists():
                columns = check(value)
                continue
        except DataError as exc:
            raise DataError(f"parameter {name!r}: {exc.message}", hint=exc.hint) from None
        if local_path(value).exists():
            continue
        if scheme == "file" or ":" not in value.split("/")[0]:  # "scheme:name" is the template's business
            raise DataError(f"parameter {name!r}: data path {value} does not exist",
                            hint=f"looked in {Path.cwd()}")
    target = params.get("target")
    if columns and isinstance(target, str) and target not in columns:
        raise DataError(f"parameter 'target': {target!r} is not a column of {params['data']}",
                        hint=f"columns: {', '.join(map(str, columns[:30]))}")



# -- versions -----------------------------------------------------------------------------
def history(templates_dir) -> dict:
    """Template name -> list of versions (oldest first) recorded in ``templates_dir``."""
    return read_json(Path(templates_dir) / HISTORY, {})


def template_version(path, digest: str | None = None) -> int | None:
    """The recorded version number of the template file at ``path`` (None if unknown)."""
    path = Path(path)
    digest = digest or sha256_file(path)
    for entry in history(path.parent).get(path.stem, []):
        if entry["hash"] == digest:
            return entry["version"]
    return None
