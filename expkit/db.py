"""The index database: one SQLAlchemy ``Base``, an engine per URL, and sessions.

By default the index is a SQLite file ``index.db`` in the runs folder, opened in
WAL mode with a busy timeout so that several ``expkit run`` processes (and their
kernels) can write at once. Every transaction starts with ``BEGIN IMMEDIATE``, so a
writer takes the lock up front instead of failing half-way; taking the lock is
retried on "database is locked". Any other SQLAlchemy URL can be used through
``$EXPKIT_DB`` (e.g. ``postgresql://expkit@db.example/expkit`` for a team; the
password from ``PGPASSWORD`` or ``${NAME}`` in the URL, see :mod:`expkit.sql`).

SQLite's ``BEGIN IMMEDIATE`` makes every transaction run alone. PostgreSQL runs
them side by side (READ COMMITTED), so a transaction that reads and then writes
on what it read (a promotion checks the production model, then replaces it) names
a ``lock``: :func:`session` then takes a transaction-level advisory lock of that
name first, and transactions with the same lock run one at a time, as on SQLite;
``shared=True`` takes it in shared mode (many at once, but never beside the
exclusive holder). Tables are created under a lock too, since two processes
creating them at once collide in PostgreSQL's catalog.

Tables are declared on :class:`Base` by the modules that own them (runs, registry,
score log); this module imports none of them. :func:`session` creates, on first
use of an engine, every table declared so far, and any declared later on the next
session after it was imported; a column declared since a table was created is added
to it (nullable columns only, so an index made by an older expkit keeps working).

Everything the index holds is a copy of files under the runs folder, so a damaged
index is never fatal: every failure to use it (``EXPKIT_DB`` not a URL, a driver that
is not installed, a corrupt file) is an
:class:`~expkit.errors.IndexDatabaseError` that names the database and what to do (a
server that cannot be reached: a ConfigError naming the URL and what to check),
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

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session

from . import sql
from .errors import ConfigError, ExpkitError, IndexDatabaseError
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
            make_url(key)  # not a URL: said here, naming EXPKIT_DB
            if sqlite and _sqlite_path(key):
                _sqlite_path(key).parent.mkdir(parents=True, exist_ok=True)
            if sqlite:
                eng = create_engine(key, connect_args={"timeout": BUSY_TIMEOUT})
                _sqlite_setup(eng)
            else:
                target = sql.engine_url(key)
                eng = create_engine(target, pool_pre_ping=True, connect_args=sql.connect_args(target))
            _engines[key] = eng
            _created[key] = set()
        missing = set(Base.metadata.tables) - _created[key]
        if missing:
            try:
                _retry(lambda: _create_tables(eng))
            except OperationalError as exc:
                raise (translate(exc, key) or _unreachable(exc, key)) from None
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


def translate(exc: BaseException, key: str) -> ExpkitError | None:
    """An :class:`IndexDatabaseError` saying in words what ``exc`` means for the index at
    ``key`` (a server that cannot be reached: :func:`_unreachable`'s ConfigError), or None
    when ``exc`` is not about the database being usable (a bug)."""
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
        if not key.startswith("sqlite"):
            return _unreachable(exc, key)
        return IndexDatabaseError(f"cannot use {what}: {text}", hint="check the runs folder's disk and permissions")
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


def _unreachable(exc: OperationalError, key: str) -> ConfigError:
    """The error for an index database that cannot be opened (wrong host, password, ...)."""
    message = (str(exc.orig or exc).strip().splitlines() or ["unknown error"])[0]
    where = "$EXPKIT_DB" if os.environ.get("EXPKIT_DB") else "the runs folder"
    return ConfigError(f"cannot open the index database {sql.redact(key)} ({where}): {message}",
                       hint="check the URL's host, port, database and user; give the password in "
                            "PGPASSWORD or ~/.pgpass, or as ${NAME} in the URL")


def _create_tables(eng: Engine) -> None:
    with eng.begin() as conn:
        _advisory_lock(conn, "expkit:create-tables")
        Base.metadata.create_all(conn)


def _advisory_lock(conn, name: str, shared: bool = False) -> None:
    """On PostgreSQL, wait for the transaction-level advisory lock ``name`` (nothing elsewhere)."""
    if conn.dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        conn.execute(text(f"SELECT {fn}(hashtextextended(:name, 0))"), {"name": name})


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
def session(runs_dir=None, lock: str | None = None, shared: bool = False) -> Iterator[Session]:
    """A transaction on the index: commits on success, rolls back on error.

    Taking the write lock is retried when the database is locked, so the body
    runs once, holding the lock, and concurrent writers never lose rows.

    Parameters
    ----------
    lock : str, optional
        On PostgreSQL, the advisory lock held for the whole transaction (see the
        module docstring); SQLite holds its one write lock anyway.
    shared : bool
        Take ``lock`` in shared mode.
    """
    key = url(runs_dir)
    with Session(engine(runs_dir), expire_on_commit=False) as s, _translated(key):
        def begin():  # BEGIN (IMMEDIATE on SQLite) happens here
            try:
                conn = s.connection()
                if lock:
                    _advisory_lock(conn, lock, shared)
            except OperationalError:
                s.rollback()
                raise

        try:
            _retry(begin)
        except OperationalError as exc:
            if _locked(exc):
                raise
            raise (translate(exc, key) or _unreachable(exc, key)) from None
        try:
            yield s
            s.commit()
        except BaseException:
            with contextlib.suppress(sa_exc.SQLAlchemyError):  # a dead connection cannot roll back
                s.rollback()
            raise
