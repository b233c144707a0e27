"""Bearer tokens, roles and district scope, kiosk sessions and card PINs."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import aliased

from points import audit, ledger, lockout
from points.activation import check_activation
from points.directory import check_pin, token_digest
from points.errors import (
    AccountClosedError,
    ActivationRequiredError,
    AuthenticationError,
    CardLockedError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    WrongPinError,
)
from points.extensions import db
from points.models import ApiToken, District, Staff, Volunteer, utcnow
from points.signals import pin_refused

# Roles a request can act in. A kiosk session is stored as a volunteer token (see
# open_kiosk_session) but acts in a role of its own: fewer rights than either parent.
ROLES = ("admin", "office", "auditor", "kiosk", "volunteer", "session", "provider")

# A kiosk session's token row is named after the kiosk that opened it.
SESSION_PREFIX = "kiosk-session:"

MAX_WRONG_PINS = 5
LOCK_MINUTES = 15

DEFAULTS = {
    # Requests per minute per token (kiosk sessions count against their kiosk) for roles
    # without a RATELIMIT_<ROLE> of their own; 0: no limit. See points.ratelimit.
    "API_RATE_LIMIT_PER_MINUTE": 600,
    # A kiosk session ends after this long without use, and at the latest after the maximum.
    "KIOSK_SESSION_IDLE_SECONDS": 120,
    "KIOSK_SESSION_MAX_SECONDS": 900,
    # An ended kiosk session may still replay its own writes (same Idempotency-Key) this
    # long, so that a kiosk retrying a redemption whose answer it lost gets that answer.
    "KIOSK_SESSION_REPLAY_SECONDS": 600,
    # A volunteer signed in on their own phone stays signed in this long (or until sign-out).
    "VOLUNTEER_SESSION_DAYS": 30,
}


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token's role, the district path it reaches, and its volunteer."""

    token_id: int
    role: str
    district_id: int
    # The district path the principal reaches ("/1/4/"); every node below it too.
    path: str
    volunteer_id: int | None = None
    # For a kiosk session: the kiosk token that opened it.
    kiosk_id: int | None = None
    # For an ended kiosk session: only replays of its own writes are allowed.
    replay_only: bool = False
    # For a provider's link token: the provider whose vouchers it reaches, and no others.
    provider_id: int | None = None
    # For a staff member's console session: the staff account.
    staff_id: int | None = None
    # The token's name, or the staff member's username: how the audit log names them.
    name: str | None = None

    @property
    def owner_id(self) -> int:
        """The token whose rate limit and idempotency keys this request uses."""
        return self.kiosk_id if self.kiosk_id is not None else self.token_id

    @property
    def actor(self) -> str:
        """How the ledger records this principal as the actor of an entry."""
        if self.role == "session":
            return f"kiosk:{self.kiosk_id}/volunteer:{self.volunteer_id}"
        if self.staff_id is not None:
            return f"staff:{self.staff_id}"
        return f"{self.role}:{self.token_id}"

    @property
    def at_kiosk(self) -> bool:
        """True for a kiosk and for a volunteer session opened at a kiosk."""
        return self.role in ("kiosk", "session")

    def covers(self, path: str) -> bool:
        """Return True when the district node with `path` is within reach."""
        return self.role == "admin" or path.startswith(self.path)


# -- authentication ----------------------------------------------------------------------


def current_principal() -> Principal:
    """Return who is asking, authenticating the bearer token once per request.

    (The request was counted against its token's rate limit before the view ran: see
    points.ratelimit.) Raises AuthenticationError.
    """
    # Kept in the WSGI environ, which lives exactly as long as the request (g may outlive
    # it when an app context was already pushed, as in tests).
    principal = request.environ.get("points.principal")
    if principal is None:
        principal = _authenticate(request.headers.get("Authorization", ""))
        request.environ["points.principal"] = principal
    return principal


def require(*roles: str, replay: bool = False, admin: bool = True) -> Principal:
    """Return the principal if its role is one of `roles` (or admin, unless `admin=False`).

    `replay=True` lets an ended kiosk session through to an idempotent write, which then
    only replays. Raises AuthenticationError, ForbiddenError.
    """
    principal = current_principal()
    if principal.replay_only and not replay:
        raise AuthenticationError("this kiosk session has ended")
    if principal.role not in roles and not (admin and principal.role == "admin"):
        raise ForbiddenError(f"{_article(_role_name(principal))} token may not do this")
    return principal


