"""What a volunteer sees of their points: balance, stars, history, records and vouchers.

Read-only, and the one place both the API and the pages read these from, so that a page
and its API operation give the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from points import ledger, service
from points.errors import InvalidInputError, NotFoundError
from points.extensions import db
from points.models import (
    Account,
    District,
    Entry,
    Hold,
    Posting,
    Provider,
    Redemption,
    ServiceRecord,
    Volunteer,
    utcnow,
)
from points.plugins import VolunteerInfo
from points.policy import resolve_policy
from points.redemptions import Usage, catalog_for

# A balance lists at most this many expiry dates.
EXPIRING_ITEMS = 10


def mask_phone(phone: str | None) -> str | None:
    """Return a phone number with all but its first three and last four digits hidden."""
    if not phone:
        return phone
    digits = [c for c in phone if c.isdigit()]
    if len(digits) <= 7:
        return "*" * len(digits)
    return "".join(digits[:3]) + "*" * (len(digits) - 7) + "".join(digits[-4:])


def mask_name(name: str) -> str:
    """Return a name as a kiosk or another volunteer may see it: 王*英."""
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


@dataclass(frozen=True)
class StarProgress:
    """Where a volunteer stands on the star ladder: level, and hours to the next star."""

    level: int
    hours: float
    next_level: int | None
    next_hours: int | None

    @property
    def percent(self) -> int:
        """How far from this star to the next one, 0..100 (100 at the top)."""
        if self.next_hours is None:
            return 100
        return max(0, min(100, int(self.hours * 100 / self.next_hours)))


def balance(volunteer_id: int) -> dict[str, Any]:
    """Return a volunteer's points as the API shows them: balance, held, available, time,
    star level and what expires soon (the expiry policy's window). Raises NotFoundError."""
    points = ledger.balance(volunteer_id)
    volunteer = service.volunteer_info(volunteer_id)
    return {
        "volunteer_id": volunteer_id,
        "balance": points.balance,
        "held": points.held,
        "available": points.available,
        "service_minutes": volunteer.service_minutes,
        "star_level": volunteer.star_level,
        "expiring": [
            {"points": amount, "expires_at": at}
            for amount, at in service.expiring_soon(volunteer)[:EXPIRING_ITEMS]
        ],
    }


def balance_as_of(volunteer_id: int, moment: datetime) -> dict[str, Any]:
    """A volunteer's points as `balance` shows them, as they stood at `moment` (by
    effective time); `expiring` is left empty, as the past of a lot is not kept."""
    from points import statements

    then = statements.as_of(volunteer_id, moment)
    volunteer = service.volunteer_info(volunteer_id)
    return {
        "volunteer_id": volunteer_id,
        "balance": then.balance,
        "held": then.held,
        "available": then.available,
        "service_minutes": then.service_minutes,
        "star_level": service.star_level(then.service_minutes, volunteer.district_id),
        # What was about to expire then is not kept (lots are updated in place): none.
        "expiring": [],
        "as_of": moment,
    }


def star_progress(volunteer: int | VolunteerInfo) -> StarProgress:
    """Return the volunteer's star level and the hours the next star needs, under the
    `stars` policy of their node (no next star when stars are off or at the top)."""
    if not isinstance(volunteer, VolunteerInfo):
        volunteer = service.volunteer_info(volunteer)
    policy = resolve_policy(volunteer.district_id)
    hours = volunteer.service_minutes / 60
    if "stars" not in policy.configs or not policy.enabled("stars"):
        return StarProgress(volunteer.star_level, hours, None, None)
    ladder = list(policy.config("stars")["levels_hours"])
    above = [(n, h) for n, h in enumerate(ladder, start=1) if h * 60 > volunteer.service_minutes]
    if not above:
        return StarProgress(volunteer.star_level, hours, None, None)
    level, needed = above[0]
    return StarProgress(volunteer.star_level, hours, level, needed)


@dataclass(frozen=True)
class Summary:
    """What a volunteer's home page shows: points, time, stars, what expires soon."""

    balance: int
    held: int
    available: int
    service_minutes: int
    stars: StarProgress
    expiring: list[tuple[int, datetime]]


def summary(volunteer_id: int, *, expiring_days: int) -> Summary:
    """Return a volunteer's points, hours, star progress and the points expiring within
    `expiring_days`, reading the volunteer and their policy once. Raises NotFoundError."""
    volunteer = service.volunteer_info(volunteer_id)
    points = ledger.balance(volunteer_id)
    return Summary(
        points.balance,
        points.held,
        points.available,
        volunteer.service_minutes,
        star_progress(volunteer),
        service.expiring_soon(volunteer, days=expiring_days),
    )


@dataclass(frozen=True)
class Profile:
    """A volunteer with their node, as their own pages show them."""

    id: int
    name: str
    phone: str | None
    card_code: str
    status: str
    district_code: str
    district_name: str
    timezone: str
    contact: str | None
    service_minutes: int
    created_at: datetime
    # A one-time activation code is pending: the volunteer has chosen no PIN yet.
    activation_pending: bool = False


_ABOVE = aliased(District, name="above")
_PROFILE = select(
    Volunteer.id,
    Volunteer.name,
    Volunteer.phone,
    Volunteer.card_code,
    Volunteer.status,
    District.code,
    District.name.label("district_name"),
    District.timezone,
    # The contact line of the node, else of the nearest node above that has one.
    select(_ABOVE.contact)
    .where(
        District.path.startswith(_ABOVE.path, autoescape=False),
        _ABOVE.contact.is_not(None),
    )
    .order_by(func.length(_ABOVE.path).desc())
    .limit(1)
    .scalar_subquery()
    .label("contact"),
    Volunteer.service_minutes,
    Volunteer.created_at,
    Volunteer.activation_hash.is_not(None).label("activation_pending"),
).join(District, District.id == Volunteer.district_id)


def profile(volunteer_id: int) -> Profile:
    """Return a volunteer and their node, with the office's contact line. Raises
    NotFoundError."""
    row = db.session.execute(_PROFILE.where(Volunteer.id == volunteer_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    return Profile(*row)


def by_card(card_code: str) -> int:
    """Return the id of the volunteer with this card. Raises NotFoundError (on card_code)."""
    code = "".join((card_code or "").split()).upper()
    found = db.session.scalar(select(Volunteer.id).where(Volunteer.card_code == code))
    if not code or found is None:
        raise NotFoundError(
            "no such card", errors={"card_code": ["No volunteer has this card code."]}
        )
    return found


def volunteer_kinds(district: int | str) -> list[str]:
    """The activity kinds volunteers may report themselves at a node (the approval
    policy's `volunteer_kinds`); none when the approval plugin is off there."""
    from points.plugins import activity_kinds, plugin_manager

    policy = resolve_policy(district)
    if "approval" not in policy.configs or not policy.enabled("approval"):
        return []
    known = activity_kinds(plugin_manager())
    return [kind for kind in policy.config("approval")["volunteer_kinds"] if kind in known]


# -- history -----------------------------------------------------------------------------


def month_range(month: str, timezone: str) -> tuple[datetime, datetime]:
    """Return the start and end of a month ("2026-11") in a time zone, as aware times.

    Raises InvalidInputError.
    """
    try:
        year, number = (int(part) for part in month.split("-"))
        start = datetime(year, number, 1, tzinfo=ZoneInfo(timezone))
    except (ValueError, TypeError):
        raise InvalidInputError(
            "month must look like 2026-11", errors={"month": ["Use YYYY-MM, like 2026-11."]}
        ) from None
    if not 1900 <= year <= 9998:
        raise InvalidInputError("month out of range", errors={"month": ["Years 1900 to 9998."]})
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=ZoneInfo(timezone))
    return start, end


def entries(
    volunteer_id: int,
    *,
    before: int | None = None,
    limit: int = 50,
    month: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Return a page of the volunteer's history, newest first, and the cursor of the next
    page (a posting id; None on the last page).

    Each line says what happened and why: the entry's kind and reason, the plugin and
    rule behind an award and its config version, the line a correction corrects, and for
    a gift the other volunteer, masked. `month` ("2026-11", in the node's time zone)
    keeps the lines whose effective time falls in that month. Raises NotFoundError,
    InvalidInputError.
    """
    account_id = ledger.balance(volunteer_id).account_id
    statement = _line_query(account_id).order_by(Posting.id.desc()).limit(limit + 1)
    if before is not None:
        statement = statement.where(Posting.id < before)
    if month is not None:
        timezone = db.session.scalar(
            select(District.timezone)
            .join(Volunteer, Volunteer.district_id == District.id)
            .where(Volunteer.id == volunteer_id)
        )
        start, end = month_range(month, timezone)
        statement = statement.where(Entry.effective_at >= start, Entry.effective_at < end)
    rows = db.session.execute(statement).all()
    page = rows[:limit]
    lines = _lines(page, account_id)
    return lines, (page[-1].posting_id if len(rows) > len(page) else None)


def _line_query(account_id: int):
    """The postings of an account with what a history line says of each."""
    corrected = aliased(Entry, name="corrected")
    return (
        select(
            Posting.id.label("posting_id"),
            Posting.amount,
            Entry.id,
            Entry.kind,
            Entry.reason,
            Entry.created_at,
            Entry.effective_at,
            Entry.plugin,
            Entry.rule,
            Entry.config_version,
            Entry.reverses_id,
            Entry.service_record_id,
            corrected.reason.label("corrected_reason"),
            corrected.effective_at.label("corrected_at"),
        )
        .join(Entry, Entry.id == Posting.entry_id)
        .outerjoin(corrected, corrected.id == Entry.reverses_id)
        .where(Posting.account_id == account_id)
    )


def _lines(rows, account_id: int) -> list[dict[str, Any]]:
    others = _other_sides([row.id for row in rows if row.kind == "transfer"], account_id)
    return [
        {
            "id": row.id,
            "kind": row.kind,
            "points": row.amount,
            "reason": row.reason,
            "created_at": row.created_at,
            "effective_at": row.effective_at,
            "plugin": row.plugin,
            "rule": row.rule,
            "config_version": row.config_version,
            "reverses_id": row.reverses_id,
            "corrects": (
                {"reason": row.corrected_reason, "effective_at": row.corrected_at}
                if row.reverses_id is not None
                else None
            ),
            "service_record_id": row.service_record_id,
            "other_side": others.get(row.id),
        }
        for row in rows
    ]


def lines_between(
    volunteer_id: int, start: datetime, end: datetime, *, limit: int
) -> list[dict[str, Any]]:
    """The volunteer's history lines that took effect in [start, end), oldest first."""
    account_id = ledger.balance(volunteer_id).account_id
    statement = (
        _line_query(account_id)
        .where(Entry.effective_at >= start, Entry.effective_at < end)
        .order_by(Entry.effective_at, Posting.id)
        .limit(limit)
    )
    return _lines(db.session.execute(statement).all(), account_id)


def _other_sides(entry_ids: list[int], account_id: int) -> dict[int, str]:
    """For gift entries, the masked name of the volunteer on the other side."""
    if not entry_ids:
        return {}
    rows = db.session.execute(
        select(Posting.entry_id, Volunteer.name)
        .join(Account, Account.id == Posting.account_id)
        .join(Volunteer, Volunteer.id == Account.volunteer_id)
        .where(Posting.entry_id.in_(entry_ids), Posting.account_id != account_id)
    ).all()
    return {row.entry_id: mask_name(row.name) for row in rows}


# -- service records ---------------------------------------------------------------------


def records(
    volunteer_id: int, *, status: str | None = None, before: int | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], int | None]:
    """Return a page of the volunteer's service records, newest first, with the office's
    decision and reason, and the cursor of the next page (a record id, or None)."""
    statement = (
        select(ServiceRecord)
        .where(ServiceRecord.volunteer_id == volunteer_id)
        .order_by(ServiceRecord.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        statement = statement.where(ServiceRecord.status == status)
    if before is not None:
        statement = statement.where(ServiceRecord.id < before)
    rows = db.session.scalars(statement).all()
    page = rows[:limit]
    lines = [
        {
            "id": row.id,
            "kind": row.kind,
            "started_at": row.started_at,
            "minutes": row.minutes,
            "details": row.details,
            "status": row.status,
            "points": row.points,
            "queue_reason": row.queue_reason,
            "decided_at": row.decided_at,
            "decision_reason": row.decision_reason,
            "created_at": row.created_at,
        }
        for row in page
    ]
    return lines, (page[-1].id if len(rows) > len(page) else None)


# -- vouchers ----------------------------------------------------------------------------


def vouchers(
    volunteer_id: int, *, status: str | None = None, before: int | None = None, limit: int = 50
) -> tuple[list[dict[str, Any]], int | None]:
    """Return a page of the volunteer's redemptions (vouchers), newest first: item names,
    provider, status and when a held one lapses; and the next page's cursor."""
    statement = (
        select(Redemption, Provider.name.label("provider_name"), Hold.expires_at)
        .join(Provider, Provider.id == Redemption.provider_id)
        .join(Hold, Hold.id == Redemption.hold_id)
        .where(Redemption.volunteer_id == volunteer_id)
        .order_by(Redemption.id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        statement = statement.where(Redemption.status == status)
    if before is not None:
        statement = statement.where(Redemption.id < before)
    rows = db.session.execute(statement).all()
    page = rows[:limit]
    names = _item_names(volunteer_id)
    # A hold past its time that the time-out run has not reached yet reads as expired.
    now = utcnow()
    lines = []
    for row, provider_name, expires_at in page:
        status_now = row.status
        if status_now == "held" and expires_at <= now:
            status_now = "expired"
        name_zh, name_en = names.get(row.sku, (row.sku, row.sku))
        lines.append(
            {
                "id": row.id,
                "sku": row.sku,
                "name": name_zh,
                "name_en": name_en,
                "provider": provider_name,
                "points": row.points,
                "voucher_code": row.voucher_code,
                "status": status_now,
                "created_at": row.created_at,
                "expires_at": expires_at if row.status == "held" else None,
                "resolved_at": row.resolved_at,
            }
        )
    return lines, (page[-1][0].id if len(rows) > len(page) else None)


def voucher(volunteer_id: int, redemption_id: int) -> dict[str, Any]:
    """Return one of the volunteer's vouchers; NotFoundError for anyone else's."""
    lines, _ = vouchers(volunteer_id, before=redemption_id + 1, limit=1)
    if not lines or lines[0]["id"] != redemption_id:
        raise NotFoundError(f"no voucher {redemption_id}")
    return lines[0]


def _item_names(volunteer_id: int) -> dict[str, tuple[str, str]]:
    """The catalog's item names (zh-CN, English) at the volunteer's node, by sku."""
    district_id = db.session.scalar(
        select(Volunteer.district_id).where(Volunteer.id == volunteer_id)
    )
    return {e.item.sku: (e.item.name_zh, e.item.name_en) for e in catalog_for(district_id)}


# -- catalog -----------------------------------------------------------------------------


def catalog(district: int | str, volunteer_id: int | None = None) -> list[dict[str, Any]]:
    """Return the node's catalog as people see it; with a volunteer, whether they may
    redeem each item and, for the rest, every reason why not in both languages."""
    entries_ = catalog_for(district, volunteer_id)
    timezone = resolve_policy(district).district.timezone
    usage = Usage(timezone)
    shown = []
    for entry in entries_:
        item = entry.item
        stock_left = None
        if item.stock_per_month is not None:
            stock_left = max(0, item.stock_per_month - usage.item_count(item, "month"))
        line: dict[str, Any] = {
            "sku": item.sku,
            "name": item.name_zh,
            "name_en": item.name_en,
            "cost": item.cost,
            "provider": item.provider,
            "stock_left": stock_left,
            "min_star": item.min_star,
        }
        if volunteer_id is not None:
            reasons = [{"zh": r["zh"], "en": r["en"]} for r in entry.reasons if not r["allowed"]]
            if entry.affordable is False:
                reasons.append(
                    {
                        "zh": f"积分不足（需要 {item.cost} 分）",
                        "en": f"not enough points (needs {item.cost})",
                    }
                )
            line["eligible"] = not reasons
            line["reasons"] = reasons
        shown.append(line)
    return shown


def offers(district: int | str, volunteer_id: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The catalog as a volunteer's page shows it: what they can get first, cheapest
    first, then the rest with their reasons; and the providers' names by code."""
    items = catalog(district, volunteer_id)
    items.sort(key=lambda item: (not item["eligible"], item["cost"]))
    return items, provider_names([item["provider"] for item in items])


def provider_names(codes: list[str]) -> dict[str, str]:
    """Return providers' names by code."""
    if not codes:
        return {}
    rows = db.session.execute(
        select(Provider.code, Provider.name).where(and_(Provider.code.in_(codes)))
    ).all()
    return {row.code: row.name for row in rows}
