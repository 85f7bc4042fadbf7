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
session after it was imported.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Session

from . import sql
from .errors import ConfigError
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
    """
    key = url(runs_dir)
    with _lock:
        eng = _engines.get(key)
        if eng is None:
            sqlite = key.startswith("sqlite")
            if sqlite:
                Path(key.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
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
                raise _unreachable(exc, key) from None
            _created[key] |= missing
    return eng


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
    with Session(engine(runs_dir), expire_on_commit=False) as s:
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
            raise _unreachable(exc, url(runs_dir)) from None
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
