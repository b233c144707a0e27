"""Service records: submit, approve, reject, verify; the earning pipeline; star levels.

Public: record_service(volunteer_id, kind, started_at, minutes=None, details=None, *,
actor, idempotency_key=None) -> RecordResult; approve(record_id, actor) -> RecordResult;
reject(record_id, actor, reason) -> RecordResult; mark_verified(record_id, actor) ->
RecordResult; get_record(record_id) -> RecordResult; pending_records(district, *,
after_id=None, limit=50) -> list[RecordResult]; volunteer_info(volunteer_id, policy=None)
-> VolunteerInfo; star_level(minutes, district=None) -> int; expiring_soon(volunteer_id,
as_of=None) -> list[tuple[int, datetime]]; evaluate(pm, policy, record, volunteer,
history) -> Evaluation (pure: used by approval and by preview alike).

Earning: `award_points` proposes, `award_bonuses` adds on top, `limit_awards` clips
(the lowest ceiling wins, bonuses are clipped before base awards), `review_record`
decides approve-now or queue. Approval posts one earn entry per award with points,
each naming its plugin, rule, config version and reason, and counts the record's
minutes once, all in one unit of work: a plugin that fails leaves nothing behind.
On PostgreSQL a record without an idempotency key is read in autocommit and written by
one call that checks what it read (`_record_in_one_call`); elsewhere it takes the
locked path, one unit of work that locks the volunteer first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from points import ledger
from points.database import Prepared, is_retryable
from points.errors import (
    AccountClosedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PluginError,
    PointsError,
)
from points.extensions import db
from points.ledger import fused
from points.models import Account, District, Entry, Lot, ServiceRecord, Volunteer, utcnow
from points.plugins import (
    Award,
    Decision,
    DistrictInfo,
    History,
    Limit,
    LotInfo,
    PastRecord,
    PointsPluginManager,
    RecordInfo,
    VolunteerInfo,
    activity_kinds,
    call_each,
    plugin_manager,
)
from points.policy import (
    VERSIONS_STAMP,
    Policy,
    check_versions,
    district_info,
    remember_district,
    resolve_policy,
)

logger = logging.getLogger(__name__)

# A clock running a little fast on a kiosk must not make a fresh record "in the future".
FUTURE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True)
class Evaluation:
    """What the plugins make of one record: awards after limits, and the approval decision."""

    awards: tuple[dict[str, Any], ...]
    decisions: tuple[Decision, ...]

    @property
    def points(self) -> int:
        return sum(award["points"] for award in self.awards)

    @property
    def approve_now(self) -> bool:
        return bool(self.decisions) and all(d.allowed for d in self.decisions)

    @property
    def queue_reason(self) -> str:
        denied = [d for d in self.decisions if not d.allowed]
        if denied:
            return (
                "；".join(d.reason_zh for d in denied)
                + " / "
                + "; ".join(d.reason_en for d in denied)
            )
        return "无自动批准规则，待街道审核 / no approval rule: waits for the office"


@dataclass(frozen=True)
class RecordResult:
    """A service record as it stands after the call."""

    id: int
    volunteer_id: int
    district_id: int
    kind: str
    started_at: datetime
    minutes: int | None
    details: dict
    status: str
    points: int
    awards: list[dict] = field(default_factory=list)
    queue_reason: str | None = None
    decision_reason: str | None = None
    verified: bool = False
    entry_ids: tuple[int, ...] = ()
    replayed: bool = False


# -- reading -----------------------------------------------------------------------------


def _record_result(row: ServiceRecord, entry_ids=(), replayed: bool = False) -> RecordResult:
    return RecordResult(
        id=row.id,
        volunteer_id=row.volunteer_id,
        district_id=row.district_id,
        kind=row.kind,
        started_at=row.started_at,
        minutes=row.minutes,
        details=row.details,
        status=row.status,
        points=row.points,
        awards=list(row.awards or []),
        queue_reason=row.queue_reason,
        decision_reason=row.decision_reason,
        verified=row.verified_at is not None,
        entry_ids=tuple(entry_ids),
        replayed=replayed,
    )


def get_record(record_id: int, *, replayed: bool = False) -> RecordResult:
    """Return a service record; raise NotFoundError."""
    row = db.session.get(ServiceRecord, _id(record_id, "record_id"), populate_existing=True)
    if row is None:
        raise NotFoundError(f"no service record {record_id}")
    entry_ids = db.session.scalars(
        select(Entry.id).where(Entry.service_record_id == row.id).order_by(Entry.id)
    ).all()
    return _record_result(row, entry_ids, replayed)


def pending_records(
    district: int | str, *, after_id: int | None = None, limit: int = 50
) -> list[RecordResult]:
    """Return the records waiting for the office in the node and below, oldest first."""
    node = district_info(district)
    from points.models import District

    subtree = select(District.id).where(District.path.startswith(node.path))
    query = (
        select(ServiceRecord)
        .where(ServiceRecord.district_id.in_(subtree), ServiceRecord.status == "pending")
        .order_by(ServiceRecord.id)
        .limit(max(1, min(limit, 500)))
    )
    if after_id is not None:
        query = query.where(ServiceRecord.id > after_id)
    return [_record_result(row) for row in db.session.scalars(query)]


def _id(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{name} must be an id", errors={name: ["Must be an integer id."]})
    return value


_VOLUNTEER_SELECT = (
    select(
        Volunteer.id,
        Volunteer.district_id,
        Volunteer.name,
        Volunteer.service_minutes,
        Volunteer.status,
        District.code,
        District.name.label("district_name"),
        District.level,
        District.timezone,
        District.path,
        *VERSIONS_STAMP,
    )
    .join(District, District.id == Volunteer.district_id)
    .where(Volunteer.id == bindparam("volunteer_id"))
)
# Records and approvals of one volunteer take turns (PostgreSQL; SQLite writers always
# do): each reads the history its caps count only once the volunteer's row is locked,
# so two at once cannot both pass a cap that only one fits.
# A record's own statements run as Prepared: the record path costs a bare earn plus
# these, so their per-call Python counts.
_VOLUNTEER = Prepared(_VOLUNTEER_SELECT)
_VOLUNTEER_LOCKED = Prepared(
    _VOLUNTEER_SELECT.with_for_update(of=Volunteer.__table__, key_share=True)
)
# The one-call path (PostgreSQL) reads without a lock, and reserves the new record's id
# in the same round trip: its earns' hashes name the record.
_VOLUNTEER_RESERVING = Prepared(
    _VOLUNTEER_SELECT.add_columns(func.nextval("service_records_id_seq").label("reserved_id"))
)


def volunteer_info(
    volunteer_id: int,
    policy: Policy | None = None,
    *,
    as_of: datetime | None = None,
    lock: bool = False,
) -> VolunteerInfo:
    """Return the volunteer as plugins see them, with the star level under `policy` (by
    default the policy of their node as of `as_of`, or now); raise NotFoundError.
    `lock` keeps the volunteer's row locked until the unit of work ends."""
    return _volunteer_and_policy(
        volunteer_id, policy, as_of, _VOLUNTEER_LOCKED if lock else _VOLUNTEER
    )[0]


