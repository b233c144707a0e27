"""Engine set-up per database: SQLite pragmas and write locks, PostgreSQL error codes;
prepared hot statements."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

# Execution option asking the SQLite "begin" hook for BEGIN IMMEDIATE: a unit of work takes
# the write lock up front, so two writers never deadlock upgrading read locks.
WRITE_LOCK = "points_write_lock"

# PostgreSQL serialization failure and deadlock: the transaction may simply be retried.
RETRYABLE_SQLSTATES = {"40001", "40P01"}


def configure_engine(engine: Engine, *, busy_seconds: float) -> None:
    """Install per-connection settings on `engine` for its dialect."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection, _record):
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own BEGIN is always DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection):
        if connection.get_execution_options().get(WRITE_LOCK):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def is_retryable(error: BaseException) -> bool:
    """Return True when `error` means the transaction lost a race and may be run again."""
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True  # the pool dropped a dead connection; a new one is taken on retry
    orig = error.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    message = str(orig).lower()
    return "database is locked" in message or "database is busy" in message


class Prepared:
    """A hot, fixed Core statement compiled once per dialect and run straight on the
    DBAPI connection, with SQLAlchemy's own bind and result processing (UTC datetimes,
    JSON) but not its per-call execution context and result object, which cost a small
    statement more than the database does (SQLite, one row by index: 66 us through
    `Connection.execute`, 27 us here). Every bound parameter is given by the caller or
    bound in the statement: no column default is applied. Rows are named tuples. On a
    SQLAlchemy Connection, cursor-execute listeners (logging, tracing, tests) still hear
    of each statement, though they cannot rewrite it.
    """

    def __init__(self, statement):
        self.statement = statement
        self._by_dialect: dict[str, tuple] = {}

    def _compiled(self, dialect) -> tuple:
        found = self._by_dialect.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            binds = {}
            for name, bind in compiled.binds.items():
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    binds[name] = process
            columns = list(self.statement.exported_columns)
            results = [
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            ]
            row = namedtuple("Row", [c.key for c in columns], rename=True)
            found = (
                str(compiled),
                dict(compiled.params),
                compiled.positiontup if compiled.positional else None,
                binds,
                results if any(results) else None,
                row,
            )
            self._by_dialect[dialect.name] = found
        return found

    def driver_rows(self, driver, dialect, parameters: dict[str, Any], *, listened=None) -> list:
        """Run on a DBAPI connection; the driver's errors pass through unwrapped.
        `listened`: the SQLAlchemy Connection whose cursor-execute listeners hear of it."""
        sql, defaults, order, binds, results, row = self._compiled(dialect)
        values = {**defaults, **parameters}
        for key, process in binds.items():
            values[key] = process(values[key])
        arguments = values if order is None else [values[k] for k in order]
        cursor = driver.cursor()
        dispatch = listened.dispatch if listened is not None else None
        if dispatch and dispatch.before_cursor_execute:
            for listener in dispatch.before_cursor_execute:
                listener(listened, cursor, sql, arguments, None, False)
        cursor.execute(sql, arguments)
        if dispatch and dispatch.after_cursor_execute:
            for listener in dispatch.after_cursor_execute:
                listener(listened, cursor, sql, arguments, None, False)
        found = cursor.fetchall() if cursor.description else []
        cursor.close()
        if results is None:
            return [row(*r) for r in found]
        return [row(*(p(v) if p else v for p, v in zip(results, r, strict=True))) for r in found]

    def rows(self, connection, parameters: dict[str, Any]) -> list:
        """Run on a SQLAlchemy Connection (a unit of work's); errors are raised as
        SQLAlchemy raises them, a lost connection invalidated."""
        dialect = connection.dialect
        driver = connection.connection.driver_connection
        try:
            return self.driver_rows(driver, dialect, parameters, listened=connection)
        except dialect.loaded_dbapi.Error as raw:
            lost = bool(dialect.is_disconnect(raw, driver, None))
            if lost:
                connection.invalidate(raw)
            raise DBAPIError.instance(
                None, None, raw, dialect.loaded_dbapi.Error, connection_invalidated=lost
            ) from raw
