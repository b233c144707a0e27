"""Reading service records, and volunteers and their history as plugins see them; writes nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select

from points.database import Prepared
from points.errors import InvalidInputError, NotFoundError
from points.extensions import db
from points.models import (
    SERVICE_STATES,
    Account,
    District,
    Entry,
    Lot,
    ServiceRecord,
    Volunteer,
    utcnow,
)
from points.plugins import (
    DistrictInfo,
    History,
    PastRecord,
    PointsPluginManager,
    VolunteerInfo,
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


def records_of_node(
    district: int | str,
    *,
    status: str | None = None,
    kind: str | None = None,
    volunteer_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    oldest_first: bool = False,
    after_id: int | None = None,
    limit: int = 50,
) -> list[RecordResult]:
    """Return the service records of a node and below, newest first (or oldest first).

    Filters: status, kind, volunteer, and the service's start in [since, until).
    `after_id` is the last id of the previous page, in the order asked for. Served by the
    index (district_id, status, id): the subtree's nodes, one status, ids in order."""
    if status is not None and status not in SERVICE_STATES:
        raise InvalidInputError(
            f"unknown status {status!r}", errors={"status": [f"One of {SERVICE_STATES}."]}
        )
    node = district_info(district)
    # The subtree's ids first, as values: a community's records are then one range of
    # the index (district_id, status, id), read in order. Given as a subquery, PostgreSQL
    # cannot tell that it is one node, and may walk the primary key backwards through
    # every newer record of the other nodes to fill a page.
    nodes = db.session.scalars(
        select(District.id).where(District.path.startswith(node.path, autoescape=True))
    ).all()
    order = ServiceRecord.id.asc() if oldest_first else ServiceRecord.id.desc()
    query = (
        select(ServiceRecord)
        .where(
            ServiceRecord.district_id == nodes[0]
            if len(nodes) == 1
            else ServiceRecord.district_id.in_(nodes)
        )
        .order_by(order)
        .limit(max(1, min(limit, 501)))
    )
    if status is not None:
        query = query.where(ServiceRecord.status == status)
    if kind is not None:
        query = query.where(ServiceRecord.kind == kind)
    if volunteer_id is not None:
        query = query.where(ServiceRecord.volunteer_id == volunteer_id)
    if since is not None:
        query = query.where(ServiceRecord.started_at >= since)
    if until is not None:
        query = query.where(ServiceRecord.started_at < until)
    if after_id is not None:
        query = query.where(
            ServiceRecord.id > after_id if oldest_first else ServiceRecord.id < after_id
        )
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
