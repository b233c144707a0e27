"""Activities: an office posts an event for a node, volunteers sign up, check in and out
on site (by the rotating QR code, a card, or the office), and check-out makes the
service record through the service layer.

Public (the contract the pages and the API share): ActivityInfo, SignupInfo,
AttendanceRow, CloseResult; post_activity, edit_activity, cancel_activity,
get_activity, activities_of_node, activities_for_volunteer, sign_up, withdraw,
qr_code, scan_url, check_qr, check_in, check_out, scan, attendance, close_activity,
close_due, attendance_rows_for_export; and extra_fields / attendance_tables for pages
and downloads.

The rules:
- No over-booking: a sign-up locks the activity's row (FOR UPDATE on PostgreSQL; on
  SQLite `ledger.atomic` holds the database's write lock, so writers take turns),
  counts the signed and writes only below `places`.
- The QR code is HMAC(SECRET_KEY, qr_salt + ":" + window) over 30 s windows, cut to a
  short URL-safe code; a scan is accepted for the current or the previous window only,
  so a photo sent home stops working within a minute. Cancel and close draw a new salt.
- Check-in from CHECK_IN_EARLY before the start until the end; check-out until
  CHECK_OUT_LATE after the end. Check-out calls `points.service.record_service` with the
  key "activity:<id>:<volunteer>" and min(real, scheduled) minutes, so earning rules,
  caps and the approval policy apply as for any record and a retried check-out posts
  once. Closing gives everyone checked in but never checked out a record of the
  scheduled minutes queued for the office (NO_CHECKOUT).
- The record's details are the activity's `record_details`, checked against the kind's
  details schema when the activity is posted or edited: a kind whose schema needs
  details the activity does not give is refused then, not at check-out. A once-a-day
  kind (the daily check-in) cannot be an activity's kind.
- Plugins add fields to an activity (`activity_fields`, stored in `extra`) and hear of
  a close (`attendance_closed`), see docs/plugins.md.
Every change writes an audit row ("activity.<verb>") in its own unit of work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from marshmallow import Schema
from marshmallow import ValidationError as SchemaError
from marshmallow import fields as ma_fields
from sqlalchemy import and_, func, or_, select

from points import audit, ledger
from points.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PluginError,
    PointsError,
)
from points.extensions import db
from points.models import (
    Activity,
    ActivitySignup,
    District,
    ServiceRecord,
    Volunteer,
    utcnow,
)
from points.plugins import DistrictInfo, activity_kinds, call_each, plugin_manager
from points.policy import district_info, resolve_policy

log = logging.getLogger(__name__)

QR_WINDOW_SECONDS = 30
QR_CODE_LENGTH = 12
CHECK_IN_EARLY = timedelta(minutes=30)
CHECK_OUT_LATE = timedelta(hours=2)
# The closing job closes an activity this long after its end (after the check-out
# window, so that nobody loses their check-out to the job).
CLOSE_GRACE = CHECK_OUT_LATE
LONGEST = timedelta(hours=24)
TITLE_MAX = 200
PLACE_MAX = 200
DESCRIPTION_MAX = 5000
REASON_MAX = 500
PLACES_MAX = 10_000
STAR_LEVEL_MAX = 10
# Past activities a volunteer's list still shows, so that a cancellation is seen.
SHOWN_AFTER_END = timedelta(days=30)
NO_CHECKOUT = ("未签退，按计划时长", "no check-out: scheduled minutes")
VIAS = ("qr", "card", "office")
EDITABLE = (
    "title_zh",
    "title_en",
    "description_zh",
    "description_en",
    "place",
    "starts_at",
    "ends_at",
    "kind",
    "record_details",
    "places",
    "min_star_level",
    "signup_until",
    "extra",
)
# Fields that describe the service itself: fixed once anyone has checked in.
SERVICE_FIELDS = ("starts_at", "ends_at", "kind", "record_details")


@dataclass(frozen=True)
class ActivityInfo:
    id: int
    district_id: int
    district_code: str
    title_zh: str
    title_en: str
    description_zh: str
    description_en: str
    place: str
    starts_at: datetime
    ends_at: datetime
    kind: str
    places: int
    min_star_level: int
    signup_until: datetime
    status: str  # "open" | "cancelled" | "closed"
    cancelled_reason: str | None
    extra: dict
    signed_count: int
    created_by: str
    created_at: datetime
    version: int
    # Beyond the contract: the details every record of the activity carries, the node's
    # name, and when it was cancelled or closed.
    record_details: dict | None = None
    district_name: str = ""
    cancelled_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def scheduled_minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)

    @property
    def places_left(self) -> int:
        return max(self.places - self.signed_count, 0)

    @property
    def full(self) -> bool:
        return self.signed_count >= self.places


@dataclass(frozen=True)
class SignupInfo:
    activity_id: int
    volunteer_id: int
    status: str  # "signed" | "withdrawn"
    signed_by: str
    signed_at: datetime
    withdrawn_at: datetime | None
    checked_in_at: datetime | None
    checked_in_by: str | None
    checked_out_at: datetime | None
    checked_out_by: str | None
    service_record_id: int | None
    minutes: int | None  # None until a record exists
    # Beyond the contract: how the volunteer checked in and out ("qr", "card", "office").
    checked_in_via: str | None = None
    checked_out_via: str | None = None


@dataclass(frozen=True)
class AttendanceRow:
    volunteer_id: int
    name: str
    card_code_masked: str
    signup: SignupInfo
    state: str  # "signed" | "here" | "left" | "no_show" | "withdrawn"
    record_status: str | None  # None | "pending" | "approved" | "rejected"
    points: int


@dataclass(frozen=True)
class CloseResult:
    activity: ActivityInfo
    records_made: int
    no_shows: int
    # Volunteers whose record the service layer refused (a closed account, say), with
    # the reason: the office sees them, the close goes on.
    refused: tuple[tuple[int, str], ...] = ()


class StaleVersionError(ConflictError):
    """An edit named a version of the activity that is no longer its newest (409; the
    API answers 412 when the version came in If-Match)."""

    title = "Changed since read"


# -- reading -----------------------------------------------------------------------------


def _signed_counts(activity_ids: list[int]) -> dict[int, int]:
    if not activity_ids:
        return {}
    rows = db.session.execute(
        select(ActivitySignup.activity_id, func.count())
        .where(ActivitySignup.activity_id.in_(activity_ids), ActivitySignup.status == "signed")
        .group_by(ActivitySignup.activity_id)
    )
    return {activity_id: count for activity_id, count in rows}


def _info(row: Activity, signed: int, node: DistrictInfo | None = None) -> ActivityInfo:
    node = node or district_info(row.district_id)
    return ActivityInfo(
        id=row.id,
        district_id=row.district_id,
        district_code=node.code,
        title_zh=row.title_zh,
        title_en=row.title_en,
        description_zh=row.description_zh,
        description_en=row.description_en,
        place=row.place,
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        kind=row.kind,
        places=row.places,
        min_star_level=row.min_star_level,
        signup_until=row.signup_until,
        status=row.status,
        cancelled_reason=row.cancelled_reason,
        extra=dict(row.extra or {}),
        signed_count=signed,
        created_by=row.created_by,
        created_at=row.created_at,
        version=row.version,
        record_details=dict(row.record_details or {}),
        district_name=node.name,
        cancelled_at=row.cancelled_at,
        closed_at=row.closed_at,
    )


def _infos(rows: list[Activity]) -> list[ActivityInfo]:
    counts = _signed_counts([row.id for row in rows])
    return [_info(row, counts.get(row.id, 0)) for row in rows]


def _signup_info(row: ActivitySignup, minutes: int | None = None) -> SignupInfo:
    return SignupInfo(
        activity_id=row.activity_id,
        volunteer_id=row.volunteer_id,
        status=row.status,
        signed_by=row.signed_by,
        signed_at=row.signed_at,
        withdrawn_at=row.withdrawn_at,
        checked_in_at=row.checked_in_at,
        checked_in_by=row.checked_in_by,
        checked_out_at=row.checked_out_at,
        checked_out_by=row.checked_out_by,
        service_record_id=row.service_record_id,
        minutes=minutes,
        checked_in_via=row.checked_in_via,
        checked_out_via=row.checked_out_via,
    )


def _signup_with_minutes(row: ActivitySignup) -> SignupInfo:
    minutes = None
    if row.service_record_id is not None:
        minutes = db.session.scalar(
            select(ServiceRecord.minutes).where(ServiceRecord.id == row.service_record_id)
        )
    return _signup_info(row, minutes)


def _row(activity_id: int, *, lock: bool = False) -> Activity:
    if isinstance(activity_id, bool) or not isinstance(activity_id, int):
        raise NotFoundError(f"no activity {activity_id!r}")
    query = select(Activity).where(Activity.id == activity_id)
    row = db.session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFoundError(f"no activity {activity_id}")
    return row


def get_activity(activity_id: int) -> ActivityInfo:
    """The activity with its count of signed-up volunteers. Raises NotFoundError."""
    row = _row(activity_id)
    return _info(row, _signed_counts([row.id]).get(row.id, 0))


def activities_of_node(
    district: int | str | DistrictInfo,
    *,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> list[ActivityInfo]:
    """The activities of the node and every node below it, by start (then id); `since`
    and `until` bound the start, `after_id` continues a page after that activity."""
    node = district_info(district)
    if status is not None and status not in ("open", "cancelled", "closed"):
        raise InvalidInputError("unknown status", errors={"status": ["open, cancelled, closed."]})
    query = (
        select(Activity)
        .join(District, District.id == Activity.district_id)
        .where(District.path.startswith(node.path, autoescape=True))
    )
    if status is not None:
        query = query.where(Activity.status == status)
    if since is not None:
        query = query.where(Activity.starts_at >= since)
    if until is not None:
        query = query.where(Activity.starts_at < until)
    if after_id is not None:
        after = db.session.get(Activity, after_id)
        if after is not None:
            query = query.where(
                or_(
                    Activity.starts_at > after.starts_at,
                    and_(Activity.starts_at == after.starts_at, Activity.id > after.id),
                )
            )
    rows = list(db.session.scalars(query.order_by(Activity.starts_at, Activity.id).limit(limit)))
    return _infos(rows)


def _volunteer(volunteer_id: int) -> Volunteer:
    row = (
        db.session.get(Volunteer, volunteer_id)
        if isinstance(volunteer_id, int) and not isinstance(volunteer_id, bool)
        else None
    )
    if row is None:
        raise NotFoundError(
            f"no volunteer {volunteer_id!r}", errors={"volunteer_id": ["No such volunteer."]}
        )
    return row


def _star_level_of(volunteer: Volunteer) -> int:
    from points.service import star_level

    return star_level(int(volunteer.service_minutes), volunteer.district_id)


def activities_for_volunteer(
    volunteer_id: int, *, now: datetime | None = None
) -> list[tuple[ActivityInfo, SignupInfo | None]]:
    """What the volunteer's page lists, soonest first: the open activities of their node
    and its ancestors they may still join (sign-up open, star level high enough; full
    ones too, shown as full), and every activity they signed up for or withdrew from
    that ended less than SHOWN_AFTER_END ago, whatever its status (so a cancellation is
    seen)."""
    now = now or utcnow()
    volunteer = _volunteer(volunteer_id)
    node = district_info(volunteer.district_id)
    level = _star_level_of(volunteer)
    joinable = select(Activity).where(
        Activity.district_id.in_(node.ancestor_ids),
        Activity.status == "open",
        Activity.signup_until > now,
        Activity.min_star_level <= level,
    )
    signed_rows = {
        row.activity_id: row
        for row in db.session.scalars(
            select(ActivitySignup)
            .join(Activity, Activity.id == ActivitySignup.activity_id)
            .where(
                ActivitySignup.volunteer_id == volunteer.id,
                Activity.ends_at > now - SHOWN_AFTER_END,
            )
        )
    }
    rows = {row.id: row for row in db.session.scalars(joinable)}
    if signed_rows:
        missing = [i for i in signed_rows if i not in rows]
        if missing:
            rows.update(
                (row.id, row)
                for row in db.session.scalars(select(Activity).where(Activity.id.in_(missing)))
            )
    ordered = sorted(rows.values(), key=lambda row: (row.starts_at, row.id))
    infos = _infos(ordered)
    return [
        (
            info,
            _signup_with_minutes(signed_rows[info.id]) if info.id in signed_rows else None,
        )
        for info in infos
    ]


# -- checking what an office writes ------------------------------------------------------


def _text(errors: dict, name: str, value: Any, longest: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        errors[name] = ["Must be text."]
        return ""
    value = value.strip()
    if required and not value:
        errors[name] = ["Required."]
    elif len(value) > longest:
        errors[name] = [f"At most {longest} characters."]
    return value


def _moment(errors: dict, name: str, value: Any) -> datetime | None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        errors[name] = ["Give a time with a UTC offset."]
        return None
    return value


def _whole(errors: dict, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        errors[name] = [f"A whole number from {low} to {high}."]
        return low
    return value


def _flat(messages: Any, prefix: str) -> dict[str, list[str]]:
    if isinstance(messages, Mapping):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            out.update(_flat(value, f"{prefix}.{key}"))
        return out
    return {prefix: [str(m) for m in messages] if isinstance(messages, list) else [str(messages)]}


def extra_fields(district: int | str | DistrictInfo) -> dict[str, ma_fields.Field]:
    """The fields plugins enabled at the node add to an activity (`activity_fields`), by
    name; a field's metadata may carry label_zh and label_en for the pages. Raises
    PluginError when a plugin answers something other than fields or a Schema class, or
    two plugins add a field of the same name."""
    node = district_info(district)
    pm = plugin_manager()
    policy = resolve_policy(node)
    found: dict[str, ma_fields.Field] = {}
    owners: dict[str, str] = {}
    answers = call_each(
        pm,
        "activity_fields",
        {"district": node},
        enabled=policy.enabled,
        config_for=policy.config,
    )
    for name, answer in answers:
        if isinstance(answer, type) and issubclass(answer, Schema):
            added = dict(answer().fields)
        elif isinstance(answer, Mapping) and all(
            isinstance(k, str) and isinstance(v, ma_fields.Field) for k, v in answer.items()
        ):
            added = dict(answer)
        else:
            raise PluginError(
                f"plugin {name!r} returned something other than fields from activity_fields",
                plugin=name,
                hook="activity_fields",
            )
        for field_name, field in added.items():
            if field_name in found:
                raise PluginError(
                    f"plugins {owners[field_name]!r} and {name!r} both add {field_name!r}",
                    plugin=name,
                    hook="activity_fields",
                )
            found[field_name] = field
            owners[field_name] = name
    return found


def _load_extra(errors: dict, node: DistrictInfo, extra: Any) -> dict:
    if extra is None:
        extra = {}
    if not isinstance(extra, Mapping):
        errors["extra"] = ["Must be an object."]
        return {}
    schema = Schema.from_dict(extra_fields(node), name="ActivityExtra")()
    try:
        loaded = schema.load(dict(extra))
    except SchemaError as error:
        errors.update(_flat(error.messages, "extra"))
        return {}
    return json.loads(json.dumps(loaded, default=str))


def _load_kind(errors: dict, node: DistrictInfo, kind: Any, details: Any) -> dict:
    pm = plugin_manager()
    policy = resolve_policy(node)
    kinds = {
        name: spec
        for name, spec in activity_kinds(pm).items()
        if policy.enabled(spec.plugin) and not spec.once_per_day
    }
    spec = kinds.get(kind) if isinstance(kind, str) else None
    if spec is None:
        errors["kind"] = [f"Unknown kind; one of {', '.join(sorted(kinds))}."]
        return {}
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        errors["record_details"] = ["Must be an object."]
        return {}
    try:
        loaded = spec.schema().load(dict(details))
    except SchemaError as error:
        errors.update(_flat(error.messages, "record_details"))
        return {}
    return json.loads(json.dumps(loaded, default=str))


def _checked(node: DistrictInfo, values: dict[str, Any], signed: int = 0) -> dict[str, Any]:
    """Check an activity's fields as a whole; return them cleaned. Raises
    InvalidInputError with a message per field."""
    errors: dict[str, list[str]] = {}
    clean = {
        "title_zh": _text(errors, "title_zh", values.get("title_zh"), TITLE_MAX),
        "title_en": _text(errors, "title_en", values.get("title_en"), TITLE_MAX),
        "description_zh": _text(
            errors, "description_zh", values.get("description_zh"), DESCRIPTION_MAX, required=False
        ),
        "description_en": _text(
            errors, "description_en", values.get("description_en"), DESCRIPTION_MAX, required=False
        ),
        "place": _text(errors, "place", values.get("place"), PLACE_MAX),
        "starts_at": _moment(errors, "starts_at", values.get("starts_at")),
        "ends_at": _moment(errors, "ends_at", values.get("ends_at")),
        "signup_until": _moment(errors, "signup_until", values.get("signup_until")),
        "places": _whole(errors, "places", values.get("places"), 1, PLACES_MAX),
        "min_star_level": _whole(
            errors, "min_star_level", values.get("min_star_level", 0), 0, STAR_LEVEL_MAX
        ),
    }
    clean["record_details"] = _load_kind(
        errors, node, values.get("kind"), values.get("record_details")
    )
    clean["kind"] = values.get("kind")
    clean["extra"] = _load_extra(errors, node, values.get("extra"))
    starts, ends, until = clean["starts_at"], clean["ends_at"], clean["signup_until"]
    if starts and ends and "ends_at" not in errors:
        if ends <= starts:
            errors["ends_at"] = ["Must be after the start."]
        elif ends - starts > LONGEST:
            errors["ends_at"] = ["An activity lasts at most 24 hours."]
        elif ends - starts < timedelta(minutes=1):
            errors["ends_at"] = ["An activity lasts at least a minute."]
    if until and ends and "signup_until" not in errors and until > ends:
        errors["signup_until"] = ["Sign-up must close by the end."]
    if "places" not in errors and clean["places"] < signed:
        errors["places"] = [f"{signed} are signed up: at least {signed}."]
    if errors:
        raise InvalidInputError("invalid activity", errors=errors)
    return clean


def _who(actor: str) -> audit.Actor:
    if not isinstance(actor, str) or not actor.strip():
        raise InvalidInputError("actor is required", errors={"actor": ["Must not be empty."]})
    current = audit.current_actor()
    if current.actor == actor:
        return current
    return audit.Actor(actor, None, current.ip, current.request_id)


def _audited(info_or_row: Activity) -> dict[str, Any]:
    row = info_or_row
    return {
        "title_zh": row.title_zh,
        "title_en": row.title_en,
        "place": row.place,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
        "kind": row.kind,
        "places": row.places,
        "min_star_level": row.min_star_level,
        "signup_until": row.signup_until,
        "status": row.status,
        "version": row.version,
    }


# -- the office's writes -----------------------------------------------------------------


def post_activity(
    district: int | str | DistrictInfo,
    *,
    title_zh: str,
    title_en: str,
    description_zh: str = "",
    description_en: str = "",
    place: str,
    starts_at: datetime,
    ends_at: datetime,
    kind: str,
    places: int,
    min_star_level: int = 0,
    signup_until: datetime,
    extra: Mapping[str, Any] | None = None,
    record_details: Mapping[str, Any] | None = None,
    actor: str,
) -> ActivityInfo:
    """Post an open activity for the node. Raises InvalidInputError (a message per
    field: titles, place, times, kind, record_details.<field>, places, min_star_level,
    extra.<field>), NotFoundError (the node)."""
    node = district_info(district)
    who = _who(actor)
    clean = _checked(
        node,
        {
            "title_zh": title_zh,
            "title_en": title_en,
            "description_zh": description_zh,
            "description_en": description_en,
            "place": place,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "kind": kind,
            "record_details": record_details,
            "places": places,
            "min_star_level": min_star_level,
            "signup_until": signup_until,
            "extra": extra,
        },
    )

    def work() -> int:
        row = Activity(
            district_id=node.id,
            status="open",
            qr_salt=secrets.token_hex(16),
            version=1,
            created_by=who.actor[:200],
            created_at=utcnow(),
            **clean,
        )
        db.session.add(row)
        db.session.flush()
        audit.record(
            "activity.post",
            district_id=node.id,
            target=("activity", row.id),
            after=_audited(row),
            actor=who,
        )
        return row.id

    return get_activity(ledger.atomic(work))


def edit_activity(
    activity_id: int,
    *,
    changes: Mapping[str, Any],
    expected_version: int | None,
    actor: str,
) -> ActivityInfo:
    """Change an open activity's fields (any of EDITABLE); the version bumps. Raises
    ConflictError (a stale `expected_version`, a closed or cancelled activity, the
    service's own fields once someone checked in), InvalidInputError (unknown fields, bad
    values, places below the signed-up count), NotFoundError."""
    who = _who(actor)
    if not isinstance(changes, Mapping):
        raise InvalidInputError("changes must be an object", errors={"changes": ["Bad."]})
    unknown = sorted(str(key) for key in changes if key not in EDITABLE)
    if unknown:
        raise InvalidInputError(
            "unknown fields", errors={key: ["Unknown field."] for key in unknown}
        )

    def work() -> None:
        row = _row(activity_id, lock=True)
        if expected_version is not None and expected_version != row.version:
            raise StaleVersionError(
                f"activity {row.id} changed since it was read (now version {row.version})",
                errors={"version": [f"Now {row.version}: read it again."]},
            )
        if row.status != "open":
            raise ConflictError(f"activity {row.id} is {row.status}: it cannot be edited")
        node = district_info(row.district_id)
        current = {name: getattr(row, name) for name in EDITABLE}
        merged = {**current, **changes}
        signed = _signed_counts([row.id]).get(row.id, 0)
        clean = _checked(node, merged, signed)
        changed = {name for name in EDITABLE if clean[name] != current[name]}
        if not changed:
            return
        if changed & set(SERVICE_FIELDS) and _anyone_checked_in(row.id):
            raise ConflictError(
                "someone has checked in: the times, kind and details are fixed",
                errors={name: ["Fixed once someone has checked in."] for name in changed},
            )
        before = _audited(row)
        for name in changed:
            setattr(row, name, clean[name])
        row.version += 1
        db.session.flush()
        old, new = audit.changed(before, _audited(row))
        audit.record(
            "activity.edit",
            district_id=row.district_id,
            target=("activity", row.id),
            before=old,
            after={**new, "fields": sorted(changed)},
            actor=who,
        )

    ledger.atomic(work)
    return get_activity(activity_id)


def _anyone_checked_in(activity_id: int) -> bool:
    return (
        db.session.scalar(
            select(ActivitySignup.id)
            .where(
                ActivitySignup.activity_id == activity_id,
                ActivitySignup.checked_in_at.is_not(None),
            )
            .limit(1)
        )
        is not None
    )


def cancel_activity(activity_id: int, *, reason: str, actor: str) -> ActivityInfo:
    """Cancel an open activity nobody has checked in to; the signed-up see it on their
    page with the reason. Raises InvalidInputError (reason), ConflictError (not open,
    or someone checked in: close it instead), NotFoundError."""
    who = _who(actor)
    errors: dict = {}
    reason = _text(errors, "reason", reason, REASON_MAX)
    if errors:
        raise InvalidInputError("a reason is required", errors=errors)

    def work() -> None:
        row = _row(activity_id, lock=True)
        if row.status != "open":
            raise ConflictError(f"activity {row.id} is already {row.status}")
        if _anyone_checked_in(row.id):
            raise ConflictError(
                "someone has checked in: close the activity instead of cancelling it"
            )
        row.status = "cancelled"
        row.cancelled_reason = reason
        row.cancelled_at = utcnow()
        row.qr_salt = secrets.token_hex(16)
        row.version += 1
        db.session.flush()
        audit.record(
            "activity.cancel",
            district_id=row.district_id,
            target=("activity", row.id),
            before={"status": "open"},
            after={"status": "cancelled", "reason": reason, "version": row.version},
            actor=who,
        )

    ledger.atomic(work)
    return get_activity(activity_id)


# -- signing up --------------------------------------------------------------------------


def _under(node: DistrictInfo, volunteer: Volunteer) -> bool:
    return district_info(volunteer.district_id).path.startswith(node.path)


def _signup_row(activity_id: int, volunteer_id: int) -> ActivitySignup | None:
    return db.session.scalar(
        select(ActivitySignup).where(
            ActivitySignup.activity_id == activity_id,
            ActivitySignup.volunteer_id == volunteer_id,
        )
    )


def sign_up(
    activity_id: int, volunteer_id: int, *, actor: str, now: datetime | None = None
) -> SignupInfo:
    """Sign the volunteer up (again, after a withdrawal); signing up twice returns the
    sign-up as it is. Raises ConflictError (full, sign-up closed, cancelled or closed,
    star level too low, an inactive volunteer), ForbiddenError (the volunteer is not
    under the activity's node), NotFoundError."""
    who = _who(actor)

    def work() -> ActivitySignup:
        moment = now or utcnow()
        row = _row(activity_id, lock=True)
        volunteer = _volunteer(volunteer_id)
        node = district_info(row.district_id)
        if not _under(node, volunteer):
            raise ForbiddenError(
                "the volunteer is not under the activity's node",
                errors={"volunteer_id": ["Not in the activity's community."]},
            )
        existing = _signup_row(row.id, volunteer.id)
        if existing is not None and existing.status == "signed":
            return existing
        if row.status != "open":
            raise ConflictError(f"the activity is {row.status}")
        if moment > row.signup_until:
            raise ConflictError("sign-up has closed", errors={"signup_until": ["Passed."]})
        if volunteer.status != "active":
            raise ConflictError(f"volunteer {volunteer.id} is not active")
        level = _star_level_of(volunteer)
        if level < row.min_star_level:
            raise ConflictError(
                f"star level {row.min_star_level} or above may sign up (this volunteer: {level})",
                errors={"min_star_level": [f"Needs {row.min_star_level} stars; has {level}."]},
            )
        signed = _signed_counts([row.id]).get(row.id, 0)
        if signed >= row.places:
            raise ConflictError(
                "the activity is full", errors={"places": [f"All {row.places} places taken."]}
            )
        if existing is None:
            existing = ActivitySignup(activity_id=row.id, volunteer_id=volunteer.id)
            db.session.add(existing)
        existing.status = "signed"
        existing.signed_by = who.actor[:200]
        existing.signed_at = moment
        existing.withdrawn_at = None
        db.session.flush()
        audit.record(
            "activity.signup",
            district_id=row.district_id,
            target=("activity", row.id),
            after={"volunteer_id": volunteer.id, "signed": signed + 1, "places": row.places},
            actor=who,
        )
        return existing

    return _signup_with_minutes(ledger.atomic(work))


def withdraw(
    activity_id: int, volunteer_id: int, *, actor: str, now: datetime | None = None
) -> SignupInfo:
    """Withdraw a sign-up, before the sign-up deadline and before check-in. Raises
    ConflictError (too late, checked in, not signed up, not open), NotFoundError."""
    who = _who(actor)

    def work() -> ActivitySignup:
        moment = now or utcnow()
        row = _row(activity_id, lock=True)
        signup = _signup_row(row.id, volunteer_id)
        if signup is None or signup.status != "signed":
            raise ConflictError("not signed up for this activity")
        if row.status != "open":
            raise ConflictError(f"the activity is {row.status}")
        if signup.checked_in_at is not None:
            raise ConflictError("already checked in: it is too late to withdraw")
        if moment > row.signup_until:
            raise ConflictError(
                "sign-up has closed: ask the office to withdraw you",
                errors={"signup_until": ["Passed."]},
            )
        signup.status = "withdrawn"
        signup.withdrawn_at = moment
        db.session.flush()
        audit.record(
            "activity.withdraw",
            district_id=row.district_id,
            target=("activity", row.id),
            after={"volunteer_id": signup.volunteer_id},
            actor=who,
        )
        return signup

    return _signup_with_minutes(ledger.atomic(work))


# -- the rotating QR code ----------------------------------------------------------------


def _window(now: datetime) -> int:
    return int(now.timestamp()) // QR_WINDOW_SECONDS


def _code(salt: str, window: int) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    digest = hmac.new(key, f"{salt}:{window}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:QR_CODE_LENGTH]


def qr_code(activity_id: int, *, now: datetime | None = None) -> str:
    """The code of the current 30 s window. Raises NotFoundError, ConflictError (the
    activity is not open)."""
    row = _row(activity_id)
    if row.status != "open":
        raise ConflictError(f"the activity is {row.status}: it has no code")
    return _code(row.qr_salt, _window(now or utcnow()))


def scan_url(activity_id: int, *, now: datetime | None = None) -> str:
    """The relative URL the QR code holds: the volunteer's scan page with the code."""
    return f"/me/activities/{activity_id}/scan?c={qr_code(activity_id, now=now)}"


def _code_ok(row: Activity, code: Any, now: datetime) -> bool:
    if row.status != "open" or not isinstance(code, str) or len(code) != QR_CODE_LENGTH:
        return False
    window = _window(now)
    return any(
        hmac.compare_digest(code.encode(), _code(row.qr_salt, w).encode())
        for w in (window, window - 1)
    )


def check_qr(activity_id: int, code: str, *, now: datetime | None = None) -> bool:
    """Whether `code` is the activity's code of the current or the previous window."""
    return _code_ok(_row(activity_id), code, now or utcnow())


# -- on site -----------------------------------------------------------------------------


def _via(via: Any) -> str:
    if via not in VIAS:
        raise InvalidInputError("unknown via", errors={"via": [f"One of {', '.join(VIAS)}."]})
    return via


def _signed_up(row: Activity, volunteer_id: int) -> ActivitySignup:
    signup = _signup_row(row.id, volunteer_id)
    if signup is None or signup.status != "signed":
        raise ConflictError(
            "not signed up for this activity",
            errors={"volunteer_id": ["Not signed up for this activity."]},
        )
    return signup


def _check_in(row: Activity, volunteer_id: int, who: audit.Actor, via: str, moment: datetime):
    if row.status != "open":
        raise ConflictError(f"the activity is {row.status}")
    signup = _signed_up(row, volunteer_id)
    if signup.checked_in_at is not None:
        return signup
    if moment < row.starts_at - CHECK_IN_EARLY:
        raise ConflictError("check-in opens 30 minutes before the start")
    if moment > row.ends_at:
        raise ConflictError("the activity has ended: check-in is closed")
    signup.checked_in_at = moment
    signup.checked_in_by = who.actor[:200]
    signup.checked_in_via = via
    db.session.flush()
    audit.record(
        "activity.checkin",
        district_id=row.district_id,
        target=("activity", row.id),
        after={"volunteer_id": volunteer_id, "via": via},
        actor=who,
    )
    return signup


def check_in(
    activity_id: int,
    volunteer_id: int,
    *,
    actor: str,
    via: str,
    now: datetime | None = None,
) -> SignupInfo:
    """Check a signed-up volunteer in (again: returns the check-in as it is), from 30
    minutes before the start until the end. Raises ConflictError, InvalidInputError
    (via), NotFoundError."""
    who, via = _who(actor), _via(via)

    def work() -> ActivitySignup:
        return _check_in(_row(activity_id, lock=True), volunteer_id, who, via, now or utcnow())

    return _signup_with_minutes(ledger.atomic(work))


def _record(
    row: Activity,
    signup: ActivitySignup,
    minutes: int,
    who: audit.Actor,
    review: tuple[str, str] | None = None,
):
    from points.service import record_service

    return record_service(
        signup.volunteer_id,
        row.kind,
        signup.checked_in_at,
        minutes=minutes,
        details=dict(row.record_details or {}),
        actor=who.actor,
        idempotency_key=f"activity:{row.id}:{signup.volunteer_id}",
        review_reason=review,
    )


def _scheduled(row: Activity) -> int:
    return int((row.ends_at - row.starts_at).total_seconds() // 60)


def _check_out(row: Activity, volunteer_id: int, who: audit.Actor, via: str, moment: datetime):
    if row.status != "open":
        raise ConflictError(f"the activity is {row.status}")
    signup = _signed_up(row, volunteer_id)
    if signup.checked_out_at is not None:
        return signup  # a retried check-out: the record was made once
    if signup.checked_in_at is None:
        raise ConflictError("not checked in")
    if moment > row.ends_at + CHECK_OUT_LATE:
        raise ConflictError("check-out closed two hours after the end")
    real = int((moment - max(signup.checked_in_at, row.starts_at)).total_seconds() // 60)
    minutes = min(real, _scheduled(row))
    if minutes < 1:
        raise ConflictError(
            "less than a minute of the activity has passed since check-in: nothing to record"
        )
    record = _record(row, signup, minutes, who)
    signup.checked_out_at = moment
    signup.checked_out_by = who.actor[:200]
    signup.checked_out_via = via
    signup.service_record_id = record.id
    db.session.flush()
    audit.record(
        "activity.checkout",
        district_id=row.district_id,
        target=("activity", row.id),
        after={
            "volunteer_id": volunteer_id,
            "via": via,
            "minutes": minutes,
            "record_id": record.id,
            "record_status": record.status,
        },
        actor=who,
    )
    return signup


def check_out(
    activity_id: int,
    volunteer_id: int,
    *,
    actor: str,
    via: str,
    now: datetime | None = None,
) -> SignupInfo:
    """Check a volunteer out and make their service record: min(real, scheduled)
    minutes (real counted from the later of check-in and start), through
    record_service with the key "activity:<id>:<volunteer>", in the same unit of work.
    A second check-out returns the first. Raises ConflictError (not checked in, too
    late, under a minute), InvalidInputError, NotFoundError, and what record_service
    raises."""
    who, via = _who(actor), _via(via)

    def work() -> ActivitySignup:
        return _check_out(_row(activity_id, lock=True), volunteer_id, who, via, now or utcnow())

    return _signup_with_minutes(ledger.atomic(work))


def scan(
    activity_id: int,
    volunteer_id: int,
    code: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> tuple[str, SignupInfo]:
    """A volunteer scanned the QR code: check the code, then check them in (first scan)
    or out (second scan). Returns ("in" | "out", sign-up). Raises ConflictError (a code
    too old or wrong: errors on "code"; and what check-in and check-out raise)."""
    who = _who(actor)

    def work() -> tuple[str, ActivitySignup]:
        moment = now or utcnow()
        row = _row(activity_id, lock=True)
        if not _code_ok(row, code, moment):
            raise ConflictError(
                "the code is old or wrong: scan the code on the screen again",
                errors={"code": ["Expired or wrong: scan again."]},
            )
        signup = _signed_up(row, volunteer_id)
        if signup.checked_in_at is None:
            return "in", _check_in(row, volunteer_id, who, "qr", moment)
        return "out", _check_out(row, volunteer_id, who, "qr", moment)

    way, signup = ledger.atomic(work)
    return way, _signup_with_minutes(signup)


# -- attendance --------------------------------------------------------------------------


def mask_card(code: str) -> str:
    """A card code with all but its last four characters hidden."""
    code = code or ""
    return "*" * max(len(code) - 4, 0) + code[-4:]


def _state(row: Activity, signup: ActivitySignup, now: datetime) -> str:
    if signup.status == "withdrawn":
        return "withdrawn"
    if signup.checked_out_at is not None:
        return "left"
    if signup.checked_in_at is not None:
        return "here"
    if row.status == "closed" or now > row.ends_at:
        return "no_show"
    return "signed"


def attendance(activity_id: int) -> list[AttendanceRow]:
    """Everyone who signed up (or withdrew), by name: their state, their record's status
    and points."""
    row = _row(activity_id)
    now = utcnow()
    found = db.session.execute(
        select(
            ActivitySignup,
            Volunteer.name,
            Volunteer.card_code,
            ServiceRecord.status,
            ServiceRecord.points,
            ServiceRecord.minutes,
        )
        .join(Volunteer, Volunteer.id == ActivitySignup.volunteer_id)
        .outerjoin(ServiceRecord, ServiceRecord.id == ActivitySignup.service_record_id)
        .where(ActivitySignup.activity_id == row.id)
        .order_by(Volunteer.name, Volunteer.id)
    ).all()
    return [
        AttendanceRow(
            volunteer_id=signup.volunteer_id,
            name=name,
            card_code_masked=mask_card(card),
            signup=_signup_info(signup, minutes),
            state=_state(row, signup, now),
            record_status=status,
            points=int(points or 0),
        )
        for signup, name, card, status, points, minutes in found
    ]


STATE_LABELS = {
    "signed": ("已报名", "signed up"),
    "here": ("已签到", "here"),
    "left": ("已签退", "left"),
    "no_show": ("未到", "no-show"),
    "withdrawn": ("已退出", "withdrawn"),
}
RECORD_LABELS = {
    "pending": ("待审核", "pending"),
    "approved": ("已批准", "approved"),
    "rejected": ("已驳回", "rejected"),
}
EXPORT_HEADERS = (
    ("volunteer_id", "志愿者编号", "Volunteer id"),
    ("name", "姓名", "Name"),
    ("card", "卡号", "Card"),
    ("state", "状态", "State"),
    ("signed_at", "报名时间", "Signed up"),
    ("checked_in_at", "签到时间", "Checked in"),
    ("checked_in_via", "签到方式", "Checked in by"),
    ("checked_out_at", "签退时间", "Checked out"),
    ("minutes", "服务分钟", "Minutes"),
    ("record_status", "记录状态", "Record"),
    ("points", "积分", "Points"),
)


def _header(zh: str, en: str) -> str:
    return f"{zh} / {en}"


def attendance_rows_for_export(activity_id: int) -> Iterator[dict[str, Any]]:
    """The attendance list as rows keyed by "中文 / English" headers, times in the
    node's zone (YYYY-MM-DD HH:MM)."""
    from zoneinfo import ZoneInfo

    row = _row(activity_id)
    zone = ZoneInfo(district_info(row.district_id).timezone)

    def local(moment: datetime | None) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M") if moment else ""

    for line in attendance(activity_id):
        signup = line.signup
        state = STATE_LABELS[line.state]
        record = RECORD_LABELS.get(line.record_status or "")
        values = {
            "volunteer_id": line.volunteer_id,
            "name": line.name,
            "card": line.card_code_masked,
            "state": _header(*state),
            "signed_at": local(signup.signed_at),
            "checked_in_at": local(signup.checked_in_at),
            "checked_in_via": signup.checked_in_via or "",
            "checked_out_at": local(signup.checked_out_at),
            "minutes": signup.minutes if signup.minutes is not None else "",
            "record_status": _header(*record) if record else "",
            "points": line.points,
        }
        yield {_header(zh, en): values[key] for key, zh, en in EXPORT_HEADERS}


def attendance_tables(activity_id: int) -> list:
    """The attendance list as a `points.report_files.Table`, for report_files.attachment
    (CSV or XLSX)."""
    from points.report_files import Table

    info = get_activity(activity_id)
    headers = tuple(_header(zh, en) for _, zh, en in EXPORT_HEADERS)
    rows = [tuple(line[h] for h in headers) for line in attendance_rows_for_export(activity_id)]
    # The English title names the XLSX sheet: no []:*?/\ there.
    title_en = "".join(" " if c in "[]:*?/\\" else c for c in info.title_en)
    return [Table(f"签到表：{info.title_zh}", f"Attendance - {title_en}", headers, rows)]


# -- closing -----------------------------------------------------------------------------


class _NotOpen(ConflictError):
    """The activity was closed or cancelled by someone else during a close."""


def close_activity(activity_id: int, *, actor: str, now: datetime | None = None) -> CloseResult:
    """Close an activity once it has started: everyone checked in and never checked out
    gets a record of the scheduled minutes, queued for the office with the reason
    NO_CHECKOUT whatever the approval policy says (each in a unit of work of its own,
    keyed "activity:<id>:<volunteer>", so a close that stops half way is run again
    safely); then the activity is closed, its QR code dies, and plugins hear of it
    (`attendance_closed`, after the commit; a failing plugin is logged, the close
    stands). Raises ConflictError (not open, not started yet: cancel it instead),
    NotFoundError."""
    who = _who(actor)
    moment = now or utcnow()
    row = _row(activity_id)
    if row.status != "open":
        raise ConflictError(f"the activity is already {row.status}")
    if moment < row.starts_at:
        raise ConflictError("the activity has not started: cancel it instead")
    pending = list(
        db.session.scalars(
            select(ActivitySignup.volunteer_id).where(
                ActivitySignup.activity_id == row.id,
                ActivitySignup.status == "signed",
                ActivitySignup.checked_in_at.is_not(None),
                ActivitySignup.checked_out_at.is_(None),
                ActivitySignup.service_record_id.is_(None),
            )
        )
    )
    made = 0
    refused: list[tuple[int, str]] = []
    for volunteer_id in pending:

        def unrecorded(volunteer_id: int = volunteer_id) -> bool:
            locked = _row(activity_id, lock=True)
            if locked.status != "open":
                raise _NotOpen(f"the activity is already {locked.status}")
            signup = _signup_row(locked.id, volunteer_id)
            if signup is None or signup.checked_out_at or signup.service_record_id:
                return False  # checked out meanwhile
            record = _record(locked, signup, _scheduled(locked), who, NO_CHECKOUT)
            signup.service_record_id = record.id
            db.session.flush()
            audit.record(
                "activity.no_checkout",
                district_id=locked.district_id,
                target=("activity", locked.id),
                after={
                    "volunteer_id": volunteer_id,
                    "minutes": _scheduled(locked),
                    "record_id": record.id,
                    "record_status": record.status,
                },
                actor=who,
            )
            return True

        try:
            made += bool(ledger.atomic(unrecorded))
        except _NotOpen:
            raise
        except (ConflictError, InvalidInputError, NotFoundError) as error:
            # The service layer refused this one record (a closed account, a kind
            # turned off since): the office sees it in the result and the audit row.
            refused.append((volunteer_id, error.detail))

    def work() -> tuple[list[int], int]:
        locked = _row(activity_id, lock=True)
        if locked.status != "open":
            raise ConflictError(f"the activity is already {locked.status}")
        signups = list(
            db.session.scalars(
                select(ActivitySignup).where(
                    ActivitySignup.activity_id == locked.id, ActivitySignup.status == "signed"
                )
            )
        )
        attended = sorted(s.volunteer_id for s in signups if s.checked_in_at is not None)
        no_shows = sum(1 for s in signups if s.checked_in_at is None)
        locked.status = "closed"
        locked.closed_at = moment
        locked.qr_salt = secrets.token_hex(16)
        locked.version += 1
        db.session.flush()
        audit.record(
            "activity.close",
            district_id=locked.district_id,
            target=("activity", locked.id),
            before={"status": "open"},
            after={
                "status": "closed",
                "attended": len(attended),
                "no_shows": no_shows,
                "records_made": made,
                "refused": [volunteer for volunteer, _ in refused],
            },
            actor=who,
        )
        return attended, no_shows

    attended, no_shows = ledger.atomic(work)
    info = get_activity(activity_id)
    _tell_closed(info, attended)
    return CloseResult(info, made, no_shows, tuple(refused))


def _tell_closed(info: ActivityInfo, attended: list[int]) -> None:
    """Call `attendance_closed` on the plugins enabled at the activity's node; the
    answers are ignored, a failing plugin is logged."""
    pm = plugin_manager()
    try:
        policy = resolve_policy(info.district_id)
        call_each(
            pm,
            "attendance_closed",
            {"activity": info, "attended": tuple(attended)},
            enabled=policy.enabled,
            config_for=policy.config,
        )
    except PointsError:
        log.exception("attendance_closed failed for activity %s", info.id)
    finally:
        # Whatever a plugin read (or left half written) ends here, not in the caller.
        if not ledger.in_unit_of_work():
            db.session.rollback()


def close_due(*, now: datetime | None = None, actor: str = "system") -> int:
    """Close every open activity that ended more than CLOSE_GRACE ago; return how many
    were closed (`points activities close-due`, from cron). One that fails is logged
    and left for the next run."""
    moment = now or utcnow()
    due = list(
        db.session.scalars(
            select(Activity.id)
            .where(Activity.status == "open", Activity.ends_at < moment - CLOSE_GRACE)
            .order_by(Activity.ends_at, Activity.id)
        )
    )
    db.session.rollback()
    closed = 0
    for activity_id in due:
        try:
            close_activity(activity_id, actor=actor, now=moment)
        except ConflictError:
            continue  # closed by someone else meanwhile
        except PointsError:
            log.exception("closing activity %s failed", activity_id)
            continue
        closed += 1
    return closed