def _session_rows(statement: Prepared, parameters: dict[str, Any]) -> list:
    """Run a record path statement on the session's connection; return its rows."""
    return statement.rows(db.session.connection(), parameters)


def _driver_rows(connection) -> Callable[[Prepared, dict[str, Any]], list]:
    """Return a reader like `_session_rows` on a DBAPI connection of its own (the
    one-call path's `autocommit_connection`)."""
    dialect = db.engine.dialect

    def rows(statement: Prepared, parameters: dict[str, Any]) -> list:
        return statement.driver_rows(connection, dialect, parameters)

    return rows


def _volunteer_and_policy(
    volunteer_id: int,
    policy: Policy | None,
    as_of: datetime | None,
    statement=_VOLUNTEER,
    read=_session_rows,
) -> tuple[VolunteerInfo, Policy, int | None]:
    """Return the volunteer, their policy, and the record id `_VOLUNTEER_RESERVING`
    reserved (None for the other statements)."""
    rows = read(statement, {"volunteer_id": _id(volunteer_id, "volunteer_id")})
    row = rows[0] if rows else None
    if row is None:
        raise NotFoundError(
            f"no volunteer {volunteer_id}", errors={"volunteer_id": ["No such volunteer."]}
        )
    node = DistrictInfo(
        row.district_id, row.code, row.district_name, row.level, row.timezone, row.path
    )
    remember_district(node)
    # The row brings the policy versions' stamp: the cached policies are checked in the
    # round trip that reads the volunteer.
    check_versions((row.versions_newest, row.versions_recent))
    policy = policy or resolve_policy(node, as_of)
    level = _star_level(plugin_manager(), policy, row.service_minutes)
    volunteer = VolunteerInfo(
        row.id, row.district_id, row.name, row.service_minutes, level, status=row.status
    )
    return volunteer, policy, getattr(row, "reserved_id", None)


