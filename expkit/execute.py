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

Tenants run where the engine puts them (:func:`map_jobs` on
:mod:`expkit.engine`: this process, local worker processes or a Dask cluster), one
kernel each; a stop flag polled beside each run stops its kernel when the command
stops (:mod:`expkit.kernel`).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import nbformat

from . import _lazy, db, engine, tracking
from .errors import ConfigError, DataError, ExpkitError, RunError, Terminated, WriteError
from .files import now, sha256_file, write_text
from .kernel import PORT_TRIES, KernelProcess, Stopper, last_line, manager_class, port_taken
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


def export_html(run: Run, error: Mapping | None = None, status: str | None = None) -> Path:
    """Write report.html (parameters, verdict and leaderboard first, then the executed
    notebook with code hidden; no external scripts). See :mod:`expkit.report`.

    When the notebook cannot be rendered, the report says so and shows ``error``;
    only writing the file can fail (:class:`~expkit.errors.WriteError`).
    """
    from .report import write

    return write(run, error, status)


def execute(template, params: Mapping | None = None, *, tenant=None, runs_dir=None,
            kind: str = "template", name: str | None = None, cwd=None,
            kernel_name: str = KERNEL, mlflow: str | None = None, stop=None) -> dict:
    """Execute a template (a path) once into a new run folder; returns :func:`summary`.

    The parameters are used as given (see :func:`resolve_params`); ``run_dir``
    (and ``tenant`` when given) are injected. Failures of the notebook end in
    a failed run, not an exception; Ctrl-C marks the run interrupted and is
    re-raised. With an MLflow tracking URI (``mlflow``), the finished run is
    also logged there (:mod:`expkit.tracking`). ``stop`` (a :class:`~expkit.engine.StopFlag`, given to runs on
    workers) is polled while the notebook runs: once set, the kernel is interrupted
    (killed if it does not stop), the run ends ``interrupted`` and its summary is
    returned; a Ctrl-C reaching the worker's own process does the same.
    """
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
    stopper = Stopper(stop, process := KernelProcess())
    try:
        run.start()
        log.info("run %s: executing %s", run.id, template.name)
        with stopper:
            _papermill(template, run, template_nb, stopper, process, parameters=injected,
                       kernel_name=kernel_name, progress_bar=False, log_output=False,
                       request_save_on_cell_execute=True, cwd=str(cwd or Path.cwd()),
                       start_timeout=120, **language)
        status = "succeeded"
    except PapermillExecutionError as exc:
        status = "interrupted" if exc.ename == "KeyboardInterrupt" else "failed"
        error = _error(exc, template_nb)
    except KeyboardInterrupt as exc:
        status = "interrupted"
        error = {"message": "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"}
        if stop is None:
            raise
    except WriteError as exc:  # saving the notebook failed (disk full, ...): name the file and why
        error = {**_running_cell(run, template_nb), "message": f"{exc.reason} while writing {exc.name}"}
    except Exception as exc:  # dead kernel, kernel start failure, ...
        error = {**_running_cell(run, template_nb), "message": f"{type(exc).__name__}: {exc}"}
        said = None if error.get("cell") else last_line(run.dir / "kernel.log")
        if said:  # the kernel died before any cell: what it said last is the reason
            error["message"] += f" (kernel.log ends: {said})"
    finally:
        if stopper.requested:  # whatever papermill saw (an interrupted cell, a dead kernel)
            status = "interrupted"
            error = {**(error or {}), "message": STOPPED}
        try:
            export_html(run, error, status)
        except WriteError as exc:
            if status == "succeeded" or error is None:
                status = "failed" if status == "succeeded" else status
                error = {"message": f"{exc.reason} while writing {exc.name}"}
            log.warning("run %s: %s", run.id, exc)
        run.finish(status, error)
        log.info("run %s: %s", run.id, status)
    tracking.log_run_safely(run, mlflow)
    return summary(run)