def require_scope(principal: Principal, path: str, what: str = "this district node") -> None:
    """Raise ForbiddenError unless `principal` reaches the district node with `path`."""
    if not principal.covers(path):
        raise ForbiddenError(f"{what} is outside this token's district node")


def _article(noun: str) -> str:
    """Return the noun with "a" or "an" before it."""
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def _role_name(principal: Principal) -> str:
    return "kiosk session" if principal.role == "session" else principal.role


def _token_query():
    # Built once: constructing the aliased joins costs more than running the query.
    token_district = aliased(District, name="token_district")
    volunteer_district = aliased(District, name="volunteer_district")
    return (
        select(
            ApiToken.id,
            ApiToken.role,
            ApiToken.name,
            ApiToken.district_id,
            ApiToken.volunteer_id,
            ApiToken.provider_id,
            ApiToken.staff_id,
            Staff.username,
            ApiToken.created_at,
            ApiToken.expires_at,
            ApiToken.revoked_at,
            token_district.path,
            Volunteer.district_id.label("volunteer_district_id"),
            volunteer_district.path.label("volunteer_path"),
        )
        .join(token_district, token_district.id == ApiToken.district_id)
        .outerjoin(Volunteer, Volunteer.id == ApiToken.volunteer_id)
        .outerjoin(volunteer_district, volunteer_district.id == Volunteer.district_id)
        .outerjoin(Staff, Staff.id == ApiToken.staff_id)
        .where(ApiToken.token_hash == bindparam("digest"))
    )


_TOKEN_QUERY = _token_query()

_VOLUNTEER_PATH_QUERY = (
    select(Volunteer.district_id, District.path)
    .join(District, District.id == Volunteer.district_id)
    .where(Volunteer.id == bindparam("volunteer_id"))
)


def _authenticate(header: str) -> Principal:
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise AuthenticationError("send Authorization: Bearer <token>")
    return authenticate_token(secret)


def authenticate_token(secret: str) -> Principal:
    """Return who a token is (a bearer token, or one a page keeps in its cookie); in a
    request, it is then who the audit log names as acting.

    Raises AuthenticationError.
    """
    principal = _principal_of(secret)
    if has_request_context():
        audit.acting_as(principal)
    return principal


def _principal_of(secret: str) -> Principal:
    if not secret or len(secret) > 200:
        raise AuthenticationError("unknown token")
    row = db.session.execute(_TOKEN_QUERY, {"digest": token_digest(secret)}).one_or_none()
    if row is None:
        raise AuthenticationError("unknown token")
    now = utcnow()
    if row.role == "volunteer" and row.name.startswith(SESSION_PREFIX):
        return _session_principal(row, now)
    if row.revoked_at is not None:
        raise AuthenticationError("this token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError("this token has expired")
    if row.role == "volunteer":
        return Principal(
            row.id, "volunteer", row.volunteer_district_id, row.volunteer_path, row.volunteer_id
        )
    if row.role == "provider":
        return Principal(
            row.id,
            "provider",
            row.district_id,
            row.path,
            provider_id=row.provider_id,
            name=row.name,
        )
    if row.staff_id is not None:
        return Principal(
            row.id, row.role, row.district_id, row.path, staff_id=row.staff_id, name=row.username
        )
    return Principal(row.id, row.role, row.district_id, row.path, name=row.name)


def _session_principal(row, now: datetime) -> Principal:
    config = current_app.config
    try:
        kiosk_id = int(row.name[len(SESSION_PREFIX) :])
    except ValueError:
        raise AuthenticationError("unknown token") from None
    if row.expires_at is None:
        raise AuthenticationError("unknown token")
    kiosk = db.session.execute(
        select(ApiToken.role, ApiToken.expires_at, ApiToken.revoked_at).where(
            ApiToken.id == kiosk_id
        )
    ).one_or_none()
    if (
        kiosk is None
        or kiosk.role != "kiosk"
        or kiosk.revoked_at is not None
        or (kiosk.expires_at is not None and kiosk.expires_at <= now)
    ):
        raise AuthenticationError("the kiosk that opened this session is no longer valid")
    ended = row.revoked_at or (row.expires_at if row.expires_at <= now else None)
    if ended is not None:
        if now - ended > timedelta(seconds=config["KIOSK_SESSION_REPLAY_SECONDS"]):
            raise AuthenticationError("this kiosk session has ended")
        return Principal(
            row.id, "session", row.district_id, row.path, row.volunteer_id, kiosk_id, True
        )
    idle = timedelta(seconds=config["KIOSK_SESSION_IDLE_SECONDS"])
    if row.expires_at - now < idle / 2:
        # Extended on use, but not on every use: a write per request would cost more
        # than the session is worth. Never past the session's maximum age.
        latest = row.created_at + timedelta(seconds=config["KIOSK_SESSION_MAX_SECONDS"])
        new_expiry = min(now + idle, latest)
        if new_expiry > row.expires_at:
            ledger.atomic(lambda: _set_expiry(row.id, new_expiry))
    return Principal(row.id, "session", row.district_id, row.path, row.volunteer_id, kiosk_id)


def _set_expiry(token_id: int, expires_at: datetime) -> None:
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(expires_at=expires_at)
    )


