"""Spending points under plugin rules: the catalog, redemptions and gifts (transfers).

Public: catalog_for(district, volunteer=None) -> list[CatalogEntry];
check_redemption(volunteer_id, sku) -> PolicyDecision; create_redemption(volunteer_id,
sku, *, actor, idempotency_key=None) -> RedemptionResult; fulfil_redemption(
redemption_id=None, *, voucher_code=None, actor, idempotency_key=None) -> RedemptionResult;
cancel_redemption(redemption_id, *, actor, reason) -> RedemptionResult;
get_redemption(redemption_id=None, *, voucher_code=None) -> RedemptionResult;
check_transfer(giver_id, receiver_id, points, relation) -> PolicyDecision;
give_points(giver_id, receiver_id, points, relation, *, actor, reason,
idempotency_key=None) -> TransferResult; approve_transfer(request_id, actor) ->
TransferResult; reject_transfer(request_id, actor, reason) -> TransferResult;
get_transfer_request(request_id) -> TransferRequestInfo; list_transfer_requests(district,
*, status=None, before_id=None, limit=50) -> list[TransferRequestInfo].

A redemption is a ledger hold (the points stop being available) with a voucher code;
the provider fulfils it (the hold is posted) or it is cancelled (the hold is voided).
Stock and per-person limits count redemptions held or fulfilled; on PostgreSQL a
transaction-scoped advisory lock per (pool node, sku) makes count-then-hold safe.
"""

from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update

from points import audit, ledger
from points.directory import CARD_ALPHABET
from points.errors import (
    ConflictError,
    HoldStateError,
    InvalidInputError,
    NotFoundError,
    RefusedError,
)
from points.extensions import db
from points.models import (
    TRANSFER_REQUEST_STATES,
    Account,
    District,
    Entry,
    Hold,
    Posting,
    Provider,
    Redemption,
    TransferRequest,
    utcnow,
)
from points.plugins import CatalogItem, Decision, VolunteerInfo, call_each, plugin_manager
from points.policy import Policy, resolve_policy
from points.service import volunteer_info
from points.service.posting import _notify
from points.signals import redemption_changed

COUNTED = ("held", "fulfilled")
# Who a gift goes to, as a giver declares it; the transfers policy says what each may give.
RELATIONS = ("family", "household_in_need", "other")


@dataclass(frozen=True)
class PolicyDecision:
    """The plugins' combined answer: allowed (no refusal), whether the office must
    approve, and every reason given, each as {"plugin", "allowed", "zh", "en"}."""

    allowed: bool
    needs_approval: bool
    reasons: tuple[dict, ...] = ()

    @classmethod
    def combine(cls, decisions: list[Decision]) -> PolicyDecision:
        reasons = tuple(
            {"plugin": d.plugin, "allowed": d.allowed, "zh": d.reason_zh, "en": d.reason_en}
            for d in decisions
        )
        allowed = all(d.allowed for d in decisions)
        return cls(allowed, allowed and any(d.needs_approval for d in decisions), reasons)

    def refusals(self) -> list[dict]:
        return [r for r in self.reasons if not r["allowed"]]


@dataclass(frozen=True)
class CatalogEntry:
    """A catalog item for one volunteer: eligible (no plugin refuses), affordable
    (enough available points) and the reasons given."""

    item: CatalogItem
    eligible: bool = True
    affordable: bool | None = None
    reasons: tuple[dict, ...] = ()


@dataclass(frozen=True)
class RedemptionResult:
    """A redemption as it stands after the call."""

    id: int
    volunteer_id: int
    sku: str
    points: int
    provider_id: int
    hold_id: int
    voucher_code: str
    status: str
    entry_id: int | None = None
    replayed: bool = False


@dataclass(frozen=True)
class TransferResult:
    """A gift: posted at once (entry_id) or waiting for the office (request_id)."""

    status: str
    points: int
    entry_id: int | None = None
    request_id: int | None = None
    reasons: tuple[dict, ...] = field(default_factory=tuple)
    replayed: bool = False


@dataclass(frozen=True)
class TransferRequestInfo:
    """A gift waiting for the office, or decided: who, how much, and the decision."""

    id: int
    district_id: int
    district: str
    from_volunteer_id: int
    to_volunteer_id: int
    points: int
    relation: str
    reason: str
    status: str
    actor: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decision_reason: str | None
    entry_id: int | None


