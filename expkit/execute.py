"""Execute a notebook template with papermill into a run folder, once per tenant.

:func:`run_template` is what ``expkit run`` calls: it finds the template,
checks every parameter against the template's ``parameters`` cell (names,
types, data paths, tenant names, a writable runs folder) *before* anything is
created, then executes one run per tenant, ``workers`` at a time.
:func:`execute` runs one template into one run folder: the executed notebook is
saved after every cell (atomically, through a papermill I/O handler: a full disk
never truncates it), ``report.html`` (code hidden) is written whatever the
outcome, and the run ends ``succeeded``, ``failed`` (with the cell and the
error, or the file that could not be written and why) or ``interrupted``.

Tenants run in separate processes (:func:`map_jobs`), one kernel each; that
one function is the executor interface to swap for Dask or similar.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import nbformat

from . import _lazy, db, tracking
from .errors import ConfigError, DataError, ExpkitError, RunError, Terminated, WriteError
from .files import sha256_file, write_text
from .paths import runs_dir as _runs_dir
from .paths import safe_name
from .run import Run
from .runs import sweep
from .templates import (
    INJECTED,
    find_template,
    read_notebook,
    resolve_params,
    template_parameters,
    template_version,
)

log = logging.getLogger(__name__)

KERNEL = os.environ.get("EXPKIT_KERNEL", "python3")


def check_runs_dir(root) -> Path:
    """The runs folder, created if needed; RunError if it cannot be written, and
    IndexDatabaseError if its index cannot be used."""
    root = _runs_dir(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".probe-"):
            pass
    except OSError as exc:
        raise RunError(f"runs folder {root} is not writable: {(exc.strerror or str(exc)).lower()}",
                       hint="pass --runs-dir or set EXPKIT_RUNS to a writable folder") from None
    with db.session(root):  # a corrupt or unreachable index is said before a run is made
        pass
    return root


class AtomicNotebookIO:
    """The papermill I/O handler (papermill's handler registry, ``papermill_io.register``)
    for paths starting with :data:`SCHEME`: the executed notebook is written with
    :func:`expkit.files.write_text` (temporary file, fsync, rename), so the save after
    each cell never leaves a truncated notebook.ipynb, and a failed save is a
    :class:`~expkit.errors.WriteError` naming the file."""

    SCHEME = "expkit-atomic://"

    @classmethod
    def local(cls, path: str) -> str:
        return path[len(cls.SCHEME):] if path.startswith(cls.SCHEME) else path

    @classmethod
    def read(cls, path):
        return Path(cls.local(path)).read_text(encoding="utf-8")

    @classmethod
    def write(cls, buf, path):
        write_text(cls.local(path), buf)

    @classmethod
    def listdir(cls, path):
        return [str(p) for p in Path(cls.local(path)).iterdir()]

    @classmethod
    def pretty_path(cls, path):
        return cls.local(path)


def _atomic(path: Path) -> str:
    """``path`` as papermill should be given it to write through :class:`AtomicNotebookIO`."""
    from papermill.iorw import papermill_io

    if papermill_io.get_handler(AtomicNotebookIO.SCHEME) is not AtomicNotebookIO:
        papermill_io.register(AtomicNotebookIO.SCHEME, AtomicNotebookIO)
    return AtomicNotebookIO.SCHEME + str(path)


def tenants_from(spec: str) -> list[str]:
    """Unique values of a column of a table given as ``FILE:COLUMN``."""
    path, sep, column = str(spec).rpartition(":")
    if not sep or not path or not column:
        raise ConfigError(f"--tenants-from {spec!r} is not FILE:COLUMN")
    if not Path(path).exists():
        raise DataError(f"--tenants-from: file {path} does not exist")
    from .data import load

    df = load(path)
    if column not in df.columns:
        raise DataError(f"--tenants-from: column {column!r} is not in {path}",
                        hint=f"columns: {', '.join(map(str, df.columns))}")
    return [str(v) for v in df[column].dropna().unique()]


# -- one run -------------------------------------------------------------------------
def _excerpt(source: str, lines: int = 6) -> str:
    rows = source.strip().splitlines()
    return "\n".join(rows[:lines] + (["..."] if len(rows) > lines else []))


def _error(exc, template_nb) -> dict:
    """run.json's error entry for a papermill failure: the template cell (numbered
    from 1), its execution count, a source excerpt and the message."""
    cell = next((i + 1 for i, c in enumerate(template_nb.cells) if c.source == exc.source), None)
    return {"cell": cell, "execution_count": exc.exec_count, "source": _excerpt(exc.source),
            "ename": exc.ename, "message": f"{exc.ename}: {exc.evalue}".rstrip(": ")}


def _running_cell(run: Run, template_nb) -> dict:
    """The cell papermill was executing when the kernel went away (from the saved notebook)."""
    try:
        nb = nbformat.read(str(run.dir / "notebook.ipynb"), as_version=4)
    except Exception:  # no notebook yet: the kernel never started
        return {}
    started = [c for c in nb.cells if c.metadata.get("papermill", {}).get("start_time")]
    cell = started[-1] if started else None  # papermill executes in order: the last one started
    if cell is None:
        return {}
    index = next((i + 1 for i, c in enumerate(template_nb.cells) if c.source == cell.source), None)
    return {"cell": index, "execution_count": cell.get("execution_count"), "source": _excerpt(cell.source)}


def export_html(run: Run, error: Mapping | None = None) -> Path:
    """Write report.html (parameters, verdict and leaderboard first, then the executed
    notebook with code hidden; no external scripts). See :mod:`expkit.report`.

    When the notebook cannot be rendered, the report says so and shows ``error``;
    only writing the file can fail (:class:`~expkit.errors.WriteError`).
    """
    from .report import write

    return write(run, error)


def _kernel_manager(log_file: Path):
    """A kernel manager class whose kernel writes stdout/stderr to ``log_file``
    (kernel.log in the run folder) instead of the terminal."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            # start_kernel passes its keywords on to the kernel's Popen (documented)
            with open(log_file, "ab") as fh:
                kw.setdefault("stdout", fh)
                kw.setdefault("stderr", fh)
                return await super().start_kernel(**kw)

    return RunKernelManager