# -- kiosk sessions and cards ------------------------------------------------------------


@dataclass(frozen=True)
class CardHolder:
    """The volunteer a card code and PIN identified."""

    volunteer_id: int
    district_id: int
    path: str
    name: str


def verify_card(principal: Principal | None, card_code: str, pin: str) -> CardHolder:
    """Return the volunteer whose card and PIN these are, counting wrong PINs per card.

    Every attempt is counted in the database before the PIN is checked, so that all
    workers agree and parallel guesses cannot exceed the limit; a right PIN clears the
    count. `principal` is the kiosk asking (cards of other nodes are unknown to it), or
    None for a volunteer signing in on their own phone. A card with a pending activation
    code takes that code in place of the PIN, counted the same way; the right code signs
    nobody in. Raises WrongPinError, CardLockedError, AccountClosedError,
    ActivationRequiredError (the right activation code: the volunteer must choose a PIN,
    see activate).
    """
    holder, activating = _check_card(principal, card_code, pin)
    if activating is not None:
        raise ActivationRequiredError(
            "this is the card's one-time activation code: choose a PIN to sign in",
            errors={"pin": ["One-time activation code: choose your PIN with it first."]},
            volunteer_id=holder.volunteer_id,
        )
    return holder


def _check_card(
    principal: Principal | None, card_code: str, secret: str
) -> tuple[CardHolder, str | None]:
    """Check a card and the secret typed with it (its PIN, or its activation code while
    one is pending); return the holder and, when the secret was the activation code, the
    hash it matched."""
    row = db.session.execute(
        select(
            Volunteer.id,
            Volunteer.district_id,
            Volunteer.name,
            Volunteer.pin_hash,
            Volunteer.activation_hash,
            Volunteer.status,
            District.path,
        )
        .join(District, District.id == Volunteer.district_id)
        # Scanners and people type codes in either case; codes are issued in upper case.
        .where(Volunteer.card_code == card_code.strip().upper())
    ).one_or_none()
    # A card of another node answers like an unknown one: a kiosk learns nothing about
    # cards it may not serve.
    if row is None or (principal is not None and not principal.covers(row.path)):
        pin_refused.send("unknown_card")
        raise WrongPinError("unknown card", errors={"card_code": ["Unknown card."]})
    now = utcnow()
    attempts = ledger.atomic(lambda: _count_attempt(row.id, now))
    if attempts is None:
        pin_refused.send("locked")
        raise _locked(row.id, now)
    activating = row.activation_hash
    if activating is not None:
        right = check_activation(secret, row.activation_hash)
    else:
        right = check_pin(secret, row.pin_hash)
    if not right:
        pin_refused.send("wrong_pin")
        left = MAX_WRONG_PINS - attempts
        if left <= 0:
            raise _locked(row.id, now)
        raise WrongPinError(
            "wrong PIN",
            errors={"pin": [f"Wrong PIN: {_tries(left)} before the card locks."]},
            tries_left=left,
        )
    ledger.atomic(lambda: _clear_attempts(row.id))
    if row.status != "active":
        raise AccountClosedError("this card's volunteer is not active")
    return CardHolder(row.id, row.district_id, row.path, row.name), activating


def _tries(left: int) -> str:
    return "1 more try" if left == 1 else f"{left} more tries"