# -- usage counts ------------------------------------------------------------------------


def period_start(day: date, period: str) -> date:
    """Return the first day of the local month, quarter or year containing `day`."""
    if period == "year":
        return day.replace(month=1, day=1)
    if period == "quarter":
        return day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
    return day.replace(day=1)


class Usage:
    """Counts that catalog and transfer plugins decide on, in the node's time zone."""

    def __init__(self, timezone: str, now: datetime | None = None):
        self.zone = ZoneInfo(timezone)
        self.now = now or utcnow()
        self.today = self.now.astimezone(self.zone).date()

    def since(self, period: str) -> datetime:
        return datetime.combine(period_start(self.today, period), time(0), self.zone)

    def item_count(self, item: CatalogItem, period: str = "month") -> int:
        """Redemptions held or fulfilled drawing on the item's pool since the period began."""
        return db.session.scalar(
            select(func.count(Redemption.id)).where(
                Redemption.pool_district_id == item.pool_district_id,
                Redemption.sku == item.sku,
                Redemption.status.in_(COUNTED),
                Redemption.created_at >= self.since(period),
            )
        )

    def person_count(self, item: CatalogItem, volunteer_id: int, period: str = "month") -> int:
        """The volunteer's redemptions of the item held or fulfilled this period."""
        return db.session.scalar(
            select(func.count(Redemption.id)).where(
                Redemption.volunteer_id == volunteer_id,
                Redemption.sku == item.sku,
                Redemption.status.in_(COUNTED),
                Redemption.created_at >= self.since(period),
            )
        )

    def given_this_month(self, volunteer_id: int) -> int:
        """Points the volunteer gave this local month, or asked to give (pending)."""
        since = self.since("month")
        posted = db.session.scalar(
            select(func.coalesce(func.sum(-Posting.amount), 0))
            .join(Entry, Entry.id == Posting.entry_id)
            .join(Account, Account.id == Posting.account_id)
            .where(
                Account.volunteer_id == volunteer_id,
                Entry.kind == "transfer",
                Posting.amount < 0,
                Entry.effective_at >= since,
            )
        )
        pending = db.session.scalar(
            select(func.coalesce(func.sum(TransferRequest.points), 0)).where(
                TransferRequest.from_volunteer_id == volunteer_id,
                TransferRequest.status == "pending",
                TransferRequest.created_at >= since,
            )
        )
        return int(posted) + int(pending)


# -- the catalog -------------------------------------------------------------------------


def _items(policy: Policy) -> list[CatalogItem]:
    from dataclasses import replace

    items: dict[str, CatalogItem] = {}
    for name, found in call_each(
        plugin_manager(),
        "register_catalog_items",
        {"district": policy.district},
        enabled=policy.enabled,
        config_for=policy.config,
    ):
        for item in found:
            if item.sku not in items:
                items[item.sku] = replace(item, plugin=name)
    return sorted(items.values(), key=lambda item: item.sku)


def _redemption_decision(
    policy: Policy, volunteer: VolunteerInfo, item: CatalogItem, usage: Usage
) -> PolicyDecision:
    from dataclasses import replace

    answers = call_each(
        plugin_manager(),
        "check_redemption",
        {"volunteer": volunteer, "item": item, "usage": usage},
        enabled=policy.enabled,
        config_for=policy.config,
    )
    return PolicyDecision.combine([replace(d, plugin=name) for name, d in answers])


def catalog_for(district: int | str, volunteer: int | None = None) -> list[CatalogEntry]:
    """Return the node's catalog; for a volunteer, each item's eligibility and reasons,
    without the items that have closed (an office retired them: listing them would only
    show a refusal)."""
    if volunteer is None:
        policy = resolve_policy(district)
        return [CatalogEntry(item) for item in _items(policy)]
    info = volunteer_info(volunteer)
    policy = resolve_policy(info.district_id)
    usage = Usage(policy.district.timezone)
    available = ledger.balance(info.id).available
    entries = []
    for item in _items(policy):
        if item.active_until is not None and item.active_until < usage.today:
            continue
        decision = _redemption_decision(policy, info, item, usage)
        entries.append(
            CatalogEntry(item, decision.allowed, available >= item.cost, decision.reasons)
        )
    return entries