def _papermill(template: Path, run: Run, template_nb, stopper: Stopper, process: KernelProcess, **kw) -> None:
    """papermill's ``execute_notebook`` into the run folder, its kernel's output in
    kernel.log; started again (:data:`~expkit.kernel.PORT_TRIES` in all) when the
    kernel died before any cell because another process took one of its ports."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    log_file = run.dir / "kernel.log"
    for attempt in range(1, PORT_TRIES + 1):
        since = log_file.stat().st_size if log_file.exists() else 0
        try:
            pm.execute_notebook(str(template), _atomic(run.dir / "notebook.ipynb"),
                                kernel_manager_class=manager_class(log_file, process), **kw)
            return
        except PapermillExecutionError:
            raise
        except Exception:
            if (attempt == PORT_TRIES or stopper.requested or _running_cell(run, template_nb)
                    or not port_taken(log_file, since)):
                raise
            log.warning("run %s: the kernel died at start, another process took one of its ports;"
                        " starting it again (%d of %d)", run.id, attempt + 1, PORT_TRIES)


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
#: The error of a run stopped because the command that started it stopped.
STOPPED = "stopped: the command running it was interrupted (Ctrl-C or SIGTERM) or ended"


def _no_run(tenant, status: str, error: str) -> dict:
    """The summary of a tenant that has no run (it never started, or its worker was lost)."""
    return {"run_id": None, "tenant": tenant, "status": status, "winner": None, "metric_name": None,
            "metric": None, "error": error, "path": None, "report": None, "mlflow": None}


def _job(job: dict, stop=None) -> dict:
    """One tenant's run, where the engine puts it; ``stop`` is polled (see :func:`execute`)."""
    if stop is not None and stop.is_set():
        return _no_run(job.get("tenant"), "interrupted", "not started: the command was interrupted")
    try:
        return execute(**job, stop=stop)
    except Exception as exc:  # one tenant's trouble must not stop the others
        if isinstance(exc, ExpkitError):
            log.warning("tenant %s could not run: %s", job.get("tenant"), exc)
            return _no_run(job.get("tenant"), "failed", str(exc))
        log.exception("tenant %s could not run", job.get("tenant"))
        return _no_run(job.get("tenant"), "failed", f"{type(exc).__name__}: {exc}")


def map_jobs(fn: Callable[..., dict], jobs: Sequence[dict], workers: int | None = None,
             on_done: Callable[[dict], None] | None = None, cluster=None) -> list[dict]:
    """``fn(job, stop=flag)`` for each job on the engine ``cluster`` selects (see
    :func:`expkit.engine.resolve`; locally ``workers`` processes, in this process when
    1), at most ``workers`` at once (on a cluster: all its worker threads by default).
    Results come back in the order of ``jobs``; ``on_done`` gets each as it ends.

    On Ctrl-C or SIGTERM no further job starts, running ones are stopped through the
    flag and get :data:`expkit.engine.GRACE` seconds to end ``interrupted``, the jobs
    left get an ``interrupted`` summary, and the interruption is re-raised.
    """
    results: list = [None] * len(jobs)

    def record(index: int, outcome) -> None:
        tenant = jobs[index].get("tenant")
        if isinstance(outcome, engine.Unfinished):
            outcome = _no_run(tenant, "interrupted", "stopped: the run did not end in time" if outcome.started
                              else "not started: the command was interrupted")
        elif isinstance(outcome, BaseException):
            outcome = _no_run(tenant, "failed", f"{type(outcome).__name__}: {outcome}")
        results[index] = outcome
        if on_done:
            on_done(outcome)

    with engine.session(cluster, n_jobs=max(1, min(workers or 1, len(jobs)))) as eng:
        eng.run_each(fn, jobs, on_result=record, in_flight=workers)
    return results