def _star_level(pm: PointsPluginManager, policy: Policy, minutes: int) -> int:
    answers = call_each(
        pm,
        "star_level_for",
        {"minutes": minutes},
        enabled=policy.enabled,
        config_for=policy.config,
    )
    return max((level for _, level in answers), default=0)


def star_level(minutes: int, district: int | str | None = None) -> int:
    """Return the star level for `minutes` of service under the node's policy (or the
    built-in defaults when no node is given)."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or minutes < 0:
        raise InvalidInputError("minutes must be >= 0", errors={"minutes": ["Must be >= 0."]})
    pm = plugin_manager()
    if district is None:
        from points.plugins import PluginConfig, config_schemas, default_enabled, plugin_names

        schemas = config_schemas(pm)
        configs = {
            name: PluginConfig(
                name,
                schemas[name].load({}) if name in schemas else {},
                enabled=default_enabled(pm, name),
            )
            for name in plugin_names(pm)
        }
        return _star_level(pm, Policy(None, configs), minutes)
    return _star_level(pm, resolve_policy(district), minutes)


_EXPIRING = (
    select(Lot.expires_at, func.sum(Lot.remaining))
    .join(Account, Account.id == Lot.account_id)
    .where(
        Account.volunteer_id == bindparam("volunteer_id"),
        Lot.is_open,
        Lot.expires_at > bindparam("now", type_=Lot.expires_at.type),
        Lot.expires_at <= bindparam("until", type_=Lot.expires_at.type),
    )
    .group_by(Lot.expires_at)
    .order_by(Lot.expires_at)
)


def expiring_soon(
    volunteer: int | VolunteerInfo, as_of: datetime | None = None, *, days: int | None = None
) -> list[tuple[int, datetime]]:
    """Return (points, expires_at) of the volunteer's lots that expire within `days`, by
    default the expiry plugin's `soon_days` window, soonest first. Pass the VolunteerInfo
    when the caller has it already: it saves a query and a policy resolution."""
    if not isinstance(volunteer, VolunteerInfo):
        volunteer = volunteer_info(volunteer)
    if days is None:
        policy = resolve_policy(volunteer.district_id)
        days = policy.config("expiry")["soon_days"] if "expiry" in policy.configs else 30
    now = as_of or utcnow()
    rows = db.session.connection().execute(
        _EXPIRING,
        {"volunteer_id": volunteer.id, "now": now, "until": now + timedelta(days=days)},
    )
    return [(int(points), expires_at) for expires_at, points in rows]


# Built once: a prepared statement skips SQLAlchemy's per-call construction, which is
# most of the cost of a small query on the hot path (submit and approve).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)
_HISTORY = Prepared(
    select(
        ServiceRecord.id,
        ServiceRecord.kind,
        ServiceRecord.started_at,
        ServiceRecord.minutes,
        ServiceRecord.points,
        ServiceRecord.details,
        ServiceRecord.awards,
    ).where(
        ServiceRecord.volunteer_id == bindparam("volunteer_id"),
        ServiceRecord.status == "approved",
        ServiceRecord.id != bindparam("exclude_id"),
        ServiceRecord.started_at >= bindparam("since"),
        ServiceRecord.started_at < bindparam("before"),
    )
)


def history_for(
    volunteer_id: int, *, exclude_id: int | None = None, before: datetime | None = None
) -> History:
    """Return the volunteer's approved records as a lazily read History."""

    def load(since: datetime | None, until: datetime | None) -> list[PastRecord]:
        if before is not None:
            until = before if until is None else min(until, before)
        return _history_rows(volunteer_id, exclude_id, since or _EARLIEST, until or _LATEST)

    return History(load)


def _history_rows(
    volunteer_id: int,
    exclude_id: int | None,
    since: datetime,
    until: datetime,
    read=_session_rows,
) -> list[PastRecord]:
    rows = read(
        _HISTORY,
        {
            "volunteer_id": volunteer_id,
            "exclude_id": -1 if exclude_id is None else exclude_id,
            "since": since,
            "before": until,
        },
    )
    return [past_record(*row) for row in rows]


def past_record(id, kind, started_at, minutes, points, details, awards) -> PastRecord:
    """Return a PastRecord from a record's columns."""
    rules = tuple(a["rule"] for a in awards or () if a.get("points", 0) > 0)
    return PastRecord(id, kind, started_at, minutes, points, details, rules)


# -- the earning pipeline ----------------------------------------------------------------


