"""Staff accounts: the office, auditor and admin people who sign in to /office.

A staff member has a username and a password (a scrypt hash: memory-hard), a role and a
district node, like a token. Signing in opens a session that is an api_tokens row of the
staff member's role and node (`staff_id` set), so pages and the API authorise it the same
way; disabling the account or changing its password ends its sessions at once. Wrong
passwords are counted in the staff row, so every worker agrees: MAX_WRONG_PASSWORDS in a
row lock the account for LOCK_MINUTES.

Who may manage whom: an admin manages anyone; an office manages office and auditor
accounts of the nodes strictly below its own; the command line manages anyone.
"""

from __future__ import annotations

import gzip
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from points import audit, ledger, lockout
from points.auth import Principal
from points.directory import district_by_code, token_digest
from points.errors import (
    AccountLockedError,
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    WrongPasswordError,
)
from points.extensions import db
from points.models import STAFF_ROLES, ApiToken, District, Staff, utcnow

MIN_PASSWORD_LENGTH = 10
MAX_WRONG_PASSWORDS = 5
LOCK_MINUTES = 15
SESSION_NAME = "staff-session"
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
STATES = ("active", "disabled")

# The 20,000 commonest passwords (from Django, BSD licence; see points/data/README.md).
COMMON_PASSWORDS = Path(__file__).resolve().parent / "data" / "common-passwords.txt.gz"


@dataclass(frozen=True)
class StaffInfo:
    """A staff account as pages and the API show it (never its password hash)."""

    id: int
    username: str
    name: str
    role: str
    district_id: int
    district_code: str
    district_name: str
    path: str
    status: str
    locked_until: datetime | None
    must_change_password: bool
    created_at: datetime

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "role": self.role,
            "district": self.district_code,
            "district_name": self.district_name,
            "status": self.status,
            "locked_until": self.locked_until,
            "must_change_password": self.must_change_password,
            "created_at": self.created_at,
        }


_COLUMNS = (
    Staff.id,
    Staff.username,
    Staff.name,
    Staff.role,
    Staff.district_id,
    District.code,
    District.name.label("district_name"),
    District.path,
    Staff.status,
    Staff.locked_until,
    Staff.must_change_password,
    Staff.created_at,
)


def _info(row) -> StaffInfo:
    return StaffInfo(*row)


