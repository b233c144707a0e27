"""The district tree, volunteers with their cards and PINs, providers and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from points import audit, ledger
from points.errors import ConflictError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import ApiToken, District, Provider, Volunteer, utcnow

LEVELS = ("city", "district", "street", "community", "grid")
CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
PIN_PATTERN = re.compile(r"^[0-9]{6}$")
# Card codes avoid letters that read like digits (I, L, O, U), for people typing them.
CARD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ROLES = ("admin", "office", "auditor", "kiosk", "volunteer", "provider")


def district_by_code(code: str) -> District:
    """Return the district node with `code`; raise NotFoundError."""
    district = db.session.scalar(select(District).where(District.code == code))
    if district is None:
        raise NotFoundError(f"no district {code!r}", errors={"district": ["No such district."]})
    return district


def create_district(
    code: str,
    name: str,
    level: str,
    *,
    parent: str | None = None,
    timezone: str | None = None,
    contact: str | None = None,
) -> District:
    """Add a node to the tree, with its issuance, expired and clearing accounts.

    The time zone defaults to the parent's, then to DEFAULT_TIMEZONE. `contact` is the
    office's contact line shown to volunteers and printed on cards. Raises
    InvalidInputError, NotFoundError (parent), ConflictError (code taken).
    """
    errors: dict[str, list[str]] = {}
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        errors["code"] = ["Lower-case letters, digits and '-', at most 64."]
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = ["Must not be empty; at most 200 characters."]
    if level not in LEVELS:
        errors["level"] = [f"Must be one of {', '.join(LEVELS)}."]
    if contact is not None and (not isinstance(contact, str) or len(contact) > 200):
        errors["contact"] = ["At most 200 characters."]
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors["timezone"] = ["Unknown time zone."]
    if errors:
        raise InvalidInputError("invalid district", errors=errors)
    parent_node = district_by_code(parent) if parent else None
    if parent_node is not None and LEVELS.index(level) <= LEVELS.index(parent_node.level):
        raise InvalidInputError(
            f"a {level} cannot sit below a {parent_node.level}",
            errors={"level": [f"Must be below {parent_node.level}."]},
        )

    def work() -> District:
        district = District(
            code=code,
            name=name.strip(),
            level=level,
            parent_id=parent_node.id if parent_node else None,
            timezone=timezone
            or (parent_node.timezone if parent_node else current_app.config["DEFAULT_TIMEZONE"]),
            path="",
            contact=(contact or "").strip() or None,
        )
        db.session.add(district)
        try:
            db.session.flush()
        except IntegrityError:
            raise ConflictError(
                f"district code {code!r} is taken", errors={"code": ["Already in use."]}
            ) from None
        district.path = (parent_node.path if parent_node else "/") + f"{district.id}/"
        db.session.flush()
        ledger.open_district_accounts(district.id)
        audit.record(
            "district.create",
            district_id=district.id,
            target=("district", code),
            after={"name": district.name, "level": level, "parent": parent},
        )
        return district

    return ledger.atomic(work)


def codes_of(district_ids: set[int]) -> dict[int, str]:
    """Return the code of each district id."""
    if not district_ids:
        return {}
    rows = db.session.execute(
        select(District.id, District.code).where(District.id.in_(district_ids))
    )
    return {row.id: row.code for row in rows}


@dataclass(frozen=True)
class TreeNode:
    """A node as a tree lists it."""

    code: str
    name: str
    level: str
    parent: str | None
    depth: int


def tree(path: str | None) -> list[TreeNode]:
    """The nodes at and below the node with `path` (None: every node), each parent before
    its children, siblings by name."""
    parent = District.__table__.alias("parent")
    statement = select(
        District.code, District.name, District.level, parent.c.code, District.path, District.id
    ).outerjoin(parent, parent.c.id == District.parent_id)
    if path is not None:
        statement = statement.where(District.path.startswith(path, autoescape=True))
    rows = db.session.execute(statement).all()
    by_id = {row.id: row for row in rows}
    top = len(path.strip("/").split("/")) if path else 1

    def key(row) -> list[str]:
        ids = [int(part) for part in row.path.strip("/").split("/")]
        return [by_id[i].name if i in by_id else "" for i in ids]

    return [
        TreeNode(row.code, row.name, row.level, row[3], len(row.path.strip("/").split("/")) - top)
        for row in sorted(rows, key=key)
    ]


def pin_problem(pin: str, card_code: str | None = None) -> str | None:
    """Return why `pin` may not be used, or None: six digits, not all one digit, not a run
    (123456, 654321), not digits of the card's code."""
    if not isinstance(pin, str) or not PIN_PATTERN.match(pin):
        return "Must be exactly 6 digits."
    steps = {int(b) - int(a) for a, b in pairwise(pin)}
    if len(set(pin)) == 1 or steps in ({1}, {-1}):
        return "Too easy to guess: not one digit repeated, nor a run like 123456."
    digits = "".join(c for c in (card_code or "") if c.isdigit())
    if len(digits) >= 4 and (pin in digits or digits in pin):
        return "Must not be taken from the card code."
    return None


