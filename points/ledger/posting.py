"""Writing one balanced entry: cached balances, postings, lots and lot uses."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, union_all, update

from points.errors import (
    AccountClosedError,
    CrossDistrictError,
    InsufficientPointsError,
)
from points.extensions import db
from points.ledger.accounts import (
    _AccountRow,
)
from points.ledger.units import (
    LedgerInvariantError,
    PostedEntry,
    after_commit,
    run,
)
from points.models import (
    Account,
    Entry,
    Lot,
    LotUse,
    Posting,
    UnsealedEntry,
    utcnow,
)
from points.signals import entry_committed

# -- posting -----------------------------------------------------------------------------


def entry_hash(fields: dict[str, Any], postings: Iterable[tuple[int, int]]) -> str:
    """Return the sha256 content hash of an entry's fields and its postings."""
    return hashlib.sha256(_canonical(fields, postings).encode()).hexdigest()


def entry_hash_around(
    fields: dict[str, Any], postings: Iterable[tuple[int, int]], hole: str
) -> tuple[bytes, bytes] | None:
    """Return the canonical content of an entry as the bytes before and after the value
    of the integer field `hole`, for a writer that learns that id only in the database
    (sha256(head + str(id) + tail) is then `entry_hash` with the id filled in).

    Returns None if the split is not unique (it always is: a key's quote cannot occur
    unescaped inside a string value).
    """
    text = _canonical({**fields, hole: 0}, postings)
    marker = f'"{hole}":0'
    if text.count(marker) != 1:
        return None
    head, tail = text.split(marker)
    return (head + f'"{hole}":').encode(), tail.encode()


def _canonical(fields: dict[str, Any], postings: Iterable[tuple[int, int]]) -> str:
    content = dict(fields)
    content["effective_at"] = _utc_text(content["effective_at"])
    content["postings"] = sorted(postings)
    return _CANONICAL_JSON.encode(content)


# json.dumps with these options builds a new encoder per call; every write hashes.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_fields(
    district_id: int,
    kind: str,
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
) -> dict[str, Any]:
    """Return the columns of a new entry that its hash covers (HASHED_FIELDS)."""
    return {
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


# The hot path's statements, built once: building a statement costs more than running it.
_accounts = Account.__table__
_lots = Lot.__table__
_CREDIT = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account_id"), _accounts.c.status == "open")
    .values(balance=_accounts.c.balance + bindparam("points"))
)
_DEBIT_ANY_STATUS = (
    update(_accounts)
    .where(
        _accounts.c.id == bindparam("account_id"),
        _accounts.c.balance - _accounts.c.held >= bindparam("points"),
    )
    .values(balance=_accounts.c.balance - bindparam("points"))
)
_DEBIT = _DEBIT_ANY_STATUS.where(_accounts.c.status == "open")
# Points reserved by a hold leave balance and held together.
_DEBIT_HELD = (
    update(_accounts)
    .where(_accounts.c.id == bindparam("account_id"), _accounts.c.held >= bindparam("points"))
    .values(
        balance=_accounts.c.balance - bindparam("points"),
        held=_accounts.c.held - bindparam("points"),
    )
)
_INSERT_ENTRY = Entry.__table__.insert().returning(Entry.__table__.c.id)
_INSERT_POSTINGS = Posting.__table__.insert()
_INSERT_UNSEALED = UnsealedEntry.__table__.insert()
_INSERT_LOTS = _lots.insert()
_OPEN_LOTS = (
    select(_lots.c.id, _lots.c.remaining, _lots.c.expires_at)
    .where(_lots.c.account_id == bindparam("account_id"), _lots.c.is_open)
    .order_by(_lots.c.expires_at.is_(None), _lots.c.expires_at, _lots.c.id)
)
# A debit usually needs one or two lots: read a few at a time, not every open lot.
_OPEN_LOTS_PAGE = _OPEN_LOTS.limit(bindparam("page")).offset(bindparam("skip"))
LOT_PAGE = 16
_USE_LOT = (
    update(_lots)
    .where(_lots.c.id == bindparam("lot_id"))
    .values(remaining=_lots.c.remaining - bindparam("take"))
)
_INSERT_LOT_USES = LotUse.__table__.insert()


