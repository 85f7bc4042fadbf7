"""Tables in databases: read a table or a query in chunks, write scores back to a table.

A source is a SQLAlchemy URL (``postgresql://analyst@db.example/crm``,
``sqlite:///crm.db``, any installed dialect) plus a *query*: a table name
(``leads``, ``crm.leads``) or a ``SELECT``. Credentials never need to be in
the URL: ``${NAME}`` in a URL is replaced by the environment variable ``NAME``
when connecting (``postgresql://analyst:${CRM_PASSWORD}@db/crm``), and drivers
read their own variables (PostgreSQL: ``PGPASSWORD``, ``PGUSER``, ``~/.pgpass``).
:func:`redact` hides a literal password in anything recorded, and
:func:`check_no_password` refuses one where it would be saved (run parameters,
schedules).

``postgresql://`` without a driver uses psycopg (version 3), installed by the
``postgres`` extra (``pip install 'expkit[postgres]'``).

:func:`read_chunks` streams rows with a server-side cursor, so a large query
never sits in memory twice; :class:`TableWriter` appends DataFrames to a table
in one transaction (PostgreSQL: ``COPY``), so a failed batch leaves the table
as it was.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Iterator, Sequence

import pandas as pd

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["is_url", "engine_url", "redact", "check_no_password", "read", "read_chunks", "columns",
           "TableWriter"]

#: Rows fetched per round trip when streaming a query.
CHUNKSIZE = 100_000
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\+[A-Za-z0-9_]+)?://")
#: URL schemes that are not databases (files elsewhere).
_NOT_DATABASES = {"http", "https", "ftp", "s3", "gs", "gcs", "az", "abfs", "file", "hdfs"}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
#: Drivers tried, in order, for a URL naming no driver (the first importable wins).
_DEFAULT_DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "postgres": ("psycopg", "psycopg2")}
_INSTALL = {"postgresql": "pip install 'expkit[postgres]' (psycopg)"}


def is_url(value) -> bool:
    """Whether ``value`` is written as a database URL (``scheme://...``, not a web or
    cloud-storage address); whether its dialect is installed is checked on connecting."""
    if not isinstance(value, str):
        return False
    match = _SCHEME.match(value)
    return bool(match) and match[0].split("+")[0].rstrip(":/").lower() not in _NOT_DATABASES


def _parse(value: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(f"{redact(value)!r} is not a database URL: {exc}",
                          hint="e.g. postgresql://user@host:5432/dbname or sqlite:///file.db") from None


def engine_url(value: str):
    """The SQLAlchemy URL to connect with: ``${NAME}`` replaced from the environment, and
    psycopg as the driver of ``postgresql://`` when none is named.

    Raises ConfigError when a named variable is not set.
    """
    def expand(match):
        name = match[1]
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} (named in the database URL) is not set",
                              hint=f"export {name}=... before running, or put the password in "
                                   "the driver's own variable (PGPASSWORD for PostgreSQL)")
        return _escape(os.environ[name])

    url = _parse(_ENV.sub(expand, str(value)))
    if url.drivername in _DEFAULT_DRIVERS:
        import importlib.util

        for driver in _DEFAULT_DRIVERS[url.drivername]:
            if importlib.util.find_spec(driver) is not None:
                return url.set(drivername=f"postgresql+{driver}")
        raise ConfigError(f"no PostgreSQL driver is installed for {redact(value)!r}",
                          hint=_INSTALL["postgresql"])
    return url


#: Seconds to wait for a PostgreSQL server before giving up (psycopg's default is 130 s).
CONNECT_TIMEOUT = 10


def connect_args(url) -> dict:
    """Driver arguments for ``url``: a connect timeout for PostgreSQL unless the URL sets one."""
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        return {"connect_timeout": CONNECT_TIMEOUT}
    return {}


def _escape(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def redact(value):
    """``value`` with the password of a database URL replaced by ``***`` (other values as they are)."""
    if not isinstance(value, str) or not _SCHEME.match(value):
        return value
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return value
    if not url.password or _ENV.fullmatch(str(url.password)):
        return value
    return url.render_as_string(hide_password=True)


def literal_password(value) -> bool:
    """Whether ``value`` is a database URL holding a password (not a ``${NAME}`` reference)."""
    return redact(value) != value


def check_no_password(name: str, value) -> None:
    """ConfigError when ``value`` is a database URL holding a literal password.

    Used where a value is saved (run parameters end up in ``run.json`` and the executed
    notebook; schedules in ``schedules.yaml``).
    """
    if literal_password(value):
        raise ConfigError(f"{name}: the database URL {redact(value)!r} holds a password, which "
                          "would be saved with the run",
                          hint="drop it from the URL and export PGPASSWORD (PostgreSQL), or write "
                               "${NAME} in its place and export NAME")


def _engine(source):
    from sqlalchemy import create_engine
    from sqlalchemy.exc import NoSuchModuleError

    url = engine_url(source)
    try:
        engine = create_engine(url, connect_args=connect_args(url))
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"cannot open {redact(source)!r}: {exc}",
                          hint=_INSTALL.get(url.get_backend_name(), "install the database driver")) from None
    if engine.dialect.name == "sqlite":
        _sqlite_transactions(engine)
    return engine


def _sqlite_transactions(engine) -> None:
    """SQLAlchemy's recipe for SQLite transactions that hold DDL too (pysqlite commits a
    CREATE TABLE at once by itself), so a table written by TableWriter appears whole or not at all."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN")


