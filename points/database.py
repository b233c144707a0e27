"""Engine set-up per database: SQLite pragmas and write locks, PostgreSQL error codes."""

from __future__ import annotations

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
