"""Corrections: an office reverses an entry with a reason (the original stays).

The one path for the API's `POST /entries/{id}/reverse` and the console's correction
button: it checks that the office reaches every node the entry touches, posts the
reversal and writes the audit row in one unit of work.
"""

from __future__ import annotations

from sqlalchemy import or_, select

from points import audit, ledger
from points.auth import Principal, require_scope
from points.errors import NotFoundError
from points.extensions import db
from points.ledger import PostedEntry
from points.models import District, Entry


def entry_paths(entry_id: int) -> list[str]:
    """The district paths of an entry and of its other half (a cross-district transfer).
    Raises NotFoundError."""
    related = select(Entry.related_entry_id).where(Entry.id == entry_id).scalar_subquery()
    paths = db.session.scalars(
        select(District.path)
        .join(Entry, Entry.district_id == District.id)
        .where(or_(Entry.id == entry_id, Entry.related_entry_id == entry_id, Entry.id == related))
    ).all()
    if not paths:
        raise NotFoundError(f"no entry {entry_id}")
    return paths


def check_reach(principal: Principal, entry_id: int) -> None:
    """Raise NotFoundError, ForbiddenError unless `principal` reaches every node of the
    entry."""
    for path in entry_paths(entry_id):
        require_scope(principal, path, "this entry")


def reverse_entry(principal: Principal, entry_id: int, reason: str) -> PostedEntry:
    """Reverse entry `entry_id` as `principal`. Raises NotFoundError, ForbiddenError,
    AlreadyReversedError, InsufficientPointsError, InvalidInputError (no reason)."""
    check_reach(principal, entry_id)

    def work() -> PostedEntry:
        reversal = ledger.reverse(entry_id, actor=principal.actor, reason=reason)
        audit.record(
            "entry.reverse",
            district_id=reversal.district_id,
            target=("entry", entry_id),
            after={"reversal_id": reversal.id, "reason": reason},
        )
        return reversal

    return ledger.atomic(work)
