"""Promote an exploratory notebook to a template, or a run's model to production.

A notebook becomes ``templates/NAME.ipynb`` only if its ``parameters`` cell
holds literal defaults and the notebook, stripped of outputs, executes
headless with those defaults (into a scratch run, kept for inspection). Each
promotion that changes the content records a new version (the sha256 of the
template file) in ``templates/.history.json``; runs record the hash and version
of the template they executed.

Model promotion lives in :mod:`expkit.registry`; :func:`promote_model` is a
thin alias so both promotions are found here.
"""
from __future__ import annotations

import copy
import getpass
import hashlib
import logging
import re
import tempfile
from pathlib import Path

import nbformat

from . import _lazy
from .errors import PromotionError, RunError
from .execute import check_runs_dir, execute
from .files import now, sha256_file, write_json, write_text
from .paths import MAX_NAME
from .registry import Registry
from .templates import HISTORY, history, literal_parameters, nonliteral, parameters_cell

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def clean(nb):
    """A copy of a notebook without outputs, execution counts or execution metadata."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    return nb


def check_parameters(nb) -> dict:
    """The literal defaults of a notebook's parameters cell; PromotionError otherwise."""
    try:
        _, cell = parameters_cell(nb)
    except RunError as exc:
        raise PromotionError(f"refused: {exc.message}", hint=exc.hint) from None
    params = literal_parameters(cell.source)
    bad = nonliteral(params)
    if bad:
        raise PromotionError(f"refused: parameters are not literals: {', '.join(bad)}",
                             hint="a template's defaults must be plain values (numbers, strings, "
                                  "lists, dicts, True/False/None), so a run can override them")
    return params


def promote_notebook(path, name: str, *, templates_dir=None, runs_dir=None, reason: str | None = None,
                     by: str | None = None) -> dict:
    """Check a notebook, execute it once headless, then save it as template ``name``.

    Parameters
    ----------
    path : str or Path
        The notebook to promote.
    name : str
        Template name; the file is ``<templates_dir>/<name>.ipynb``.
    templates_dir : str or Path, optional
        Where templates live (default ``./templates``).
    runs_dir : str or Path, optional
        Runs folder that receives the scratch run.

    Returns
    -------
    dict
        name, version, hash, path, scratch_run, changed (False when the content
        equals the current version, which is then kept).
    """
    if not _NAME.match(str(name)) or len(str(name)) > MAX_NAME:
        shown = name if len(str(name)) <= 60 else f"{str(name)[:40]}...({len(str(name))} characters)"
        raise PromotionError(f"refused: template name {shown!r} is not valid",
                             hint=f"use letters, digits, '_' or '-', at most {MAX_NAME} characters")
    source = Path(path)
    if not source.is_file():
        raise PromotionError(f"refused: notebook {source} does not exist")
    try:
        nb = nbformat.read(str(source), as_version=4)
    except Exception as exc:  # nbformat raises several kinds for bad files
        raise PromotionError(f"refused: {source} is not a readable notebook ({exc})") from None
    check_parameters(nb)
    nb = clean(nb)
    text = nbformat.writes(nb) + "\n"

    folder = Path(templates_dir or "templates").absolute()
    target = folder / f"{name}.ipynb"
    versions = history(folder)
    entries = versions.setdefault(name, [])
    digest = hashlib.sha256(text.encode()).hexdigest()
    if entries and entries[-1]["hash"] == digest and target.is_file() and sha256_file(target) == digest:
        return {"name": name, "version": entries[-1]["version"], "hash": digest, "path": str(target),
                "scratch_run": None, "changed": False}

    root = check_runs_dir(runs_dir)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / f"{name}.ipynb"
        candidate.write_text(text, encoding="utf-8")
        result = execute(candidate, {}, runs_dir=root, kind="promotion-check",
                         name=f"promote-{name}", cwd=source.parent.absolute())
    if result["status"] != "succeeded":
        raise PromotionError(f"refused: the notebook failed when executed headless: {result['error']}",
                             hint=f"see {result['report']}")
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"version": (entries[-1]["version"] + 1) if entries else 1, "hash": digest,
             "promoted_at": now(), "by": by or getpass.getuser(), "source": str(source.absolute()),
             "scratch_run": result["run_id"], "reason": reason}
    write_text(target, text)
    entries.append(entry)
    write_json(folder / HISTORY, versions)
    log.info("template %s version %d saved to %s", name, entry["version"], target)
    return {"name": name, "version": entry["version"], "hash": digest, "path": str(target),
            "scratch_run": result["run_id"], "changed": True}


def promote_model(run_id: str, app: str, tenant=None, **kwargs) -> dict:
    """Promote a run's model to production; see :meth:`expkit.registry.Registry.promote`."""
    return Registry(kwargs.pop("runs_dir", None)).promote(run_id, app, tenant, **kwargs)


#: Names that moved elsewhere (deprecated aliases for one release).
__getattr__ = _lazy.moved(__name__, {
    'history': 'expkit.templates',
    'template_version': 'expkit.templates',
})