def set_pin(volunteer_id: int, pin: str) -> None:
    """Set a volunteer's PIN (checked by pin_problem). Raises InvalidInputError, NotFoundError."""
    volunteer = db.session.get(Volunteer, volunteer_id)
    if volunteer is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    problem = pin_problem(pin, volunteer.card_code)
    if problem is not None:
        raise InvalidInputError("unusable PIN", errors={"pin": [problem]})
    pin_hash = hash_pin(pin)

    def work() -> None:
        db.session.execute(
            # A chosen PIN ends any activation code still pending: it never works again.
            update(Volunteer)
            .where(Volunteer.id == volunteer_id)
            .values(pin_hash=pin_hash, activation_hash=None)
        )
        audit.record(
            "volunteer.pin_change",
            district_id=volunteer.district_id,
            target=("volunteer", volunteer_id),
        )

    ledger.atomic(work)


def hash_pin(pin: str, secret_key: str | None = None, method: str | None = None) -> str:
    """Return the stored form of a PIN: a salted slow hash of an HMAC with the secret key.

    Six digits are a small space; the keyed HMAC means a copy of the database alone does
    not let anyone try them all. Without `secret_key` and `method` they are the app's
    SECRET_KEY and PIN_HASH_METHOD; give both to hash outside the app (a process pool).
    """
    if secret_key is None:
        secret_key = current_app.config["SECRET_KEY"]
    if method is None:
        method = current_app.config["PIN_HASH_METHOD"]
    keyed = hmac.new(secret_key.encode(), pin.encode(), "sha256")
    return generate_password_hash(keyed.hexdigest(), method=method)


def check_pin(pin: str, pin_hash: str) -> bool:
    """Return True when `pin` matches the stored hash."""
    keyed = hmac.new(current_app.config["SECRET_KEY"].encode(), pin.encode(), "sha256")
    return check_password_hash(pin_hash, keyed.hexdigest())


def new_card_code() -> str:
    """Return a fresh 10-character card code for a printed card's QR code."""
    return "".join(secrets.choice(CARD_ALPHABET) for _ in range(10))


