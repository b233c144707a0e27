"""Ledger hours: the rollup of volunteer postings that reports read (table ledger_hours).

Public: movements(nodes, start, end) -> list[Movement]; owed(nodes, before) -> int;
check() -> list of differing rows; rebuild() -> rows written.

A row holds, for one node, one hour (UTC), one entry kind and one detail (activity kind,
plugin and rule of an earn; provider and item of a redemption), what the node's volunteer
accounts gained (credits) and lost (debits). A trigger on postings (migration 0013)
keeps it in the same transaction as the postings it sums, on every write path; `check`
compares the table with a sum over the postings (`points ledger verify`) and `rebuild`
writes it again from them (`points ledger rollups`).

A period whose ends are whole hours (every month of a whole-hour time zone) is read from
the rollup alone, so its cost grows with the hours of history, not the postings. An end
inside an hour reads that hour's part from the postings (exact, but it reads the node's
postings: fine for an occasional period, not for a dashboard).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, func, literal, select, text

from points import database
from points.extensions import db
from points.models import (
    Account,
    Entry,
    LedgerHour,
    Posting,
    Redemption,
    ServiceRecord,
    utcnow,
)

HOUR = timedelta(hours=1)

# The current definition of a rollup row, as a select over postings grouped by its key.
# Migration 0013 froze a copy of it in the trigger; `check` compares the two.
_HOUR_SQL = {
    "postgresql": "date_trunc('hour', e.effective_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "sqlite": "substr(e.effective_at, 1, 13) || ':00:00.000000'",
}
_KEY = ("district_id", "hour", "kind", "activity", "plugin", "rule", "provider_id", "sku")
# Units of one node writing at once on PostgreSQL write rows of different stripes (the
# connection's); the figures are the sums over stripes, and a rebuild writes stripe 0.
_SUMS = ("credits", "debits", "postings")
_SELECT = """
    SELECT p.district_id, {hour} AS hour, e.kind,
        CASE WHEN e.kind = 'earn' THEN coalesce(r.kind, '') ELSE '' END AS activity,
        CASE WHEN e.kind = 'earn' THEN coalesce(e.plugin, '') ELSE '' END AS plugin,
        CASE WHEN e.kind = 'earn' THEN coalesce(e.rule, '') ELSE '' END AS rule,
        coalesce(d.provider_id, 0) AS provider_id,
        coalesce(d.sku, '') AS sku,
        0 AS stripe,
        sum(CASE WHEN p.amount > 0 THEN p.amount ELSE 0 END) AS credits,
        sum(CASE WHEN p.amount < 0 THEN -p.amount ELSE 0 END) AS debits,
        count(*) AS postings
    FROM postings p
    JOIN accounts a ON a.id = p.account_id
    JOIN entries e ON e.id = p.entry_id
    LEFT JOIN service_records r ON r.id = e.service_record_id AND e.kind = 'earn'
    LEFT JOIN redemptions d ON d.hold_id = e.hold_id AND e.kind = 'redeem'
    WHERE a.kind = 'volunteer'
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""


def _from_postings() -> str:
    return _SELECT.format(hour=_HOUR_SQL[db.engine.dialect.name])


@dataclass(frozen=True)
class Movement:
    """Points that moved on a node's volunteer accounts in a period, for one kind and
    detail: `credits` gained, `debits` lost, in `postings` postings."""

    kind: str
    activity: str
    plugin: str
    rule: str
    provider_id: int
    sku: str
    credits: int
    debits: int
    postings: int

    @property
    def net(self) -> int:
        return self.credits - self.debits


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def _floor_hour(moment: datetime) -> datetime:
    # In UTC, as the rollup's hours are: a local hour of a +05:30 zone is not one of them.
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _rolled(nodes, start: datetime | None, end: datetime):
    """Rows of the rollup for [start, end), both whole hours (start None: the beginning)."""
    conditions = [LedgerHour.district_id.in_(nodes), LedgerHour.hour < end]
    if start is not None:
        conditions.append(LedgerHour.hour >= start)
    return select(
        LedgerHour.kind,
        LedgerHour.activity,
        LedgerHour.plugin,
        LedgerHour.rule,
        LedgerHour.provider_id,
        LedgerHour.sku,
        func.sum(LedgerHour.credits),
        func.sum(LedgerHour.debits),
        func.sum(LedgerHour.postings),
    ).where(*conditions)


