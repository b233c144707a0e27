"""Service providers: the link tokens offices issue them, and the vouchers they may see.

A provider has no account. An office of the provider's node issues a link token (role
`provider`, naming the provider): whoever holds the link can look up and fulfil that
provider's vouchers and nothing else. A voucher of another provider, or of a node out of
reach, answers exactly like an unknown code, so codes cannot be probed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from points import directory
from points.auth import Principal, require_scope
from points.errors import NotFoundError
from points.extensions import db
from points.models import District, Hold, Provider, Redemption, Volunteer, utcnow
from points.redemptions import catalog_for
from points.volunteers import mask_name

# Where a link token opens the provider's page: <base-url>/provider/link/<token>.
LINK_PATH = "/provider/link/"


@dataclass(frozen=True)
class ProviderLink:
    """A link token just issued: its row id, the token (shown once) and its page path."""

    token_id: int
    token: str
    provider: str
    path: str

    def url(self, base_url: str) -> str:
        """The full link to hand to the provider."""
        return base_url.rstrip("/") + self.path


def normalise_voucher_code(text: str | None) -> str:
    """A voucher code as issued: upper case, spaces anywhere dropped (as typed or scanned)."""
    return "".join((text or "").split()).upper()


def issue_link(principal: Principal | None, provider_code: str) -> ProviderLink:
    """Issue a link token for the provider `provider_code`; return it (shown only once).

    `principal` is the office asking (it must reach the provider's node), or None for the
    command line. Raises NotFoundError, ForbiddenError.
    """
    provider = directory.provider_by_code(provider_code)
    district = db.session.get(District, provider.district_id)
    if principal is not None:
        require_scope(principal, district.path, "this provider")
    token, secret = directory.create_token(
        "provider", district.code, name=f"provider-link:{provider.code}", provider_id=provider.id
    )
    return ProviderLink(token.id, secret, provider.code, LINK_PATH + secret)


def voucher_in_reach(principal: Principal, voucher_code: str) -> int:
    """Return the id of the redemption with this voucher, if `principal` may see it.

    The voucher must be in the principal's node, and for a provider's link token it must
    be that provider's. Anything else answers exactly like an unknown code (404, not
    403). Raises NotFoundError.
    """
    found = db.session.execute(
        select(Redemption.id, Redemption.provider_id, District.path)
        .join(District, District.id == Redemption.district_id)
        .where(Redemption.voucher_code == voucher_code)
    ).one_or_none()
    if (
        found is None
        or not principal.covers(found.path)
        or (principal.role == "provider" and found.provider_id != principal.provider_id)
    ):
        raise NotFoundError("no such voucher", errors={"voucher_code": ["No such voucher here."]})
    return found.id


@dataclass(frozen=True)
class VoucherView:
    """A voucher as a provider sees it: the item, points, state; the name masked, no phone."""

    id: int
    voucher_code: str
    name: str
    name_en: str
    points: int
    status: str
    volunteer: str
    provider: str
    created_at: datetime
    expires_at: datetime | None
    resolved_at: datetime | None
    timezone: str


def voucher_view(redemption_id: int) -> VoucherView:
    """Return a redemption as a provider's page shows it. Raises NotFoundError."""
    row = db.session.execute(
        select(
            Redemption,
            Volunteer.name.label("volunteer_name"),
            Provider.name.label("provider_name"),
            Hold.expires_at,
            District.timezone,
        )
        .join(Volunteer, Volunteer.id == Redemption.volunteer_id)
        .join(Provider, Provider.id == Redemption.provider_id)
        .join(Hold, Hold.id == Redemption.hold_id)
        .join(District, District.id == Redemption.district_id)
        .where(Redemption.id == redemption_id)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no redemption {redemption_id}")
    redemption = row[0]
    names = {
        e.item.sku: (e.item.name_zh, e.item.name_en) for e in catalog_for(redemption.district_id)
    }
    name_zh, name_en = names.get(redemption.sku, (redemption.sku, redemption.sku))
    status = redemption.status
    # A hold past its time that the time-out run has not reached yet reads as expired.
    if status == "held" and row.expires_at <= utcnow():
        status = "expired"
    return VoucherView(
        redemption.id,
        redemption.voucher_code,
        name_zh,
        name_en,
        redemption.points,
        status,
        mask_name(row.volunteer_name),
        row.provider_name,
        redemption.created_at,
        row.expires_at if status == "held" else None,
        redemption.resolved_at,
        row.timezone,
    )


def provider_of(principal: Principal) -> dict[str, Any]:
    """Return the provider a link token names: code, name and node. Raises NotFoundError."""
    row = db.session.execute(
        select(Provider.code, Provider.name, Provider.status, District.timezone)
        .join(District, District.id == Provider.district_id)
        .where(Provider.id == principal.provider_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError("no such provider")
    return {"code": row.code, "name": row.name, "status": row.status, "timezone": row.timezone}