def _selectable(query: str):
    """A SELECT for ``query``: a table name (optionally ``schema.table``) or SQL text."""
    import sqlalchemy as sa

    text = str(query).strip().rstrip(";")
    if not text:
        raise ConfigError("the query is empty", hint="give a table name or a SELECT statement")
    if _IDENT.match(text):
        schema, _, name = text.rpartition(".")
        return sa.select(sa.text("*")).select_from(sa.table(name, schema=schema or None))
    return sa.text(text)


def _subquery(selectable):
    """``selectable`` (a SELECT or SQL text) as a named subquery to select from."""
    import sqlalchemy as sa

    if isinstance(selectable, sa.TextClause):
        return selectable.columns().subquery("q")
    return selectable.subquery("q")


def _cause(exc: BaseException):
    """The driver's error under pandas' and SQLAlchemy's wrappers, and its first line."""
    from sqlalchemy.exc import DBAPIError

    seen = exc
    while seen is not None and not isinstance(seen, DBAPIError):
        seen = seen.__cause__ or seen.__context__
    inner = seen.orig if seen is not None and getattr(seen, "orig", None) is not None else exc
    return seen, (str(inner).strip().splitlines() or [type(inner).__name__])[0]


def _fail(source, query, exc, engine=None) -> DataError:
    """A DataError naming the source and what went wrong (tables listed when one is missing)."""
    from sqlalchemy.exc import OperationalError

    db_error, message = _cause(exc)
    hint = "check the query and that the table exists"
    if isinstance(db_error, OperationalError) and any(
            w in message.lower() for w in ("connect", "unable to open", "password", "authentication", "role")):
        hint = ("check the host, port, database and user; put the password in PGPASSWORD "
                "or ${NAME} in the URL")
    elif engine is not None and db_error is not None:
        try:
            from sqlalchemy import inspect

            tables = inspect(engine).get_table_names()
            hint = f"tables: {', '.join(tables[:20])}" if tables else "the database has no tables"
        except Exception:  # noqa: BLE001 - the hint is a courtesy; the error stands
            pass
    return DataError(f"cannot read {query!r} from {redact(str(source))}: {message}", hint=hint)


def read_chunks(source: str, query: str, chunksize: int = CHUNKSIZE,
                columns: Sequence[str] | None = None, dtype=None) -> Iterator[pd.DataFrame]:
    """The rows of ``query`` (a table name or a SELECT) at ``source``, ``chunksize`` at a time.

    Rows are streamed with a server-side cursor where the driver has one (PostgreSQL),
    so memory holds one chunk. ``columns`` keeps (and orders) those columns;
    ``dtype`` is passed to pandas. Errors are DataError naming the source.
    """
    if isinstance(chunksize, bool) or int(chunksize) < 1:
        raise ConfigError(f"chunksize must be a positive number of rows, got {chunksize!r}")
    selectable = _selectable(query)
    if columns is not None:
        import sqlalchemy as sa

        selectable = sa.select(*[sa.column(c) for c in columns]).select_from(_subquery(selectable))
    engine = _engine(source)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(stream_results=True, max_row_buffer=int(chunksize))
            try:
                for chunk in pd.read_sql(selectable, conn, chunksize=int(chunksize), dtype=dtype):
                    yield chunk
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - driver errors become one clear DataError
                raise _fail(source, query, exc, engine) from exc
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - connection failures
        raise _fail(source, query, exc) from exc
    finally:
        engine.dispose()