def register_volunteer(
    name: str,
    district: str,
    pin: str | None = None,
    *,
    phone: str | None = None,
    card_code: str | None = None,
    activation_hash: str | None = None,
    pin_hash: str | None = None,
) -> Volunteer:
    """Register a volunteer in a district node with a card and PIN, and open their account.

    The PIN must pass pin_problem against the card code given, or the one drawn here (a
    code is drawn again rather than refuse a PIN for digits of a code it never chose).
    Instead of a PIN, `activation_hash` (points.activation.hash_activation of a one-time
    code, hashed by the caller, perhaps in a process pool) registers a volunteer who
    chooses their PIN at first use. `pin_hash` is the PIN's `hash_pin` made by the caller
    (a roster import hashes in a pool); the PIN is still given and checked. Raises
    InvalidInputError (a field, a trivial PIN, both
    or neither of PIN and activation hash, a phone number already registered in the
    node), NotFoundError (district), ConflictError (card code taken).
    """
    from points.activation import UNUSABLE_PIN_HASH

    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = ["Must not be empty; at most 200 characters."]
    problem = None
    if activation_hash is not None:
        if pin is not None:
            errors["pin"] = ["Give a PIN or an activation code, not both."]
        elif not isinstance(activation_hash, str) or not 0 < len(activation_hash) <= 200:
            errors["activation_hash"] = ["Must be a hash from hash_activation."]
    else:
        problem = pin_problem(pin, card_code)
        if problem is not None:
            errors["pin"] = [problem]
    while card_code is None or (
        pin is not None and problem is None and pin_problem(pin, card_code) is not None
    ):
        card_code = new_card_code()
    if phone is not None and (
        not isinstance(phone, str) or not re.match(r"^\+?[0-9 -]{5,20}$", phone)
    ):
        errors["phone"] = ["Digits, spaces and '-', 5 to 20."]
    if errors:
        raise InvalidInputError("invalid volunteer", errors=errors)
    node = district_by_code(district)
    if activation_hash is not None:
        pin_hash = UNUSABLE_PIN_HASH
    elif pin_hash is None:
        pin_hash = hash_pin(pin)
    phone_taken = InvalidInputError(
        "this phone number is already registered in the node",
        errors={"phone": ["Already registered to a volunteer of this node."]},
    )

    def work() -> Volunteer:
        if phone is not None and db.session.scalar(
            select(Volunteer.id).where(Volunteer.district_id == node.id, Volunteer.phone == phone)
        ):
            raise phone_taken
        volunteer = Volunteer(
            district_id=node.id,
            name=name.strip(),
            phone=phone,
            card_code=card_code,
            pin_hash=pin_hash,
            activation_hash=activation_hash,
            status="active",
            failed_pins=0,
            service_minutes=0,
        )
        db.session.add(volunteer)
        try:
            db.session.flush()
        except IntegrityError as error:
            # Two registrations of one number at once: the check above saw neither.
            if "phone" in str(error.orig):
                raise phone_taken from None
            raise ConflictError(
                "card code already in use", errors={"card_code": ["Already in use."]}
            ) from None
        ledger.open_volunteer_account(volunteer.id, node.id)
        audit.record(
            "volunteer.register",
            district_id=node.id,
            target=("volunteer", volunteer.id),
            after={"name": volunteer.name, "phone": phone, "card_code": card_code}
            | ({"activation": True} if activation_hash is not None else {}),
        )
        return volunteer

    return ledger.atomic(work)


def provider_by_code(code: str) -> Provider:
    """Return the provider with `code`; raise NotFoundError."""
    provider = db.session.scalar(select(Provider).where(Provider.code == code))
    if provider is None:
        raise NotFoundError(f"no provider {code!r}", errors={"provider": ["No such provider."]})
    return provider


def create_provider(code: str, name: str, district: str) -> Provider:
    """Add a service provider serving a district node. Raises InvalidInputError, ConflictError."""
    errors: dict[str, list[str]] = {}
    if not isinstance(code, str) or not CODE_PATTERN.match(code):
        errors["code"] = ["Lower-case letters, digits and '-', at most 64."]
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = ["Must not be empty; at most 200 characters."]
    if errors:
        raise InvalidInputError("invalid provider", errors=errors)
    node = district_by_code(district)

    def work() -> Provider:
        provider = Provider(code=code, name=name.strip(), district_id=node.id, status="active")
        db.session.add(provider)
        try:
            db.session.flush()
        except IntegrityError:
            raise ConflictError(f"provider {code!r} exists", errors={"code": ["Taken."]}) from None
        audit.record(
            "provider.create",
            district_id=node.id,
            target=("provider", code),
            after={"name": provider.name},
        )
        return provider

    return ledger.atomic(work)


PROVIDER_STATES = ("active", "closed")


def list_providers(path: str | None) -> list[tuple[Provider, str]]:
    """Providers of the node with `path` and below (None: all), with their node's code,
    by node then name."""
    statement = select(Provider, District.code).join(District, District.id == Provider.district_id)
    if path is not None:
        statement = statement.where(District.path.startswith(path, autoescape=True))
    return [
        tuple(row) for row in db.session.execute(statement.order_by(District.path, Provider.name))
    ]


