"""A volunteer's points as of any past instant, and a statement for a period.

Public: as_of(volunteer_id, moment) -> AsOf; statement(volunteer_id, start, end) ->
Statement.

The ledger keeps each account's balance as a running total for today; the past is read
from the postings. A posting counts at its entry's effective time (an award of last
week's service counts last week, whenever it was approved), so "as of T" sums the
postings whose entries took effect at or before T. Held points are the holds made by T
and not yet resolved at T; service time is the minutes credited by T. A statement is the
balance before its start, every line within it in order with the balance after each,
and the balance at its end; opening plus the lines is always the closing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from points import ledger, volunteers
from points.errors import InvalidInputError
from points.extensions import db
from points.models import Entry, Hold, Posting, ServiceMinutes


@dataclass(frozen=True)
class AsOf:
    """A volunteer's points and service time at one instant."""

    volunteer_id: int
    as_of: datetime
    balance: int
    held: int
    service_minutes: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class Statement:
    """A volunteer's points over [start, end): opening, every line, closing."""

    volunteer_id: int
    start: datetime
    end: datetime
    opening: int
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def closing(self) -> int:
        return self.opening + sum(line["points"] for line in self.lines)

    @property
    def earned(self) -> int:
        return sum(line["points"] for line in self.lines if line["points"] > 0)

    @property
    def spent(self) -> int:
        return -sum(line["points"] for line in self.lines if line["points"] < 0)


def _aware(moment: Any, name: str) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidInputError(f"{name} needs a time zone", errors={name: ["Aware time."]})
    return moment


def _balance(account_id: int, moment: datetime, *, inclusive: bool) -> int:
    before = Entry.effective_at <= moment if inclusive else Entry.effective_at < moment
    return int(
        db.session.scalar(
            select(func.coalesce(func.sum(Posting.amount), 0))
            .join(Entry, Entry.id == Posting.entry_id)
            .where(Posting.account_id == account_id, before)
        )
    )


def as_of(volunteer_id: int, moment: datetime) -> AsOf:
    """The volunteer's balance, held points and service minutes at `moment`.

    Raises NotFoundError (no such volunteer), InvalidInputError (a time without a zone)."""
    moment = _aware(moment, "as_of")
    account_id = ledger.balance(volunteer_id).account_id
    held = db.session.scalar(
        select(func.coalesce(func.sum(Hold.amount), 0)).where(
            Hold.account_id == account_id,
            Hold.created_at <= moment,
            or_(Hold.resolved_at.is_(None), Hold.resolved_at > moment),
        )
    )
    minutes = db.session.scalar(
        select(func.coalesce(func.sum(ServiceMinutes.minutes), 0)).where(
            ServiceMinutes.volunteer_id == volunteer_id, ServiceMinutes.created_at <= moment
        )
    )
    return AsOf(
        volunteer_id,
        moment,
        _balance(account_id, moment, inclusive=True),
        int(held),
        int(minutes),
    )


# A statement lists at most this many lines (ten years of a daily steward's service).
MOST_LINES = 20_000


def statement(volunteer_id: int, start: datetime, end: datetime) -> Statement:
    """The volunteer's statement over [start, end): lines oldest first, each with the
    balance after it. Raises NotFoundError, InvalidInputError (no zone, end not after
    start, too many lines: ask for a shorter period)."""
    start, end = _aware(start, "since"), _aware(end, "until")
    if end <= start:
        raise InvalidInputError("until must be after since", errors={"until": ["After since."]})
    account_id = ledger.balance(volunteer_id).account_id
    opening = _balance(account_id, start, inclusive=False)
    lines = volunteers.lines_between(volunteer_id, start, end, limit=MOST_LINES + 1)
    if len(lines) > MOST_LINES:
        raise InvalidInputError(
            "too many lines for one statement",
            errors={"since": [f"At most {MOST_LINES} lines: ask for a shorter period."]},
        )
    running = opening
    for line in lines:
        running += line["points"]
        line["balance_after"] = running
    return Statement(volunteer_id, start, end, opening, lines)