def _find(policy: Policy, sku: str) -> CatalogItem:
    for item in _items(policy):
        if item.sku == sku:
            return item
    raise NotFoundError(f"no catalog item {sku!r}", errors={"sku": ["No such item here."]})


def check_redemption(volunteer_id: int, sku: str) -> PolicyDecision:
    """Return whether the volunteer may redeem `sku` now, with every reason given."""
    info = volunteer_info(volunteer_id)
    policy = resolve_policy(info.district_id)
    item = _find(policy, sku)
    return _redemption_decision(policy, info, item, Usage(policy.district.timezone))


def _lock_item(pool_district_id: int, sku: str) -> None:
    """Serialise redemptions of one item in one pool (PostgreSQL; SQLite writes are
    serial already), so that counting stock and then holding cannot oversell."""
    if db.engine.dialect.name == "postgresql":
        key = zlib.crc32(f"{pool_district_id}:{sku}".encode()) - 2**31
        db.session.execute(text("SELECT pg_advisory_xact_lock(1, :key)"), {"key": key})


def _voucher() -> str:
    return "".join(secrets.choice(CARD_ALPHABET) for _ in range(10))


def _redemption_result(row: Redemption, replayed: bool = False) -> RedemptionResult:
    return RedemptionResult(
        row.id,
        row.volunteer_id,
        row.sku,
        row.points,
        row.provider_id,
        row.hold_id,
        row.voucher_code,
        row.status,
        row.entry_id,
        replayed,
    )


