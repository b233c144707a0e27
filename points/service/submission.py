"""Submitting a service record: checked, evaluated, stored, and posted if approved now."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from points import budgets, ledger
from points.database import Prepared, is_retryable
from points.errors import (
    AccountClosedError,
    ConflictError,
    InvalidInputError,
    PointsError,
)
from points.extensions import db
from points.ledger import fused
from points.models import ServiceRecord, utcnow
from points.plugins import (
    Decision,
    History,
    PastRecord,
    PointsPluginManager,
    RecordInfo,
    VolunteerInfo,
    activity_kinds,
    plugin_manager,
)
from points.policy import Policy
from points.service.evaluation import Evaluation, evaluate
from points.service.posting import _earns, _minutes_reason, _notify, _post
from points.service.reading import (
    _EARLIEST,
    _LATEST,
    _VOLUNTEER_LOCKED,
    _VOLUNTEER_SELECT,
    RecordResult,
    _history_rows,
    _session_rows,
    _volunteer_and_policy,
    get_record,
    history_for,
)

# A clock running a little fast on a kiosk must not make a fresh record "in the future".
FUTURE_SLACK = timedelta(minutes=5)

# The one-call path (PostgreSQL) reads without a lock, and reserves the new record's id
# in the same round trip: its earns' hashes name the record.
_VOLUNTEER_RESERVING = Prepared(
    _VOLUNTEER_SELECT.add_columns(func.nextval("service_records_id_seq").label("reserved_id"))
)


def _check_record(pm, policy, kind, started_at, minutes, details, now):
    errors: dict[str, list[str]] = {}
    kinds = {name: k for name, k in activity_kinds(pm).items() if policy.enabled(k.plugin)}
    spec = kinds.get(kind) if isinstance(kind, str) else None
    if spec is None:
        errors["kind"] = [f"Unknown kind; one of {', '.join(sorted(kinds))}."]
    if not isinstance(started_at, datetime) or started_at.tzinfo is None:
        errors["started_at"] = ["Give a time with a UTC offset."]
    elif started_at > now + FUTURE_SLACK:
        errors["started_at"] = ["Must not be in the future."]
    if minutes is None:
        if spec is not None and spec.minutes == "required":
            errors["minutes"] = ["Required for this kind."]
    elif isinstance(minutes, bool) or not isinstance(minutes, int):
        errors["minutes"] = ["Must be a whole number of minutes."]
    elif not 0 < minutes <= ledger.MAX_SERVICE_MINUTES:
        errors["minutes"] = [f"Must be from 1 to {ledger.MAX_SERVICE_MINUTES} (24 hours)."]
    if details is None:
        details = {}
    loaded: dict = {}
    if not isinstance(details, Mapping):
        errors["details"] = ["Must be an object."]
    elif spec is not None:
        try:
            schemas = pm.derived.setdefault("detail_schemas", {})
            if spec.name not in schemas:
                schemas[spec.name] = spec.schema()
            loaded = schemas[spec.name].load(dict(details))
        except ValidationError as error:
            for key, messages in _flat(error.messages, "details").items():
                errors[key] = messages
    if errors:
        raise InvalidInputError("invalid service record", errors=errors)
    return spec, json.loads(json.dumps(loaded, default=str))


def _flat(messages: Any, prefix: str) -> dict[str, list[str]]:
    if isinstance(messages, Mapping):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]}


# Every column a new record sets (those missing from a record's values are NULL).
_INSERT_RECORD = Prepared(
    ServiceRecord.__table__.insert()
    .values(
        {
            name: bindparam(name)
            for name in (
                "district_id",
                "volunteer_id",
                "kind",
                "started_at",
                "minutes",
                "details",
                "status",
                "dedupe_key",
                "submitted_by",
                "created_at",
                "points",
                "awards",
                "queue_reason",
                "decided_at",
                "decided_by",
                "decision_reason",
            )
        }
    )
    .returning(ServiceRecord.id)
)


def record_service(
    volunteer_id: int,
    kind: str,
    started_at: datetime,
    minutes: int | None = None,
    details: Mapping[str, Any] | None = None,
    *,
    actor: str,
    idempotency_key: str | None = None,
    review_reason: tuple[str, str] | None = None,
) -> RecordResult:
    """Record a volunteer's service; approve it at once if the approval policy says so.

    `review_reason` (zh, en) queues the record for the office whatever the approval
    policy says, with that reason first in its queue reason: the caller knows something
    the plugins cannot (an activity's volunteer who never checked out, say). Its
    awards are still evaluated, to be posted if the office approves.

    Returns the record (status "approved" with its entries, or "pending" with the
    reason it waits). Raises InvalidInputError (field errors: kind, started_at,
    minutes, details.<field>), NotFoundError, AccountClosedError, ConflictError (a
    second check-in the same day), IdempotencyConflictError, PluginError.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor is required", errors={"actor": ["Must not be empty."]})
    review = _review_decision(review_reason)
    pm = plugin_manager()
    now = utcnow()
    submitted = _Submission(volunteer_id, kind, started_at, minutes, details, actor, now)
    if (
        idempotency_key is None
        and review is None
        and not ledger.in_unit_of_work()
        and fused.records_enabled()
    ):
        done = _record_in_one_call(pm, submitted)
        if done is not None:
            return done

    # The request as its key remembers it: the arguments as given, so that a retry is
    # recognised before any check (the record's own details are normalised by them).
    arguments = {
        "volunteer_id": volunteer_id,
        "kind": kind,
        "started_at": started_at,
        "minutes": minutes,
        "details": dict(details) if isinstance(details, Mapping) else details,
    }
    if review is not None:
        arguments["review_reason"] = list(review_reason)

    def replay(stored: dict) -> tuple[RecordResult, list]:
        return get_record(stored["record_id"], replayed=True), []

    def unit() -> tuple[RecordResult, list, Policy | None]:
        # A retry replays before anything is checked: the check-in it repeats would
        # otherwise be refused as the day's second.
        stored = ledger.stored_result("record_service", arguments, idempotency_key, "service")
        if stored is not None:
            return *replay(stored), None
        # Read and check in the unit of work itself: one transaction, not a read then a
        # write; a failed check rolls back before anything is written (the key is
        # claimed after the checks); a retried unit reads again.
        volunteer, policy, record, dedupe, _ = _checked_record(pm, submitted, _VOLUNTEER_LOCKED)
        result, posted = ledger.idempotent(
            "record_service",
            arguments,
            idempotency_key,
            "service",
            lambda: _submit(pm, policy, volunteer, record, dedupe, actor, now, review),
            lambda done: {"record_id": done[0].id},
            replay,
        )
        return result, posted, policy

    result, posted, policy = ledger.atomic(unit)
    if policy is not None:
        _notify(pm, policy, posted)
    return result


_DEDUPE = Prepared(
    select(ServiceRecord.id).where(
        ServiceRecord.volunteer_id == bindparam("volunteer_id"),
        ServiceRecord.dedupe_key == bindparam("dedupe_key"),
    )
)

# Evaluations a one-call record may repeat, each time finding that the volunteer's row or
# history changed under it, before it takes the locked path, where changes wait.
ONE_CALL_ATTEMPTS = 3


@dataclass(frozen=True)
class _Submission:
    """A record as `record_service` was given it, checked only for its actor."""

    volunteer_id: int
    kind: str
    started_at: datetime
    minutes: int | None
    details: Mapping[str, Any] | None
    actor: str
    now: datetime


def _record_in_one_call(pm: PointsPluginManager, submitted: _Submission) -> RecordResult | None:
    """PostgreSQL, without an idempotency key and outside a unit of work: read and
    evaluate with no transaction open, then write the record, its earns and minutes in
    one call that first checks, under the volunteer's row lock, that the row and the
    history the plugins read are unchanged. Three round trips instead of seven.

    Return the record, or None to take the locked path: after ONE_CALL_ATTEMPTS
    evaluations each overtaken by a concurrent change, or when a lost race (a deadlock, a
    connection dropped before the write) aborted an attempt with nothing written.
    Raises what record_service raises; a connection lost during the write call is raised
    too, as `atomic` does when COMMIT is lost: it may have committed.
    """
    if not fused.knows_accounts(submitted.volunteer_id):
        return None  # the locked path looks the accounts up, for the next time
    try:
        for _ in range(ONE_CALL_ATTEMPTS):
            sent = False
            try:
                with ledger.autocommit_connection(lend=False) as connection:
                    write = _evaluated(pm, connection, submitted)
                    sent = True
                    done = write()
            except _Overtaken:
                continue
            except fused.LockedPathNeeded:
                return None
            except DBAPIError as error:
                # Lost before the call was sent, or a race the server rolled back (a
                # deadlock, say): nothing was written, and the locked path retries.
                if is_retryable(error) and not (sent and error.connection_invalidated):
                    return None
                raise
            # Listeners hear of the entries once the connection is back in the pool:
            # whatever they write goes through units of work of their own.
            _notify(pm, *done[1:])
            return done[0]
        return None
    finally:
        # A policy missing from the cache was read through the session: end that read.
        if db.session.registry.has() and db.session().in_transaction():
            db.session.rollback()


class _Overtaken(PointsError):
    """The volunteer's row or history changed while a one-call record was evaluated.
    Never reaches a caller; a PointsError so that `call_each` lets it out of a plugin's
    history read as it is."""

    def __init__(self):
        super().__init__("the volunteer changed during the evaluation")


def _evaluated(
    pm: PointsPluginManager, connection, submitted: _Submission
) -> Callable[[], tuple[RecordResult, Policy, list]]:
    """Read and evaluate a record for `_record_in_one_call`; return its write, which
    returns the record, its policy and its entries. Both raise _Overtaken, and the
    write fused.LockedPathNeeded."""
    read = _driver_rows(connection)
    volunteer, policy, record, dedupe, record_id = _checked_record(
        pm, submitted, _VOLUNTEER_RESERVING, read
    )
    actor, now = submitted.actor, submitted.now
    history = _SeenHistory(volunteer.id, read)
    evaluation = evaluate(pm, policy, record, volunteer, History(history))
    values = _record_values(evaluation, record, dedupe, actor, now)
    record = replace(record, id=record_id)
    earns = []
    budget = None
    if evaluation.approve_now:
        earns = _earns(pm, policy, record, volunteer, evaluation.awards, now)
        # Taken whole in the same call, or the locked path clips or queues exactly.
        budget = budgets.one_call_arguments(policy.district, now, sum(e.points for e in earns))

    def write() -> RecordResult | None:
        try:
            posted = fused.record(
                connection,
                record_id,
                volunteer.id,
                volunteer.service_minutes,
                history.seen,
                values,
                earns,
                _minutes_reason(record),
                budget,
            )
        except IntegrityError:
            raise _duplicate(record.kind, record.local_start.date()) from None
        if posted is None:
            raise _Overtaken()
        return _submitted(record_id, record, values, posted), policy, posted

    return write


def _driver_rows(connection) -> Callable[[Prepared, dict[str, Any]], list]:
    """Return a reader like `_session_rows` on a DBAPI connection of its own (the
    one-call path's `autocommit_connection`)."""
    dialect = db.engine.dialect

    def rows(statement: Prepared, parameters: dict[str, Any]) -> list:
        return statement.driver_rows(connection, dialect, parameters)

    return rows


def _digest(records: list[PastRecord]) -> tuple[int, int, int]:
    return len(records), sum(r.id for r in records), sum(r.points for r in records)


class _SeenHistory:
    """A History loader that keeps what it read: the ranges, and a digest of the records
    in each (count, sum of ids, sum of points), the last of which `points_record`
    compares. History widens a read to cover every earlier one, each read a snapshot
    of its own: a wider read must find each earlier range as it was, or what plugins
    answered from the earlier read no longer holds (_Overtaken)."""

    def __init__(self, volunteer_id: int, read):
        self.volunteer_id = volunteer_id
        self.read = read
        self.ranges: list[tuple[datetime, datetime, tuple[int, int, int]]] = []

    @property
    def seen(self) -> tuple[datetime, datetime, tuple[int, int, int]] | None:
        return self.ranges[-1] if self.ranges else None

    def __call__(self, since: datetime | None, until: datetime | None) -> list[PastRecord]:
        since, until = since or _EARLIEST, until or _LATEST
        rows = _history_rows(self.volunteer_id, None, since, until, self.read)
        for start, end, digest in self.ranges:
            if _digest([r for r in rows if start <= r.started_at < end]) != digest:
                raise _Overtaken()
        self.ranges.append((since, until, _digest(rows)))
        return rows


def _checked_record(
    pm: PointsPluginManager, submitted: _Submission, statement, read=_session_rows
) -> tuple[VolunteerInfo, Policy, RecordInfo, str | None, int | None]:
    """Read the volunteer (by `statement`) and their policy and check a new record
    against them; return (volunteer, policy, record, dedupe key, reserved record id).
    Raises what record_service raises."""
    volunteer_id, kind, started_at = submitted.volunteer_id, submitted.kind, submitted.started_at
    minutes, details, now = submitted.minutes, submitted.details, submitted.now
    as_of = started_at if isinstance(started_at, datetime) and started_at.tzinfo else now
    # The policy in effect when the service started decides its points.
    volunteer, policy, reserved = _volunteer_and_policy(
        volunteer_id, None, min(as_of, now), statement, read
    )
    if volunteer.status != "active":
        raise AccountClosedError(f"volunteer {volunteer_id} is not active")
    node = policy.district
    spec, clean = _check_record(pm, policy, kind, started_at, minutes, details, now)
    local_day = started_at.astimezone(policy_zone(node)).date()
    dedupe = f"{kind}:{local_day.isoformat()}" if spec.once_per_day else None
    if dedupe and read(_DEDUPE, {"volunteer_id": volunteer.id, "dedupe_key": dedupe}):
        raise _duplicate(kind, local_day)
    record = RecordInfo(
        None, node.id, volunteer.id, kind, started_at, minutes, clean, node.timezone
    )
    return volunteer, policy, record, dedupe, reserved


def _submit(
    pm: PointsPluginManager,
    policy: Policy,
    volunteer: VolunteerInfo,
    record: RecordInfo,
    dedupe: str | None,
    actor: str,
    now: datetime,
    review: Decision | None = None,
) -> tuple[RecordResult, list]:
    """Store a checked record and, if it is approved at once, post its awards; return
    the record and the entries posted. A `review` decision (a denial) queues it."""
    evaluation = evaluate(pm, policy, record, volunteer, history_for(volunteer.id))
    if review is not None:
        evaluation = replace(evaluation, decisions=(review, *evaluation.decisions))
    if evaluation.approve_now:
        # The budgets on the node's path grant the points, in this unit: clipped to
        # what is left, or the record waits for the office, as the binding node says.
        awards, queued = budgets.settle(policy.district, evaluation.awards, now, may_queue=True)
        evaluation = replace(
            evaluation,
            awards=awards,
            decisions=evaluation.decisions + ((queued,) if queued else ()),
        )
    values = _record_values(evaluation, record, dedupe, actor, now)
    try:
        (record_id,) = _session_rows(_INSERT_RECORD, values)[0]
    except IntegrityError:
        raise _duplicate(record.kind, record.local_start.date()) from None
    posted = []
    if evaluation.approve_now:
        posted = _post(
            pm,
            policy,
            replace(record, id=record_id),
            volunteer,
            evaluation.awards,
            actor,
            count_minutes=True,
            effective_at=now,
        )
    return _submitted(record_id, record, values, posted), posted


def _review_decision(reason: tuple[str, str] | None) -> Decision | None:
    """The denial a caller's review reason (zh, en) adds to a record's decisions."""
    if reason is None:
        return None
    if (
        not isinstance(reason, tuple | list)
        or len(reason) != 2
        or not all(isinstance(part, str) and part.strip() for part in reason)
    ):
        raise InvalidInputError(
            "review_reason must be (zh, en)", errors={"review_reason": ["Give (zh, en)."]}
        )
    return Decision(False, reason[0].strip(), reason[1].strip(), plugin="")


def _record_values(
    evaluation: Evaluation, record: RecordInfo, dedupe: str | None, actor: str, now: datetime
) -> dict[str, Any]:
    """Return the columns of a new record, approved now or pending as `evaluation` says."""
    approve_now = evaluation.approve_now
    values = {
        "district_id": record.district_id,
        "volunteer_id": record.volunteer_id,
        "kind": record.kind,
        "started_at": record.started_at,
        "minutes": record.minutes,
        "details": record.details,
        "status": "approved" if approve_now else "pending",
        "dedupe_key": dedupe,
        "submitted_by": actor,
        "created_at": now,
        "points": evaluation.points if approve_now else 0,
        "awards": list(evaluation.awards),
        "queue_reason": None if approve_now else evaluation.queue_reason,
    }
    if approve_now:
        reason = "；".join(d.reason_zh for d in evaluation.decisions)
        values |= {"decided_at": now, "decided_by": actor, "decision_reason": reason}
    return values


def _submitted(
    record_id: int, record: RecordInfo, values: dict[str, Any], posted: list
) -> RecordResult:
    return RecordResult(
        id=record_id,
        volunteer_id=record.volunteer_id,
        district_id=record.district_id,
        kind=record.kind,
        started_at=record.started_at,
        minutes=record.minutes,
        details=record.details,
        status=values["status"],
        points=values["points"],
        awards=values["awards"],
        queue_reason=values["queue_reason"],
        decision_reason=values.get("decision_reason"),
        entry_ids=tuple(entry.id for entry in posted),
    )


def policy_zone(node):
    from zoneinfo import ZoneInfo

    return ZoneInfo(node.timezone)


def _duplicate(kind: str, day) -> ConflictError:
    return ConflictError(
        f"a {kind} on {day} is already recorded",
        errors={"started_at": [f"Already a {kind} on {day} (local date)."]},
    )