def activate(principal: Principal | None, card_code: str, code: str, new_pin: str) -> CardHolder:
    """Use a card's one-time activation code to set the volunteer's first PIN; return the
    volunteer, who may then be signed in.

    `new_pin` is checked (pin_problem) before the code, so a refused PIN costs no
    attempt; the code is counted like a PIN (verify_card). The PIN is stored slow-hashed
    and the code's hash cleared in one statement that holds only while the code checked
    is still the pending one, so a code is used once even by two screens at once.
    Raises InvalidInputError (on `new_pin`), WrongPinError (on `code`: wrong, used, or
    none pending), CardLockedError, AccountClosedError.
    """
    from points.directory import hash_pin, pin_problem

    problem = pin_problem(new_pin, card_code.strip().upper() if isinstance(card_code, str) else "")
    if problem is not None:
        raise InvalidInputError("unusable PIN", errors={"new_pin": [problem]})
    try:
        holder, pending = _check_card(principal, card_code, code)
    except WrongPinError as error:
        if error.tries_left is None:
            raise
        raise WrongPinError(
            "wrong activation code",
            errors={"code": [f"Wrong code: {_tries(error.tries_left)} before the card locks."]},
            tries_left=error.tries_left,
        ) from None
    if pending is None:
        # The right PIN of an activated card is no activation code.
        raise WrongPinError(
            "this card has no activation code pending",
            errors={"code": ["This code has been used, or the card has a PIN already."]},
        )
    pin_hash = hash_pin(new_pin)

    def work() -> None:
        done = db.session.execute(
            update(Volunteer)
            .where(Volunteer.id == holder.volunteer_id, Volunteer.activation_hash == pending)
            .values(pin_hash=pin_hash, activation_hash=None, failed_pins=0, locked_until=None)
            .returning(Volunteer.id)
        ).scalar_one_or_none()
        if done is None:
            raise WrongPinError(
                "this activation code was used a moment ago",
                errors={"code": ["This code has been used, or the card has a PIN already."]},
            )
        audit.record(
            "volunteer.activate",
            district_id=holder.district_id,
            target=("volunteer", holder.volunteer_id),
        )

    ledger.atomic(work)
    return holder


def _count_attempt(volunteer_id: int, now: datetime) -> int | None:
    """Count one PIN attempt; return the count, or None while the card is locked."""
    return lockout.count_attempt(
        Volunteer.failed_pins,
        Volunteer.locked_until,
        volunteer_id,
        now,
        limit=MAX_WRONG_PINS,
        minutes=LOCK_MINUTES,
    )


def _clear_attempts(volunteer_id: int) -> None:
    lockout.clear(Volunteer.failed_pins, Volunteer.locked_until, volunteer_id)


def _locked(volunteer_id: int, now: datetime) -> CardLockedError:
    seconds, until = lockout.locked_for(
        Volunteer.locked_until, volunteer_id, now, minutes=LOCK_MINUTES
    )
    return CardLockedError(
        f"too many wrong PINs: the card is locked for {math.ceil(seconds / 60)} minutes",
        retry_after=seconds,
        until=until,
    )


@dataclass(frozen=True)
class KioskSession:
    """A volunteer session opened at a kiosk: the token (shown once) and when it ends."""

    token_id: int
    token: str
    volunteer_id: int
    name: str
    expires_at: datetime


def open_kiosk_session(principal: Principal, card_code: str, pin: str) -> KioskSession:
    """Open a short volunteer session at the kiosk `principal` after card and PIN.

    The session is an api_tokens row with role volunteer, named after the kiosk, that
    expires when idle. Raises what verify_card raises.
    """
    return _kiosk_session(principal, verify_card(principal, card_code, pin))


def activate_at_kiosk(
    principal: Principal, card_code: str, code: str, new_pin: str
) -> KioskSession:
    """Set a volunteer's first PIN with their activation code at the kiosk `principal`,
    then open their session there. Raises what activate raises."""
    return _kiosk_session(principal, activate(principal, card_code, code, new_pin))


def _kiosk_session(principal: Principal, holder: CardHolder) -> KioskSession:
    secret = "sk_" + secrets.token_urlsafe(32)
    expires_at = utcnow() + timedelta(seconds=current_app.config["KIOSK_SESSION_IDLE_SECONDS"])

    def work() -> int:
        return db.session.execute(
            ApiToken.__table__.insert()
            .values(
                name=f"{SESSION_PREFIX}{principal.token_id}",
                role="volunteer",
                district_id=principal.district_id,
                volunteer_id=holder.volunteer_id,
                token_hash=token_digest(secret),
                created_at=utcnow(),
                expires_at=expires_at,
            )
            .returning(ApiToken.id)
        ).scalar_one()

    token_id = ledger.atomic(work)
    return KioskSession(token_id, secret, holder.volunteer_id, holder.name, expires_at)