def create_redemption(
    volunteer_id: int, sku: str, *, actor: str, idempotency_key: str | None = None
) -> RedemptionResult:
    """Redeem a catalog item: check the plugins, hold its cost, issue a voucher.

    Raises NotFoundError (volunteer, item, provider), RefusedError (a plugin refused:
    star level, dates, stock, per-person limit; `reasons` says why),
    InsufficientPointsError, AccountClosedError, IdempotencyConflictError, PluginError.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor is required", errors={"actor": ["Must not be empty."]})
    if not isinstance(sku, str):
        raise InvalidInputError("sku must be text", errors={"sku": ["Must be text."]})
    arguments = {"volunteer_id": volunteer_id, "sku": sku}

    def replay(stored: dict) -> RedemptionResult:
        return get_redemption(stored["redemption_id"], replayed=True)

    # A retry replays before the volunteer, the item and the policy are checked again.
    stored = ledger.stored_result("redeem_item", arguments, idempotency_key, "redemptions")
    if stored is not None:
        return replay(stored)
    info = volunteer_info(volunteer_id)
    policy = resolve_policy(info.district_id)

    def work() -> RedemptionResult:
        item = _find(policy, sku)
        _lock_item(item.pool_district_id, item.sku)
        decision = _redemption_decision(policy, info, item, Usage(policy.district.timezone))
        if not decision.allowed:
            refusals = decision.refusals()
            raise RefusedError(
                "; ".join(r["en"] for r in refusals),
                reasons=refusals,
                errors={"sku": [r["zh"] + " / " + r["en"] for r in refusals]},
            )
        provider = db.session.execute(
            select(Provider.id).where(Provider.code == item.provider)
        ).scalar_one_or_none()
        if provider is None:
            raise NotFoundError(f"item {sku!r} names an unknown provider {item.provider!r}")
        held = ledger.hold(
            info.id,
            item.cost,
            provider_id=provider,
            actor=actor,
            reason=f"兑换 {item.name_zh} / redeemed {item.name_en}",
        )
        row = Redemption(
            district_id=info.district_id,
            pool_district_id=item.pool_district_id,
            volunteer_id=info.id,
            sku=item.sku,
            provider_id=provider,
            points=item.cost,
            unit_price_fen=item.unit_price_fen,
            hold_id=held.id,
            voucher_code=_voucher(),
            status="held",
            actor=actor,
            created_at=utcnow(),
        )
        db.session.add(row)
        db.session.flush()
        ledger.after_commit(lambda: redemption_changed.send("held"))
        return _redemption_result(row)

    return ledger.idempotent(
        "redeem_item",
        arguments,
        idempotency_key,
        "redemptions",
        work,
        lambda done: {"redemption_id": done.id},
        replay,
    )


def get_redemption(
    redemption_id: int | None = None, *, voucher_code: str | None = None, replayed: bool = False
) -> RedemptionResult:
    """Return a redemption by id or voucher code; raise NotFoundError."""
    return _redemption_result(_row(redemption_id, voucher_code), replayed)


def _row(redemption_id: int | None, voucher_code: str | None) -> Redemption:
    if voucher_code is not None:
        query = select(Redemption).where(Redemption.voucher_code == voucher_code)
    else:
        query = select(Redemption).where(Redemption.id == redemption_id)
    row = db.session.execute(query.execution_options(populate_existing=True)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(
            "no such redemption",
            errors={"voucher_code" if voucher_code else "redemption_id": ["Not found."]},
        )
    return row


def expire_redemptions(as_of: datetime | None = None) -> tuple[int, int]:
    """Time out overdue holds, and mark held redemptions whose hold timed out expired.

    Returns (holds timed out, redemptions expired).
    """
    timed_out = ledger.time_out_holds(as_of)

    def work() -> int:
        overdue = (
            select(Redemption.id)
            .join(Hold, Hold.id == Redemption.hold_id)
            .where(Redemption.status == "held", Hold.status == "timed_out")
        )
        done = db.session.execute(
            update(Redemption)
            .where(Redemption.id.in_(overdue))
            .values(
                status="expired",
                resolved_at=utcnow(),
                resolved_by="system:holds",
                resolution="兑换券已过期 / the voucher expired before use",
            )
        )
        count = done.rowcount
        if count:
            ledger.after_commit(lambda: redemption_changed.send("expired", count=count))
        return count

    return timed_out, ledger.atomic(work)


def _expired(redemption_id: int | None, voucher_code: str | None) -> ConflictError:
    """Record that the redemption's hold ran out, and say so.

    Inside a caller's unit of work (which this error rolls back) the expiry is left for
    the next `time-out-holds` run; only a unit of our own can record it.
    """
    if not ledger.in_unit_of_work():
        expire_redemptions()
    row = _row(redemption_id, voucher_code)
    return ConflictError(
        f"redemption {row.id} expired: its voucher was not used in time; "
        "the points are available again"
    )


def fulfil_redemption(
    redemption_id: int | None = None,
    *,
    voucher_code: str | None = None,
    actor: str,
    idempotency_key: str | None = None,
) -> RedemptionResult:
    """Mark a redemption delivered: its hold is posted to the provider.

    Under `idempotency_key` (a form's key: a double tap) a repeat returns the first
    answer with `replayed` set and writes nothing. Raises NotFoundError, ConflictError
    (not held, or expired: the hold timed out), IdempotencyConflictError.
    """

    def work() -> RedemptionResult:
        row = _row(redemption_id, voucher_code)
        done = db.session.execute(
            update(Redemption)
            .where(Redemption.id == row.id, Redemption.status == "held")
            .values(status="fulfilled", resolved_at=utcnow(), resolved_by=actor)
        )
        if done.rowcount != 1:
            raise ConflictError(f"redemption {row.id} is {row.status}, not held")
        entry = ledger.post_hold(row.hold_id, actor=actor, reason="兑换已完成 / service delivered")
        ledger.after_commit(lambda: redemption_changed.send("fulfilled"))
        db.session.execute(
            update(Redemption).where(Redemption.id == row.id).values(entry_id=entry.id)
        )
        return get_redemption(row.id)

    try:
        result = ledger.idempotent(
            "fulfil_redemption",
            {"redemption_id": redemption_id, "voucher_code": voucher_code},
            idempotency_key,
            "redemptions",
            work,
            lambda done: {"redemption_id": done.id},
            lambda stored: get_redemption(stored["redemption_id"], replayed=True),
        )
    except HoldStateError:
        raise _expired(redemption_id, voucher_code) from None
    if not result.replayed:
        _notify_entry(result.entry_id)
    return result


def cancel_redemption(redemption_id: int, *, actor: str, reason: str) -> RedemptionResult:
    """Cancel a held redemption: its hold is voided and the points are available again.
    Raises InvalidInputError (no reason), NotFoundError, ConflictError (not held)."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a cancellation needs a reason", errors={"reason": ["Required."]})

    def work() -> RedemptionResult:
        row = _row(redemption_id, None)
        done = db.session.execute(
            update(Redemption)
            .where(Redemption.id == row.id, Redemption.status == "held")
            .values(status="cancelled", resolved_at=utcnow(), resolved_by=actor, resolution=reason)
        )
        if done.rowcount != 1:
            raise ConflictError(f"redemption {row.id} is {row.status}, not held")
        ledger.void_hold(row.hold_id, actor=actor, reason=reason)
        ledger.after_commit(lambda: redemption_changed.send("cancelled"))
        return get_redemption(row.id)

    try:
        return ledger.atomic(work)
    except HoldStateError:
        raise _expired(redemption_id, None) from None