def _checked_awards(name: str, hook: str, awards: Any, policy: Policy) -> list[Award]:
    if not isinstance(awards, list | tuple) or not all(isinstance(a, Award) for a in awards):
        raise PluginError(
            f"plugin {name!r} returned something other than Awards from {hook}",
            plugin=name,
            hook=hook,
        )
    checked = []
    for award in awards:
        if isinstance(award.points, bool) or not isinstance(award.points, int) or award.points < 0:
            raise PluginError(
                f"plugin {name!r} proposed {award.points!r} points in {hook}",
                plugin=name,
                hook=hook,
            )
        checked.append(replace(award, plugin=name, config_version=policy.config(name).version))
    return checked


def _award_dict(award: Award, proposed: int, clip: Limit | None) -> dict[str, Any]:
    return {
        "plugin": award.plugin,
        "rule": award.rule,
        "points": award.points,
        "proposed": proposed,
        "reason_zh": award.reason_zh,
        "reason_en": award.reason_en,
        "config_version": award.config_version,
        "clip": None
        if clip is None
        else {"plugin": clip.plugin, "reason_zh": clip.reason_zh, "reason_en": clip.reason_en},
    }


def apply_limits(awards: list[Award], limits: list[Limit]) -> list[dict[str, Any]]:
    """Clip awards to the limits: each rule to its lowest ceiling, then the total to the
    lowest overall ceiling, taking points off the last awards first."""
    points = [a.points for a in awards]
    clips: list[Limit | None] = [None] * len(awards)
    for limit in sorted(limits, key=lambda lim: (lim.points, lim.plugin)):
        if limit.rule is not None:
            for i, award in enumerate(awards):
                if award.rule == limit.rule and points[i] > limit.points:
                    points[i] = max(limit.points, 0)
                    clips[i] = limit
    overall = [lim for lim in limits if lim.rule is None]
    if overall:
        lowest = min(overall, key=lambda lim: (lim.points, lim.plugin))
        excess = sum(points) - max(lowest.points, 0)
        for i in reversed(range(len(awards))):
            if excess <= 0:
                break
            take = min(points[i], excess)
            if take:
                points[i] -= take
                excess -= take
                clips[i] = lowest
    return [
        _award_dict(replace(a, points=p), a.points, clip)
        for a, p, clip in zip(awards, points, clips, strict=True)
    ]


def evaluate(
    pm: PointsPluginManager,
    policy: Policy,
    record: RecordInfo,
    volunteer: VolunteerInfo,
    history: History,
    *,
    review: bool = True,
) -> Evaluation:
    """Run the earning plugins over one record; write nothing. Raises PluginError."""
    common = {"record": record, "volunteer": volunteer, "history": history}
    options = {"enabled": policy.enabled, "config_for": policy.config}
    base: list[Award] = []
    for name, awards in call_each(pm, "award_points", common, **options):
        base += _checked_awards(name, "award_points", awards, policy)
    base.sort(key=lambda a: a.key)
    extra: list[Award] = []
    for name, awards in call_each(
        pm, "award_bonuses", {**common, "awards": tuple(base)}, **options
    ):
        extra += _checked_awards(name, "award_bonuses", awards, policy)
    extra.sort(key=lambda a: a.key)
    proposed = base + extra
    limits: list[Limit] = []
    for name, found in call_each(
        pm, "limit_awards", {**common, "awards": tuple(proposed)}, **options
    ):
        for limit in found:
            if not isinstance(limit, Limit) or isinstance(limit.points, bool):
                raise PluginError(
                    f"plugin {name!r} returned a bad limit", plugin=name, hook="limit_awards"
                )
            limits.append(replace(limit, plugin=name))
    awards = apply_limits(proposed, limits)
    decisions: list[Decision] = []
    if review:
        final = tuple(replace(a, points=d["points"]) for a, d in zip(proposed, awards, strict=True))
        for name, decision in call_each(
            pm,
            "review_record",
            {"record": record, "volunteer": volunteer, "awards": final},
            **options,
        ):
            if not isinstance(decision, Decision):
                raise PluginError(
                    f"plugin {name!r} returned a bad decision", plugin=name, hook="review_record"
                )
            decisions.append(replace(decision, plugin=name))
    return Evaluation(tuple(awards), tuple(decisions))


