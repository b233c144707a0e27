"""Kiosks: one-time pairing codes, device secrets, and the cards a kiosk may serve.

A kiosk is an `api_tokens` row of role `kiosk`. An office makes one (API or CLI) and
gets a pairing code: 8 characters of the card alphabet, stored only as its sha256 in
`pairing_hash`, valid for PAIRING_MINUTES, used once. The kiosk page exchanges the code
for a fresh device secret: the token's `token_hash` is replaced (any secret shown
before stops working) and the pairing columns are cleared in the same statement, so a
code can never pair two devices.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from points import audit, ledger, service, volunteers
from points.auth import Principal, authenticate_token
from points.directory import CARD_ALPHABET, create_token, token_digest
from points.errors import AuthenticationError, ConflictError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import (
    ApiToken,
    District,
    IdempotencyKey,
    Provider,
    Redemption,
    Volunteer,
    utcnow,
)

PAIRING_LENGTH = 8
PAIRING_MINUTES = 30
# A device secret says what it is, like "sp_" (API) and "sk_" (kiosk session) tokens.
DEVICE_PREFIX = "kd_"


class PairingError(InvalidInputError):
    """Raised when a pairing code is unknown, used already, or expired."""


@dataclass(frozen=True)
class PairingCode:
    """A kiosk's one-time pairing code (shown only this once) and when it lapses."""

    token_id: int
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class Pairing:
    """A kiosk just paired: its token id and the new device secret (kept in a cookie)."""

    token_id: int
    secret: str


def normalise_code(code: str) -> str:
    """A code as typed or scanned (any case, spaces or dashes) in its stored form."""
    return "".join(c for c in (code or "").upper() if c not in " -\t")


def create_kiosk(district: str, name: str) -> PairingCode:
    """Create a kiosk token at a district node and return its first pairing code.

    The token's own secret is never shown: the device gets one when it pairs. Raises
    InvalidInputError, NotFoundError.
    """
    token, _secret = create_token("kiosk", district, name=name)
    return issue_pairing_code(token.id)


def issue_pairing_code(token_id: int) -> PairingCode:
    """Give a kiosk token a new one-time pairing code (any earlier one stops working).

    Raises NotFoundError (no such token, or not a kiosk), ConflictError (revoked or
    expired).
    """
    code = "".join(secrets.choice(CARD_ALPHABET) for _ in range(PAIRING_LENGTH))
    expires_at = utcnow() + timedelta(minutes=PAIRING_MINUTES)

    def work() -> None:
        row = db.session.execute(
            select(
                ApiToken.role, ApiToken.revoked_at, ApiToken.expires_at, ApiToken.district_id
            ).where(ApiToken.id == token_id)
        ).one_or_none()
        if row is None or row.role != "kiosk":
            raise NotFoundError(f"no kiosk token {token_id}")
        if row.revoked_at is not None or (
            row.expires_at is not None and row.expires_at <= utcnow()
        ):
            raise ConflictError(f"kiosk token {token_id} is revoked or expired")
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id)
            .values(pairing_hash=token_digest(code), pairing_expires_at=expires_at)
        )
        audit.record(
            "kiosk.pairing_code",
            district_id=row.district_id,
            target=("token", token_id),
            after={"expires_at": expires_at},
        )

    ledger.atomic(work)
    return PairingCode(token_id, code, expires_at)


def pair(code: str) -> Pairing:
    """Exchange a pairing code for a new device secret of its kiosk, once.

    Raises PairingError (on `code`) when the code is unknown, used, expired, or its kiosk
    is revoked.
    """
    typed = normalise_code(code)
    if len(typed) != PAIRING_LENGTH or any(c not in CARD_ALPHABET for c in typed):
        raise PairingError(
            "a pairing code is 8 letters and digits",
            errors={"code": ["Enter the 8 letters and digits of the pairing code."]},
        )
    digest = token_digest(typed)
    secret = DEVICE_PREFIX + secrets.token_urlsafe(32)

    def work() -> int | None:
        now = utcnow()
        # One statement checks and consumes: two devices racing with one code cannot both
        # match, because the first clears the hash the second looks for.
        paired = db.session.execute(
            update(ApiToken)
            .where(
                ApiToken.pairing_hash == digest,
                ApiToken.role == "kiosk",
                ApiToken.pairing_expires_at > now,
                ApiToken.revoked_at.is_(None),
            )
            .values(token_hash=token_digest(secret), pairing_hash=None, pairing_expires_at=None)
            .returning(ApiToken.id, ApiToken.district_id)
        ).one_or_none()
        if paired is None:
            return None
        audit.record("kiosk.pair", district_id=paired.district_id, target=("token", paired.id))
        return paired.id

    token_id = ledger.atomic(work)
    if token_id is None:
        raise PairingError(
            "unknown, used or expired pairing code",
            errors={"code": ["This code is not valid. It may be used or expired."]},
        )
    return Pairing(token_id, secret)