def _notify_entry(entry_id: int | None) -> None:
    if entry_id is None:
        return
    entry = ledger.load_entry(entry_id)
    policy = resolve_policy(entry.district_id)
    _notify(plugin_manager(), policy, [entry])


# -- gifts -------------------------------------------------------------------------------


def _transfer_decision(giver, receiver, points, relation, policy) -> PolicyDecision:
    from dataclasses import replace

    answers = call_each(
        plugin_manager(),
        "check_transfer",
        {
            "giver": giver,
            "receiver": receiver,
            "points": points,
            "relation": relation,
            "usage": Usage(policy.district.timezone),
        },
        enabled=policy.enabled,
        config_for=policy.config,
    )
    return PolicyDecision.combine([replace(d, plugin=name) for name, d in answers])


def _gift_input(giver_id, receiver_id, points, relation):
    ledger.check_points(points)
    if relation not in RELATIONS:
        raise InvalidInputError(
            f"unknown relation {relation!r}",
            errors={"relation": [f"Must be one of {', '.join(RELATIONS)}."]},
        )
    if giver_id == receiver_id:
        raise InvalidInputError(
            "a volunteer cannot give points to themselves",
            errors={"to_volunteer_id": ["Must differ from the giver."]},
        )
    giver = volunteer_info(giver_id)
    receiver = volunteer_info(receiver_id)
    return giver, receiver, resolve_policy(giver.district_id)


def check_transfer(giver_id: int, receiver_id: int, points: int, relation: str) -> PolicyDecision:
    """Return whether the giver may give `points` to the receiver, and if the office must
    approve first. Raises InvalidInputError, NotFoundError."""
    giver, receiver, policy = _gift_input(giver_id, receiver_id, points, relation)
    return _transfer_decision(giver, receiver, points, relation, policy)


def give_points(
    giver_id: int,
    receiver_id: int,
    points: int,
    relation: str,
    *,
    actor: str,
    reason: str,
    idempotency_key: str | None = None,
) -> TransferResult:
    """Give points under the transfers policy: posted at once, or queued for the office.

    Raises InvalidInputError, NotFoundError, RefusedError (with reasons),
    InsufficientPointsError, AccountClosedError, IdempotencyConflictError, PluginError.
    """
    arguments = {
        "giver_id": giver_id,
        "receiver_id": receiver_id,
        "points": points,
        "relation": relation,
        "reason": reason,
    }

    def replay(stored: dict) -> TransferResult:
        return TransferResult(**stored, replayed=True)

    # A retry replays before the volunteers, the policy and the balance are checked again.
    stored = ledger.stored_result("give_points", arguments, idempotency_key, "transfers")
    if stored is not None:
        return replay(stored)
    giver, receiver, policy = _gift_input(giver_id, receiver_id, points, relation)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a gift needs a reason", errors={"reason": ["Required."]})

    def work() -> TransferResult:
        decision = _transfer_decision(giver, receiver, points, relation, policy)
        if not decision.allowed:
            refusals = decision.refusals()
            raise RefusedError(
                "; ".join(r["en"] for r in refusals),
                reasons=refusals,
                errors={"points": [r["zh"] + " / " + r["en"] for r in refusals]},
            )
        if decision.needs_approval:
            ledger.balance(giver.id)  # the giver must have an account
            row = TransferRequest(
                district_id=giver.district_id,
                from_volunteer_id=giver.id,
                to_volunteer_id=receiver.id,
                points=points,
                relation=relation,
                reason=reason,
                status="pending",
                actor=actor,
                created_at=utcnow(),
            )
            db.session.add(row)
            db.session.flush()
            return TransferResult("pending", points, request_id=row.id, reasons=decision.reasons)
        entry = ledger.transfer(giver.id, receiver.id, points, actor=actor, reason=reason)
        return TransferResult("posted", points, entry_id=entry.id, reasons=decision.reasons)

    result = ledger.idempotent(
        "give_points",
        arguments,
        idempotency_key,
        "transfers",
        work,
        lambda done: {
            "status": done.status,
            "points": done.points,
            "entry_id": done.entry_id,
            "request_id": done.request_id,
        },
        replay,
    )
    if result.entry_id and not result.replayed:
        _notify_entry(result.entry_id)
    return result


