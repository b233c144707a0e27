"""The office's volunteers: search, edit, suspend, PIN resets, activation codes, card
unlocks and reissues.

Each change checks that an office (or admin) reaches the volunteer's node, and writes its
audit row in the same unit of work. Auditors read the roster with phone numbers masked.
Registration is points.directory.register_volunteer (the command line and the demo use
it too).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from points import audit, auth, ledger
from points.activation import UNUSABLE_PIN_HASH, hash_activation, new_activation_code
from points.auth import Principal
from points.directory import hash_pin, new_card_code, pin_problem
from points.errors import ForbiddenError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import Account, ApiToken, District, Volunteer, utcnow
from points.volunteers import mask_phone

PHONE_PATTERN = re.compile(r"^\+?[0-9 -]{5,20}$")
STATES = ("active", "suspended")
# A search lists at most this many volunteers a page.
PAGE_SIZE = 50
# The audit row's pin while a volunteer has an activation code and no PIN yet.
_PENDING = {"pin": "activation pending"}


@dataclass(frozen=True)
class RosterRow:
    """A volunteer as the office's list shows them."""

    id: int
    name: str
    phone: str | None
    card_code: str | None
    status: str
    district_code: str
    district_name: str
    locked_until: datetime | None
    balance: int
    held: int
    service_minutes: int

    @property
    def available(self) -> int:
        return self.balance - self.held

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "available": self.available, "district": self.district_code}


def _require_office(principal: Principal) -> None:
    if principal.role not in ("office", "admin"):
        raise ForbiddenError("only an office or an admin changes volunteers")


def search(
    principal: Principal,
    q: str = "",
    *,
    district: str | None = None,
    status: str | None = None,
    after: tuple[str, int] | None = None,
    limit: int = PAGE_SIZE,
) -> list[RosterRow]:
    """Volunteers of `principal`'s node (or of `district` below it) ordered by name.

    `q` matches a card code or a phone number exactly, or the start of a name: each an
    index lookup, so a search stays fast as the node grows. `after` is the (name, id) of
    the last row of the page before. Auditors see phone numbers masked.
    """
    scope = principal.path
    if district:
        node = db.session.execute(
            select(District.path).where(District.code == district)
        ).scalar_one_or_none()
        if node is None:
            raise NotFoundError(f"no district {district!r}", errors={"district": ["No such node."]})
        auth.require_scope(principal, node, "this district node")
        scope = node
    statement = (
        select(
            Volunteer.id,
            Volunteer.name,
            Volunteer.phone,
            Volunteer.card_code,
            Volunteer.status,
            District.code,
            District.name,
            Volunteer.locked_until,
            Account.balance,
            Account.held,
            Volunteer.service_minutes,
        )
        .join(District, District.id == Volunteer.district_id)
        .join(Account, Account.volunteer_id == Volunteer.id)
    )
    if principal.role != "admin" or district:
        statement = statement.where(District.path.startswith(scope, autoescape=True))
    q = (q or "").strip()
    if q:
        compact = "".join(q.split())
        statement = statement.where(
            or_(
                Volunteer.card_code == compact.upper(),
                Volunteer.phone == q,
                # A name starting with q, as a range: one index lookup on both databases
                # (SQLite's LIKE is case-folding and cannot use the index).
                (Volunteer.name >= q) & (Volunteer.name < q + "\U0010ffff"),
            )
        )
    if status:
        statement = statement.where(Volunteer.status == status)
    if after is not None:
        name, last_id = after
        statement = statement.where(
            or_(Volunteer.name > name, (Volunteer.name == name) & (Volunteer.id > last_id))
        )
    rows = db.session.execute(
        statement.order_by(Volunteer.name, Volunteer.id).limit(max(1, min(limit, 200)))
    ).all()
    if principal.role != "auditor":
        return [RosterRow(*row) for row in rows]
    # Auditors read, they do not serve: no phone number in full, no card code.
    return [RosterRow(*row[:2], mask_phone(row[2]), None, *row[4:]) for row in rows]


def _locked_row(volunteer_id: int) -> Volunteer:
    row = db.session.scalar(select(Volunteer).where(Volunteer.id == volunteer_id).with_for_update())
    if row is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    return row


# What a credentials change writes in the audit row: (before, after); None: no change.
_Audited = tuple[dict[str, Any] | None, dict[str, Any] | None]