def staff_info(staff_id: int) -> StaffInfo:
    """Return one staff account. Raises NotFoundError."""
    row = db.session.execute(
        select(*_COLUMNS)
        .join(District, District.id == Staff.district_id)
        .where(Staff.id == staff_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no staff account {staff_id}")
    return _info(row)


def list_staff(principal: Principal) -> list[StaffInfo]:
    """Return the staff accounts of `principal`'s node and below, by node then username."""
    statement = select(*_COLUMNS).join(District, District.id == Staff.district_id)
    if principal.role != "admin":
        statement = statement.where(District.path.startswith(principal.path, autoescape=True))
    rows = db.session.execute(statement.order_by(District.path, Staff.username)).all()
    return [_info(row) for row in rows]


# -- passwords ---------------------------------------------------------------------------


@cache
def _common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS, "rt", encoding="utf-8") as file:
        return frozenset(line.strip() for line in file if line.strip())


def password_problem(password: str, username: str | None = None) -> str | None:
    """Return why `password` may not be used, or None."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        return f"At least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > 200:
        return "At most 200 characters."
    lowered = password.lower()
    if lowered in _common_passwords() or len(set(password)) < 4:
        return "Too common: choose a password that others would not guess."
    if username and username.lower() in lowered:
        return "Must not contain the username."
    return None


def hash_password(password: str) -> str:
    """Return the stored form of a password (scrypt: memory-hard, salted)."""
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def temporary_password() -> str:
    """A password to hand over once (after a reset): three groups of four, easy to type."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    groups = ("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
    return "-".join(groups)


# -- managing accounts -------------------------------------------------------------------


def check_manager(by: Principal | None, path: str, role: str | None = None) -> None:
    """Raise ForbiddenError unless `by` may manage a staff account of `role` at `path`.

    None is the command line, which may do anything.
    """
    if by is None or by.role == "admin":
        return
    if by.role != "office" or role == "admin":
        raise ForbiddenError("only an admin or a parent office manages staff accounts")
    if not (path.startswith(by.path) and path != by.path):
        raise ForbiddenError("an office manages staff accounts of the nodes below its own")


def create_staff(
    username: str,
    name: str,
    role: str,
    district: str,
    password: str,
    *,
    by: Principal | None = None,
    must_change_password: bool = False,
) -> StaffInfo:
    """Create a staff account; `must_change_password` for a password handed over (made by
    temporary_password), which the first sign-in replaces. Raises InvalidInputError,
    NotFoundError, ConflictError, ForbiddenError."""
    errors: dict[str, list[str]] = {}
    username = username.strip().lower() if isinstance(username, str) else ""
    if not USERNAME_PATTERN.match(username):
        errors["username"] = ["3 to 64 lower-case letters, digits, '.', '_' or '-'."]
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = ["Must not be empty; at most 200 characters."]
    if role not in STAFF_ROLES:
        errors["role"] = [f"One of {', '.join(STAFF_ROLES)}."]
    problem = password_problem(password, username)
    if problem:
        errors["password"] = [problem]
    if errors:
        raise InvalidInputError("invalid staff account", errors=errors)
    node = district_by_code(district)
    check_manager(by, node.path, role)
    password_hash = hash_password(password)

    def work() -> int:
        account = Staff(
            username=username,
            name=name.strip(),
            role=role,
            district_id=node.id,
            password_hash=password_hash,
            status="active",
            failed_logins=0,
            must_change_password=must_change_password,
        )
        db.session.add(account)
        try:
            db.session.flush()
        except IntegrityError:
            raise ConflictError(
                f"username {username!r} is taken", errors={"username": ["Already in use."]}
            ) from None
        audit.record(
            "staff.create",
            district_id=node.id,
            target=("staff", account.id),
            after={"username": username, "name": account.name, "role": role},
        )
        return account.id

    return staff_info(ledger.atomic(work))


def set_status(staff_id: int, status: str, *, by: Principal | None = None) -> StaffInfo:
    """Disable (ending every session) or reactivate an account. Raises NotFoundError,
    InvalidInputError, ForbiddenError."""
    if status not in STATES:
        raise InvalidInputError("unknown status", errors={"status": [f"One of {STATES}."]})
    account = staff_info(staff_id)
    check_manager(by, account.path, account.role)
    if by is not None and by.staff_id == staff_id:
        raise ForbiddenError("a staff member cannot disable their own account")

    def work() -> None:
        db.session.execute(
            update(Staff)
            .where(Staff.id == staff_id)
            .values(status=status, failed_logins=0, locked_until=None)
        )
        if status == "disabled":
            _end_sessions(staff_id)
        audit.record(
            "staff.enable" if status == "active" else "staff.disable",
            district_id=account.district_id,
            target=("staff", staff_id),
            before={"status": account.status},
            after={"status": status},
        )

    ledger.atomic(work)
    return staff_info(staff_id)


def reset_password(staff_id: int, *, by: Principal | None = None) -> str:
    """Give an account a temporary password (returned, shown once), unlock it and end its
    sessions; the next sign-in must choose a new password. Raises NotFoundError,
    ForbiddenError."""
    account = staff_info(staff_id)
    check_manager(by, account.path, account.role)
    password = temporary_password()
    password_hash = hash_password(password)

    def work() -> None:
        db.session.execute(
            update(Staff)
            .where(Staff.id == staff_id)
            .values(
                password_hash=password_hash,
                must_change_password=True,
                failed_logins=0,
                locked_until=None,
                password_changed_at=utcnow(),
            )
        )
        _end_sessions(staff_id)
        audit.record(
            "staff.reset_password", district_id=account.district_id, target=("staff", staff_id)
        )

    ledger.atomic(work)
    return password


def _end_sessions(staff_id: int, keep: int | None = None) -> None:
    statement = update(ApiToken).where(ApiToken.staff_id == staff_id, ApiToken.revoked_at.is_(None))
    if keep is not None:
        statement = statement.where(ApiToken.id != keep)
    db.session.execute(statement.values(revoked_at=utcnow()))


# -- signing in --------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """A new console session: its token (kept in the session cookie) and the account."""

    token: str
    staff: StaffInfo


def sign_in(username: str, password: str) -> SignedIn:
    """Check a username and password and open a console session.

    Every attempt is counted before the password is checked, and written to the audit
    log, success or failure. Raises WrongPasswordError, AccountLockedError.
    """
    username = username.strip().lower() if isinstance(username, str) else ""
    password = password if isinstance(password, str) else ""
    row = db.session.execute(
        select(Staff.id, Staff.password_hash, Staff.status, Staff.district_id).where(
            Staff.username == username
        )
    ).one_or_none()
    wrong = WrongPasswordError(
        "wrong username or password",
        errors={"password": ["Wrong username or password."]},
    )
    if row is None:
        # As slow as a known name, so that timing does not tell which names exist.
        check_password_hash(_dummy_hash(), password)
        _audit_failure(None, None, username, "unknown_username")
        raise wrong
    now = utcnow()
    attempts = ledger.atomic(lambda: _count_attempt(row.id, now))
    if attempts is None:
        _audit_failure(row.id, row.district_id, username, "locked")
        raise _locked(row.id, now)
    if not check_password_hash(row.password_hash, password):
        _audit_failure(row.id, row.district_id, username, "wrong_password")
        if attempts >= MAX_WRONG_PASSWORDS:
            raise _locked(row.id, now)
        raise wrong
    if row.status != "active":
        _audit_failure(row.id, row.district_id, username, "disabled")
        raise WrongPasswordError(
            "this account is disabled", errors={"username": ["This account is disabled."]}
        )
    secret = "ss_" + secrets.token_urlsafe(32)
    account = staff_info(row.id)
    hours = current_app.config["STAFF_SESSION_HOURS"]

    def work() -> None:
        db.session.execute(
            update(Staff).where(Staff.id == row.id).values(failed_logins=0, locked_until=None)
        )
        db.session.execute(
            ApiToken.__table__.insert().values(
                name=SESSION_NAME,
                role=account.role,
                district_id=account.district_id,
                staff_id=account.id,
                token_hash=token_digest(secret),
                created_at=now,
                expires_at=now + timedelta(hours=hours),
            )
        )
        audit.record(
            "staff.sign_in",
            district_id=account.district_id,
            target=("staff", account.id),
            actor=_as_staff(account),
        )

    ledger.atomic(work)
    return SignedIn(secret, account)


def _as_staff(account: StaffInfo) -> audit.Actor:
    here = audit.current_actor()
    return audit.Actor(f"staff:{account.id}", account.username, here.ip, here.request_id)


def _audit_failure(
    staff_id: int | None, district_id: int | None, username: str, reason: str
) -> None:
    def work() -> None:
        audit.record(
            "staff.sign_in_failed",
            district_id=district_id,
            target=("staff", staff_id) if staff_id is not None else None,
            after={"username": username[:64], "reason": reason},
        )

    ledger.atomic(work)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))


