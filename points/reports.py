"""A node's report for a period: what it issued, what was redeemed, expired, corrected and
given, what it owes at the start and the end, service hours and volunteers.

Public: report(district, start, end) -> Report; monthly(district, months=12, until=None)
-> list[MonthRow]; month_bounds(month, timezone) -> (start, end).

Every figure is a sum over the ledger's postings to volunteer accounts of the node and
below (or over its service minutes and volunteers), by the entries' effective time:
- issued: earn entries, by activity kind (the service record's) and by plugin rule;
- redeemed: redeem entries, by provider and item;
- expired: expire entries; corrections: reversal entries (their net effect);
- gifts in and out: transfer entries crediting or debiting the node's volunteers;
- outstanding at the start and the end: what the node's volunteers hold, held points
  included: the points the office still owes.
So outstanding at the end is always outstanding at the start plus issued, less redeemed
and expired, plus corrections and gifts in, less gifts out (`Report.balances`).

The ledger figures are read from the ledger's hourly rollup (points.rollups), never from
every posting: a month's report costs the same in a node's first year and its tenth but
for the sum of the rollup's earlier hours behind the outstanding figures. Service minutes
and volunteers are read through their node's index for the period.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from points import budgets, rollups
from points.errors import InvalidInputError
from points.extensions import db
from points.models import District, Provider, ServiceMinutes, Volunteer, utcnow
from points.policy import district_info
from points.service import star_level
from points.volunteers import month_range

OTHER = "other"  # an award with no service record: a campaign, an import, a bonus


@dataclass
class Report:
    """A node's figures for [start, end)."""

    district: str
    district_name: str
    start: datetime
    end: datetime
    outstanding_start: int = 0
    outstanding_end: int = 0
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    corrections: int = 0
    gifts_in: int = 0
    gifts_out: int = 0
    service_minutes: int = 0
    active_volunteers: int = 0
    new_volunteers: int = 0
    volunteers: int = 0
    issued_by_kind: dict[str, int] = field(default_factory=dict)
    issued_by_rule: dict[str, int] = field(default_factory=dict)
    redeemed_by_item: list[dict[str, Any]] = field(default_factory=list)
    # Volunteers registered by the end, per star level at the end (the node itself only).
    star_levels: dict[int, int] = field(default_factory=dict)
    children: list[Report] = field(default_factory=list)
    # Budgets set at the node and its children: the period around the report's last
    # moment (or now, if the report runs on), budget, used and left (the node only).
    budgets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def balances(self) -> bool:
        """Outstanding at the end equals the start plus every movement in between."""
        moved = (
            self.issued
            - self.redeemed
            - self.expired
            + self.corrections
            + self.gifts_in
            - self.gifts_out
        )
        return self.outstanding_start + moved == self.outstanding_end

    @property
    def service_hours(self) -> float:
        return round(self.service_minutes / 60, 1)

    def as_dict(self) -> dict[str, Any]:
        shown = {k: v for k, v in self.__dict__.items() if k not in ("children", "budgets")}
        shown["budgets"] = self.budgets
        shown["service_hours"] = self.service_hours
        shown["children"] = [child.as_dict() for child in self.children]
        return shown


