"""The business operations: earn, hold, redeem, transfer, expire, reverse, minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from points.database import Prepared
from points.errors import (
    AccountClosedError,
    AlreadyReversedError,
    ConflictError,
    HoldExpiredError,
    HoldStateError,
    InsufficientPointsError,
    InvalidInputError,
    NotFoundError,
)
from points.extensions import db
from points.ledger import fused
from points.ledger.accounts import (
    _AccountRow,
    _accounts_by_id,
    _earning_accounts,
    _provider_account,
    _system_account,
    _volunteer_account,
    load_entry,
    load_hold,
)
from points.ledger.posting import (
    _lots_used_by,
    _post,
    _utc_text,
    balance_of_account,
)
from points.ledger.units import (
    MAX_SERVICE_MINUTES,
    HoldState,
    LedgerInvariantError,
    PostedEntry,
    _check_text,
    _check_time,
    _dialect_insert,
    _end_read,
    atomic,
    check_points,
    idempotent,
    run,
)
from points.models import (
    Account,
    District,
    Entry,
    Hold,
    Lot,
    Posting,
    Redemption,
    ServiceMinutes,
    Volunteer,
    utcnow,
)


def _entry_result(entry: PostedEntry) -> dict:
    return {"entry_id": entry.id}


def _entry_replay(result: dict) -> PostedEntry:
    return load_entry(result["entry_id"], replayed=True)


def _hold_result(hold: HoldState) -> dict:
    return {"hold_id": hold.id}


def _hold_replay(result: dict) -> HoldState:
    return load_hold(result["hold_id"], replayed=True)


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
        account, issuance = _earning_accounts(volunteer_id)
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

    def first_try(fingerprint: str | None) -> PostedEntry | None:
        return fused.earn(
            volunteer_id,
            points,
            actor=actor,
            reason=reason,
            effective_at=effective_at,
            expires_at=expires_at,
            plugin=plugin,
            rule=rule,
            config_version=config_version,
            service_record_id=service_record_id,
            key=idempotency_key,
            scope=idempotency_scope,
            fingerprint=fingerprint,
        )

    return idempotent(
        "earn",
        arguments,
        idempotency_key,
        idempotency_scope,
        work,
        _entry_result,
        _entry_replay,
        first_try=first_try if fused.enabled() else None,
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
        return _hold(volunteer_id, points, provider_id, actor, reason, expires_at)[0]

    arguments = {
        "volunteer_id": volunteer_id,
        "points": points,
        "provider_id": provider_id,
        "reason": reason,
        "expires_at": expires_at,
    }
    return idempotent(
        "hold", arguments, idempotency_key, idempotency_scope, work, _hold_result, _hold_replay
    )


def _hold(
    volunteer_id: int,
    points: int,
    provider_id: int,
    actor: str,
    reason: str,
    expires_at: datetime | None,
) -> tuple[HoldState, dict[int, _AccountRow]]:
    """Hold the points; return the hold and the two accounts it is between."""
    account = _volunteer_account(volunteer_id)
    destination = _provider_account(provider_id, account.district_id)
    now = utcnow()
    if expires_at is None:
        expires_at = now + timedelta(minutes=current_app.config["HOLD_MINUTES"])
    elif expires_at <= now:
        raise InvalidInputError(
            "a hold must expire in the future", errors={"expires_at": ["Must be in the future."]}
        )
    done = run(_HOLD_POINTS, {"account_id": account.id, "points": points})
    if done.rowcount != 1:
        if account.status != "open":
            raise AccountClosedError(f"volunteer {volunteer_id}'s account is closed")
        have = balance_of_account(account.id)
        raise InsufficientPointsError(
            f"needs {points} points, {have} available",
            errors={"points": [f"Only {have} points are available."]},
        )
    hold_id = run(
        _INSERT_HOLD,
        {
            "district_id": account.district_id,
            "account_id": account.id,
            "destination_id": destination.id,
            "amount": points,
            "status": "pending",
            "expires_at": expires_at,
            "actor": actor,
            "reason": reason,
            "created_at": now,
        },
    ).scalar_one()
    held = HoldState(hold_id, account.id, points, "pending", expires_at)
    return held, {account.id: account, destination.id: destination}


_holds = Hold.__table__
_accounts = Account.__table__
_HOLD_POINTS = (
    update(_accounts)
    .where(
        _accounts.c.id == bindparam("account_id"),
        _accounts.c.status == "open",
        _accounts.c.balance - _accounts.c.held >= bindparam("points"),
    )
    .values(held=_accounts.c.held + bindparam("points"))
)
_RELEASE_POINTS = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account_id"), _accounts.c.held >= bindparam("points"))
    .values(held=_accounts.c.held - bindparam("points"))
)
_INSERT_HOLD = _holds.insert().returning(_holds.c.id)
_HOLD_COLUMNS = (
    _holds.c.id,
    _holds.c.district_id,
    _holds.c.account_id,
    _holds.c.destination_id,
    _holds.c.amount,
    _holds.c.status,
    _holds.c.expires_at,
    _holds.c.reason,
)
_RESOLVE_HOLD = (
    update(_holds)
    .where(
        _holds.c.id == bindparam("hold_id"),
        _holds.c.status == "pending",
        _holds.c.expires_at > bindparam("due", type_=_holds.c.expires_at.type),
    )
    .values(
        status=bindparam("new_status"),
        resolved_at=bindparam("now", type_=_holds.c.resolved_at.type),
        resolved_by=bindparam("resolver"),
        resolution=bindparam("why"),
    )
    .returning(*_HOLD_COLUMNS)
)
_HOLD_ROW = select(*_HOLD_COLUMNS).where(_holds.c.id == bindparam("hold_id"))


def _resolve_hold(hold_id: Any, status: str, actor: str, resolution: str | None, now: datetime):
    """Move a pending hold to `status`; return the hold row. The hold is locked first."""
    if isinstance(hold_id, bool) or not isinstance(hold_id, int):
        raise InvalidInputError("hold_id must be an integer", errors={"hold_id": ["Not an id."]})
    values = {
        "hold_id": hold_id,
        "new_status": status,
        "now": now,
        "resolver": actor,
        "why": resolution,
        # Only a posting must happen before the expiry; a void or time-out may come later.
        "due": now if status == "posted" else datetime.min.replace(tzinfo=UTC),
    }
    row = run(_RESOLVE_HOLD, values).one_or_none()
    if row is not None:
        return row
    row = run(_HOLD_ROW, {"hold_id": hold_id}).one_or_none()
    if row is None:
        raise NotFoundError(f"no hold {hold_id}")
    if row.status == "pending":
        raise HoldExpiredError(f"hold {hold_id} expired at {row.expires_at.isoformat()}")
    raise HoldStateError(f"hold {hold_id} is already {row.status}")


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

    return idempotent(
        "post_hold",
        {"hold_id": hold_id, "reason": reason},
        idempotency_key,
        idempotency_scope,
        work,
        _entry_result,
        _entry_replay,
    )


def _post_hold(
    hold_id: int, actor: str, reason: str | None, accounts: dict | None = None
) -> PostedEntry:
    row = _resolve_hold(hold_id, "posted", actor, reason, utcnow())
    accounts = accounts or _accounts_by_id([row.account_id, row.destination_id])
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
    done = run(_RELEASE_POINTS, {"account_id": row.account_id, "points": row.amount})
    if done.rowcount != 1:
        raise LedgerInvariantError(f"account {row.account_id} holds less than hold {hold_id}")
    return HoldState(row.id, row.account_id, row.amount, status, row.expires_at)


def time_out_holds(as_of: datetime | None = None, *, actor: str = "system:holds") -> int:
    """Time out every pending hold whose expiry is at or before `as_of`; return how many."""
    as_of = _check_time(as_of, "as_of") or utcnow()
    due = db.session.scalars(
        select(Hold.id).where(Hold.status == "pending", Hold.expires_at <= as_of).order_by(Hold.id)
    ).all()
    _end_read()
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
        held, accounts = _hold(volunteer_id, points, provider_id, actor, reason, None)
        return _post_hold(held.id, actor, reason, accounts)

    arguments = {
        "volunteer_id": volunteer_id,
        "points": points,
        "provider_id": provider_id,
        "reason": reason,
    }

    def first_try(fingerprint: str | None) -> PostedEntry | None:
        return fused.redeem(
            volunteer_id,
            points,
            provider_id=provider_id,
            actor=actor,
            reason=reason,
            key=idempotency_key,
            scope=idempotency_scope,
            fingerprint=fingerprint,
        )

    return idempotent(
        "redeem",
        arguments,
        idempotency_key,
        idempotency_scope,
        work,
        _entry_result,
        _entry_replay,
        first_try=first_try if fused.enabled() else None,
    )


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
    return idempotent(
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
        .where(Lot.is_open, Lot.expires_at <= as_of)
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
    _end_read()
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
    # int(): PostgreSQL sums bigint into numeric, which would not hash as JSON.
    due = int(
        db.session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0)).where(
                Lot.account_id == account_id, Lot.is_open, Lot.expires_at <= as_of
            )
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
        reason=(
            f"{points} 分积分到期失效（{_utc_text(as_of)} 前到期） / "
            f"{points} points expired (lots due by {_utc_text(as_of)})"
        ),
        effective_at=as_of,
        bookkeeping=True,
    )


# -- settlement --------------------------------------------------------------------------


def settle(provider_account_id: int, points: int, *, actor: str, reason: str) -> PostedEntry:
    """Move `points` out of a provider's account into its node's `settled` account: the
    office paid the provider for them (points.settlements decides how many). Joins the
    caller's unit of work. Raises NotFoundError, InvalidInputError."""
    check_points(points)
    _check_text(actor, "actor")
    _check_text(reason, "reason")

    def work() -> PostedEntry:
        account = _accounts_by_id([provider_account_id]).get(provider_account_id)
        if account is None or account.kind != "provider":
            raise NotFoundError(f"no provider account {provider_account_id}")
        settled = _settled_account(account.district_id)
        return _post(
            account.district_id,
            "settle",
            [(account, -points), (settled, points)],
            actor=actor,
            reason=reason,
        )

    return atomic(work)