def _count_attempt(staff_id: int, now: datetime) -> int | None:
    """Count one attempt; return the count, or None while the account is locked."""
    return lockout.count_attempt(
        Staff.failed_logins,
        Staff.locked_until,
        staff_id,
        now,
        limit=MAX_WRONG_PASSWORDS,
        minutes=LOCK_MINUTES,
    )


def _locked(staff_id: int, now: datetime) -> AccountLockedError:
    seconds, until = lockout.locked_for(Staff.locked_until, staff_id, now, minutes=LOCK_MINUTES)
    return AccountLockedError(
        f"too many wrong passwords: the account is locked for {math.ceil(seconds / 60)} minutes",
        retry_after=seconds,
        until=until,
        errors={"password": ["Too many wrong passwords: the account is locked for now."]},
    )


def sign_out(principal: Principal) -> None:
    """End this console session."""
    if principal.staff_id is None:
        return

    def work() -> None:
        db.session.execute(
            update(ApiToken)
            .where(ApiToken.id == principal.token_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        audit.record(
            "staff.sign_out",
            district_id=principal.district_id,
            target=("staff", principal.staff_id),
        )

    ledger.atomic(work)


def change_password(principal: Principal, old: str, new: str) -> None:
    """Change the signed-in staff member's password; their other sessions end.

    The old password is checked and counted like a sign-in. Raises WrongPasswordError (on
    `old`), AccountLockedError, InvalidInputError (on `new`).
    """
    if principal.staff_id is None:
        raise ForbiddenError("only a staff member signed in to the console changes a password")
    account = staff_info(principal.staff_id)
    problem = password_problem(new, account.username)
    if problem:
        raise InvalidInputError("unusable password", errors={"new_password": [problem]})
    stored = db.session.scalar(select(Staff.password_hash).where(Staff.id == account.id))
    now = utcnow()
    attempts = ledger.atomic(lambda: _count_attempt(account.id, now))
    if attempts is None:
        raise _locked(account.id, now)
    if not check_password_hash(stored, old if isinstance(old, str) else ""):
        if attempts >= MAX_WRONG_PASSWORDS:
            raise _locked(account.id, now)
        raise WrongPasswordError("wrong password", errors={"old_password": ["Wrong password."]})
    if old == new:
        raise InvalidInputError(
            "the new password is the old one",
            errors={"new_password": ["Must differ from the current password."]},
        )
    password_hash = hash_password(new)

    def work() -> None:
        db.session.execute(
            update(Staff)
            .where(Staff.id == account.id)
            .values(
                password_hash=password_hash,
                must_change_password=False,
                failed_logins=0,
                locked_until=None,
                password_changed_at=utcnow(),
            )
        )
        _end_sessions(account.id, keep=principal.token_id)
        audit.record(
            "staff.change_password", district_id=account.district_id, target=("staff", account.id)
        )

    ledger.atomic(work)