def execute(template, params: Mapping | None = None, *, tenant=None, runs_dir=None,
            kind: str = "template", name: str | None = None, cwd=None,
            kernel_name: str = KERNEL, mlflow: str | None = None) -> dict:
    """Execute a template (a path) once into a new run folder; returns :func:`summary`.

    The parameters are used as given (see :func:`resolve_params`); ``run_dir``
    (and ``tenant`` when given) are injected. Failures of the notebook end in
    a failed run, not an exception; Ctrl-C marks the run interrupted and is
    re-raised. With an MLflow tracking URI (``mlflow``), the finished run is
    also logged there (:mod:`expkit.tracking`).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    template = Path(template).absolute()
    name = name or template.stem
    template_nb = read_notebook(template)
    language = {} if (template_nb.metadata.get("kernelspec", {}).get("language")
                      or template_nb.metadata.get("language_info", {}).get("name")) else {"language": "python"}
    digest = sha256_file(template)

    defaults = {k: v for k, v in template_parameters(template).items() if k not in INJECTED}
    recorded = {**defaults, **(params or {}), **({"tenant": tenant} if tenant is not None else {})}
    run = Run.create(name, tenant=tenant, params=recorded, runs_dir=runs_dir, kind=kind,
                     template_path=template, template_hash=digest,
                     template_version=template_version(template, digest))
    injected = {**(params or {}), "run_dir": str(run.dir)}
    if tenant is not None:
        injected["tenant"] = tenant
    status, error = "failed", None
    try:
        run.start()
        log.info("run %s: executing %s", run.id, template.name)
        pm.execute_notebook(str(template), _atomic(run.dir / "notebook.ipynb"), parameters=injected,
                            kernel_name=kernel_name, progress_bar=False, log_output=False,
                            request_save_on_cell_execute=True, cwd=str(cwd or Path.cwd()),
                            start_timeout=120, **language,
                            kernel_manager_class=_kernel_manager(run.dir / "kernel.log"))
        status = "succeeded"
    except PapermillExecutionError as exc:
        status = "interrupted" if exc.ename == "KeyboardInterrupt" else "failed"
        error = _error(exc, template_nb)
    except KeyboardInterrupt as exc:
        status = "interrupted"
        error = {"message": "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"}
        raise
    except WriteError as exc:  # saving the notebook failed (disk full, ...): name the file and why
        error = {**_running_cell(run, template_nb), "message": f"{exc.reason} while writing {exc.name}"}
    except Exception as exc:  # dead kernel, kernel start failure, ...
        error = {**_running_cell(run, template_nb), "message": f"{type(exc).__name__}: {exc}"}
    finally:
        try:
            export_html(run, error)
        except WriteError as exc:
            if status == "succeeded" or error is None:
                status = "failed" if status == "succeeded" else status
                error = {"message": f"{exc.reason} while writing {exc.name}"}
            log.warning("run %s: %s", run.id, exc)
        run.finish(status, error)
        log.info("run %s: %s", run.id, status)
    tracking.log_run_safely(run, mlflow)
    return summary(run)


def summary(run: Run) -> dict:
    """tenant, status, winner, metric, error and paths of a finished run."""
    meta = run.meta
    s = meta.get("summary") or {}
    error = meta.get("error") or {}
    where = f"cell {error['cell']}{_prompt(error)}: " if error.get("cell") is not None else ""
    report = run.dir / "report.html"
    mlflow = meta.get("mlflow") or {}
    return {"run_id": run.id, "tenant": meta.get("tenant"), "status": meta.get("status"),
            "winner": s.get("winner"), "metric_name": s.get("metric_name"), "metric": s.get("metric"),
            "error": f"{where}{error['message']}" if error.get("message") else None,
            "path": str(run.dir), "report": str(report) if report.is_file() else None,
            "mlflow": mlflow.get("run_id") or (f"not logged: {mlflow['error']}" if mlflow.get("error") else None)}


def _prompt(error: Mapping) -> str:
    """`` (In [4])``: the execution count the report shows for the failing cell."""
    count = error.get("execution_count")
    return f" (In [{count}])" if count is not None else ""


# -- many runs ---------------------------------------------------------------------------
def _job(job: dict) -> dict:
    try:
        return execute(**job)
    except Exception as exc:  # one tenant's trouble must not stop the others
        if isinstance(exc, ExpkitError):
            log.warning("tenant %s could not run: %s", job.get("tenant"), exc)
        else:
            log.exception("tenant %s could not run", job.get("tenant"))
        return {"run_id": None, "tenant": job.get("tenant"), "status": "failed", "winner": None,
                "metric_name": None, "metric": None, "path": None, "report": None, "mlflow": None,
                "error": str(exc) if isinstance(exc, ExpkitError) else f"{type(exc).__name__}: {exc}"}


def map_jobs(fn: Callable[[dict], dict], jobs: Sequence[dict], workers: int = 1,
             on_done: Callable[[dict], None] | None = None) -> list[dict]:
    """Run ``fn`` over ``jobs``: in this process when ``workers`` is 1, else in a pool of
    ``workers`` processes. Results come back in the order of ``jobs``."""
    if workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(fn(job))
            if on_done:
                on_done(results[-1])
        return results
    pool = cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                                  mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        results: list = [None] * len(jobs)
        for future in cf.as_completed(futures):
            results[futures[future]] = future.result()
            if on_done:
                on_done(results[futures[future]])
        return results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_template(template, *, strings: Mapping[str, str] | None = None,
                 values: Mapping[str, Any] | None = None, tenants: Iterable | None = None,
                 workers: int = 1, runs_dir=None, templates_dir=None, kernel_name: str = KERNEL,
                 on_done: Callable[[dict], None] | None = None, kind: str = "template",
                 mlflow: str | None = None) -> list[dict]:
    """Validate the inputs, then run a template once per tenant.

    Parameters
    ----------
    template : str
        Template name (see :func:`available_templates`) or path to an ``.ipynb``.
    strings, values : mapping, optional
        Parameters as text (parsed) or typed (checked); see :func:`resolve_params`.
    tenants : iterable of str, optional
        One run per tenant (the template needs a ``tenant`` parameter); default one run.
    workers : int
        Runs executed at once, one kernel each.
    kind : str
        Recorded in run.json and the index (``"schedule"`` for runs a schedule started).
    mlflow : str, optional
        Also log each run to this MLflow tracking URI (default ``$MLFLOW_TRACKING_URI``;
        needs the ``mlflow`` extra). See :mod:`expkit.tracking`.

    Returns
    -------
    list of dict
        One :func:`summary` per run, in the order of ``tenants``.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    path = find_template(template, templates_dir)
    params = resolve_params(path, strings, values)
    tenants = list(tenants) if tenants is not None else []
    if not tenants:
        tenants = [params.pop("tenant", None)]
    elif "tenant" in params:
        raise ConfigError("give the tenant either as -p tenant or with --tenant/--tenants, not both")
    if tenants != [None] and "tenant" not in template_parameters(path):
        raise ConfigError(f"template {path.stem!r} has no 'tenant' parameter",
                          hint="add `tenant = None` to its parameters cell")
    if len(set(map(str, tenants))) != len(tenants):
        raise ConfigError("the same tenant is listed twice")
    for tenant in tenants:
        if tenant is not None:
            safe_name(tenant, "tenant")
    safe_name(path.stem, "template")
    root = check_runs_dir(runs_dir)
    sweep(root)  # what killed runs left behind: temporary files, runs still marked running
    mlflow = tracking.tracking_uri(mlflow)
    tracking.check(mlflow)
    name = path.stem
    jobs = [{"template": str(path), "params": params, "tenant": t, "runs_dir": str(root),
             "name": name, "cwd": str(Path.cwd()), "kernel_name": kernel_name, "kind": kind,
             "mlflow": mlflow} for t in tenants]
    return map_jobs(_job, jobs, workers, on_done)


#: Names that moved elsewhere (deprecated aliases for one release).
__getattr__ = _lazy.moved(__name__, {
    'template_dirs': 'expkit.templates',
    'available_templates': 'expkit.templates',
    'parameters_cell': 'expkit.templates',
    'literal_parameters': 'expkit.templates',
    'nonliteral': 'expkit.templates',
    'coerce': 'expkit.templates',
    'check_data_paths': 'expkit.templates',
    'file_hash': 'expkit.files:sha256_file',
})