def _renew_credentials(
    volunteer_id: int, action: str, change: Callable[[Volunteer], _Audited | None]
) -> Volunteer | None:
    """In the unit of work open now: lock the volunteer's row and make `change` to it (a
    new PIN, activation code or card code); then clear the card's lockout, end their
    sessions and audit `action` with what `change` returned. Return the row, or None when
    `change` returned None and left the volunteer as they were."""
    row = _locked_row(volunteer_id)
    audited = change(row)
    if audited is None:
        return None
    before, after = audited
    row.failed_pins = 0
    row.locked_until = None
    db.session.flush()
    _end_sessions(volunteer_id)
    audit.record(
        action,
        district_id=row.district_id,
        target=("volunteer", volunteer_id),
        before=before,
        after=after,
    )
    return row


def update_volunteer(
    principal: Principal,
    volunteer_id: int,
    *,
    name: str | None = None,
    phone: str | None = None,
    clear_phone: bool = False,
) -> None:
    """Change a volunteer's name or phone (`clear_phone` removes it). Raises
    InvalidInputError, NotFoundError, ForbiddenError."""
    _require_office(principal)
    auth.reach_volunteer(principal, volunteer_id)
    errors: dict[str, list[str]] = {}
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        errors["name"] = ["Must not be empty; at most 200 characters."]
    if phone is not None and (not isinstance(phone, str) or not PHONE_PATTERN.match(phone)):
        errors["phone"] = ["Digits, spaces and '-', 5 to 20."]
    if errors:
        raise InvalidInputError("invalid volunteer", errors=errors)
    phone_taken = InvalidInputError(
        "this phone number is already registered in the node",
        errors={"phone": ["Already registered to a volunteer of this node."]},
    )

    def work() -> None:
        row = _locked_row(volunteer_id)
        before = {"name": row.name, "phone": row.phone}
        new_phone = None if clear_phone else (phone if phone is not None else row.phone)
        if (
            new_phone is not None
            and new_phone != row.phone
            and db.session.scalar(
                select(Volunteer.id).where(
                    Volunteer.district_id == row.district_id, Volunteer.phone == new_phone
                )
            )
        ):
            raise phone_taken
        row.name = name.strip() if name is not None else row.name
        row.phone = new_phone
        try:
            db.session.flush()
        except IntegrityError:
            raise phone_taken from None
        was, now = audit.changed(before, {"name": row.name, "phone": row.phone})
        if now:
            audit.record(
                "volunteer.edit",
                district_id=row.district_id,
                target=("volunteer", volunteer_id),
                before=was,
                after=now,
            )

    ledger.atomic(work)


def set_status(principal: Principal, volunteer_id: int, status: str, reason: str = "") -> None:
    """Suspend a volunteer (their card and sessions stop working) or reactivate them.
    Raises InvalidInputError, NotFoundError, ForbiddenError."""
    _require_office(principal)
    auth.reach_volunteer(principal, volunteer_id)
    if status not in STATES:
        raise InvalidInputError("unknown status", errors={"status": [f"One of {STATES}."]})

    def work() -> None:
        row = _locked_row(volunteer_id)
        if row.status == "closed":
            raise InvalidInputError(
                "a closed volunteer cannot change status", errors={"status": ["Closed."]}
            )
        if row.status == status:
            return
        before = row.status
        row.status = status
        db.session.flush()
        if status == "suspended":
            _end_sessions(volunteer_id)
        audit.record(
            "volunteer.suspend" if status == "suspended" else "volunteer.reactivate",
            district_id=row.district_id,
            target=("volunteer", volunteer_id),
            before={"status": before},
            after={"status": status, "reason": (reason or "").strip()[:500] or None},
        )

    ledger.atomic(work)


def _end_sessions(volunteer_id: int) -> None:
    """End the volunteer's page and kiosk sessions (their own volunteer tokens stay for
    the office to revoke: they are listed with the tokens)."""
    from points.auth import SESSION_PREFIX, WEB_SESSION_NAME

    db.session.execute(
        update(ApiToken)
        .where(
            ApiToken.volunteer_id == volunteer_id,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.name == WEB_SESSION_NAME, ApiToken.name.startswith(SESSION_PREFIX)),
        )
        .values(revoked_at=utcnow())
    )


def new_pin(card_code: str) -> str:
    """A random PIN that pin_problem accepts for this card."""
    while True:
        pin = f"{secrets.randbelow(10**6):06d}"
        if pin_problem(pin, card_code) is None:
            return pin