def read(source: str, query: str, chunksize: int = CHUNKSIZE, dtype=None) -> pd.DataFrame:
    """All rows of ``query`` at ``source`` as one DataFrame (streamed in chunks).

    Raises DataError when the query returns no rows.
    """
    parts = list(read_chunks(source, query, chunksize, dtype=dtype))
    if not parts or not sum(len(p) for p in parts):
        raise DataError(f"{query!r} at {redact(source)} returned no rows",
                        hint="check the query's filter and the table's content")
    df = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    log.info("loaded %s from %s: %d rows x %d columns", query, redact(source), len(df), df.shape[1])
    return df


def columns(source: str, query: str) -> list[str]:
    """Column names of ``query`` at ``source``, without reading its rows."""
    import sqlalchemy as sa

    selectable = _selectable(query)
    probe = sa.select(sa.text("*")).select_from(_subquery(selectable)).limit(0)
    engine = _engine(source)
    try:
        with engine.connect() as conn:
            return list(conn.execute(probe).keys())
    except Exception as exc:  # noqa: BLE001
        raise _fail(source, query, exc, engine) from exc
    finally:
        engine.dispose()


class TableWriter:
    """Append DataFrames to a database table in one transaction.

    Nothing is visible to other connections until :meth:`commit`; :meth:`abort`
    rolls everything back. ``if_exists``: ``"append"`` (create the table if it is
    missing), ``"replace"`` (drop and recreate it, in the same transaction) or
    ``"fail"``. On PostgreSQL rows go in with ``COPY``.
    """

    def __init__(self, target: str, table: str, if_exists: str = "append"):
        if if_exists not in ("append", "replace", "fail"):
            raise ConfigError(f"if_exists={if_exists!r} is not append, replace or fail")
        if not _IDENT.match(str(table or "")):
            raise ConfigError(f"table name {table!r} is not a plain name",
                              hint="use letters, digits and '_' (optionally schema.table)")
        self.target, self.if_exists = target, if_exists
        self.schema, _, self.table = str(table).rpartition(".")
        self.schema = self.schema or None
        self.rows = 0
        self.kind = "table"
        self._engine = _engine(target)
        self._conn = None
        self._tx = None
        self._first = True

    def _where(self) -> str:
        return f"{self.schema + '.' if self.schema else ''}{self.table} at {redact(self.target)}"

    def __str__(self) -> str:  # what the score log records as the output
        return f"{redact(self.target)} table {self.schema + '.' if self.schema else ''}{self.table}"

    def write(self, df) -> None:
        """Append a DataFrame (or an arrow table)."""
        if not isinstance(df, pd.DataFrame):
            df = df.to_pandas()
        try:
            if self._conn is None:
                self._conn = self._engine.connect()
                self._tx = self._conn.begin()
            mode = self.if_exists if self._first else "append"
            # COPY on PostgreSQL (5x executemany, 40x multi-row INSERT); executemany elsewhere
            df.to_sql(self.table, self._conn, schema=self.schema, if_exists=mode, index=False,
                      method=_pg_copy if self._engine.dialect.name == "postgresql" else None)
        except ValueError as exc:  # pandas: the table exists and if_exists="fail"
            raise DataError(f"cannot write to {self._where()}: {exc}",
                            hint="pass if_exists='append' or 'replace'") from exc
        except Exception as exc:  # noqa: BLE001 - driver errors become one clear DataError
            raise DataError(f"cannot write to {self._where()}: {_cause(exc)[1]}",
                            hint="check the table's columns and your permissions; nothing was kept") from exc
        self._first = False
        self.rows += len(df)

    def commit(self) -> None:
        """Make every row written so far visible at once."""
        try:
            if self._tx is not None:
                self._tx.commit()
        finally:
            self._close()
        log.info("wrote %d rows to %s", self.rows, self._where())

    def abort(self) -> None:
        """Drop every row written so far."""
        try:
            if self._tx is not None and self._tx.is_active:
                self._tx.rollback()
        finally:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._engine.dispose()


def _pg_copy(table, conn, keys, data_iter) -> int:
    """pandas ``to_sql`` insertion method: PostgreSQL ``COPY ... FROM STDIN`` (psycopg 3)."""
    from psycopg import sql as pgsql

    name = pgsql.Identifier(*([table.schema] if table.schema else []), table.name)
    cols = pgsql.SQL(", ").join(pgsql.Identifier(k) for k in keys)
    n = 0
    with conn.connection.driver_connection.cursor() as cur:
        with cur.copy(pgsql.SQL("COPY {} ({}) FROM STDIN").format(name, cols)) as copy:
            for row in data_iter:
                copy.write_row(row)
                n += 1
    return n