def _check(start: datetime, end: datetime) -> None:
    errors: dict[str, list[str]] = {}
    for name, value in (("since", start), ("until", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            errors[name] = ["Aware time."]
    if not errors and end <= start:
        errors["until"] = ["After since."]
    if errors:
        raise InvalidInputError("the report cannot be made as asked", errors=errors)


def _subtree(path: str):
    return select(District.id).where(District.path.startswith(path, autoescape=True))


def _figures(
    report: Report, path: str, outstanding_start: int | None = None
) -> list[rollups.Movement]:
    """Fill the report's totals for the node at `path`; return its movements. A known
    `outstanding_start` (the previous month's end) spares the sum of the earlier hours."""
    nodes = _subtree(path)
    start, end = report.start, report.end
    moved = rollups.movements(nodes, start, end)
    for move in moved:
        if move.kind == "earn":
            report.issued += move.net
        elif move.kind == "redeem":
            report.redeemed -= move.net
        elif move.kind == "expire":
            report.expired -= move.net
        elif move.kind == "reversal":
            report.corrections += move.net
        elif move.kind == "transfer":
            report.gifts_in += move.credits
            report.gifts_out += move.debits
    if outstanding_start is None:
        outstanding_start = rollups.owed(nodes, start)
    report.outstanding_start = outstanding_start
    report.outstanding_end = report.outstanding_start + sum(move.net for move in moved)
    report.service_minutes, report.active_volunteers = (
        int(value or 0)
        for value in db.session.execute(
            select(
                func.sum(ServiceMinutes.minutes),
                func.count(func.distinct(ServiceMinutes.volunteer_id)),
            ).where(
                ServiceMinutes.district_id.in_(nodes),
                ServiceMinutes.created_at >= start,
                ServiceMinutes.created_at < end,
            )
        ).one()
    )
    report.new_volunteers, report.volunteers = (
        int(value or 0)
        for value in db.session.execute(
            select(
                func.count().filter(Volunteer.created_at >= start),
                func.count(),
            ).where(Volunteer.district_id.in_(nodes), Volunteer.created_at < end)
        ).one()
    )
    return moved


def _breakdowns(report: Report, moved: list[rollups.Movement]) -> None:
    items: dict[int | str, dict[str, Any]] = {}
    for move in moved:
        if move.kind == "earn":
            kind = move.activity or OTHER
            report.issued_by_kind[kind] = report.issued_by_kind.get(kind, 0) + move.net
            name = f"{move.plugin}/{move.rule}" if move.plugin else OTHER
            report.issued_by_rule[name] = report.issued_by_rule.get(name, 0) + move.net
        elif move.kind == "redeem" and move.provider_id:
            item = items.setdefault((move.provider_id, move.sku), {"vouchers": 0, "points": 0})
            item["vouchers"] += move.postings
            item["points"] -= move.net
    providers = {
        provider_id: (code, name)
        for provider_id, code, name in db.session.execute(
            select(Provider.id, Provider.code, Provider.name).where(
                Provider.id.in_({provider for provider, _ in items})
            )
        )
    }
    report.redeemed_by_item = sorted(
        (
            {
                "provider": providers[provider][0],
                "provider_name": providers[provider][1],
                "sku": sku,
                **figures,
            }
            for (provider, sku), figures in items.items()
        ),
        key=lambda row: (row["provider"], row["sku"]),
    )


def _star_levels(report: Report, path: str) -> None:
    """How many of the node's volunteers stood at each star level at the report's end:
    their minutes now less what was credited since, under their own node's policy."""
    nodes = _subtree(path)
    since = dict(
        db.session.execute(
            select(ServiceMinutes.volunteer_id, func.sum(ServiceMinutes.minutes))
            .where(ServiceMinutes.district_id.in_(nodes), ServiceMinutes.created_at >= report.end)
            .group_by(ServiceMinutes.volunteer_id)
        ).all()
    )
    levels: dict[tuple[int, int], int] = {}
    counts: dict[int, int] = {}
    for volunteer_id, district_id, minutes in db.session.execute(
        select(Volunteer.id, Volunteer.district_id, Volunteer.service_minutes).where(
            Volunteer.district_id.in_(nodes), Volunteer.created_at < report.end
        )
    ):
        then = max(int(minutes) - int(since.get(volunteer_id, 0)), 0)
        key = (district_id, then)
        if key not in levels:
            levels[key] = star_level(then, district_id)
        counts[levels[key]] = counts.get(levels[key], 0) + 1
    report.star_levels = dict(sorted(counts.items()))


def report(district: int | str, start: datetime, end: datetime) -> Report:
    """The node's report for [start, end), with one row per child node.

    Raises InvalidInputError (times without a zone, an empty period), NotFoundError."""
    _check(start, end)
    node = district_info(district)
    found = Report(node.code, node.name, start, end)
    _breakdowns(found, _figures(found, node.path))
    _star_levels(found, node.path)
    children = db.session.execute(
        select(District.code, District.name, District.path)
        .where(District.parent_id == node.id)
        .order_by(District.name)
    ).all()
    for code, name, path in children:
        child = Report(code, name, start, end)
        _figures(child, path)
        found.children.append(child)
    last = min(end, utcnow()) - timedelta(microseconds=1)
    nodes = [node, *(district_info(code) for code, _, _ in children)]
    found.budgets = [u.as_dict() for u in budgets.usage(nodes, last)]
    return found


@dataclass(frozen=True)
class MonthRow:
    month: str
    issued: int
    redeemed: int
    expired: int
    outstanding: int
    service_minutes: int

    @property
    def service_hours(self) -> float:
        return round(self.service_minutes / 60, 1)


def month_bounds(month: str, timezone: str) -> tuple[datetime, datetime]:
    """The start and end of a month ("2026-11") in a time zone. Raises InvalidInputError."""
    return month_range(month, timezone)


def monthly(district: int | str, months: int, last: str) -> list[MonthRow]:
    """The node's main figures for each of `months` months up to the month `last`."""
    node = district_info(district)
    year, number = (int(part) for part in last.split("-"))
    names = []
    for _ in range(months):
        names.append(f"{year:04d}-{number:02d}")
        year, number = (year - 1, 12) if number == 1 else (year, number - 1)
    rows: list[MonthRow] = []
    for name in reversed(names):
        start, end = month_range(name, node.timezone)
        figures = Report(node.code, node.name, start, end)
        _figures(figures, node.path, rows[-1].outstanding if rows else None)
        rows.append(
            MonthRow(
                name,
                figures.issued,
                figures.redeemed,
                figures.expired,
                figures.outstanding_end,
                figures.service_minutes,
            )
        )
    return rows