def update_provider(code: str, *, name: str | None = None, status: str | None = None) -> Provider:
    """Rename a provider, close it (its catalog items can no longer be redeemed, and no
    new item may name it) or reopen it. Raises InvalidInputError, NotFoundError."""
    errors: dict[str, list[str]] = {}
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 200):
        errors["name"] = ["Must not be empty; at most 200 characters."]
    if status is not None and status not in PROVIDER_STATES:
        errors["status"] = [f"One of {', '.join(PROVIDER_STATES)}."]
    if errors:
        raise InvalidInputError("invalid provider", errors=errors)

    def work() -> Provider:
        provider = db.session.scalar(
            select(Provider).where(Provider.code == code).with_for_update()
        )
        if provider is None:
            raise NotFoundError(f"no provider {code!r}", errors={"provider": ["No such provider."]})
        before = {"name": provider.name, "status": provider.status}
        if name is not None:
            provider.name = name.strip()
        if status is not None:
            provider.status = status
        db.session.flush()
        was, now = audit.changed(before, {"name": provider.name, "status": provider.status})
        if now:
            action = {"closed": "provider.close", "active": "provider.reopen"}.get(
                now.get("status", ""), "provider.edit"
            )
            audit.record(
                action,
                district_id=provider.district_id,
                target=("provider", code),
                before=was,
                after=now,
            )
        return provider

    return ledger.atomic(work)


def provider_problem(code: str) -> str | None:
    """Return why a catalog item may not name provider `code` (unknown, closed), or None."""
    status = db.session.scalar(select(Provider.status).where(Provider.code == code))
    if status is None:
        return "No such provider."
    if status != "active":
        return "This provider is closed."
    return None


def token_digest(token: str) -> str:
    """Return the stored form of a bearer token (sha256: tokens are long and random)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    role: str,
    district: str,
    *,
    name: str,
    volunteer_id: int | None = None,
    provider_id: int | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a bearer token; return the row and the token, which is shown only this once.

    A volunteer token names its volunteer, a provider (link) token its provider. Raises
    InvalidInputError, NotFoundError.
    """
    if role not in ROLES:
        raise InvalidInputError(f"unknown role {role!r}", errors={"role": [f"One of {ROLES}."]})
    if (role == "volunteer") != (volunteer_id is not None):
        raise InvalidInputError(
            "a volunteer token needs a volunteer id, and only a volunteer token takes one",
            errors={"volunteer_id": ["Required for role volunteer only."]},
        )
    if (role == "provider") != (provider_id is not None):
        raise InvalidInputError(
            "a provider token needs a provider, and only a provider token takes one",
            errors={"provider": ["Required for role provider only."]},
        )
    node = district_by_code(district)
    if provider_id is not None and db.session.get(Provider, provider_id) is None:
        raise NotFoundError(f"no provider {provider_id}")
    if volunteer_id is not None and db.session.get(Volunteer, volunteer_id) is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    secret = "sp_" + secrets.token_urlsafe(32)

    def work() -> ApiToken:
        token = ApiToken(
            name=name,
            role=role,
            district_id=node.id,
            volunteer_id=volunteer_id,
            provider_id=provider_id,
            token_hash=token_digest(secret),
            expires_at=expires_at,
        )
        db.session.add(token)
        db.session.flush()
        audit.record(
            "token.create",
            district_id=node.id,
            target=("token", token.id),
            after={
                "name": name,
                "role": role,
                "volunteer_id": volunteer_id,
                "provider_id": provider_id,
                "expires_at": expires_at,
            },
        )
        return token

    return ledger.atomic(work), secret


def revoke_token(token_id: int) -> None:
    """Revoke a token at once. Raises NotFoundError."""

    def work() -> None:
        done = db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(ApiToken.district_id, ApiToken.name, ApiToken.role)
        ).one_or_none()
        if done is None:
            raise NotFoundError(f"no active token {token_id}")
        audit.record(
            "token.revoke",
            district_id=done.district_id,
            target=("token", token_id),
            before={"name": done.name, "role": done.role},
        )

    ledger.atomic(work)
