"""Engine set-up per database: SQLite pragmas and write locks, PostgreSQL timeouts and
error codes; prepared hot statements."""

from __future__ import annotations

import time
from collections import namedtuple
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

# Execution option asking the SQLite "begin" hook for BEGIN IMMEDIATE: a unit of work takes
# the write lock up front, so two writers never deadlock upgrading read locks.
WRITE_LOCK = "points_write_lock"

# PostgreSQL serialization failure and deadlock: the transaction may simply be retried.
RETRYABLE_SQLSTATES = {"40001", "40P01"}

# PostgreSQL gave up waiting: statement_timeout (or a cancel), lock_timeout.
TIMEOUT_SQLSTATES = {"57014", "55P03"}

# SQLite primary result codes after which a connection is discarded, not reused: a
# connection opened while the file could not be written stays read-only for life
# (READONLY), and one that met an I/O error, lost its file (CANTOPEN) or found no
# database there (NOTADB) may keep failing after the file is whole again.
SQLITE_DISCARD_CODES = {8, 10, 14, 26}

SQLITE_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}

# After a reply did not come in time, other round trips of this process wait at most
# this long for a while: the server is likely stalled, and a request must not spend its
# whole bound once per connection it holds.
STALLED_REPLY_SECONDS = 1.0
_stalled_until = 0.0


def engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return SQLAlchemy engine options that bound every wait for the database: the
    pool's checkout timeout and, on PostgreSQL, the connect timeout and the server-side
    `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`, sent
    in the startup packet (no round trip: set once per connection, at connect time)."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    options: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return options  # one shared connection (SingletonThreadPool): no checkout wait
    if config["DATABASE_POOL_SECONDS"]:
        options["pool_timeout"] = config["DATABASE_POOL_SECONDS"]
    if url.get_backend_name() == "postgresql":
        settings = {
            "statement_timeout": config["DATABASE_STATEMENT_SECONDS"],
            "lock_timeout": config["DATABASE_LOCK_SECONDS"],
            "idle_in_transaction_session_timeout": config["DATABASE_IDLE_IN_TRANSACTION_SECONDS"],
        }
        connect_args: dict[str, Any] = {
            "options": " ".join(f"-c {k}={_ms(v)}" for k, v in settings.items())
        }
        if config["DATABASE_CONNECT_SECONDS"]:
            # libpq counts whole seconds, at least 2.
            connect_args["connect_timeout"] = max(2, round(config["DATABASE_CONNECT_SECONDS"]))
        options["connect_args"] = connect_args
    return options


def _ms(seconds: float | None) -> int:
    return int((seconds or 0) * 1000)


def configure_engine(
    engine: Engine,
    *,
    busy_seconds: float,
    synchronous: str = "FULL",
    reply_seconds: float | None = None,
) -> None:
    """Install per-connection settings on `engine` for its dialect: on SQLite the pragmas
    (`synchronous` among OFF, NORMAL, FULL, EXTRA) and BEGIN IMMEDIATE for writes, and
    the discarding of connections that met a broken file; on PostgreSQL the bound on
    each reply (`reply_seconds`, None or 0 for none)."""
    if engine.dialect.name == "postgresql":
        _bound_replies(engine, reply_seconds)
        return
    if engine.dialect.name != "sqlite":
        return
    synchronous = str(synchronous).upper()
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"SQLITE_SYNCHRONOUS must be one of {sorted(SQLITE_SYNCHRONOUS)}")

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection, _record):
        # Let SQLAlchemy emit BEGIN itself (pysqlite's own BEGIN is always DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(connection):
        if connection.get_execution_options().get(WRITE_LOCK):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    @event.listens_for(engine, "handle_error")
    def _sqlite_discard(context):
        # Marked as a disconnect, the connection (and the pool's older ones) is replaced:
        # the next use opens the file afresh, writable again once the file is.
        if sqlite_broken(context.original_exception):
            context.is_disconnect = True


def sqlite_broken(error: BaseException) -> bool:
    """Return True when an SQLite error means its connection must not be used again."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in SQLITE_DISCARD_CODES


def connection_lost(dialect, error: BaseException, driver) -> bool:
    """Return True when `error`, raised on the DBAPI connection `driver`, means the
    connection is gone or broken for good and must be discarded."""
    return bool(dialect.is_disconnect(error, driver, None)) or sqlite_broken(error)


class DatabaseStalledError(Exception):
    """Raised when PostgreSQL did not reply within the bound: the connection was closed
    (a statement sent may or may not have committed). Its class is made a subclass of
    psycopg's OperationalError once psycopg is loaded (`_bounded_connection_class`)."""


