"""Rankings: a node's volunteers by service hours or by points earned in a period.

Public: BY; rank(district, by, start, end, *, limit=None) -> list[Ranked];
rank_of(volunteer_id, by, start, end) -> Ranked | None.

Points earned are the earn entries' credits to the volunteer, less the corrections of
those credits: spending or giving points never lowers a rank, and a reversed award does.
Service hours are the minutes credited in the period (corrections count). Ties share a
rank and the next rank skips ("1, 2, 2, 4"), as in any competition. A volunteer with
nothing in the period is not ranked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from points.errors import InvalidInputError
from points.extensions import db
from points.models import Account, District, Entry, Posting, ServiceMinutes, Volunteer
from points.policy import district_info

BY = ("hours", "points")


@dataclass(frozen=True)
class Ranked:
    rank: int
    volunteer_id: int
    name: str
    district: str  # the volunteer's node's name
    value: int  # minutes, or points

    @property
    def hours(self) -> float:
        return round(self.value / 60, 1)


def _check(by: str, start: datetime, end: datetime) -> None:
    errors: dict[str, list[str]] = {}
    if by not in BY:
        errors["by"] = [f"One of {', '.join(BY)}."]
    for name, value in (("since", start), ("until", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            errors[name] = ["Aware time."]
    if not errors and end <= start:
        errors["until"] = ["After since."]
    if errors:
        raise InvalidInputError("the ranking cannot be made as asked", errors=errors)


def _totals(node_ids, by: str, start: datetime, end: datetime):
    """(volunteer id, total) of every volunteer of the nodes with something in [start, end)."""
    if by == "hours":
        return (
            select(ServiceMinutes.volunteer_id, func.sum(ServiceMinutes.minutes).label("total"))
            .join(Volunteer, Volunteer.id == ServiceMinutes.volunteer_id)
            .where(
                Volunteer.district_id.in_(node_ids),
                ServiceMinutes.created_at >= start,
                ServiceMinutes.created_at < end,
            )
            .group_by(ServiceMinutes.volunteer_id)
        )
    reversed_entry = aliased(Entry, name="reversed_entry")
    return (
        select(Account.volunteer_id, func.sum(Posting.amount).label("total"))
        .join(Account, Account.id == Posting.account_id)
        .join(Entry, Entry.id == Posting.entry_id)
        .outerjoin(reversed_entry, reversed_entry.id == Entry.reverses_id)
        .where(
            Account.kind == "volunteer",
            Posting.district_id.in_(node_ids),
            Entry.effective_at >= start,
            Entry.effective_at < end,
            (Entry.kind == "earn") | ((Entry.kind == "reversal") & (reversed_entry.kind == "earn")),
        )
        .group_by(Account.volunteer_id)
    )


def _ranked(rows) -> list[Ranked]:
    found, rank, previous = [], 0, None
    for position, (volunteer_id, total, name, node) in enumerate(rows, start=1):
        if total != previous:
            rank, previous = position, total
        found.append(Ranked(rank, volunteer_id, name, node, int(total)))
    return found


def rank(
    district: int | str, by: str, start: datetime, end: datetime, *, limit: int | None = None
) -> list[Ranked]:
    """The volunteers of a node and below, best first, by hours or points in [start, end).

    Raises InvalidInputError, NotFoundError."""
    _check(by, start, end)
    node = district_info(district)
    node_ids = select(District.id).where(District.path.startswith(node.path, autoescape=True))
    totals = _totals(node_ids, by, start, end).subquery()
    query = (
        select(totals.c[0], totals.c.total, Volunteer.name, District.name)
        .join(Volunteer, Volunteer.id == totals.c[0])
        .join(District, District.id == Volunteer.district_id)
        .where(totals.c.total > 0)
        .order_by(totals.c.total.desc(), Volunteer.id)
    )
    rows = db.session.execute(query).all()
    ranked = _ranked(rows)
    return ranked[:limit] if limit is not None else ranked


def rank_of(
    volunteer_id: int, district: int | str, by: str, start: datetime, end: datetime
) -> tuple[Ranked | None, int]:
    """The volunteer's place in their node's ranking, and how many are ranked."""
    ranked = rank(district, by, start, end)
    mine = next((row for row in ranked if row.volunteer_id == volunteer_id), None)
    return mine, len(ranked)
