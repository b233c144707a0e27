"""The approval queue: an office decides many service records or gifts in one go.

Each item is decided in a unit of work of its own, by the same service function that
decides one (points.service.approve, reject, mark_verified; points.redemptions'
approve_transfer, reject_transfer), so an item that cannot be decided (decided already, unknown,
the giver spent the points) leaves the others as they are and says why in its outcome.
One item out of the office's reach refuses the whole decision before anything is
decided (403), as it would refuse that item alone. The console's queue page and
`POST .../decide` both call these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select

from points import redemptions, service
from points.auth import Principal, require_scope
from points.errors import InvalidInputError, PointsError
from points.extensions import db
from points.models import District, ServiceRecord, TransferRequest

RECORD_DECISIONS = ("approve", "reject", "verify")
GIFT_DECISIONS = ("approve", "reject")
# At most this many items in one decision: a page of the queue.
MOST = 200


@dataclass(frozen=True)
class Outcome:
    """What became of one item: its status after, or the problem that stopped it."""

    id: int
    ok: bool
    status: str | None = None
    points: int | None = None
    problem: int | None = None  # the HTTP status of the problem: 403, 404, 409, 422
    detail: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _check(ids: Iterable[int], decision: str, reason: str | None, allowed: tuple) -> list[int]:
    errors: dict[str, list[str]] = {}
    unique = list(dict.fromkeys(ids))
    if not unique:
        errors["ids"] = ["Choose at least one."]
    elif len(unique) > MOST:
        errors["ids"] = [f"At most {MOST} at once."]
    elif any(isinstance(i, bool) or not isinstance(i, int) or i < 1 for i in unique):
        errors["ids"] = ["Ids are whole numbers from 1."]
    if decision not in allowed:
        errors["decision"] = [f"One of {', '.join(allowed)}."]
    if decision == "reject" and not (reason or "").strip():
        errors["reason"] = ["A rejection needs a reason."]
    if errors:
        raise InvalidInputError("the decision cannot be made as asked", errors=errors)
    return unique


def _each(ids: list[int], decide: Callable[[int], Outcome]) -> list[Outcome]:
    outcomes = []
    for item in ids:
        try:
            outcomes.append(decide(item))
        except PointsError as error:
            # The item's own unit rolled back (ledger.atomic); the next one goes on.
            outcomes.append(Outcome(item, False, problem=error.status, detail=error.detail))
    return outcomes


def _all_in_reach(principal: Principal, model, ids: list[int], what: str) -> None:
    """Refuse the whole decision (403, nothing decided) if any item lies out of reach;
    an unknown id is left to its own outcome (404)."""
    paths = db.session.scalars(
        select(District.path).join(model, model.district_id == District.id).where(model.id.in_(ids))
    )
    for path in set(paths):
        require_scope(principal, path, what)


def decide_records(
    principal: Principal, ids: Iterable[int], decision: str, reason: str | None = None
) -> list[Outcome]:
    """Approve, reject (with a reason) or mark verified each record, one unit each."""
    unique = _check(ids, decision, reason, RECORD_DECISIONS)
    _all_in_reach(principal, ServiceRecord, unique, "a chosen service record")

    def decide(record_id: int) -> Outcome:
        if decision == "approve":
            done = service.approve(record_id, principal.actor)
        elif decision == "reject":
            done = service.reject(record_id, principal.actor, reason.strip())
        else:
            done = service.mark_verified(record_id, principal.actor)
        return Outcome(record_id, True, done.status, done.points)

    return _each(unique, decide)


def decide_gifts(
    principal: Principal, ids: Iterable[int], decision: str, reason: str | None = None
) -> list[Outcome]:
    """Approve or reject (with a reason) each pending gift, one unit each."""
    unique = _check(ids, decision, reason, GIFT_DECISIONS)
    _all_in_reach(principal, TransferRequest, unique, "a chosen gift")

    def decide(request_id: int) -> Outcome:
        if decision == "approve":
            redemptions.approve_transfer(request_id, principal.actor)
        else:
            redemptions.reject_transfer(request_id, principal.actor, reason.strip())
        after = redemptions.get_transfer_request(request_id)
        return Outcome(request_id, True, after.status, after.points)

    return _each(unique, decide)
