"""Account lookups, opening accounts, and balance reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select, update

from points.errors import (
    AccountClosedError,
    InvalidInputError,
    NotFoundError,
)
from points.extensions import db
from points.ledger.units import (
    Balance,
    HoldState,
    PostedEntry,
    _dialect_insert,
    atomic,
    run,
)
from points.models import (
    Account,
    Entry,
    Hold,
    Posting,
    Provider,
    utcnow,
)

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


# Hot statements, built once (see units.run).
_accounts = Account.__table__
_ROW = (_accounts.c.id, _accounts.c.district_id, _accounts.c.kind, _accounts.c.status)
_BALANCE = select(_accounts.c.id, _accounts.c.balance, _accounts.c.held).where(
    _accounts.c.volunteer_id == bindparam("volunteer_id")
)
_VOLUNTEER_ACCOUNT = select(*_ROW).where(_accounts.c.volunteer_id == bindparam("volunteer_id"))
_SYSTEM_ACCOUNT = select(*_ROW).where(
    _accounts.c.district_id == bindparam("district_id"), _accounts.c.kind == bindparam("kind")
)
# A volunteer's account and their district's issuance account, in one round trip.
_EARNING_ACCOUNTS = _VOLUNTEER_ACCOUNT.union_all(
    select(*_ROW).where(
        _accounts.c.kind == "issuance",
        _accounts.c.district_id
        == select(_accounts.c.district_id)
        .where(_accounts.c.volunteer_id == bindparam("volunteer_id"))
        .scalar_subquery(),
    )
)


def balance(volunteer_id: int) -> Balance:
    """Return the volunteer's cached balance: one indexed row, whatever the history."""
    row = run(_BALANCE, {"volunteer_id": volunteer_id}).one_or_none()
    if row is None:
        raise NotFoundError(f"no account for volunteer {volunteer_id}")
    return Balance(volunteer_id, row.id, row.balance, row.held, row.balance - row.held)


class _AccountRow(NamedTuple):
    id: int
    district_id: int
    kind: str
    status: str


def _check_volunteer_id(volunteer_id: Any, field: str) -> None:
    if isinstance(volunteer_id, bool) or not isinstance(volunteer_id, int):
        raise InvalidInputError(
            f"{field} must be a volunteer id", errors={field: ["Must be an integer id."]}
        )


def _no_volunteer(volunteer_id: Any, field: str) -> NotFoundError:
    return NotFoundError(f"no volunteer {volunteer_id}", errors={field: ["No such volunteer."]})


def _volunteer_account(volunteer_id: Any, field: str = "volunteer_id") -> _AccountRow:
    _check_volunteer_id(volunteer_id, field)
    row = run(_VOLUNTEER_ACCOUNT, {"volunteer_id": volunteer_id}).one_or_none()
    if row is None:
        raise _no_volunteer(volunteer_id, field)
    return _AccountRow(*row)


def _earning_accounts(volunteer_id: Any) -> tuple[_AccountRow, _AccountRow]:
    """Return the volunteer's account and their district's issuance account."""
    _check_volunteer_id(volunteer_id, "volunteer_id")
    rows = [_AccountRow(*row) for row in run(_EARNING_ACCOUNTS, {"volunteer_id": volunteer_id})]
    volunteer = next((row for row in rows if row.kind == "volunteer"), None)
    issuance = next((row for row in rows if row.kind == "issuance"), None)
    if volunteer is None:
        raise _no_volunteer(volunteer_id, "volunteer_id")
    if issuance is None:
        raise NotFoundError(f"district {volunteer.district_id} has no issuance account")
    return volunteer, issuance


def _system_account(district_id: int, kind: str) -> _AccountRow:
    row = run(_SYSTEM_ACCOUNT, {"district_id": district_id, "kind": kind}).one_or_none()
    if row is None:
        raise NotFoundError(f"district {district_id} has no {kind} account")
    return _AccountRow(*row)


_providers = Provider.__table__
# The provider's status and, when opened already, its account in the node: one round trip.
_PROVIDER_ACCOUNT = (
    select(_providers.c.status.label("provider_status"), *_ROW)
    .select_from(_providers)
    .outerjoin(
        _accounts,
        (_accounts.c.provider_id == _providers.c.id)
        & (_accounts.c.district_id == bindparam("district_id")),
    )
    .where(_providers.c.id == bindparam("provider_id"))
)


def _provider_account(provider_id: Any, district_id: int) -> _AccountRow:
    """Return the provider's account in `district_id`, opening it on first use."""
    if isinstance(provider_id, bool) or not isinstance(provider_id, int):
        raise InvalidInputError(
            "provider_id must be a provider id", errors={"provider_id": ["Must be an integer id."]}
        )
    found = run(
        _PROVIDER_ACCOUNT, {"provider_id": provider_id, "district_id": district_id}
    ).one_or_none()
    if found is None:
        raise NotFoundError(
            f"no provider {provider_id}", errors={"provider_id": ["No such provider."]}
        )
    if found.provider_status != "active":
        raise AccountClosedError(f"provider {provider_id} is closed")
    if found.id is not None:
        return _AccountRow(found.id, found.district_id, found.kind, found.status)
    run(
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
    found = run(_PROVIDER_ACCOUNT, {"provider_id": provider_id, "district_id": district_id}).one()
    return _AccountRow(found.id, found.district_id, found.kind, found.status)


_ACCOUNTS_BY_ID = select(*_ROW).where(_accounts.c.id.in_(bindparam("ids", expanding=True)))


def _accounts_by_id(account_ids: Iterable[int]) -> dict[int, _AccountRow]:
    rows = run(_ACCOUNTS_BY_ID, {"ids": list(account_ids)})
    return {row.id: _AccountRow(*row) for row in rows}


# -- accounts ----------------------------------------------------------------------------


def open_district_accounts(district_id: int) -> None:
    """Open the issuance, expired, clearing and settled accounts of a district node
    (idempotent)."""
    for kind in ("issuance", "expired", "clearing", "settled"):
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