def _settled_account(district_id: int) -> _AccountRow:
    """The node's settled account, opened on first use (nodes older than migration 0015
    have none)."""
    db.session.execute(
        _dialect_insert(Account)
        .values(district_id=district_id, kind="settled", held=0, status="open", created_at=utcnow())
        .on_conflict_do_nothing()
    )
    return _system_account(district_id, "settled")


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

    return idempotent(
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
    if entry.kind == "settle":
        # Its vouchers name their settlement: paid money is not unpaid by a ledger entry.
        raise ConflictError(f"entry {entry_id} settles a provider; it cannot be reversed")
    if entry.kind == "redeem" and db.session.scalar(
        select(Redemption.settlement_id).where(Redemption.entry_id == entry_id)
    ):
        raise ConflictError(f"entry {entry_id} pays a settled voucher; it cannot be reversed")
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
    counted_at: datetime | None = None,
) -> int:
    """Credit approved service time; return the volunteer's new total of minutes.

    Service minutes only grow: spending points never lowers them. `counted_at` (default
    now) is when reports count them: an imported paper record's service date. Raises
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
    _check_time(counted_at, "counted_at")
    return atomic(
        lambda: _move_minutes(
            volunteer_id, minutes, "service", actor, reason, service_record_id, counted_at
        )
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


_volunteers = Volunteer.__table__
# SQLite runs these two as Prepared statements: a record counts its minutes, a bare earn
# does not, and their per-call Python is most of what they cost in process.
_ADD_MINUTES = Prepared(
    update(_volunteers)
    .where(
        _volunteers.c.id == bindparam("volunteer_id"),
        _volunteers.c.service_minutes + bindparam("minutes") >= 0,
    )
    .values(service_minutes=_volunteers.c.service_minutes + bindparam("minutes"))
    .returning(_volunteers.c.service_minutes, _volunteers.c.district_id)
)
_INSERT_MINUTES = Prepared(
    ServiceMinutes.__table__.insert().values(
        {
            name: bindparam(name)
            for name in (
                "district_id",
                "volunteer_id",
                "minutes",
                "kind",
                "actor",
                "reason",
                "service_record_id",
                "created_at",
            )
        }
    )
)
# PostgreSQL moves the total and writes the audit row in one round trip: a
# data-modifying WITH runs once, whole, whether or not the outer query reads it. Its
# UPDATE is _ADD_MINUTES; no row back means what it means there. (SQLite, in process,
# runs the two statements.)
_MOVE_MINUTES_PG = text(
    """
    WITH moved AS (
        UPDATE volunteers SET service_minutes = service_minutes + :minutes
        WHERE id = :volunteer_id AND service_minutes + :minutes >= 0
        RETURNING service_minutes, district_id
    ), counted AS (
        INSERT INTO service_minutes (district_id, volunteer_id, minutes, kind, actor,
                                     reason, service_record_id, created_at)
        SELECT district_id, :volunteer_id, :minutes, :kind, :actor, :reason,
               :service_record_id, :created_at
        FROM moved
    )
    SELECT service_minutes, district_id FROM moved
    """
)


def _move_minutes(
    volunteer_id, minutes, kind, actor, reason, service_record_id, counted_at=None
) -> int:
    _check_text(actor, "actor")
    _check_text(reason, "reason")
    if isinstance(volunteer_id, bool) or not isinstance(volunteer_id, int):
        raise InvalidInputError(
            "volunteer_id must be an id", errors={"volunteer_id": ["Not an id."]}
        )
    row = {
        "volunteer_id": volunteer_id,
        "minutes": minutes,
        "kind": kind,
        "actor": actor,
        "reason": reason,
        "service_record_id": service_record_id,
        "created_at": counted_at or utcnow(),
    }
    try:
        if db.engine.dialect.name == "postgresql":
            done = run(_MOVE_MINUTES_PG, row).one_or_none()
        else:
            connection = db.session.connection()
            moved = _ADD_MINUTES.rows(connection, row)
            done = moved[0] if moved else None
            if done is not None:
                _INSERT_MINUTES.rows(connection, {**row, "district_id": done.district_id})
    except IntegrityError:
        raise ConflictError(f"service record {service_record_id} was already counted") from None
    if done is None:
        if db.session.get(Volunteer, volunteer_id) is None:
            raise NotFoundError(f"no volunteer {volunteer_id}")
        raise InvalidInputError(
            "service minutes cannot go below zero",
            errors={"minutes": ["The correction is larger than the volunteer's minutes."]},
        )
    return done.service_minutes
