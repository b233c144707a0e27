"""Machine tokens as staff manage them: who may issue and revoke which, and the list.

API tokens are for machines (kiosks, integrations, a provider's link, a volunteer's app);
people sign in to the console with staff accounts (points.staff). Sessions (a staff
member's, a volunteer's page, a kiosk's) are tokens too, but are never listed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select

from points import directory
from points.auth import SESSION_PREFIX, WEB_SESSION_NAME, Principal, reach_volunteer, require_scope
from points.errors import ForbiddenError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import ApiToken, District, utcnow

# What an office may create; an admin may create any role.
OFFICE_MAY_CREATE = ("kiosk", "volunteer")
# What an office may revoke: also the provider links it issues.
OFFICE_MAY_REVOKE = (*OFFICE_MAY_CREATE, "provider")


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    role: str
    district: str
    volunteer_id: int | None
    provider_id: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        now = utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def list_tokens(principal: Principal, *, include_revoked: bool = False) -> list[TokenRow]:
    """The machine tokens of `principal`'s node and below, newest first."""
    statement = (
        select(
            ApiToken.id,
            ApiToken.name,
            ApiToken.role,
            District.code,
            ApiToken.volunteer_id,
            ApiToken.provider_id,
            ApiToken.created_at,
            ApiToken.expires_at,
            ApiToken.revoked_at,
        )
        .join(District, District.id == ApiToken.district_id)
        .where(
            ApiToken.staff_id.is_(None),
            ApiToken.name != WEB_SESSION_NAME,
            ~ApiToken.name.startswith(SESSION_PREFIX, autoescape=True),
        )
    )
    if principal.role != "admin":
        statement = statement.where(District.path.startswith(principal.path, autoescape=True))
    if not include_revoked:
        statement = statement.where(
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
        )
    rows = db.session.execute(statement.order_by(ApiToken.id.desc()).limit(500)).all()
    return [TokenRow(*row) for row in rows]


def issue_token(
    principal: Principal,
    role: str,
    district: str,
    *,
    name: str,
    volunteer_id: int | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token as `principal`; return the row and its secret (shown once).

    Raises ForbiddenError, InvalidInputError, NotFoundError.
    """
    if principal.role != "admin" and role not in OFFICE_MAY_CREATE:
        raise ForbiddenError("an office may create only kiosk and volunteer tokens")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError("a token needs a name", errors={"name": ["Required."]})
    if name.startswith(SESSION_PREFIX) or name == WEB_SESSION_NAME:
        raise InvalidInputError(
            "that name is reserved", errors={"name": ["This name is reserved for sessions."]}
        )
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInputError(
            "the token would be expired", errors={"expires_at": ["Must be in the future."]}
        )
    node = directory.district_by_code(district)
    require_scope(principal, node.path)
    if volunteer_id is not None:
        _, path = reach_volunteer(principal, volunteer_id)
        if not path.startswith(node.path):
            raise InvalidInputError(
                "the volunteer is not in that node",
                errors={"district": ["Must hold the volunteer."]},
            )
    return directory.create_token(
        role, district, name=name.strip(), volunteer_id=volunteer_id, expires_at=expires_at
    )


def revoke_as(principal: Principal, token_id: int) -> None:
    """Revoke a token as `principal`. Raises NotFoundError, ForbiddenError."""
    row = db.session.execute(
        select(ApiToken.role, ApiToken.staff_id, District.path)
        .join(District, District.id == ApiToken.district_id)
        .where(ApiToken.id == token_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no token {token_id}")
    if principal.role != "admin" and row.role not in OFFICE_MAY_REVOKE:
        raise ForbiddenError("an office may revoke only kiosk, volunteer and provider tokens")
    require_scope(principal, row.path, "this token")
    directory.revoke_token(token_id)
