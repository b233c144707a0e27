"""Units of work, validation, idempotency keys and the values the ledger returns."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from flask import current_app, g
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from points.database import WRITE_LOCK, is_retryable
from points.errors import (
    IdempotencyConflictError,
    InvalidAmountError,
    InvalidInputError,
)
from points.extensions import db
from points.models import (
    MAX_POINTS,
    IdempotencyKey,
    utcnow,
)

T = TypeVar("T")

_IN_UNIT = "points_unit_of_work"
_ALONE: ContextVar[Any] = ContextVar("points_alone_connection", default=None)
_KEPT = "points_autocommit_connection"  # in flask.g: the app context's, between uses
_AFTER_COMMIT = "points_after_commit"
GENESIS_HASH = "0" * 64
MAX_SERVICE_MINUTES = 24 * 60


class LedgerInvariantError(Exception):
    """Raised when the ledger's own bookkeeping disagrees with itself: a bug, never input."""


@dataclass(frozen=True)
class PostedEntry:
    """An entry as written: its id, kind, district and (account, amount) postings."""

    id: int
    kind: str
    district_id: int
    postings: tuple[tuple[int, int], ...]
    related_entry_id: int | None = None
    replayed: bool = False


@dataclass(frozen=True)
class HoldState:
    """A hold as it stands after the call: status pending, posted, voided or timed_out."""

    id: int
    account_id: int
    amount: int
    status: str
    expires_at: datetime
    entry_id: int | None = None
    replayed: bool = False


class Balance(NamedTuple):
    """A volunteer's points: balance, held by pending holds, and available to spend."""

    volunteer_id: int
    account_id: int
    balance: int
    held: int
    available: int


# -- units of work -----------------------------------------------------------------------


def atomic(work: Callable[[], T]) -> T:
    """Run `work` in one write transaction, retried on lost races; return its result.

    Joins the unit already open in this session, if any. Raises whatever `work` raises,
    after rolling everything back.
    """
    session = db.session
    if session.info.get(_IN_UNIT):
        return work()
    _refuse_unflushed(session)
    retries = current_app.config["WRITE_RETRIES"]
    attempt = 0
    while True:
        # End any read transaction, so the write lock is taken when this one begins.
        session.rollback()
        session.connection(execution_options={WRITE_LOCK: True})
        session.info[_IN_UNIT] = True
        session.info[_AFTER_COMMIT] = []
        committing = False
        try:
            result = work()
            committing = True
            session.commit()
        except Exception as error:
            session.rollback()
            # A connection lost during COMMIT may have committed: running the unit again
            # could write it twice. The caller's idempotency key settles it, not a retry.
            in_doubt = committing and getattr(error, "connection_invalidated", False)
            if attempt < retries and is_retryable(error) and not in_doubt:
                attempt += 1
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            raise
        finally:
            session.info.pop(_IN_UNIT, None)
            callbacks = session.info.pop(_AFTER_COMMIT, [])
        for callback in callbacks:
            callback()
        return result


class _RolledBack(Exception):
    """Carries a rolled-back unit's result out of `atomic`, which rolls back on it."""

    def __init__(self, result: Any):
        super().__init__("rolled back")
        self.result = result


def rolled_back(work: Callable[[], T]) -> T:
    """Run `work` as `atomic` does (one write transaction, retried on lost races), then
    roll it back; return its result.

    A dry run: it evaluates and writes exactly as the real run would, so that it reports
    the same, and leaves nothing behind. `after_commit` callbacks are dropped. Raises
    whatever `work` raises. Refused inside an open unit of work, which it would join and
    could not roll back alone.
    """
    if in_unit_of_work():
        raise RuntimeError("a rolled-back unit cannot join the unit of work open now")

    def unit() -> T:
        raise _RolledBack(work())

    try:
        return atomic(unit)
    except _RolledBack as done:
        return done.result


def alone(statement: Callable[[], T]) -> T:
    """Run `statement` (one all-or-nothing call under an idempotency key) as a
    transaction of its own, retried on lost races and lost connections; return its
    result.

    For the one-call writers of `fused`, outside any caller's unit of work. The call goes
    to a pooled psycopg connection in autocommit mode, past the ORM session: no BEGIN and
    COMMIT round trips, and none of the session's Python, which costs more than the
    call's round trip. `alone_connection()` hands the connection to the writer.

    Only keyed writes come here. A connection lost after the call was sent may have
    committed it; sent again, the key replays it instead of writing it twice. (A write
    without a key goes through `atomic`, whose BEGIN finds a dead connection before
    anything is written.)
    """
    retries = current_app.config["WRITE_RETRIES"]
    attempt = 0
    while True:
        try:
            with autocommit_connection():
                return statement()
        except DBAPIError as error:
            if attempt < retries and is_retryable(error):
                attempt += 1
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            raise


