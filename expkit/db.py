"""The index database: one SQLAlchemy ``Base``, an engine per URL, and sessions.

By default the index is a SQLite file ``index.db`` in the runs folder, opened in
WAL mode with a busy timeout so that several ``expkit run`` processes (and their
kernels) can write at once. Every transaction starts with ``BEGIN IMMEDIATE``, so a
writer takes the lock up front instead of failing half-way; taking the lock is
retried on "database is locked". Any other SQLAlchemy URL can be used through
``$EXPKIT_DB`` (e.g. PostgreSQL for a team).

Tables are declared on :class:`Base` by the modules that own them (runs, registry,
score log); this module imports none of them. :func:`session` creates, on first
use of an engine, every table declared so far, and any declared later on the next
session after it was imported; a column declared since a table was created is added
to it (nullable columns only, so an index made by an older expkit keeps working).

Everything the index holds is a copy of files under the runs folder, so a damaged
index is never fatal: every failure to use it (``EXPKIT_DB`` not a URL, a driver that
is not installed, a server that cannot be reached, a corrupt file) is an
:class:`~expkit.errors.IndexDatabaseError` that names the database and what to do,
and :func:`move_aside` takes a corrupt SQLite file out of the way before a rebuild.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, inspect
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session

from .errors import IndexDatabaseError
from .paths import db_url

log = logging.getLogger(__name__)

#: Seconds SQLite waits for a lock before giving up on one attempt.
BUSY_TIMEOUT = 30
#: Attempts at taking the write lock before an error is raised.
RETRIES = 8

_engines: dict[str, Engine] = {}
_created: dict[str, set[str]] = {}  # url -> tables created on that engine
_lock = threading.Lock()


class Base(DeclarativeBase):
    """Declarative base of every expkit table."""


def url(runs_dir=None) -> str:
    """The database URL (see :func:`expkit.paths.db_url`)."""
    return db_url(runs_dir)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it)
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT * 1000}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def engine(runs_dir=None) -> Engine:
    """The (cached) engine of the index, with every table declared so far created.

    Parameters
    ----------
    runs_dir : str or Path, optional
        Runs folder holding ``index.db``; see :func:`expkit.paths.runs_dir`.
        Ignored when ``$EXPKIT_DB`` is set.

    Raises
    ------
    IndexDatabaseError
        The URL, its driver, the server or the file cannot be used (see the module).
    """
    key = url(runs_dir)
    with _lock, _translated(key, drivers=True):
        eng = _engines.get(key)
        if eng is None:
            sqlite = key.startswith("sqlite")
            if sqlite and _sqlite_path(key):
                _sqlite_path(key).parent.mkdir(parents=True, exist_ok=True)
            eng = create_engine(key, connect_args={"timeout": BUSY_TIMEOUT} if sqlite else {})
            if sqlite:
                _sqlite_setup(eng)
            _engines[key] = eng
            _created[key] = set()
        missing = set(Base.metadata.tables) - _created[key]
        if missing:
            _retry(lambda: Base.metadata.create_all(eng))
            _retry(lambda: _add_columns(eng, missing))
            _created[key] |= missing
    return eng


def _add_columns(eng: Engine, tables) -> None:
    """Add the nullable columns declared since ``tables`` were created (ALTER TABLE)."""
    inspector = inspect(eng)
    for name in sorted(tables):
        table = Base.metadata.tables[name]
        have = {c["name"] for c in inspector.get_columns(name)}
        for column in table.columns:
            if column.name in have or not column.nullable or column.primary_key:
                continue
            kind = column.type.compile(dialect=eng.dialect)
            with eng.begin() as conn:
                conn.exec_driver_sql(f'ALTER TABLE "{name}" ADD COLUMN "{column.name}" {kind}')
            log.info("index: added column %s.%s", name, column.name)


# -- what went wrong, in words -------------------------------------------------------------
_DRIVERS = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "MySQLdb": "mysqlclient",
            "pymysql": "PyMySQL", "pyodbc": "pyodbc", "oracledb": "oracledb", "cx_Oracle": "oracledb",
            "asyncpg": "asyncpg", "pg8000": "pg8000"}
_CORRUPT = ("file is not a database", "malformed", "disk image", "not a database")


def _sqlite_path(key: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database)."""
    database = make_url(key).database
    return Path(database).expanduser().absolute() if database and database != ":memory:" else None


def _shown(key: str) -> str:
    """How the database is named in messages (the file, or the URL without its password)."""
    try:
        parsed = make_url(key)
    except sa_exc.ArgumentError:
        return repr(key)
    if parsed.get_backend_name() == "sqlite" and _sqlite_path(key):
        return str(_sqlite_path(key))
    return parsed.render_as_string(hide_password=True)


def _what(key: str) -> str:
    return f"EXPKIT_DB {_shown(key)}" if os.environ.get("EXPKIT_DB") else f"the run index {_shown(key)}"


