"""The office's decisions on a record: approve, reject, mark verified."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from points import audit, budgets, ledger
from points.errors import ConflictError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import ServiceRecord, utcnow
from points.plugins import RecordInfo, plugin_manager
from points.policy import district_info, resolve_policy
from points.service.evaluation import evaluate
from points.service.posting import _notify, _post
from points.service.reading import RecordResult, _id, get_record, history_for, volunteer_info


def _lock_pending(record_id: int, status: str, actor: str, reason: str | None) -> ServiceRecord:
    done = db.session.execute(
        update(ServiceRecord)
        .where(ServiceRecord.id == record_id, ServiceRecord.status == "pending")
        .values(status=status, decided_at=utcnow(), decided_by=actor, decision_reason=reason)
    )
    row = db.session.get(ServiceRecord, record_id, populate_existing=True)
    if row is None:
        raise NotFoundError(f"no service record {record_id}")
    if done.rowcount != 1:
        raise ConflictError(
            f"service record {record_id} was already {row.status}",
            errors={"record_id": [f"Already {row.status}."]},
        )
    return row


def _record_info(row: ServiceRecord) -> RecordInfo:
    node = district_info(row.district_id)
    return RecordInfo(
        row.id,
        row.district_id,
        row.volunteer_id,
        row.kind,
        row.started_at,
        row.minutes,
        row.details,
        node.timezone,
        row.verified_at is not None,
    )


def approve(record_id: int, actor: str) -> RecordResult:
    """Approve a pending record: post its awards as earn entries, count its minutes.

    The awards are computed now, under the policy in effect when the service started.
    Raises NotFoundError, ConflictError (not pending), PluginError (nothing posted).
    """
    _id(record_id, "record_id")
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor is required", errors={"actor": ["Must not be empty."]})
    pm = plugin_manager()
    state: dict[str, Any] = {}

    def work() -> RecordResult:
        row = _lock_pending(record_id, "approved", actor, "街道批准 / approved by the office")
        record = _record_info(row)
        policy = resolve_policy(record.district_id, record.started_at)
        volunteer = volunteer_info(row.volunteer_id, policy, lock=True)
        history = history_for(row.volunteer_id, exclude_id=row.id)
        evaluation = evaluate(pm, policy, record, volunteer, history, review=False)
        # The office approved it: beyond a budget its awards are clipped, never queued.
        now = utcnow()
        awards, _ = budgets.settle(policy.district, evaluation.awards, now, may_queue=False)
        state["policy"] = policy
        state["posted"] = _post(
            pm, policy, record, volunteer, awards, actor, count_minutes=True, effective_at=now
        )
        _store_awards(record_id, list(awards), state["posted"])
        result = get_record(record_id)
        audit.record(
            "record.approve",
            district_id=row.district_id,
            target=("record", record_id),
            before={"status": "pending"},
            after={"status": "approved", "points": result.points},
        )
        return result

    result = ledger.atomic(work)
    _notify(pm, state["policy"], state["posted"])
    return result


def reject(record_id: int, actor: str, reason: str) -> RecordResult:
    """Reject a pending record with a reason; nothing is posted and no minutes count.

    Raises InvalidInputError (no reason), NotFoundError, ConflictError (not pending).
    """
    _id(record_id, "record_id")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInputError("a rejection needs a reason", errors={"reason": ["Required."]})
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor is required", errors={"actor": ["Must not be empty."]})

    def work() -> RecordResult:
        row = _lock_pending(record_id, "rejected", actor, reason)
        # A rejected check-in does not block a corrected one the same day.
        db.session.execute(
            update(ServiceRecord).where(ServiceRecord.id == record_id).values(dedupe_key=None)
        )
        audit.record(
            "record.reject",
            district_id=row.district_id,
            target=("record", record_id),
            before={"status": "pending"},
            after={"status": "rejected", "reason": reason},
        )
        return get_record(record_id)

    return ledger.atomic(work)


def mark_verified(record_id: int, actor: str) -> RecordResult:
    """Mark a record (a report) verified by the office. If it was approved already, post
    the awards that verification adds (a bonus), once. Raises NotFoundError,
    ConflictError (rejected, or verified already), PluginError."""
    _id(record_id, "record_id")
    pm = plugin_manager()
    state: dict[str, Any] = {"posted": [], "policy": None}

    def work() -> RecordResult:
        done = db.session.execute(
            update(ServiceRecord)
            .where(
                ServiceRecord.id == record_id,
                ServiceRecord.verified_at.is_(None),
                ServiceRecord.status != "rejected",
            )
            .values(verified_at=utcnow(), verified_by=actor)
        )
        row = db.session.get(ServiceRecord, record_id, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no service record {record_id}")
        if done.rowcount != 1:
            raise ConflictError(f"service record {record_id} cannot be verified now")
        if row.status == "approved":
            record = _record_info(row)
            policy = resolve_policy(record.district_id, record.started_at)
            # Locked, as records and approvals lock it: a bonus changes the history
            # their caps count.
            volunteer = volunteer_info(row.volunteer_id, policy, lock=True)
            history = history_for(row.volunteer_id, exclude_id=row.id)
            evaluation = evaluate(pm, policy, record, volunteer, history, review=False)
            earlier = [a for a in row.awards or []]
            done_keys = frozenset((a["plugin"], a["rule"]) for a in earlier if a["points"] > 0)
            fresh = [a for a in evaluation.awards if (a["plugin"], a["rule"]) not in done_keys]
            now = utcnow()
            fresh = list(budgets.settle(policy.district, tuple(fresh), now, may_queue=False)[0])
            state["policy"] = policy
            state["posted"] = _post(
                pm,
                policy,
                record,
                volunteer,
                tuple(earlier + fresh),
                actor,
                count_minutes=False,
                skip=done_keys,
                effective_at=now,
            )
            _store_awards(record_id, earlier + fresh, state["posted"])
        result = get_record(record_id)
        audit.record(
            "record.verify",
            district_id=row.district_id,
            target=("record", record_id),
            after={"verified": True, "points": result.points},
        )
        return result

    result = ledger.atomic(work)
    if state["policy"] is not None:
        _notify(pm, state["policy"], state["posted"])
    return result


def _store_awards(record_id: int, awards: list[dict], posted: list) -> None:
    """Keep the record's awards and add the points just posted for it."""
    db.session.execute(
        update(ServiceRecord)
        .where(ServiceRecord.id == record_id)
        .values(
            points=ServiceRecord.points + sum(entry.postings[-1][1] for entry in posted),
            awards=awards,
        )
    )