@contextmanager
def autocommit_connection(*, lend: bool = True):
    """Lend a pooled psycopg connection in autocommit mode, past the ORM session (which
    ends its read transaction first): each statement on it is a transaction of its own,
    with no BEGIN and COMMIT round trips and none of the session's Python. With `lend`,
    `alone_connection()` returns it meanwhile, for the one-call writers of `fused` to
    use (`alone`); without, only the holder uses it. Driver errors leave it as SQLAlchemy
    would have raised them (an IntegrityError, an OperationalError the app maps to a
    503), with `connection_invalidated` set when the connection was lost.

    The app context keeps the connection between uses, until it ends
    (`release_autocommit_connection`, a teardown): a pool checkout and check-in, with
    the autocommit switch each way, cost a write's client more than its hashing and
    validation together (about 100 us of 420 per redemption), which a loop of writes in
    one app context (a batch, an import, `bench/ledger.py`) then pays once. A request
    that reads through the session after such a write holds two connections where it
    took one in turn; the pool keeps two open per process anyway once any request has
    needed both at once (a service record does). A connection is kept only idle and
    whole; any other goes back to the pool closed."""
    if db.session.registry.has() and db.session().in_transaction():
        _end_session_transaction(db.session())
    engine = db.engine
    dbapi = engine.dialect.loaded_dbapi
    # Taken from the app context while in use: a nested use gets a connection of its own.
    kept = _take_kept(engine)
    token = None
    try:
        if kept is None:
            pool = engine.pool
            kept = _Kept(engine.raw_connection(), pool, os.getpid())
            kept.pooled.driver_connection.autocommit = True
        connection = kept.pooled.driver_connection
        if lend:
            token = _ALONE.set(connection)
        yield connection
    except dbapi.Error as raw:
        connection = None if kept is None else kept.pooled.driver_connection
        broken = connection is None or bool(connection.broken or connection.closed)
        if connection is not None and broken:
            kept.pooled.invalidate(raw)
        raise DBAPIError.instance(
            None, None, raw, dbapi.Error, connection_invalidated=broken
        ) from raw
    finally:
        if token is not None:
            _ALONE.reset(token)
        if kept is not None:
            _keep_or_return(kept)


@dataclass
class _Kept:
    """An autocommit connection the app context keeps between uses."""

    pooled: Any  # SQLAlchemy's pooled connection
    pool: Any  # the pool it came from: the engine may have a new one by now
    pid: int  # the process it belongs to


# Connections a forked child found kept: its parent's still. Closing one would end the
# parent's session on the server, and dropping it would warn; they stay referenced here.
_INHERITED: list[_Kept] = []


def _keep_or_return(kept: _Kept) -> None:
    """Keep an idle, whole connection for the app context (unless it keeps one already,
    from a nested use); return any other to the pool."""
    if _idle(kept.pooled.driver_connection) and _KEPT not in g:
        setattr(g, _KEPT, kept)
    else:
        _return_kept(kept)


def _idle(connection) -> bool:
    """Whether a psycopg connection is open, whole and in no transaction."""
    from psycopg import pq  # only PostgreSQL lends autocommit connections

    return (
        connection is not None
        and not connection.closed
        and not connection.broken
        and connection.info.transaction_status == pq.TransactionStatus.IDLE
    )


def _take_kept(engine) -> _Kept | None:
    """Take the app context's kept connection if it is still this process's and the
    engine's pool's. One inherited across a fork is left alone (`_INHERITED`); one whose
    pool the engine disposed of is closed, as that pool would leave it open."""
    kept = g.pop(_KEPT, None)
    if kept is None:
        return None
    if kept.pid != os.getpid():
        kept.pooled.detach()  # its pool entry reconnects if ever used here
        _INHERITED.append(kept)
        return None
    if kept.pool is not engine.pool:
        kept.pooled.invalidate()
        kept.pooled.close()
        return None
    return kept