def _apply_to_bounded(
    account: _AccountRow, amount: int, *, from_hold: bool = False, bookkeeping: bool = False
) -> None:
    """Move a volunteer account's cached balance by `amount`, never below what is held."""
    if amount > 0:
        done = run(_CREDIT, {"account_id": account.id, "points": amount})
        if done.rowcount != 1:
            raise AccountClosedError(f"account {account.id} is closed")
        return
    debit = -amount
    if from_hold:
        statement = _DEBIT_HELD
    elif bookkeeping:
        statement = _DEBIT_ANY_STATUS
    else:
        statement = _DEBIT
    done = run(statement, {"account_id": account.id, "points": debit})
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
    row = run(
        select(_accounts.c.balance, _accounts.c.held).where(_accounts.c.id == account_id)
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

    fields = entry_fields(
        district_id,
        kind,
        actor=actor,
        reason=reason,
        effective_at=effective_at,
        plugin=plugin,
        rule=rule,
        config_version=config_version,
        service_record_id=service_record_id,
        hold_id=hold_id,
        reverses_id=reverses_id,
        related_entry_id=related_entry_id,
    )
    pairs = tuple((account.id, amount) for account, amount in postings)
    fields_hash = entry_hash(fields, pairs)
    entry_id = run(
        _INSERT_ENTRY, {**fields, "created_at": utcnow(), "hash": fields_hash}
    ).scalar_one()

    # The lots each volunteer debit spends, by posting, taken at once (a later debit of
    # the same account reads what is left). A debit that one lot covers names it on its
    # posting; one that spans lots has a lot use per lot.
    spent: list[list[SpentLot]] = []
    for account, amount in postings:
        lots = []
        if account.kind == "volunteer" and amount < 0:
            lots = _lots_to_spend(account, -amount, (debit_first_lot or {}).get(account.id))
            run(_USE_LOT, [{"lot_id": lot.lot_id, "take": lot.take} for lot in lots])
        spent.append(lots)
    run(
        _INSERT_POSTINGS,
        [
            {
                "entry_id": entry_id,
                "district_id": district_id,
                "account_id": account_id,
                "amount": amount,
                "lot_id": lots[0].lot_id if len(lots) == 1 else None,
            }
            for (account_id, amount), lots in zip(pairs, spent, strict=True)
        ],
    )
    run(_INSERT_UNSEALED, {"entry_id": entry_id, "district_id": district_id})
    uses = [lot for lots in spent if len(lots) > 1 for lot in lots]
    if uses:
        run(
            _INSERT_LOT_USES,
            [
                {
                    "district_id": district_id,
                    "lot_id": lot.lot_id,
                    "entry_id": entry_id,
                    "amount": lot.take,
                }
                for lot in uses
            ],
        )

    consumed = [(lot.take, lot.expires_at) for lots in spent for lot in lots]
    for account, amount in postings:
        if account.kind == "volunteer" and amount > 0:
            if mirror_lots:
                lots = _merge_lots(consumed)
            elif credit_lots and account.id in credit_lots:
                # Given, they must add up: an empty list is a lookup that found no lots,
                # not a lot that never expires.
                lots = credit_lots[account.id]
            else:
                lots = [(amount, None)]
            if sum(a for a, _ in lots) != amount:
                raise LedgerInvariantError(f"lots of account {account.id} do not sum to {amount}")
            _create_lots(account, entry_id, lots)
    after_commit(lambda: entry_committed.send(kind))
    return PostedEntry(entry_id, kind, district_id, pairs, related_entry_id)


def _create_lots(
    account: _AccountRow, entry_id: int, lots: list[tuple[int, datetime | None]]
) -> None:
    now = utcnow()
    run(
        _INSERT_LOTS,
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


class SpentLot(NamedTuple):
    """Points a debit takes from one lot."""

    lot_id: int
    take: int
    expires_at: datetime | None


def _lots_to_spend(account: _AccountRow, amount: int, first_lot: int | None) -> list[SpentLot]:
    """Choose the lots a debit of `amount` spends: `first_lot` first if given, then
    soonest expiry first (never-expiring last). The caller holds the account's row
    lock, so no other unit spends these lots meanwhile."""
    if first_lot is not None:
        open_lots = run(_OPEN_LOTS, {"account_id": account.id}).all()
        open_lots.sort(key=lambda lot: lot.id != first_lot)
        pages = [open_lots]
    else:
        pages = _lot_pages(account.id)
    spent: list[SpentLot] = []
    left = amount
    for page in pages:
        for lot in page:
            if left == 0:
                break
            take = min(left, lot.remaining)
            spent.append(SpentLot(lot.id, take, lot.expires_at))
            left -= take
        if left == 0:
            break
    if left:
        raise LedgerInvariantError(f"lots of account {account.id} hold less than its balance")
    return spent


def _lot_pages(account_id: int):
    """Yield the account's open lots in spending order, a page at a time."""
    skip = 0
    while True:
        page = run(
            _OPEN_LOTS_PAGE, {"account_id": account_id, "page": LOT_PAGE, "skip": skip}
        ).all()
        if not page:
            return
        yield page
        skip += len(page)


def lot_spending():
    """Every spending of a lot, as rows (lot_id, entry_id, amount): the lot uses of
    debits that span lots, and the debit postings that name their one lot."""
    return union_all(
        select(LotUse.lot_id, LotUse.entry_id, LotUse.amount),
        select(Posting.lot_id, Posting.entry_id, (-Posting.amount).label("amount")).where(
            Posting.lot_id.is_not(None)
        ),
    ).subquery("lot_spending")


def _lots_used_by(entry_id: int, account_id: int) -> list[tuple[int, datetime | None]]:
    """Return (amount, expires_at) of the lots an entry consumed on one account."""
    spending = lot_spending()
    rows = db.session.execute(
        select(spending.c.amount, Lot.expires_at)
        .join(Lot, Lot.id == spending.c.lot_id)
        .where(spending.c.entry_id == entry_id, Lot.account_id == account_id)
        .order_by(Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
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