def translate(exc: BaseException, key: str) -> IndexDatabaseError | None:
    """An :class:`IndexDatabaseError` saying in words what ``exc`` means for the index at
    ``key``, or None when ``exc`` is not about the database being usable (a bug)."""
    what = _what(key)
    env = bool(os.environ.get("EXPKIT_DB"))
    unset = " or unset EXPKIT_DB to use runs/index.db" if env else ""
    if isinstance(exc, sa_exc.NoSuchModuleError):
        kind = str(exc).rsplit(":", 1)[-1]
        return IndexDatabaseError(f"{what} names an unknown kind of database {kind!r}",
                                  hint=f"use a SQLAlchemy URL such as sqlite:////path/index.db or "
                                       f"postgresql://user@host/db{unset}")
    if isinstance(exc, sa_exc.ArgumentError):
        return IndexDatabaseError(f"{what} is not a database URL",
                                  hint=f"use a SQLAlchemy URL such as sqlite:////path/index.db or "
                                       f"postgresql://user@host/db{unset}")
    if isinstance(exc, ImportError):
        module = exc.name or str(exc)
        package = _DRIVERS.get(module.split(".")[0], module)
        return IndexDatabaseError(f"{what} needs the database driver {module!r}, which is not installed",
                                  hint=f"pip install '{package}'{unset}")
    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc).strip() else ""
    low = text.lower()
    if any(m in low for m in _CORRUPT):
        if key.startswith("sqlite") and not env:
            return IndexDatabaseError(f"{what} is corrupt ({text})",
                                      hint="run `expkit runs rebuild-index` to rebuild it from the files "
                                           "under the runs folder; the damaged file is kept beside it")
        return IndexDatabaseError(f"{what} is not a usable SQLite database ({text})",
                                  hint="point EXPKIT_DB at an index database, run `expkit runs rebuild-index` "
                                       "if it is a damaged one, or unset EXPKIT_DB")
    if "database or disk is full" in low or "no space" in low:
        return IndexDatabaseError(f"no space left on device while writing {what}",
                                  hint="free some space on that disk")
    if "readonly" in low or "read-only" in low:
        return IndexDatabaseError(f"{what} is read-only ({text})",
                                  hint="choose a runs folder you can write to (--runs-dir or EXPKIT_RUNS)")
    if "unable to open" in low:
        return IndexDatabaseError(f"cannot open {what} ({text})",
                                  hint="check that its folder exists and can be written")
    if "locked" in low:
        return None  # retried by _retry; still locked after that is reported as it is
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError)):
        return IndexDatabaseError(f"cannot use {what}: {text}",
                                  hint="check EXPKIT_DB and that the database server runs and accepts you"
                                  if env else "check the runs folder's disk and permissions")
    return None


@contextlib.contextmanager
def _translated(key: str, drivers: bool = False):
    """Errors of the database in words; ImportError too with ``drivers`` (creating an engine
    imports the driver; elsewhere an ImportError is not about the database)."""
    try:
        yield
    except IndexDatabaseError:
        raise
    except (sa_exc.SQLAlchemyError, ImportError) as exc:
        if isinstance(exc, ImportError) and not drivers:
            raise
        better = translate(exc, key)
        if better is None:
            raise
        raise better from exc


def move_aside(runs_dir=None) -> Path | None:
    """Move a corrupt SQLite index (and its -wal/-shm files) aside as
    ``<name>.corrupt-<UTC time>``; returns the new path, or None when the index is not a
    damaged SQLite file (absent, healthy, or another kind of database).

    A file that is not SQLite at all (e.g. EXPKIT_DB pointing at a CSV) is left where it
    is and reported (IndexDatabaseError): it may be someone's data.
    """
    key = url(runs_dir)
    if not key.startswith("sqlite"):
        return None
    path = _sqlite_path(key)
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        with contextlib.closing(sqlite3.connect(path)) as con:
            rows = con.execute("PRAGMA quick_check").fetchall()
        if rows == [("ok",)]:
            return None
    except sqlite3.DatabaseError:
        pass
    with open(path, "rb") as fh:
        sqlite_file = fh.read(16) == b"SQLite format 3\x00"
    if not sqlite_file and os.environ.get("EXPKIT_DB"):
        raise IndexDatabaseError(f"{_what(key)} is not a SQLite database; it is left as it is",
                                 hint="point EXPKIT_DB at an index database, or unset it")
    dispose()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, target.with_name(target.name + suffix))
    log.info("moved the corrupt index %s aside to %s", path, target)
    return target


def dispose() -> None:
    """Close every cached engine's connections (e.g. before a fork, or in tests)."""
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()
        _created.clear()


def _locked(exc: Exception) -> bool:
    return isinstance(exc, OperationalError) and "locked" in str(exc).lower()


def _retry(fn):
    for attempt in range(RETRIES):
        try:
            return fn()
        except OperationalError as exc:
            if not _locked(exc) or attempt == RETRIES - 1:
                raise
            log.debug("index locked, retrying (%d)", attempt + 1)
            time.sleep(0.05 * 2 ** attempt * (1 + random.random()))


@contextlib.contextmanager
def session(runs_dir=None) -> Iterator[Session]:
    """A transaction on the index: commits on success, rolls back on error.

    Taking the write lock is retried when the database is locked, so the body
    runs once, holding the lock, and concurrent writers never lose rows.
    """
    key = url(runs_dir)
    with Session(engine(runs_dir), expire_on_commit=False) as s, _translated(key):
        def begin():  # BEGIN (IMMEDIATE on SQLite) happens here
            try:
                s.connection()
            except OperationalError:
                s.rollback()
                raise

        _retry(begin)
        try:
            yield s
            s.commit()
        except BaseException:
            with contextlib.suppress(sa_exc.SQLAlchemyError):  # a dead connection cannot roll back
                s.rollback()
            raise