def _check_workers(eng, root: Path, template: Path, params: Mapping) -> None:
    """RunError unless the engine's workers see the runs folder, the template, the data
    files and the working folder at the same paths, and index runs where this process does."""
    if eng.shares_files:
        return
    from . import db
    from .sql import redact

    where = eng.describe()
    needs = [("runs folder", root, True), ("working folder", Path.cwd(), True), ("template", template, False)]
    files = {k: Path(v).expanduser().absolute() for k, v in params.items()
             if (k == "data" or k.endswith(("_path", "_file"))) and isinstance(v, str)}
    needs += [(f"parameter {k!r}", v, False) for k, v in files.items() if v.is_file()]
    for what, path, folder in needs:
        if not (eng.sees_folder(path) if folder else eng.sees(path)):
            raise RunError(f"the workers of {where} do not see the {what} {path}",
                           hint="runs execute on the workers: put the runs folder, templates and data on a "
                                "file system every worker mounts at the same path, and start expkit from there")
    mine = db.url(root)
    theirs = set(eng.ask_workers(db.url, str(root)))
    if theirs != {mine}:
        raise RunError(f"the workers of {where} index runs in {', '.join(map(redact, sorted(theirs)))}, "
                       f"this process in {redact(mine)}",
                       hint="set EXPKIT_DB to the same database (e.g. PostgreSQL) for the workers and here")


def _reconcile(root: Path, name: str, results: Sequence, since: str) -> None:
    """Mark ``interrupted`` the runs of this batch left ``running`` by workers that are gone."""
    for r in results:
        if r.get("run_id") is not None or r.get("status") != "interrupted":
            continue
        tenant = "all" if r["tenant"] is None else r["tenant"]
        for folder in root.glob(f"*-{name}-{tenant}-*"):
            try:
                run = Run(folder)
                if run.meta.get("created", "") >= since:
                    run.reconcile()
            except RunError:
                continue


def run_template(template, *, strings: Mapping[str, str] | None = None,
                 values: Mapping[str, Any] | None = None, tenants: Iterable | None = None,
                 workers: int | None = None, runs_dir=None, templates_dir=None, kernel_name: str = KERNEL,
                 on_done: Callable[[dict], None] | None = None, kind: str = "template",
                 mlflow: str | None = None, cluster=None) -> list[dict]:
    """Validate the inputs, then run a template once per tenant.

    Parameters
    ----------
    template : str
        Template name (see :func:`available_templates`) or path to an ``.ipynb``.
    strings, values : mapping, optional
        Parameters as text (parsed) or typed (checked); see :func:`resolve_params`.
    tenants : iterable of str, optional
        One run per tenant (the template needs a ``tenant`` parameter); default one run.
    workers : int, optional
        Runs executed at once, one kernel each (default: 1 here; every worker thread
        of a Dask cluster).
    kind : str
        Recorded in run.json and the index (``"schedule"`` for runs a schedule started).
    mlflow : str, optional
        Also log each run to this MLflow tracking URI (default ``$MLFLOW_TRACKING_URI``;
        needs the ``mlflow`` extra). See :mod:`expkit.tracking`.
    cluster : str, distributed.Client or Engine, optional
        Where the runs execute (see :func:`expkit.engine.resolve`): a Dask scheduler
        address, ``"local:N"``, a client; default ``$EXPKIT_DASK_SCHEDULER``, else this
        machine. On a cluster the workers must see the runs folder, the template, the
        data files and the working folder at the same paths, and index runs in the
        same database (checked first). Ctrl-C or SIGTERM stops every run within a few
        seconds (see :func:`map_jobs`).

    Returns
    -------
    list of dict
        One :func:`summary` per run, in the order of ``tenants``.
    """
    if workers is not None and workers < 1:
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
    ended: list = []

    def done(result: dict) -> None:
        ended.append(result)
        if on_done:
            on_done(result)

    since = now()
    try:
        with engine.session(cluster, n_jobs=max(1, min(workers or 1, len(jobs)))) as eng:
            _check_workers(eng, root, path, params)
            return map_jobs(_job, jobs, workers, done, cluster=eng)
    except KeyboardInterrupt:
        _reconcile(root, name, ended, since)  # the workers are gone now
        raise


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