def release_autocommit_connection(_error: BaseException | None = None) -> None:
    """Return the app context's autocommit connection to the pool (a teardown)."""
    kept = _take_kept(db.engine)
    if kept is not None:
        _return_kept(kept)


def _return_kept(kept: _Kept) -> None:
    """Back to the pool out of autocommit; closed unless idle and whole, as a pooled
    connection must never be lent on in autocommit or mid-way through a transaction."""
    connection = kept.pooled.driver_connection
    if _idle(connection):
        connection.autocommit = False
    elif connection is not None:
        kept.pooled.invalidate()
    kept.pooled.close()


def _end_session_transaction(session) -> None:
    """End the session's read transaction, as a unit of work does before it begins: its
    snapshot and row locks must not outlive a write made beside it."""
    _refuse_unflushed(session)
    session.rollback()


def _refuse_unflushed(session) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a unit of work cannot start with unflushed ORM changes")


def alone_connection():
    """Return the psycopg connection of the `alone` call running now, or None."""
    return _ALONE.get()


def after_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once the unit of work open now has committed; at once outside one.

    A unit that rolls back (or is retried) drops its callbacks: listeners such as
    `entry_posted` hear only of what was really written.
    """
    if in_unit_of_work():
        db.session.info[_AFTER_COMMIT].append(callback)
    else:
        callback()


def run(statement, parameters=None):
    """Execute a Core statement on the session's connection, past the ORM layer.

    The ledger's hot path uses prebuilt Core statements: an ORM execution costs more in
    Python than the statement costs the database.
    """
    return db.session.connection().execute(statement, parameters)


def in_unit_of_work() -> bool:
    """Return True inside `atomic`."""
    # No session yet in this app context: none is made just to ask.
    return db.session.registry.has() and bool(db.session.info.get(_IN_UNIT))


def _end_read() -> None:
    """End the read transaction of a batch job before it runs its own units of work."""
    if in_unit_of_work():
        raise RuntimeError("batch jobs (seal, expire, time out) run their own units of work")
    db.session.rollback()


def _dialect_insert(model):
    """Return a Core INSERT for `model` that supports ON CONFLICT on this database."""
    table = model.__table__
    if db.engine.dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


# -- validation --------------------------------------------------------------------------


def check_points(points: Any, field: str = "points") -> int:
    """Return `points` if it is a whole number from 1 to 2^53; raise InvalidAmountError."""
    if isinstance(points, bool) or not isinstance(points, int):
        raise InvalidAmountError(
            f"points must be a whole number, not {points!r}",
            errors={field: ["Must be a whole number of points."]},
        )
    if points <= 0:
        raise InvalidAmountError(
            f"points must be at least 1, not {points}",
            errors={field: ["Must be at least 1."]},
        )
    if points > MAX_POINTS:
        raise InvalidAmountError(
            f"points must be at most 2^53 ({MAX_POINTS}), not {points}",
            errors={field: [f"Must be at most {MAX_POINTS}."]},
        )
    return points


def _check_time(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInputError(
            f"{field} needs a time zone", errors={field: ["Give a time with a UTC offset."]}
        )
    return value


def _check_text(value: Any, field: str, *, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidInputError(f"{field} is required", errors={field: ["Must not be empty."]})
    return value


# -- idempotency -------------------------------------------------------------------------


def request_hash(operation: str, arguments: dict[str, Any]) -> str:
    """Return the sha256 of an operation and its arguments in canonical JSON."""
    canonical = _REQUEST_JSON.encode([operation, arguments])
    return hashlib.sha256(canonical.encode()).hexdigest()


# json.dumps with these options builds a new encoder per call; every keyed write hashes.
_REQUEST_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


_keys = IdempotencyKey.__table__
_STORED_KEY = select(_keys.c.request_hash, _keys.c.result).where(
    _keys.c.scope == bindparam("scope"), _keys.c.key == bindparam("key")
)
_RECORD_RESULT = (
    update(_keys)
    .where(_keys.c.scope == bindparam("key_scope"), _keys.c.key == bindparam("key_name"))
    .values(result=bindparam("result", type_=_keys.c.result.type))
)
_CLAIMS: dict[str, Any] = {}


def _claim_statement():
    """INSERT of a new key that does nothing when the key exists, built once per dialect."""
    dialect = db.engine.dialect.name
    if dialect not in _CLAIMS:
        _CLAIMS[dialect] = (
            _dialect_insert(IdempotencyKey).on_conflict_do_nothing().returning(_keys.c.key)
        )
    return _CLAIMS[dialect]


def claim_idempotency_key(scope: str, key: str, fingerprint: str) -> dict | None:
    """Reserve `key` in `scope` for this unit of work.

    Returns None when the key is new (the caller does the work, then `record_result`),
    or the stored result when the key was already used with the same request.
    Raises IdempotencyConflictError when it was used with a different request.
    """
    check_idempotency_key(key)
    # On PostgreSQL a concurrent unit holding the same key makes this wait for its
    # commit; then the row is visible to the SELECT below (READ COMMITTED).
    values = {"scope": scope, "key": key, "request_hash": fingerprint, "created_at": utcnow()}
    if run(_claim_statement(), values).first() is not None:
        return None
    row = run(_STORED_KEY, {"scope": scope, "key": key}).one()
    if row.request_hash != fingerprint:
        raise IdempotencyConflictError(
            f"idempotency key {key!r} was already used with a different request"
        )
    if row.result is None:
        raise LedgerInvariantError(f"idempotency key {key!r} committed without a result")
    return row.result


def stored_result(
    operation: str, arguments: dict[str, Any], key: str | None, scope: str
) -> dict | None:
    """Return what an earlier request under `key` stored, before any other check is made.

    A retry must get its first answer even when a check would now refuse the request (a
    second check-in of the day is the first one, retried); so a layer that checks the
    state before it reaches `idempotent` asks here first. Returns None without a key, or
    when the key is unused (or claimed by a unit not yet committed: `idempotent` then
    waits for it). Raises IdempotencyConflictError when the key was used with another
    request, InvalidInputError for a key that cannot be one.
    """
    if key is None:
        return None
    check_idempotency_key(key)
    row = run(_STORED_KEY, {"scope": scope, "key": key}).one_or_none()
    if row is None or row.result is None:
        return None
    if row.request_hash != request_hash(operation, arguments):
        raise IdempotencyConflictError(
            f"idempotency key {key!r} was already used with a different request"
        )
    return row.result


def check_idempotency_key(key: Any) -> str:
    """Return `key` if it can be an idempotency key; raise InvalidInputError."""
    _check_text(key, "idempotency_key")
    if len(key) > 200:
        raise InvalidInputError(
            "idempotency key too long", errors={"idempotency_key": ["At most 200 characters."]}
        )
    return key


def record_result(scope: str, key: str, result: dict) -> None:
    """Store the result of the unit of work that claimed `key`."""
    run(_RECORD_RESULT, {"key_scope": scope, "key_name": key, "result": result})


def idempotent(
    operation: str,
    arguments: dict[str, Any],
    key: str | None,
    scope: str,
    work: Callable[[], T],
    to_result: Callable[[T], dict],
    from_result: Callable[[dict], T],
    *,
    first_try: Callable[[str | None], T | None] | None = None,
) -> T:
    """Run `work` in one unit of work under an idempotency key, and return its value.

    With no key, just the unit. With a key: the first request (operation and arguments)
    does the work and stores `to_result(value)`; the same request again returns
    `from_result(stored)` and writes nothing; another request under the key raises
    IdempotencyConflictError. A failed unit leaves its key unused.

    `first_try(fingerprint)`, when given, is a faster way to do the whole thing in one
    all-or-nothing call that claims the key itself (the fingerprint is None without
    a key): it returns the value, or None having written nothing, and then the usual path
    runs. Under a key and outside a caller's unit it runs `alone` first, as a transaction
    of its own (and again in the unit, which may look up what `alone` does not: see
    `fused`).
    """
    if key is not None:
        check_idempotency_key(key)
    fingerprint = None if key is None else request_hash(operation, arguments)
    if first_try is not None and key is not None and not in_unit_of_work():
        value = alone(lambda: first_try(fingerprint))
        if value is not None:
            return value

    def unit() -> T:
        if first_try is not None:
            value = first_try(fingerprint)
            if value is not None:
                return value
        if key is None:
            return work()
        stored = claim_idempotency_key(scope, key, fingerprint)
        if stored is not None:
            return from_result(stored)
        value = work()
        record_result(scope, key, to_result(value))
        return value

    return atomic(unit)
