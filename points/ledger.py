"""The only writer of the ledger: entries, postings, lots, holds, seals and service minutes.

Every public function here runs as one unit of work (`atomic`): it commits everything or
nothing, and is retried when it lost a race the database reports as retryable. Inside a
unit that is already open (a caller's `atomic`), it joins that unit instead.

Concurrency: a volunteer account changes only through a conditional UPDATE
(`balance - held >= x`) at READ COMMITTED, which is correct without retries on
PostgreSQL; on SQLite a unit takes the write lock up front (BEGIN IMMEDIATE). Accounts
are always touched in ascending id order and holds before accounts, so no two units
wait on each other in a cycle. Unbounded accounts (issuance, provider, expired,
clearing) are never locked.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from flask import current_app
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from points.database import WRITE_LOCK, is_retryable
from points.errors import (
    AccountClosedError,
    AlreadyReversedError,
    ConflictError,
    CrossDistrictError,
    HoldExpiredError,
    HoldStateError,
    IdempotencyConflictError,
    InsufficientPointsError,
    InvalidAmountError,
    InvalidInputError,
    NotFoundError,
)
from points.extensions import db
from points.models import (
    MAX_POINTS,
    Account,
    ChainHead,
    District,
    Entry,
    Hold,
    IdempotencyKey,
    Lot,
    LotUse,
    Posting,
    Provider,
    Seal,
    ServiceMinutes,
    UnsealedEntry,
    Volunteer,
    utcnow,
)

T = TypeVar("T")

_IN_UNIT = "points_unit_of_work"
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
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a unit of work cannot start with unflushed ORM changes")
    retries = current_app.config["WRITE_RETRIES"]
    attempt = 0
    while True:
        # End any read transaction, so the write lock is taken when this one begins.
        session.rollback()
        session.connection(execution_options={WRITE_LOCK: True})
        session.info[_IN_UNIT] = True
        try:
            result = work()
            session.commit()
            return result
        except Exception as error:
            session.rollback()
            if attempt < retries and is_retryable(error):
                attempt += 1
                time.sleep(random.uniform(0, 0.005 * 2**attempt))
                continue
            raise
        finally:
            session.info.pop(_IN_UNIT, None)


def in_unit_of_work() -> bool:
    """Return True inside `atomic`."""
    return bool(db.session.info.get(_IN_UNIT))


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
    canonical = json.dumps(
        [operation, arguments], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_idempotency_key(scope: str, key: str, fingerprint: str) -> dict | None:
    """Reserve `key` in `scope` for this unit of work.

    Returns None when the key is new (the caller does the work, then `record_result`),
    or the stored result when the key was already used with the same request.
    Raises IdempotencyConflictError when it was used with a different request.
    """
    _check_text(key, "idempotency_key")
    if len(key) > 200:
        raise InvalidInputError(
            "idempotency key too long", errors={"idempotency_key": ["At most 200 characters."]}
        )
    # On PostgreSQL a concurrent unit holding the same key makes this wait for its
    # commit; then the row is visible to the SELECT below (READ COMMITTED).
    inserted = db.session.execute(
        _dialect_insert(IdempotencyKey)
        .values(scope=scope, key=key, request_hash=fingerprint, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(IdempotencyKey.__table__.c.key)
    ).first()
    if inserted is not None:
        return None
    row = db.session.execute(
        select(IdempotencyKey.request_hash, IdempotencyKey.result).where(
            IdempotencyKey.scope == scope, IdempotencyKey.key == key
        )
    ).one()
    if row.request_hash != fingerprint:
        raise IdempotencyConflictError(
            f"idempotency key {key!r} was already used with a different request"
        )
    if row.result is None:
        raise LedgerInvariantError(f"idempotency key {key!r} committed without a result")
    return row.result


def record_result(scope: str, key: str, result: dict) -> None:
    """Store the result of the unit of work that claimed `key`."""
    db.session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(result=result)
    )


def _idempotent(
    operation: str,
    arguments: dict[str, Any],
    key: str | None,
    scope: str,
    work: Callable[[], T],
    to_result: Callable[[T], dict],
    from_result: Callable[[dict], T],
) -> T:
    def unit() -> T:
        if key is None:
            return work()
        stored = claim_idempotency_key(scope, key, request_hash(operation, arguments))
        if stored is not None:
            return from_result(stored)
        value = work()
        record_result(scope, key, to_result(value))
        return value

    return atomic(unit)


def _entry_result(entry: PostedEntry) -> dict:
    return {"entry_id": entry.id}


def _entry_replay(result: dict) -> PostedEntry:
    return load_entry(result["entry_id"], replayed=True)


def _hold_result(hold: HoldState) -> dict:
    return {"hold_id": hold.id}


def _hold_replay(result: dict) -> HoldState:
    return load_hold(result["hold_id"], replayed=True)


# -- reading -----------------------------------------------------------------------------


def load_entry(entry_id: int, *, replayed: bool = False) -> PostedEntry:
    """Return the entry `entry_id` with its postings; raise NotFoundError."""
    entry = db.session.execute(
        select(Entry.id, Entry.kind, Entry.district_id, Entry.related_entry_id).where(
            Entry.id == entry_id
        )
    ).one_or_none()
    if entry is None:
        raise NotFoundError(f"no entry {entry_id}")
    postings = db.session.execute(
        select(Posting.account_id, Posting.amount)
        .where(Posting.entry_id == entry_id)
        .order_by(Posting.id)
    ).all()
    return PostedEntry(
        entry.id,
        entry.kind,
        entry.district_id,
        tuple((p.account_id, p.amount) for p in postings),
        entry.related_entry_id,
        replayed,
    )


def load_hold(hold_id: int, *, replayed: bool = False) -> HoldState:
    """Return the hold `hold_id` as it stands; raise NotFoundError."""
    hold = db.session.get(Hold, hold_id, populate_existing=True)
    if hold is None:
        raise NotFoundError(f"no hold {hold_id}")
    entry_id = None
    if hold.status == "posted":
        entry_id = db.session.scalar(select(Entry.id).where(Entry.hold_id == hold_id))
    return HoldState(
        hold.id, hold.account_id, hold.amount, hold.status, hold.expires_at, entry_id, replayed
    )


def balance(volunteer_id: int) -> Balance:
    """Return the volunteer's cached balance: one indexed row, whatever the history."""
    row = db.session.execute(
        select(Account.id, Account.balance, Account.held).where(
            Account.volunteer_id == volunteer_id
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no account for volunteer {volunteer_id}")
    return Balance(volunteer_id, row.id, row.balance, row.held, row.balance - row.held)


def account_balance(account_id: int) -> int:
    """Return any account's balance as the sum of its postings (slow for hot accounts)."""
    return db.session.scalar(
        select(func.coalesce(func.sum(Posting.amount), 0)).where(Posting.account_id == account_id)
    )


class _AccountRow(NamedTuple):
    id: int
    district_id: int
    kind: str
    status: str


def _volunteer_account(volunteer_id: Any, field: str = "volunteer_id") -> _AccountRow:
    if isinstance(volunteer_id, bool) or not isinstance(volunteer_id, int):
        raise InvalidInputError(
            f"{field} must be a volunteer id", errors={field: ["Must be an integer id."]}
        )
    row = db.session.execute(
        select(Account.id, Account.district_id, Account.kind, Account.status).where(
            Account.volunteer_id == volunteer_id
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no volunteer {volunteer_id}", errors={field: ["No such volunteer."]})
    return _AccountRow(*row)


def _system_account(district_id: int, kind: str) -> _AccountRow:
    row = db.session.execute(
        select(Account.id, Account.district_id, Account.kind, Account.status).where(
            Account.district_id == district_id, Account.kind == kind
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"district {district_id} has no {kind} account")
    return _AccountRow(*row)


def _provider_account(provider_id: Any, district_id: int) -> _AccountRow:
    """Return the provider's account in `district_id`, opening it on first use."""
    if isinstance(provider_id, bool) or not isinstance(provider_id, int):
        raise InvalidInputError(
            "provider_id must be a provider id", errors={"provider_id": ["Must be an integer id."]}
        )
    provider = db.session.execute(
        select(Provider.id, Provider.status).where(Provider.id == provider_id)
    ).one_or_none()
    if provider is None:
        raise NotFoundError(
            f"no provider {provider_id}", errors={"provider_id": ["No such provider."]}
        )
    if provider.status != "active":
        raise AccountClosedError(f"provider {provider_id} is closed")
    db.session.execute(
        _dialect_insert(Account)
        .values(
            district_id=district_id,
            kind="provider",
            provider_id=provider_id,
            held=0,
            status="open",
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )
    row = db.session.execute(
        select(Account.id, Account.district_id, Account.kind, Account.status).where(
            Account.provider_id == provider_id, Account.district_id == district_id
        )
    ).one()
    return _AccountRow(*row)


# -- accounts ----------------------------------------------------------------------------


def open_district_accounts(district_id: int) -> None:
    """Open the issuance, expired and clearing accounts of a district node (idempotent)."""
    for kind in ("issuance", "expired", "clearing"):
        db.session.execute(
            _dialect_insert(Account)
            .values(district_id=district_id, kind=kind, held=0, status="open", created_at=utcnow())
            .on_conflict_do_nothing()
        )


def open_volunteer_account(volunteer_id: int, district_id: int) -> int:
    """Open the volunteer's account in their district node; return its id."""
    return db.session.execute(
        _dialect_insert(Account)
        .values(
            district_id=district_id,
            kind="volunteer",
            volunteer_id=volunteer_id,
            balance=0,
            held=0,
            status="open",
            created_at=utcnow(),
        )
        .returning(Account.id)
    ).scalar_one()


def close_account(account_id: int) -> None:
    """Close an account: no points move in or out of it afterwards."""

    def work() -> None:
        done = db.session.execute(
            update(Account).where(Account.id == account_id).values(status="closed")
        )
        if done.rowcount != 1:
            raise NotFoundError(f"no account {account_id}")

    atomic(work)


# -- posting -----------------------------------------------------------------------------


def entry_hash(fields: dict[str, Any], postings: Iterable[tuple[int, int]]) -> str:
    """Return the sha256 content hash of an entry's fields and its postings."""
    content = dict(fields)
    effective_at = content["effective_at"]
    content["effective_at"] = _utc_text(effective_at)
    content["postings"] = sorted(postings)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# The entry fields covered by its hash (all of them but id, created_at and hash).
HASHED_FIELDS = (
    "district_id",
    "kind",
    "effective_at",
    "actor",
    "reason",
    "plugin",
    "rule",
    "config_version",
    "service_record_id",
    "hold_id",
    "reverses_id",
    "related_entry_id",
)


def _apply_to_bounded(
    account: _AccountRow, amount: int, *, from_hold: bool = False, bookkeeping: bool = False
) -> None:
    """Move a volunteer account's cached balance by `amount`, never below what is held."""
    if amount > 0:
        done = db.session.execute(
            update(Account)
            .where(Account.id == account.id, Account.status == "open")
            .values(balance=Account.balance + amount)
        )
        if done.rowcount != 1:
            raise AccountClosedError(f"account {account.id} is closed")
        return
    debit = -amount
    if from_hold:
        # The points were reserved by the hold: they leave balance and held together.
        condition = Account.held >= debit
        values = {"balance": Account.balance - debit, "held": Account.held - debit}
    else:
        condition = Account.balance - Account.held >= debit
        if not bookkeeping:
            condition &= Account.status == "open"
        values = {"balance": Account.balance - debit}
    done = db.session.execute(
        update(Account).where(Account.id == account.id, condition).values(**values)
    )
    if done.rowcount != 1:
        if account.status != "open" and not (from_hold or bookkeeping):
            raise AccountClosedError(f"account {account.id} is closed")
        if from_hold:
            raise LedgerInvariantError(f"account {account.id} holds less than its hold")
        have = balance_of_account(account.id)
        raise InsufficientPointsError(
            f"needs {debit} points, {have} available",
            errors={"points": [f"Only {have} points are available."]},
        )


def balance_of_account(account_id: int) -> int:
    """Return the points available (balance minus held) on a volunteer account."""
    row = db.session.execute(
        select(Account.balance, Account.held).where(Account.id == account_id)
    ).one()
    return row.balance - row.held


def _post(
    district_id: int,
    kind: str,
    postings: Sequence[tuple[_AccountRow, int]],
    *,
    actor: str,
    reason: str,
    effective_at: datetime | None = None,
    plugin: str | None = None,
    rule: str | None = None,
    config_version: int | None = None,
    service_record_id: int | None = None,
    hold_id: int | None = None,
    reverses_id: int | None = None,
    related_entry_id: int | None = None,
    from_hold: bool = False,
    bookkeeping: bool = False,
    credit_lots: dict[int, list[tuple[int, datetime | None]]] | None = None,
    mirror_lots: bool = False,
    debit_first_lot: dict[int, int | None] | None = None,
) -> PostedEntry:
    """Write one balanced entry: move cached balances, insert entry and postings, lots.

    Debited volunteer accounts give up lots soonest-expiry first (`debit_first_lot`
    names one to use before the others). Credited volunteer accounts get the lots
    (amount, expiry) of `credit_lots`, or with `mirror_lots` the lots this entry just
    consumed, so that donated points keep their expiry; by default one lot that never
    expires. `bookkeeping` (expiry) moves points out of closed accounts too.
    """
    if sum(amount for _, amount in postings) != 0:
        raise LedgerInvariantError(f"unbalanced {kind} entry: {postings}")
    for account, amount in postings:
        if amount == 0:
            raise LedgerInvariantError(f"zero posting in {kind} entry")
        if account.district_id != district_id:
            raise CrossDistrictError(
                f"account {account.id} is in district {account.district_id}, "
                f"the entry in district {district_id}"
            )
        if account.kind != "volunteer" and account.status != "open":
            raise AccountClosedError(f"{account.kind} account {account.id} is closed")

    # Ascending account id: two units never wait on each other's accounts in a cycle.
    for account, amount in sorted(postings, key=lambda p: p[0].id):
        if account.kind == "volunteer":
            _apply_to_bounded(
                account, amount, from_hold=from_hold and amount < 0, bookkeeping=bookkeeping
            )

    fields = {
        "district_id": district_id,
        "kind": kind,
        "effective_at": effective_at or utcnow(),
        "actor": actor,
        "reason": reason,
        "plugin": plugin,
        "rule": rule,
        "config_version": config_version,
        "service_record_id": service_record_id,
        "hold_id": hold_id,
        "reverses_id": reverses_id,
        "related_entry_id": related_entry_id,
    }
    pairs = tuple((account.id, amount) for account, amount in postings)
    fields_hash = entry_hash(fields, pairs)
    entry_id = db.session.execute(
        Entry.__table__.insert()
        .values(**fields, created_at=utcnow(), hash=fields_hash)
        .returning(Entry.id)
    ).scalar_one()
    db.session.execute(
        Posting.__table__.insert(),
        [
            {"entry_id": entry_id, "district_id": district_id, "account_id": a, "amount": x}
            for a, x in pairs
        ],
    )
    db.session.execute(
        UnsealedEntry.__table__.insert().values(entry_id=entry_id, district_id=district_id)
    )

    consumed: list[tuple[int, datetime | None]] = []
    for account, amount in postings:
        if account.kind == "volunteer" and amount < 0:
            first = (debit_first_lot or {}).get(account.id)
            consumed += _consume_lots(account, -amount, entry_id, first)
    for account, amount in postings:
        if account.kind == "volunteer" and amount > 0:
            if mirror_lots:
                lots = _merge_lots(consumed)
            else:
                lots = (credit_lots or {}).get(account.id) or [(amount, None)]
            if sum(a for a, _ in lots) != amount:
                raise LedgerInvariantError(f"lots of account {account.id} do not sum to {amount}")
            _create_lots(account, entry_id, lots)
    return PostedEntry(entry_id, kind, district_id, pairs, related_entry_id)


def _create_lots(
    account: _AccountRow, entry_id: int, lots: list[tuple[int, datetime | None]]
) -> None:
    now = utcnow()
    db.session.execute(
        Lot.__table__.insert(),
        [
            {
                "district_id": account.district_id,
                "account_id": account.id,
                "entry_id": entry_id,
                "amount": amount,
                "remaining": amount,
                "expires_at": expires_at,
                "created_at": now,
            }
            for amount, expires_at in lots
        ],
    )


def _consume_lots(
    account: _AccountRow, amount: int, entry_id: int, first_lot: int | None
) -> list[tuple[int, datetime | None]]:
    """Use `amount` points of the account's lots, soonest expiry first (never-expiring
    last); return what was used as (amount, expires_at) pairs. The caller holds the
    account's row lock, so no other unit consumes these lots meanwhile."""
    open_lots = db.session.execute(
        select(Lot.id, Lot.remaining, Lot.expires_at)
        .where(Lot.account_id == account.id, Lot.remaining > 0)
        .order_by(Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
    ).all()
    if first_lot is not None:
        open_lots.sort(key=lambda lot: lot.id != first_lot)
    used: list[tuple[int, int, datetime | None]] = []
    left = amount
    for lot in open_lots:
        if left == 0:
            break
        take = min(left, lot.remaining)
        used.append((lot.id, take, lot.expires_at))
        left -= take
    if left:
        raise LedgerInvariantError(f"lots of account {account.id} hold less than its balance")
    for lot_id, take, _ in used:
        db.session.execute(
            update(Lot).where(Lot.id == lot_id).values(remaining=Lot.remaining - take)
        )
    db.session.execute(
        LotUse.__table__.insert(),
        [
            {
                "district_id": account.district_id,
                "lot_id": lot_id,
                "entry_id": entry_id,
                "amount": t,
            }
            for lot_id, t, _ in used
        ],
    )
    return [(take, expires_at) for _, take, expires_at in used]


def _lots_used_by(entry_id: int, account_id: int) -> list[tuple[int, datetime | None]]:
    """Return (amount, expires_at) of the lots an entry consumed on one account."""
    rows = db.session.execute(
        select(LotUse.amount, Lot.expires_at)
        .join(Lot, Lot.id == LotUse.lot_id)
        .where(LotUse.entry_id == entry_id, Lot.account_id == account_id)
        .order_by(LotUse.id)
    ).all()
    return _merge_lots((row.amount, row.expires_at) for row in rows)


def _merge_lots(
    lots: Iterable[tuple[int, datetime | None]],
) -> list[tuple[int, datetime | None]]:
    """Merge lots of equal expiry, so that a transfer or reversal creates few new lots."""
    merged: dict[datetime | None, int] = {}
    for amount, expires_at in lots:
        merged[expires_at] = merged.get(expires_at, 0) + amount
    return [(amount, expires_at) for expires_at, amount in merged.items()]


# -- earning -----------------------------------------------------------------------------


def earn(
    volunteer_id: int,
    points: int,
    *,
    actor: str,
    reason: str,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    plugin: str | None = None,
    rule: str | None = None,
    config_version: int | None = None,
    service_record_id: int | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str = "ledger",
) -> PostedEntry:
    """Credit a volunteer from their district's issuance account, as one new lot.

    Returns the entry. Raises InvalidAmountError, NotFoundError, AccountClosedError,
    IdempotencyConflictError.
    """
    check_points(points)
    _check_text(actor, "actor")
    _check_text(reason, "reason")
    _check_time(effective_at, "effective_at")
    _check_time(expires_at, "expires_at")

    def work() -> PostedEntry:
        account = _volunteer_account(volunteer_id)
        issuance = _system_account(account.district_id, "issuance")
        return _post(
            account.district_id,
            "earn",
            [(issuance, -points), (account, points)],
            actor=actor,
            reason=reason,
            effective_at=effective_at,
            plugin=plugin,
            rule=rule,
            config_version=config_version,
            service_record_id=service_record_id,
            credit_lots={account.id: [(points, expires_at)]},
        )

    arguments = {
        "volunteer_id": volunteer_id,
        "points": points,
        "reason": reason,
        "effective_at": effective_at,
        "expires_at": expires_at,
        "plugin": plugin,
        "rule": rule,
        "config_version": config_version,
        "service_record_id": service_record_id,
    }
    return _idempotent(
        "earn", arguments, idempotency_key, idempotency_scope, work, _entry_result, _entry_replay
    )


# -- holds and redemptions ---------------------------------------------------------------


def hold(
    volunteer_id: int,
    points: int,
    *,
    provider_id: int,
    actor: str,
    reason: str,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str = "ledger",
) -> HoldState:
    """Reserve points for a redemption at a provider; they stop being available.

    Returns the pending hold. Raises InvalidAmountError, NotFoundError,
    AccountClosedError, InsufficientPointsError, IdempotencyConflictError.
    """
    check_points(points)
    _check_text(actor, "actor")
    _check_text(reason, "reason")
    _check_time(expires_at, "expires_at")

    def work() -> HoldState:
        return _hold(volunteer_id, points, provider_id, actor, reason, expires_at)

    arguments = {
        "volunteer_id": volunteer_id,
        "points": points,
        "provider_id": provider_id,
        "reason": reason,
        "expires_at": expires_at,
    }
    return _idempotent(
        "hold", arguments, idempotency_key, idempotency_scope, work, _hold_result, _hold_replay
    )


def _hold(
    volunteer_id: int,
    points: int,
    provider_id: int,
    actor: str,
    reason: str,
    expires_at: datetime | None,
) -> HoldState:
    account = _volunteer_account(volunteer_id)
    destination = _provider_account(provider_id, account.district_id)
    now = utcnow()
    if expires_at is None:
        expires_at = now + timedelta(minutes=current_app.config["HOLD_MINUTES"])
    elif expires_at <= now:
        raise InvalidInputError(
            "a hold must expire in the future", errors={"expires_at": ["Must be in the future."]}
        )
    done = db.session.execute(
        update(Account)
        .where(
            Account.id == account.id,
            Account.status == "open",
            Account.balance - Account.held >= points,
        )
        .values(held=Account.held + points)
    )
    if done.rowcount != 1:
        if account.status != "open":
            raise AccountClosedError(f"volunteer {volunteer_id}'s account is closed")
        have = balance_of_account(account.id)
        raise InsufficientPointsError(
            f"needs {points} points, {have} available",
            errors={"points": [f"Only {have} points are available."]},
        )
    hold_id = db.session.execute(
        Hold.__table__.insert()
        .values(
            district_id=account.district_id,
            account_id=account.id,
            destination_id=destination.id,
            amount=points,
            status="pending",
            expires_at=expires_at,
            actor=actor,
            reason=reason,
            created_at=now,
        )
        .returning(Hold.id)
    ).scalar_one()
    return HoldState(hold_id, account.id, points, "pending", expires_at)


def _resolve_hold(hold_id: Any, status: str, actor: str, resolution: str | None, now: datetime):
    """Move a pending hold to `status`; return the hold row. The hold is locked first."""
    if isinstance(hold_id, bool) or not isinstance(hold_id, int):
        raise InvalidInputError("hold_id must be an integer", errors={"hold_id": ["Not an id."]})
    condition = [Hold.id == hold_id, Hold.status == "pending"]
    if status == "posted":
        condition.append(Hold.expires_at > now)
    done = db.session.execute(
        update(Hold)
        .where(*condition)
        .values(status=status, resolved_at=now, resolved_by=actor, resolution=resolution)
    )
    row = db.session.execute(
        select(
            Hold.id,
            Hold.district_id,
            Hold.account_id,
            Hold.destination_id,
            Hold.amount,
            Hold.status,
            Hold.expires_at,
            Hold.reason,
        ).where(Hold.id == hold_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no hold {hold_id}")
    if done.rowcount != 1:
        if row.status == "pending":
            raise HoldExpiredError(f"hold {hold_id} expired at {row.expires_at.isoformat()}")
        raise HoldStateError(f"hold {hold_id} is already {row.status}")
    return row


def post_hold(
    hold_id: int,
    *,
    actor: str,
    reason: str | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str = "ledger",
) -> PostedEntry:
    """Turn a pending hold into a redeem entry: volunteer to provider.

    Returns the entry. Raises NotFoundError, HoldStateError (already resolved),
    HoldExpiredError, IdempotencyConflictError.
    """
    _check_text(actor, "actor")

    def work() -> PostedEntry:
        return _post_hold(hold_id, actor, reason)

    return _idempotent(
        "post_hold",
        {"hold_id": hold_id, "reason": reason},
        idempotency_key,
        idempotency_scope,
        work,
        _entry_result,
        _entry_replay,
    )


def _post_hold(hold_id: int, actor: str, reason: str | None) -> PostedEntry:
    row = _resolve_hold(hold_id, "posted", actor, reason, utcnow())
    accounts = _accounts_by_id([row.account_id, row.destination_id])
    return _post(
        row.district_id,
        "redeem",
        [(accounts[row.account_id], -row.amount), (accounts[row.destination_id], row.amount)],
        actor=actor,
        reason=reason or row.reason,
        hold_id=row.id,
        from_hold=True,
    )


def void_hold(hold_id: int, *, actor: str, reason: str) -> HoldState:
    """Cancel a pending hold and release its points. Raises NotFoundError, HoldStateError."""
    _check_text(actor, "actor")
    _check_text(reason, "reason")

    def work() -> HoldState:
        return _release(hold_id, "voided", actor, reason, utcnow())

    return atomic(work)


def _release(hold_id: int, status: str, actor: str, reason: str, now: datetime) -> HoldState:
    row = _resolve_hold(hold_id, status, actor, reason, now)
    done = db.session.execute(
        update(Account)
        .where(Account.id == row.account_id, Account.held >= row.amount)
        .values(held=Account.held - row.amount)
    )
    if done.rowcount != 1:
        raise LedgerInvariantError(f"account {row.account_id} holds less than hold {hold_id}")
    return HoldState(row.id, row.account_id, row.amount, status, row.expires_at)


def time_out_holds(as_of: datetime | None = None, *, actor: str = "system:holds") -> int:
    """Time out every pending hold whose expiry is at or before `as_of`; return how many."""
    as_of = _check_time(as_of, "as_of") or utcnow()
    due = db.session.scalars(
        select(Hold.id).where(Hold.status == "pending", Hold.expires_at <= as_of).order_by(Hold.id)
    ).all()
    db.session.rollback()
    count = 0
    for hold_id in due:

        def work(hold_id: int = hold_id) -> None:
            _release(hold_id, "timed_out", actor, "hold expired before it was posted", as_of)

        try:
            atomic(work)
            count += 1
        except HoldStateError:
            continue  # posted or voided meanwhile
    return count


def redeem(
    volunteer_id: int,
    points: int,
    *,
    provider_id: int,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
    idempotency_scope: str = "ledger",
) -> PostedEntry:
    """Redeem points at a provider at once: a hold posted in the same unit of work.

    Returns the redeem entry. Raises what `hold` raises.
    """
    check_points(points)
    _check_text(actor, "actor")
    _check_text(reason, "reason")

    def work() -> PostedEntry:
        held = _hold(volunteer_id, points, provider_id, actor, reason, None)
        return _post_hold(held.id, actor, reason)

    arguments = {
        "volunteer_id": volunteer_id,
        "points": points,
        "provider_id": provider_id,
        "reason": reason,
    }
    return _idempotent(
        "redeem", arguments, idempotency_key, idempotency_scope, work, _entry_result, _entry_replay
    )


def _accounts_by_id(account_ids: Iterable[int]) -> dict[int, _AccountRow]:
    rows = db.session.execute(
        select(Account.id, Account.district_id, Account.kind, Account.status).where(
            Account.id.in_(list(account_ids))
        )
    ).all()
    return {row.id: _AccountRow(*row) for row in rows}


# -- transfers ---------------------------------------------------------------------------


def transfer(
    from_volunteer_id: int,
    to_volunteer_id: int,
    points: int,
    *,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
    idempotency_scope: str = "ledger",
) -> PostedEntry:
    """Give points from one volunteer to another; the points keep their expiry.

    Within one district node this is one entry. Across nodes it is two entries through
    the nodes' clearing accounts, the second linked to the first; the first is returned.
    Raises InvalidAmountError, InvalidInputError (same volunteer), NotFoundError,
    AccountClosedError, InsufficientPointsError, IdempotencyConflictError.
    """
    check_points(points)
    _check_text(actor, "actor")
    _check_text(reason, "reason")
    if from_volunteer_id == to_volunteer_id:
        raise InvalidInputError(
            "a volunteer cannot transfer points to themselves",
            errors={"to_volunteer_id": ["Must differ from the giver."]},
        )

    def work() -> PostedEntry:
        giver = _volunteer_account(from_volunteer_id, "from_volunteer_id")
        receiver = _volunteer_account(to_volunteer_id, "to_volunteer_id")
        if receiver.status != "open":
            raise AccountClosedError(f"volunteer {to_volunteer_id}'s account is closed")
        if giver.district_id == receiver.district_id:
            return _transfer_within(giver, receiver, points, actor, reason)
        return _transfer_across(giver, receiver, points, actor, reason)

    arguments = {
        "from_volunteer_id": from_volunteer_id,
        "to_volunteer_id": to_volunteer_id,
        "points": points,
        "reason": reason,
    }
    return _idempotent(
        "transfer",
        arguments,
        idempotency_key,
        idempotency_scope,
        work,
        _entry_result,
        _entry_replay,
    )


def _transfer_within(giver, receiver, points, actor, reason) -> PostedEntry:
    return _post(
        giver.district_id,
        "transfer",
        [(giver, -points), (receiver, points)],
        actor=actor,
        reason=reason,
        mirror_lots=True,
    )


def _transfer_across(giver, receiver, points, actor, reason) -> PostedEntry:
    out_clearing = _system_account(giver.district_id, "clearing")
    in_clearing = _system_account(receiver.district_id, "clearing")
    first = _post(
        giver.district_id,
        "transfer",
        [(giver, -points), (out_clearing, points)],
        actor=actor,
        reason=reason,
    )
    second = _post(
        receiver.district_id,
        "transfer",
        [(in_clearing, -points), (receiver, points)],
        actor=actor,
        reason=reason,
        related_entry_id=first.id,
        credit_lots={receiver.id: _lots_used_by(first.id, giver.id)},
    )
    return PostedEntry(first.id, first.kind, first.district_id, first.postings, second.id)


# -- expiry ------------------------------------------------------------------------------


def expire_lots(
    as_of: datetime | None = None,
    *,
    district_id: int | None = None,
    actor: str = "system:expiry",
) -> list[PostedEntry]:
    """Expire every lot whose expiry is at or before `as_of`, one entry per account.

    Points reserved by pending holds never expire from under the hold: an account loses
    at most its available points. Returns the expire entries written.
    """
    as_of = _check_time(as_of, "as_of") or utcnow()
    query = (
        select(Lot.account_id)
        .where(Lot.remaining > 0, Lot.expires_at <= as_of)
        .group_by(Lot.account_id)
        .order_by(Lot.account_id)
    )
    if district_id is not None:
        path = db.session.scalar(select(District.path).where(District.id == district_id))
        if path is None:
            raise NotFoundError(f"no district {district_id}")
        subtree = select(District.id).where(District.path.startswith(path))
        query = query.where(Lot.district_id.in_(subtree))
    account_ids = db.session.scalars(query).all()
    db.session.rollback()
    entries = []
    for account_id in account_ids:
        entry = atomic(lambda account_id=account_id: _expire_account(account_id, as_of, actor))
        if entry is not None:
            entries.append(entry)
    return entries


def _expire_account(account_id: int, as_of: datetime, actor: str) -> PostedEntry | None:
    account_row = db.session.execute(
        select(
            Account.id,
            Account.district_id,
            Account.kind,
            Account.status,
            Account.balance,
            Account.held,
        )
        .where(Account.id == account_id)
        .with_for_update()
    ).one()
    due = db.session.scalar(
        select(func.coalesce(func.sum(Lot.remaining), 0)).where(
            Lot.account_id == account_id, Lot.remaining > 0, Lot.expires_at <= as_of
        )
    )
    # Points reserved by pending holds are promised to a provider: they do not expire.
    points = min(due, account_row.balance - account_row.held)
    if points <= 0:
        return None
    account = _AccountRow(*account_row[:4])
    expired = _system_account(account.district_id, "expired")
    return _post(
        account.district_id,
        "expire",
        [(account, -points), (expired, points)],
        actor=actor,
        reason=f"{points} points expired (lots due by {_utc_text(as_of)})",
        effective_at=as_of,
        bookkeeping=True,
    )


# -- corrections -------------------------------------------------------------------------


def reverse(
    entry_id: int,
    *,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
    idempotency_scope: str = "ledger",
) -> PostedEntry:
    """Post a correcting entry that undoes `entry_id` (and its cross-district half).

    Returns the reversal. Raises NotFoundError, AlreadyReversedError (reversed before,
    or itself a reversal), InsufficientPointsError (the points were spent since),
    IdempotencyConflictError.
    """
    _check_text(actor, "actor")
    _check_text(reason, "reason")

    def work() -> PostedEntry:
        original = _entry_for_reversal(entry_id)
        halves = [original.id]
        if original.related_entry_id is not None:
            halves.insert(0, original.related_entry_id)
        partner = db.session.scalar(select(Entry.id).where(Entry.related_entry_id == original.id))
        if partner is not None:
            halves.append(partner)
        results = [_reverse_one(_entry_for_reversal(i), actor, reason) for i in halves]
        return results[halves.index(original.id)]

    return _idempotent(
        "reverse",
        {"entry_id": entry_id, "reason": reason},
        idempotency_key,
        idempotency_scope,
        work,
        _entry_result,
        _entry_replay,
    )


def _entry_for_reversal(entry_id: Any):
    if isinstance(entry_id, bool) or not isinstance(entry_id, int):
        raise InvalidInputError("entry_id must be an integer", errors={"entry_id": ["Not an id."]})
    entry = db.session.execute(
        select(Entry.id, Entry.district_id, Entry.kind, Entry.related_entry_id).where(
            Entry.id == entry_id
        )
    ).one_or_none()
    if entry is None:
        raise NotFoundError(f"no entry {entry_id}")
    if entry.kind == "reversal":
        raise AlreadyReversedError(f"entry {entry_id} is a reversal; it cannot be reversed")
    if db.session.scalar(select(Entry.id).where(Entry.reverses_id == entry_id)) is not None:
        raise AlreadyReversedError(f"entry {entry_id} was already reversed")
    return entry


def _reverse_one(original, actor: str, reason: str) -> PostedEntry:
    rows = db.session.execute(
        select(Posting.account_id, Posting.amount)
        .where(Posting.entry_id == original.id)
        .order_by(Posting.id)
    ).all()
    accounts = _accounts_by_id(row.account_id for row in rows)
    postings = [(accounts[row.account_id], -row.amount) for row in rows]
    credit_lots = {}
    first_lots = {}
    for account, amount in postings:
        if account.kind != "volunteer":
            continue
        if amount > 0:
            # Points come back with the expiry dates they left with.
            credit_lots[account.id] = _lots_used_by(original.id, account.id)
        else:
            first_lots[account.id] = db.session.scalar(
                select(Lot.id).where(Lot.entry_id == original.id, Lot.account_id == account.id)
            )
    try:
        return _post(
            original.district_id,
            "reversal",
            postings,
            actor=actor,
            reason=reason,
            reverses_id=original.id,
            credit_lots=credit_lots,
            debit_first_lot=first_lots,
        )
    except IntegrityError as error:
        if "reverses_id" in str(error.orig):
            raise AlreadyReversedError(f"entry {original.id} was already reversed") from None
        raise


# -- service minutes ---------------------------------------------------------------------


def add_service_minutes(
    volunteer_id: int,
    minutes: int,
    *,
    actor: str,
    reason: str,
    service_record_id: int | None = None,
) -> int:
    """Credit approved service time; return the volunteer's new total of minutes.

    Service minutes only grow: spending points never lowers them. Raises
    InvalidInputError, NotFoundError, ConflictError (record already counted).
    """
    if (
        isinstance(minutes, bool)
        or not isinstance(minutes, int)
        or not (0 < minutes <= MAX_SERVICE_MINUTES)
    ):
        raise InvalidInputError(
            f"minutes must be a whole number from 1 to {MAX_SERVICE_MINUTES}",
            errors={"minutes": [f"Must be from 1 to {MAX_SERVICE_MINUTES}."]},
        )
    return atomic(
        lambda: _move_minutes(volunteer_id, minutes, "service", actor, reason, service_record_id)
    )


def correct_service_minutes(volunteer_id: int, minutes: int, *, actor: str, reason: str) -> int:
    """Correct a volunteer's service time by `minutes` (may be negative), audited.

    Returns the new total. Raises InvalidInputError (zero, or below zero in total),
    NotFoundError.
    """
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes == 0:
        raise InvalidInputError(
            "a correction must be a non-zero whole number of minutes",
            errors={"minutes": ["Must be a non-zero whole number."]},
        )
    _check_text(reason, "reason")
    return atomic(lambda: _move_minutes(volunteer_id, minutes, "correction", actor, reason, None))


def _move_minutes(volunteer_id, minutes, kind, actor, reason, service_record_id) -> int:
    _check_text(actor, "actor")
    _check_text(reason, "reason")
    volunteer = db.session.execute(
        select(Volunteer.id, Volunteer.district_id).where(Volunteer.id == volunteer_id)
    ).one_or_none()
    if volunteer is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    done = db.session.execute(
        update(Volunteer)
        .where(Volunteer.id == volunteer_id, Volunteer.service_minutes + minutes >= 0)
        .values(service_minutes=Volunteer.service_minutes + minutes)
        .returning(Volunteer.service_minutes)
    ).scalar_one_or_none()
    if done is None:
        raise InvalidInputError(
            "service minutes cannot go below zero",
            errors={"minutes": ["The correction is larger than the volunteer's minutes."]},
        )
    try:
        db.session.execute(
            ServiceMinutes.__table__.insert().values(
                district_id=volunteer.district_id,
                volunteer_id=volunteer_id,
                minutes=minutes,
                kind=kind,
                actor=actor,
                reason=reason,
                service_record_id=service_record_id,
                created_at=utcnow(),
            )
        )
    except IntegrityError:
        raise ConflictError(f"service record {service_record_id} was already counted") from None
    return done


# -- the hash chain ----------------------------------------------------------------------


def seal_hash(prev_hash: str, district_id: int, seq: int, entry_id: int, content: str) -> str:
    """Return the hash of one chain link."""
    link = f"{prev_hash}|{district_id}|{seq}|{entry_id}|{content}"
    return hashlib.sha256(link.encode()).hexdigest()


def seal(district_id: int | None = None, *, batch: int = 5000) -> int:
    """Link queued entries into their district's hash chain; return how many were sealed.

    Writers only queue their entries, so a district's writers never wait on its chain;
    run this often (the `points ledger seal` command, cron, or after a batch).
    """
    query = select(UnsealedEntry.district_id).distinct().order_by(UnsealedEntry.district_id)
    if district_id is not None:
        query = query.where(UnsealedEntry.district_id == district_id)
    districts = db.session.scalars(query).all()
    db.session.rollback()
    total = 0
    for node in districts:
        while True:
            sealed = atomic(lambda node=node: _seal_batch(node, batch))
            total += sealed
            if sealed < batch:
                break
    return total


def _seal_batch(district_id: int, batch: int) -> int:
    db.session.execute(
        _dialect_insert(ChainHead)
        .values(district_id=district_id, seq=0, hash=GENESIS_HASH)
        .on_conflict_do_nothing()
    )
    head = db.session.execute(
        select(ChainHead.seq, ChainHead.hash)
        .where(ChainHead.district_id == district_id)
        .with_for_update()
    ).one()
    queued = db.session.execute(
        select(UnsealedEntry.entry_id, Entry.hash)
        .join(Entry, Entry.id == UnsealedEntry.entry_id)
        .where(UnsealedEntry.district_id == district_id)
        .order_by(UnsealedEntry.entry_id)
        .limit(batch)
    ).all()
    if not queued:
        return 0
    seq, prev = head.seq, head.hash
    now = utcnow()
    links = []
    for entry_id, content in queued:
        seq += 1
        link = seal_hash(prev, district_id, seq, entry_id, content)
        links.append(
            {
                "district_id": district_id,
                "seq": seq,
                "entry_id": entry_id,
                "prev_hash": prev,
                "hash": link,
                "created_at": now,
            }
        )
        prev = link
    db.session.execute(Seal.__table__.insert(), links)
    db.session.execute(
        delete(UnsealedEntry).where(UnsealedEntry.entry_id.in_([e for e, _ in queued]))
    )
    db.session.execute(
        update(ChainHead).where(ChainHead.district_id == district_id).values(seq=seq, hash=prev)
    )
    return len(queued)
