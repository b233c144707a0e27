"""Counting wrong secrets in the database: cards (PINs) and staff accounts (passwords).

Every attempt is counted in the row before the secret is checked, in one UPDATE, so all
workers agree and parallel guesses cannot exceed the limit; at the limit the row is
locked for a while; a right secret clears the count. A lapsed lock starts a new count.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from points.extensions import db


def count_attempt(
    failed: InstrumentedAttribute,
    locked_until: InstrumentedAttribute,
    row_id: int,
    now: datetime,
    *,
    limit: int,
    minutes: int,
) -> int | None:
    """Count one attempt on the row `row_id` of `failed`'s table; return the count, or
    None while the row is locked. Call inside a unit of work."""
    table = failed.class_
    lapsed = and_(locked_until.is_not(None), locked_until <= now)
    count = case((lapsed, 1), else_=failed + 1)
    return db.session.execute(
        update(table)
        .where(table.id == row_id, or_(locked_until.is_(None), locked_until <= now))
        .values(
            {
                failed: count,
                locked_until: case(
                    (count >= limit, now + timedelta(minutes=minutes)),
                    (lapsed, None),
                    else_=locked_until,
                ),
            }
        )
        .returning(failed)
    ).scalar_one_or_none()


def clear(failed: InstrumentedAttribute, locked_until: InstrumentedAttribute, row_id: int) -> None:
    """Clear the row's count and lock (a right secret). Call inside a unit of work."""
    table = failed.class_
    db.session.execute(
        update(table).where(table.id == row_id).values({failed: 0, locked_until: None})
    )


def locked_for(
    locked_until: InstrumentedAttribute, row_id: int, now: datetime, *, minutes: int
) -> tuple[int, datetime]:
    """How many seconds the row stays locked (at least 1), and until when."""
    table = locked_until.class_
    until = db.session.scalar(select(locked_until).where(table.id == row_id))
    seconds = max(1, math.ceil((until - now).total_seconds())) if until else minutes * 60
    return seconds, until or now + timedelta(seconds=seconds)