def reset_pin(principal: Principal, volunteer_id: int) -> str:
    """Give a volunteer a new random PIN (returned: shown once, to hand over), unlock the
    card and end their sessions. Raises NotFoundError, ForbiddenError."""
    _require_office(principal)
    auth.reach_volunteer(principal, volunteer_id)
    code = db.session.scalar(select(Volunteer.card_code).where(Volunteer.id == volunteer_id))
    pin = new_pin(code)
    pin_hash = hash_pin(pin)

    def change(row: Volunteer) -> _Audited:
        row.pin_hash = pin_hash
        # A PIN handed over replaces any activation code still pending.
        row.activation_hash = None
        return None, None

    ledger.atomic(lambda: _renew_credentials(volunteer_id, "volunteer.pin_reset", change))
    return pin


def issue_activation(principal: Principal, volunteer_id: int) -> str:
    """Give a volunteer a new one-time activation code (returned: shown once, to print or
    hand over) with which they choose their PIN at first use. Their PIN, and any code
    issued before, stop working; the card unlocks and their sessions end. For a lost card
    sheet, or in place of a PIN reset. Raises NotFoundError, ForbiddenError."""
    _require_office(principal)
    auth.reach_volunteer(principal, volunteer_id)
    code = new_activation_code()
    activation_hash = hash_activation(code)

    def change(row: Volunteer) -> _Audited:
        had_pin = row.activation_hash is None
        row.pin_hash = UNUSABLE_PIN_HASH
        row.activation_hash = activation_hash
        return {"pin": "set" if had_pin else "activation pending"}, _PENDING

    ledger.atomic(lambda: _renew_credentials(volunteer_id, "volunteer.activation_issue", change))
    return code


def issue_activations(principal: Principal | None, district: str) -> dict[int, str]:
    """Give every active volunteer of `district` and the nodes below it who has not yet
    chosen a PIN a new activation code (their earlier codes stop: a roster's sheets were
    lost or never printed); return volunteer id -> code, shown once, for the card sheet.

    `principal` is the office asking, or None for the command line. Raises
    NotFoundError, ForbiddenError.
    """
    from points.directory import district_by_code

    if principal is not None:
        _require_office(principal)
    node = district_by_code(district)
    if principal is not None:
        auth.require_scope(principal, node.path)
    waiting = db.session.scalars(
        select(Volunteer.id)
        .join(District, District.id == Volunteer.district_id)
        .where(
            District.path.startswith(node.path, autoescape=True),
            Volunteer.status == "active",
            Volunteer.activation_hash.is_not(None),
        )
        .order_by(Volunteer.id)
    ).all()
    codes = {volunteer_id: new_activation_code() for volunteer_id in waiting}
    # Hashed before the unit of work opens: it holds no lock while the hashes are made.
    hashes = {volunteer_id: hash_activation(code) for volunteer_id, code in codes.items()}

    def change(row: Volunteer) -> _Audited | None:
        if row.activation_hash is None:
            return None  # activated meanwhile: their PIN stays
        row.activation_hash = hashes[row.id]
        return _PENDING, _PENDING

    def work() -> list[int]:
        """The volunteers left as they were; a retried unit asks again."""
        return [
            volunteer_id
            for volunteer_id in hashes
            if _renew_credentials(volunteer_id, "volunteer.activation_issue", change) is None
        ]

    for volunteer_id in ledger.atomic(work):
        codes.pop(volunteer_id)  # no code is printed for them
    return codes


def unlock_card(principal: Principal, volunteer_id: int) -> None:
    """Clear a card's wrong-PIN count and lock. Raises NotFoundError, ForbiddenError."""
    _require_office(principal)
    auth.reach_volunteer(principal, volunteer_id)

    def work() -> None:
        row = _locked_row(volunteer_id)
        before = {"failed_pins": row.failed_pins, "locked_until": row.locked_until}
        row.failed_pins = 0
        row.locked_until = None
        db.session.flush()
        audit.record(
            "volunteer.unlock",
            district_id=row.district_id,
            target=("volunteer", volunteer_id),
            before=before,
            after={"failed_pins": 0, "locked_until": None},
        )

    ledger.atomic(work)


def reissue_card(principal: Principal, volunteer_id: int) -> str:
    """Give a volunteer a new card code (returned); the old code stops working at once,
    and their sessions end. The PIN stays. Raises NotFoundError, ForbiddenError."""
    _require_office(principal)
    auth.reach_volunteer(principal, volunteer_id)

    def change(row: Volunteer) -> _Audited:
        old = row.card_code
        # A code already in use is drawn again (the unique index is the last word).
        for _ in range(20):
            code = new_card_code()
            if db.session.scalar(select(Volunteer.id).where(Volunteer.card_code == code)):
                continue
            break
        row.card_code = code
        return {"card_code": old}, {"card_code": code}

    def work() -> str:
        return _renew_credentials(volunteer_id, "volunteer.reissue_card", change).card_code

    return ledger.atomic(work)