def change_pin(volunteer_id: int, old_pin: str, new_pin: str) -> None:
    """Change a volunteer's PIN after checking the old one (counted like any attempt);
    while an activation code is pending, that code stands for the old PIN.

    Raises WrongPinError (on `old_pin`), CardLockedError, InvalidInputError (on
    `new_pin`), AccountClosedError, NotFoundError.
    """
    from points.directory import set_pin

    code = db.session.scalar(select(Volunteer.card_code).where(Volunteer.id == volunteer_id))
    if code is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    try:
        verify_card(None, code, old_pin)
    except ActivationRequiredError:
        # The "old PIN" is the card's activation code: the new PIN is the first one.
        activate(None, code, old_pin, new_pin)
        return
    except WrongPinError as error:
        raise WrongPinError(
            error.detail, errors={"old_pin": error.errors["pin"]}, tries_left=error.tries_left
        ) from None
    try:
        set_pin(volunteer_id, new_pin)
    except InvalidInputError as error:
        raise InvalidInputError(error.detail, errors={"new_pin": error.errors["pin"]}) from None


# A volunteer's own sign-in on their phone is a volunteer token of this name, kept in the
# page's session cookie: sign-out and a PIN change revoke it like any token.
WEB_SESSION_NAME = "web-session"


def open_volunteer_session(card_code: str, pin: str) -> tuple[str, CardHolder]:
    """Sign a volunteer in with card code and PIN; return the session's token and holder.

    The token lasts VOLUNTEER_SESSION_DAYS. Raises what verify_card raises.
    """
    holder = verify_card(None, card_code, pin)
    return _volunteer_session(holder), holder


def activate_volunteer_session(card_code: str, code: str, new_pin: str) -> tuple[str, CardHolder]:
    """Set a volunteer's first PIN with their activation code on their own phone, then
    sign them in; return the session's token and holder. Raises what activate raises."""
    holder = activate(None, card_code, code, new_pin)
    return _volunteer_session(holder), holder


def _volunteer_session(holder: CardHolder) -> str:
    secret = "sv_" + secrets.token_urlsafe(32)
    days = current_app.config["VOLUNTEER_SESSION_DAYS"]

    def work() -> None:
        db.session.execute(
            ApiToken.__table__.insert().values(
                name=WEB_SESSION_NAME,
                role="volunteer",
                district_id=holder.district_id,
                volunteer_id=holder.volunteer_id,
                token_hash=token_digest(secret),
                created_at=utcnow(),
                expires_at=utcnow() + timedelta(days=days),
            )
        )

    ledger.atomic(work)
    return secret


def end_volunteer_sessions(volunteer_id: int, keep: int | None = None) -> None:
    """End a volunteer's page sessions (all, or all but `keep`): after a PIN change."""

    def work() -> None:
        statement = update(ApiToken).where(
            ApiToken.volunteer_id == volunteer_id,
            ApiToken.name == WEB_SESSION_NAME,
            ApiToken.revoked_at.is_(None),
        )
        if keep is not None:
            statement = statement.where(ApiToken.id != keep)
        db.session.execute(statement.values(revoked_at=utcnow()))

    ledger.atomic(work)


def end_kiosk_session(principal: Principal) -> None:
    """End a kiosk session now (joins the caller's unit of work, if one is open)."""
    if principal.role != "session":
        return

    def work() -> None:
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == principal.token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    ledger.atomic(work)


def volunteer_path(volunteer_id: int) -> tuple[int, str]:
    """Return a volunteer's district id and path. Raises NotFoundError."""
    row = db.session.execute(_VOLUNTEER_PATH_QUERY, {"volunteer_id": volunteer_id}).one_or_none()
    if row is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    return row.district_id, row.path


def reach_volunteer(principal: Principal, volunteer_id: int) -> tuple[int, str]:
    """Check that `principal` may see volunteer `volunteer_id`; return district id and path.

    Volunteers and kiosk sessions reach only their own volunteer (403 for any other id,
    existing or not); other roles reach volunteers in their node. Raises ForbiddenError,
    NotFoundError.
    """
    if principal.role in ("volunteer", "session"):
        if volunteer_id != principal.volunteer_id:
            raise ForbiddenError("a volunteer token sees only its own volunteer")
        return volunteer_path(volunteer_id)
    found = volunteer_path(volunteer_id)
    require_scope(principal, found[1], "this volunteer")
    return found