def device(secret: str | None) -> Principal | None:
    """Return the kiosk a device secret belongs to, or None (unpaired, revoked, expired)."""
    if not secret:
        return None
    try:
        principal = authenticate_token(secret)
    except AuthenticationError:
        return None
    return principal if principal.role == "kiosk" else None


@dataclass(frozen=True)
class Place:
    """Where a kiosk stands: its name, its node's name and time zone."""

    name: str
    district_name: str
    timezone: str


def place(token_id: int) -> Place:
    """Return where a kiosk stands. Raises NotFoundError."""
    row = db.session.execute(
        select(ApiToken.name, District.name, District.timezone)
        .join(District, District.id == ApiToken.district_id)
        .where(ApiToken.id == token_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no kiosk {token_id}")
    return Place(*row)


def printed_voucher(volunteer_id: int, redemption_id: int) -> dict[str, Any]:
    """Return what a printed voucher shows: the voucher, the volunteer's name masked and
    where the provider serves (their node). Never the phone. Raises NotFoundError."""
    line = volunteers.voucher(volunteer_id, redemption_id)
    row = db.session.execute(
        select(Volunteer.name, District.name)
        .select_from(Redemption)
        .join(Volunteer, Volunteer.id == Redemption.volunteer_id)
        .join(Provider, Provider.id == Redemption.provider_id)
        .join(District, District.id == Provider.district_id)
        .where(Redemption.id == redemption_id)
    ).one()
    return {**line, "display_name": volunteers.mask_name(row[0]), "where": row[1]}


@dataclass(frozen=True)
class Card:
    """A card the kiosk may serve: its volunteer and their name (mask it to show it)."""

    volunteer_id: int
    name: str
    status: str


def card_in_reach(principal: Principal, card_code: str) -> Card:
    """Return the volunteer of a card in the kiosk's node (no PIN: for check-in).

    A card of another node answers like an unknown one. Raises NotFoundError (on
    `card_code`).
    """
    code = "".join((card_code or "").split()).upper()
    row = None
    if code and len(code) <= 32:
        row = db.session.execute(
            select(Volunteer.id, Volunteer.name, Volunteer.status, District.path)
            .join(District, District.id == Volunteer.district_id)
            .where(Volunteer.card_code == code)
        ).one_or_none()
    if row is None or not principal.covers(row.path):
        raise NotFoundError("unknown card", errors={"card_code": ["Unknown card."]})
    return Card(row.id, row.name, row.status)


def check_in(principal: Principal, volunteer_id: int, key: str) -> service.RecordResult:
    """Record a volunteer's check-in (按时刷) at this kiosk, now, through the same service
    function as the API, under the idempotency key of the form that was shown.

    A second post of the same form answers what the first one did. Raises what
    record_service raises: ConflictError for a second check-in the same day.
    """
    where = place(principal.token_id)
    idempotency_key = f"kiosk:{principal.token_id}:{key}"
    try:
        return service.record_service(
            volunteer_id,
            "checkin",
            datetime.now(ZoneInfo(where.timezone)),
            None,
            {"kiosk": where.name[:64]},
            actor=principal.actor,
            idempotency_key=idempotency_key,
        )
    except ConflictError:
        # The once-a-day check comes before the key is looked at: a repeated form meets it
        # first, and then gets the answer its key keeps.
        stored = stored_result("service", idempotency_key)
        if stored and stored.get("record_id"):
            record = service.get_record(stored["record_id"], replayed=True)
            if record.volunteer_id == volunteer_id:
                return record
        raise


def stored_result(scope: str, key: str) -> dict | None:
    """Return what an idempotency key in `scope` answered, or None when it is unused."""
    return db.session.scalar(
        select(IdempotencyKey.result).where(
            IdempotencyKey.scope == scope, IdempotencyKey.key == key
        )
    )
