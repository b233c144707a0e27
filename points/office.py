"""What an office's day starts with: what waits for a decision, and what needs a hand.

Read-only; the console's Today page and `GET /api/v1/today` both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select

from points import budgets
from points.auth import Principal
from points.extensions import db
from points.models import (
    District,
    Hold,
    Provider,
    Redemption,
    ServiceRecord,
    TransferRequest,
    Volunteer,
    utcnow,
)

# Held vouchers lapsing within this many days are "about to lapse".
LAPSING_DAYS = 3
# Today lists at most this many of each.
LISTED = 20


@dataclass(frozen=True)
class Today:
    pending_records: int
    pending_gifts: int
    oldest_pending: datetime | None
    lapsing: list[dict] = field(default_factory=list)
    lapsing_count: int = 0
    locked: list[dict] = field(default_factory=list)
    locked_count: int = 0
    # Budgets set at the node and below: this period's budget, used and left.
    budgets: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _in_reach(statement, principal: Principal, district_column):
    statement = statement.join(District, District.id == district_column)
    if principal.role == "admin":
        return statement
    return statement.where(District.path.startswith(principal.path, autoescape=True))


def today(principal: Principal) -> Today:
    """The Today summary of `principal`'s node and everything below it."""
    now = utcnow()
    pending = db.session.execute(
        _in_reach(
            select(func.count(), func.min(ServiceRecord.created_at))
            .select_from(ServiceRecord)
            .where(ServiceRecord.status == "pending"),
            principal,
            ServiceRecord.district_id,
        )
    ).one()
    gifts = db.session.scalar(
        _in_reach(
            select(func.count())
            .select_from(TransferRequest)
            .where(TransferRequest.status == "pending"),
            principal,
            TransferRequest.district_id,
        )
    )
    lapsing_filter = (
        Redemption.status == "held",
        Hold.expires_at < now + timedelta(days=LAPSING_DAYS),
    )
    lapsing_rows = db.session.execute(
        _in_reach(
            select(
                Redemption.id,
                Redemption.voucher_code,
                Redemption.sku,
                Redemption.points,
                Volunteer.id.label("volunteer_id"),
                Volunteer.name,
                Provider.name.label("provider"),
                Hold.expires_at,
            )
            .join(Hold, Hold.id == Redemption.hold_id)
            .join(Volunteer, Volunteer.id == Redemption.volunteer_id)
            .join(Provider, Provider.id == Redemption.provider_id)
            .where(*lapsing_filter),
            principal,
            Redemption.district_id,
        )
        .order_by(Hold.expires_at)
        .limit(LISTED)
    ).all()
    lapsing_count = db.session.scalar(
        _in_reach(
            select(func.count())
            .select_from(Redemption)
            .join(Hold, Hold.id == Redemption.hold_id)
            .where(*lapsing_filter),
            principal,
            Redemption.district_id,
        )
    )
    locked_rows = db.session.execute(
        _in_reach(
            select(Volunteer.id, Volunteer.name, Volunteer.locked_until, District.name).where(
                Volunteer.locked_until > now
            ),
            principal,
            Volunteer.district_id,
        )
        .order_by(Volunteer.locked_until)
        .limit(LISTED)
    ).all()
    locked_count = db.session.scalar(
        _in_reach(
            select(func.count()).select_from(Volunteer).where(Volunteer.locked_until > now),
            principal,
            Volunteer.district_id,
        )
    )
    return Today(
        pending_records=pending[0],
        pending_gifts=gifts,
        oldest_pending=pending[1],
        lapsing=[dict(row._mapping) for row in lapsing_rows],
        lapsing_count=lapsing_count,
        locked=[
            {"volunteer_id": r.id, "name": r.name, "locked_until": r.locked_until, "district": r[3]}
            for r in locked_rows
        ],
        locked_count=locked_count,
        budgets=[
            u.as_dict()
            for u in budgets.usage_under(None if principal.role == "admin" else principal.path)
        ],
    )