# -- submitting --------------------------------------------------------------------------


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
) -> RecordResult:
    """Record a volunteer's service; approve it at once if the approval policy says so.

    Returns the record (status "approved" with its entries, or "pending" with the
    reason it waits). Raises InvalidInputError (field errors: kind, started_at,
    minutes, details.<field>), NotFoundError, AccountClosedError, ConflictError (a
    second check-in the same day), IdempotencyConflictError, PluginError.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor is required", errors={"actor": ["Must not be empty."]})
    pm = plugin_manager()
    now = utcnow()
    submitted = _Submission(volunteer_id, kind, started_at, minutes, details, actor, now)
    if idempotency_key is None and not ledger.in_unit_of_work() and fused.records_enabled():
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
            lambda: _submit(pm, policy, volunteer, record, dedupe, actor, now),
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
    if evaluation.approve_now:
        earns = _earns(pm, policy, record, volunteer, evaluation.awards, now)

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
            )
        except IntegrityError:
            raise _duplicate(record.kind, record.local_start.date()) from None
        if posted is None:
            raise _Overtaken()
        return _submitted(record_id, record, values, posted), policy, posted

    return write


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
) -> tuple[RecordResult, list]:
    """Store a checked record and, if it is approved at once, post its awards; return
    the record and the entries posted."""
    evaluation = evaluate(pm, policy, record, volunteer, history_for(volunteer.id))
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
        )
    return _submitted(record_id, record, values, posted), posted


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


def _post(
    pm: PointsPluginManager,
    policy: Policy,
    record: RecordInfo,
    volunteer: VolunteerInfo,
    awards: tuple[dict, ...],
    actor: str,
    *,
    count_minutes: bool,
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> list:
    """Post one earn entry per award with points, except the `skip` (plugin, rule) keys,
    inside the caller's unit; count the record's minutes once. Return the entries."""
    posted = [
        ledger.earn(
            volunteer.id,
            earn.points,
            actor=actor,
            reason=earn.reason,
            expires_at=earn.expires_at,
            plugin=earn.plugin,
            rule=earn.rule,
            config_version=earn.config_version,
            service_record_id=record.id,
        )
        for earn in _earns(pm, policy, record, volunteer, awards, utcnow(), skip)
    ]
    if count_minutes and record.minutes:
        ledger.add_service_minutes(
            volunteer.id,
            record.minutes,
            actor=actor,
            reason=_minutes_reason(record),
            service_record_id=record.id,
        )
    return posted


def _earns(
    pm: PointsPluginManager,
    policy: Policy,
    record: RecordInfo,
    volunteer: VolunteerInfo,
    awards: tuple[dict, ...],
    now: datetime,
    skip: frozenset[tuple[str, str]] = frozenset(),
) -> list[fused.Earn]:
    """Return the earns for the awards with points, but the `skip` keys: each with its
    reason and the expiry the plugins give its lot."""
    earns = []
    for award in awards:
        if award["points"] <= 0 or (award["plugin"], award["rule"]) in skip:
            continue
        lot = LotInfo(
            volunteer.id,
            record.district_id,
            award["points"],
            now,
            award["plugin"],
            award["rule"],
            record.timezone,
        )
        answers = call_each(
            pm, "expiry_for", {"lot": lot}, enabled=policy.enabled, config_for=policy.config
        )
        reason = award["reason_zh"] + " / " + award["reason_en"]
        if award["clip"]:
            reason += f"（{award['clip']['reason_zh']}）/ ({award['clip']['reason_en']})"
        earns.append(
            fused.Earn(
                award["points"],
                reason,
                min((when for _, when in answers), default=None),
                award["plugin"],
                award["rule"],
                award["config_version"],
            )
        )
    return earns


def _minutes_reason(record: RecordInfo) -> str:
    return f"service record {record.id} ({record.kind})"


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


def _notify(pm: PointsPluginManager, policy: Policy, entries: list) -> None:
    """Tell plugins about the entries once they are committed (the caller's unit of work
    may be larger than ours); a failing listener is logged, never undone."""

    def deliver() -> None:
        for entry in entries:
            try:
                call_each(pm, "entry_posted", {"entry": entry}, enabled=policy.enabled)
            except PluginError:
                logger.exception("entry_posted listener failed for entry %s", entry.id)

    if entries:
        ledger.after_commit(deliver)


# -- the office's decisions --------------------------------------------------------------


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
        state["policy"] = policy
        state["posted"] = _post(
            pm, policy, record, volunteer, evaluation.awards, actor, count_minutes=True
        )
        _store_awards(record_id, list(evaluation.awards), state["posted"])
        return get_record(record_id)

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
        _lock_pending(record_id, "rejected", actor, reason)
        # A rejected check-in does not block a corrected one the same day.
        db.session.execute(
            update(ServiceRecord).where(ServiceRecord.id == record_id).values(dedupe_key=None)
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
            )
            _store_awards(record_id, earlier + fresh, state["posted"])
        return get_record(record_id)

    result = ledger.atomic(work)
    if state["policy"] is not None:
        _notify(pm, state["policy"], state["posted"])
    return result