def _unrolled(nodes, start: datetime, end: datetime):
    """The same figures summed from the postings of [start, end) (a part of an hour)."""
    earn, redeem = Entry.kind == "earn", Entry.kind == "redeem"
    return (
        select(
            Entry.kind,
            case((earn, func.coalesce(ServiceRecord.kind, "")), else_=literal("")),
            case((earn, func.coalesce(Entry.plugin, "")), else_=literal("")),
            case((earn, func.coalesce(Entry.rule, "")), else_=literal("")),
            func.coalesce(Redemption.provider_id, 0),
            func.coalesce(Redemption.sku, ""),
            func.sum(case((Posting.amount > 0, Posting.amount), else_=0)),
            func.sum(case((Posting.amount < 0, -Posting.amount), else_=0)),
            func.count(),
        )
        .select_from(Account)
        .join(Posting, Posting.account_id == Account.id)
        .join(Entry, Entry.id == Posting.entry_id)
        .outerjoin(ServiceRecord, and_(ServiceRecord.id == Entry.service_record_id, earn))
        .outerjoin(Redemption, and_(Redemption.hold_id == Entry.hold_id, redeem))
        .where(
            Account.kind == "volunteer",
            Account.district_id.in_(nodes),
            Entry.effective_at >= start,
            Entry.effective_at < end,
        )
    )


def _grouped(query) -> list[tuple]:
    columns = list(query.selected_columns)[:6]
    return db.session.execute(query.group_by(*columns)).all()


def movements(nodes, start: datetime, end: datetime) -> list[Movement]:
    """What moved on the volunteer accounts of `nodes` (a select of district ids) in
    [start, end), one Movement per kind and detail."""
    parts = []
    first, last = _ceil_hour(start), _floor_hour(end)
    if first < last:
        parts.append(_rolled(nodes, first, last))
        if start < first:
            parts.append(_unrolled(nodes, start, first))
        if last < end:
            parts.append(_unrolled(nodes, last, end))
    else:
        parts.append(_unrolled(nodes, start, end))
    summed: dict[tuple, list[int]] = {}
    for part in parts:
        for row in _grouped(part):
            sums = summed.setdefault(tuple(row[:6]), [0, 0, 0])
            for index, value in enumerate(row[6:]):
                sums[index] += int(value or 0)
    return [Movement(*key, *sums) for key, sums in summed.items() if sums[2]]


# An outstanding figure at an instant within this much of now is read backwards, from
# what the volunteers hold now less what moved since; an older one forwards, from the
# node's first hour. Either way a report of the last year reads at most a year of hours.
RECENT = timedelta(days=366)


def owed(nodes, before: datetime, *, from_now: bool | None = None) -> int:
    """What the volunteers of `nodes` held (held points included) just before `before`.

    Read backwards (`from_now`, the default for the last year) or forwards; both give the
    same figure, and one statement reads both sums of the backward reading, so that a
    unit committing meanwhile is in both or in neither."""
    last = _floor_hour(before)
    if from_now is None:
        from_now = before > utcnow() - RECENT
    hours = LedgerHour.district_id.in_(nodes)
    moved = func.coalesce(func.sum(LedgerHour.credits - LedgerHour.debits), 0)
    if from_now:
        held = select(func.coalesce(func.sum(Account.balance), 0)).where(
            Account.kind == "volunteer", Account.district_id.in_(nodes)
        )
        since = select(moved).where(hours, LedgerHour.hour >= last)
        total = db.session.scalar(select(held.scalar_subquery() - since.scalar_subquery()))
    else:
        total = db.session.scalar(select(moved).where(hours, LedgerHour.hour < last))
    total = int(total)
    if last < before:
        total += sum(move.net for move in movements(nodes, last, before))
    return total


def check() -> list[tuple]:
    """Rows where the rollup differs from the postings: (key..., in table, from
    postings), the sums as (credits, debits, postings) or None where a row is missing."""
    key = ", ".join(_KEY)
    summed = "sum(credits), sum(debits), sum(postings)"
    found = {
        tuple(row[:8]): tuple(int(v) for v in row[8:])
        for row in db.session.execute(
            text(f"SELECT {key}, {summed} FROM ledger_hours GROUP BY {key}")
        )
    }
    differing = []
    for row in db.session.execute(text(_from_postings())):
        wanted = tuple(int(v) for v in row[9:])
        stored = found.pop(tuple(row[:8]), None)
        if stored != wanted:
            differing.append((*row[:8], stored, wanted))
    differing.extend((*k, v, None) for k, v in found.items())
    return differing


def rebuild() -> int:
    """Write the rollup again from the postings, in one transaction; return its rows.

    On PostgreSQL the table is locked first: a unit committing meanwhile waits for the
    rebuild, then adds its postings to the rebuilt rows (it is not in the rebuild's
    select, which runs after the lock)."""
    with db.engine.connect() as connection, database.unbounded(connection), connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("LOCK TABLE ledger_hours IN EXCLUSIVE MODE"))
        connection.execute(text("DELETE FROM ledger_hours"))
        columns = ", ".join((*_KEY, "stripe", *_SUMS))
        written = connection.execute(
            text(f"INSERT INTO ledger_hours ({columns}) {_from_postings()}")
        ).rowcount
    return written