_BOUNDED: dict[str, Any] = {}


def _bounded_connection_class():
    """psycopg's Connection, waiting at most `points_reply_seconds` for any reply."""
    if "class" in _BOUNDED:
        return _BOUNDED["class"]
    import psycopg

    wait_timeout = psycopg.errors._WaitTimeout  # raised by Connection.wait on its timeout

    class Stalled(DatabaseStalledError, psycopg.OperationalError):
        """Raised when PostgreSQL did not reply within the bound; the connection is closed."""

    class BoundedConnection(psycopg.Connection):
        # Server-side timeouts end a slow statement or lock wait cleanly; this bound
        # answers when the server cannot (paused, its host or network stalled).
        points_reply_seconds: float | None = None

        def wait(self, gen, interval: float = 0.1, timeout: float | None = None):
            bound = self.points_reply_seconds
            if timeout is not None or not bound:
                return super().wait(gen, interval, timeout)
            if time.monotonic() < _stalled_until:
                bound = min(bound, STALLED_REPLY_SECONDS)
            try:
                return super().wait(gen, interval, bound)
            except wait_timeout:
                _mark_stalled(self.points_reply_seconds)
                # Mid-statement, the connection is of no further use: closed, it is seen
                # as lost and the pool replaces it.
                self.close()
                raise Stalled(f"no reply from the database in {bound:g}s") from None

    _BOUNDED["class"] = BoundedConnection
    _BOUNDED["stalled"] = Stalled
    return BoundedConnection


def _mark_stalled(seconds: float) -> None:
    global _stalled_until
    _stalled_until = time.monotonic() + seconds


def _bound_replies(engine: Engine, reply_seconds: float | None) -> None:
    connection_class = _bounded_connection_class()

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):
        connection = connection_class.connect(*cargs, **cparams)
        connection.points_reply_seconds = reply_seconds or None
        return connection


@contextmanager
def unbounded(connection) -> Iterator[None]:
    """Lift the statement and idle-in-transaction timeouts and the reply bound on a
    SQLAlchemy `connection` for long batch work an operator runs (migrations, `points
    ledger verify`); the lock timeout stays. The connection is discarded afterwards, so
    that the pool never lends it on without its bounds."""
    if connection.dialect.name != "postgresql":
        yield
        return
    driver = connection.connection.driver_connection
    began = not connection.in_transaction()
    connection.exec_driver_sql("SET statement_timeout = 0")
    connection.exec_driver_sql("SET idle_in_transaction_session_timeout = 0")
    if began:
        connection.commit()  # kept past this transaction; the caller's work begins its own
    driver.points_reply_seconds = None
    try:
        yield
    finally:
        connection.invalidate()


def check_writable(engine: Engine, seconds: float) -> None:
    """Make a real write, rolled back, on a connection of `engine`'s pool, waiting at most
    about `seconds` for a lock or a reply; raise what the database raises when it cannot
    (read-only, out of reach, stalled). A connection that fails is discarded as usual."""
    # alembic_version's one row: present in every migrated database, read by no request.
    touch = "UPDATE alembic_version SET version_num = version_num"
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            # On the driver: a statement through SQLAlchemy would begin a transaction.
            raw = connection.connection.driver_connection
            busy = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            raw.execute(f"PRAGMA busy_timeout={_ms(seconds)}")
            try:
                with connection.execution_options(**{WRITE_LOCK: True}).begin() as transaction:
                    connection.exec_driver_sql(touch)
                    transaction.rollback()
            finally:
                if not connection.invalidated:
                    raw.execute(f"PRAGMA busy_timeout={busy}")
            return
        driver = connection.connection.driver_connection
        bound = getattr(driver, "points_reply_seconds", None)
        driver.points_reply_seconds = min(bound or seconds + 1, seconds + 1)
        try:
            with connection.begin() as transaction:
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {_ms(seconds)}")
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {_ms(seconds / 2)}")
                connection.exec_driver_sql(touch)
                transaction.rollback()
        finally:
            driver.points_reply_seconds = bound


def is_retryable(error: BaseException) -> bool:
    """Return True when `error` means the transaction lost a race and may be run again."""
    if not isinstance(error, DBAPIError):
        return False
    if isinstance(error.orig, DatabaseStalledError):
        return False  # a retry would wait as long again: the client retries with its key
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
            lost = connection_lost(dialect, raw, driver)
            if lost:
                connection.invalidate(raw)
            raise DBAPIError.instance(
                None, None, raw, dialect.loaded_dbapi.Error, connection_invalidated=lost
            ) from raw
