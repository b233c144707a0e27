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

Reports read the postings of the period, and the outstanding figures read every posting
before the period: they are not rolled up yet, so a report's cost grows with the node's
history (see docs/office.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select

from points.errors import InvalidInputError
from points.extensions import db
from points.models import (
    Account,
    District,
    Entry,
    Posting,
    Provider,
    Redemption,
    ServiceMinutes,
    ServiceRecord,
    Volunteer,
)
from points.policy import district_info
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
    children: list[Report] = field(default_factory=list)

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
        shown = {k: v for k, v in self.__dict__.items() if k != "children"}
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


def _volunteer_postings(nodes):
    """Postings to the volunteer accounts of the nodes, with their entries: read account
    by account through the index (account_id, id), never the whole postings table."""
    return (
        select()
        .select_from(Account)
        .join(Posting, Posting.account_id == Account.id)
        .join(Entry, Entry.id == Posting.entry_id)
        .where(Account.kind == "volunteer", Account.district_id.in_(nodes))
    )


def _owed(nodes, before: datetime) -> int:
    return int(
        db.session.scalar(
            _volunteer_postings(nodes)
            .add_columns(func.coalesce(func.sum(Posting.amount), 0))
            .where(Entry.effective_at < before)
        )
    )


def _figures(report: Report, path: str) -> None:
    nodes = _subtree(path)
    start, end = report.start, report.end
    in_period = (Entry.effective_at >= start, Entry.effective_at < end)
    by_kind = db.session.execute(
        _volunteer_postings(nodes)
        .add_columns(
            Entry.kind,
            func.sum(case((Posting.amount > 0, Posting.amount), else_=0)),
            func.sum(case((Posting.amount < 0, -Posting.amount), else_=0)),
            func.sum(Posting.amount),
        )
        .where(*in_period)
        .group_by(Entry.kind)
    ).all()
    for kind, credits, debits, net in by_kind:
        credits, debits, net = int(credits or 0), int(debits or 0), int(net or 0)
        if kind == "earn":
            report.issued = net
        elif kind == "redeem":
            report.redeemed = -net
        elif kind == "expire":
            report.expired = -net
        elif kind == "reversal":
            report.corrections = net
        elif kind == "transfer":
            report.gifts_in, report.gifts_out = credits, debits
    report.outstanding_start = _owed(nodes, start)
    report.outstanding_end = _owed(nodes, end)
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


def _breakdowns(report: Report, path: str) -> None:
    nodes = _subtree(path)
    in_period = (Entry.effective_at >= report.start, Entry.effective_at < report.end)
    kinds = db.session.execute(
        _volunteer_postings(nodes)
        .add_columns(ServiceRecord.kind, Entry.plugin, Entry.rule, func.sum(Posting.amount))
        .outerjoin(ServiceRecord, ServiceRecord.id == Entry.service_record_id)
        .where(Entry.kind == "earn", *in_period)
        .group_by(ServiceRecord.kind, Entry.plugin, Entry.rule)
    ).all()
    for kind, plugin, rule, points in kinds:
        kind = kind or OTHER
        report.issued_by_kind[kind] = report.issued_by_kind.get(kind, 0) + int(points)
        name = f"{plugin}/{rule}" if plugin else OTHER
        report.issued_by_rule[name] = report.issued_by_rule.get(name, 0) + int(points)
    items = db.session.execute(
        _volunteer_postings(nodes)
        .add_columns(
            Provider.code,
            Provider.name,
            Redemption.sku,
            func.count(func.distinct(Entry.id)),
            -func.sum(Posting.amount),
        )
        .join(Redemption, Redemption.entry_id == Entry.id)
        .join(Provider, Provider.id == Redemption.provider_id)
        .where(Entry.kind == "redeem", *in_period)
        .group_by(Provider.code, Provider.name, Redemption.sku)
        .order_by(Provider.code, Redemption.sku)
    ).all()
    report.redeemed_by_item = [
        {"provider": code, "provider_name": name, "sku": sku, "vouchers": n, "points": int(p)}
        for code, name, sku, n, p in items
    ]


def report(district: int | str, start: datetime, end: datetime) -> Report:
    """The node's report for [start, end), with one row per child node.

    Raises InvalidInputError (times without a zone, an empty period), NotFoundError."""
    _check(start, end)
    node = district_info(district)
    found = Report(node.code, node.name, start, end)
    _figures(found, node.path)
    _breakdowns(found, node.path)
    children = db.session.execute(
        select(District.code, District.name, District.path)
        .where(District.parent_id == node.id)
        .order_by(District.name)
    ).all()
    for code, name, path in children:
        child = Report(code, name, start, end)
        _figures(child, path)
        found.children.append(child)
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
    rows = []
    for name in reversed(names):
        start, end = month_range(name, node.timezone)
        figures = Report(node.code, node.name, start, end)
        _figures(figures, node.path)
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