def _decide_request(
    request_id: int, status: str, actor: str, reason: str | None
) -> TransferRequest:
    done = db.session.execute(
        update(TransferRequest)
        .where(TransferRequest.id == request_id, TransferRequest.status == "pending")
        .values(status=status, decided_at=utcnow(), decided_by=actor, decision_reason=reason)
    )
    row = db.session.get(TransferRequest, request_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"no transfer request {request_id}")
    if done.rowcount != 1:
        raise ConflictError(f"transfer request {request_id} was already {row.status}")
    return row


def approve_transfer(request_id: int, actor: str) -> TransferResult:
    """Approve a pending gift: post it now. Raises NotFoundError, ConflictError,
    InsufficientPointsError (the giver spent the points meanwhile: nothing changes)."""

    def work() -> TransferResult:
        row = _decide_request(request_id, "approved", actor, "街道批准 / approved by the office")
        entry = ledger.transfer(
            row.from_volunteer_id, row.to_volunteer_id, row.points, actor=actor, reason=row.reason
        )
        row.entry_id = entry.id
        db.session.flush()
        audit.record(
            "gift.approve",
            district_id=row.district_id,
            target=("gift", row.id),
            after={"status": "approved", "points": row.points, "entry_id": entry.id},
        )
        return TransferResult("posted", row.points, entry_id=entry.id, request_id=row.id)

    result = ledger.atomic(work)
    _notify_entry(result.entry_id)
    return result


def reject_transfer(request_id: int, actor: str, reason: str) -> TransferResult:
    """Reject a pending gift with a reason; nothing moves."""
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a rejection needs a reason", errors={"reason": ["Required."]})

    def work() -> TransferResult:
        row = _decide_request(request_id, "rejected", actor, reason)
        audit.record(
            "gift.reject",
            district_id=row.district_id,
            target=("gift", row.id),
            after={"status": "rejected", "reason": reason},
        )
        return TransferResult("rejected", row.points, request_id=row.id)

    return ledger.atomic(work)


_REQUEST_QUERY = select(TransferRequest, District.code).join(
    District, District.id == TransferRequest.district_id
)


def _request_info(row: TransferRequest, code: str) -> TransferRequestInfo:
    return TransferRequestInfo(
        row.id,
        row.district_id,
        code,
        row.from_volunteer_id,
        row.to_volunteer_id,
        row.points,
        row.relation,
        row.reason,
        row.status,
        row.actor,
        row.created_at,
        row.decided_at,
        row.decided_by,
        row.decision_reason,
        row.entry_id,
    )


def get_transfer_request(request_id: int) -> TransferRequestInfo:
    """Return a gift request (with its giver's district code); raise NotFoundError."""
    found = db.session.execute(
        _REQUEST_QUERY.where(TransferRequest.id == request_id).execution_options(
            populate_existing=True
        )
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"no transfer request {request_id}")
    return _request_info(*found)


def list_transfer_requests(
    district: int | str,
    *,
    status: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[TransferRequestInfo]:
    """Return the gift requests of a node and below, newest first; `before_id` pages on."""
    if status is not None and status not in TRANSFER_REQUEST_STATES:
        raise InvalidInputError(
            f"unknown status {status!r}", errors={"status": [f"One of {TRANSFER_REQUEST_STATES}."]}
        )
    column = District.id if isinstance(district, int) else District.code
    path = db.session.scalar(select(District.path).where(column == district))
    if path is None:
        raise NotFoundError(f"no district {district!r}", errors={"district": ["No such district."]})
    query = (
        _REQUEST_QUERY.where(District.path.startswith(path, autoescape=True))
        .order_by(TransferRequest.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(TransferRequest.status == status)
    if before_id is not None:
        query = query.where(TransferRequest.id < before_id)
    return [_request_info(row, code) for row, code in db.session.execute(query)]
