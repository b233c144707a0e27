"""Activities (points.activities): offices post, edit, cancel and close activities of
their node, sign volunteers up and check them in and out, show the rotating QR code and
read the attendance list; a volunteer signs themselves up, withdraws, scans the code and
lists their activities; auditors read."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import request
from flask.views import MethodView
from marshmallow import RAISE, Schema, fields, validate

from points import activities, report_files
from points.api.body import Blueprint
from points.api.common import (
    ROW_ID,
    Id,
    Moment,
    UtcDateTime,
    allow,
    decode_cursor,
    encode_cursor,
)
from points.api.districts import district_in_reach
from points.auth import Principal, current_principal, reach_volunteer, require_scope
from points.errors import ForbiddenError, InvalidInputError, PreconditionFailedError
from points.models import ACTIVITY_STATES
from points.policy import district_info

blp = Blueprint(
    "activities",
    __name__,
    url_prefix="/api/v1/activities",
    description="Activities of a node: sign-up, on-site check-in and out, attendance.",
)

PAGE_MAX = 200


def _text(longest: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(1, longest), **kwargs)


def _activity_fields(required: bool) -> dict[str, fields.Field]:
    """The fields an office writes: all of the required ones to post, any to edit."""
    needed = {"required": True} if required else {}
    return {
        "title_zh": _text(activities.TITLE_MAX, **needed),
        "title_en": _text(activities.TITLE_MAX, **needed),
        "description_zh": fields.String(validate=validate.Length(0, activities.DESCRIPTION_MAX)),
        "description_en": fields.String(validate=validate.Length(0, activities.DESCRIPTION_MAX)),
        "place": _text(activities.PLACE_MAX, **needed),
        "starts_at": Moment(**needed),
        "ends_at": Moment(**needed, metadata={"description": "At most 24 hours after the start."}),
        "kind": _text(
            32,
            **needed,
            metadata={"description": "An activity kind (GET /plugins), not once-a-day."},
        ),
        "record_details": fields.Dict(
            keys=fields.String(),
            metadata={"description": "The details each record carries, per the kind's schema."},
        ),
        "places": fields.Integer(
            strict=True, validate=validate.Range(1, activities.PLACES_MAX), **needed
        ),
        "min_star_level": fields.Integer(
            strict=True, validate=validate.Range(0, activities.STAR_LEVEL_MAX)
        ),
        "signup_until": Moment(
            **needed, metadata={"description": "Sign-up closes then; by the end."}
        ),
        "extra": fields.Dict(
            keys=fields.String(),
            metadata={"description": "Fields plugins add (activity_fields), by name."},
        ),
    }


ActivityCreateSchema = type(
    "ActivityCreateSchema",
    (Schema,),
    {
        **_activity_fields(required=True),
        "district": fields.String(
            load_default=None,
            validate=validate.Length(1, 64),
            metadata={"description": "The node it is for. Default: the token's."},
        ),
        "__doc__": "An activity to post.",
    },
)

ActivityPatchSchema = type(
    "ActivityPatchSchema",
    (Schema,),
    {
        **_activity_fields(required=False),
        "version": fields.Integer(
            strict=True,
            validate=validate.Range(1, 2**31 - 1),
            metadata={"description": "The version read (or send If-Match): 409 when stale."},
        ),
        "__doc__": "Any of an activity's fields, to change.",
    },
)


class ActivitySchema(Schema):
    id = fields.Integer(required=True)
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    title_zh = fields.String(required=True)
    title_en = fields.String(required=True)
    description_zh = fields.String(required=True)
    description_en = fields.String(required=True)
    place = fields.String(required=True)
    starts_at = UtcDateTime(required=True)
    ends_at = UtcDateTime(required=True)
    kind = fields.String(required=True)
    record_details = fields.Dict(required=True)
    places = fields.Integer(required=True)
    signed_count = fields.Integer(required=True)
    min_star_level = fields.Integer(required=True)
    signup_until = UtcDateTime(required=True)
    status = fields.String(required=True, metadata={"description": "open, cancelled, closed"})
    cancelled_reason = fields.String(required=True, allow_none=True)
    cancelled_at = UtcDateTime(required=True, allow_none=True)
    closed_at = UtcDateTime(required=True, allow_none=True)
    extra = fields.Dict(required=True)
    created_by = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    version = fields.Integer(required=True, metadata={"description": "Also the ETag."})


class ActivityListQuerySchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "This node and below. Default: the token's."},
    )
    status = fields.String(load_default=None, validate=validate.OneOf(ACTIVITY_STATES))
    since = Moment(load_default=None, metadata={"description": "Starting at or after."})
    until = Moment(load_default=None, metadata={"description": "Starting before."})
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, PAGE_MAX))


class ActivityPageSchema(Schema):
    items = fields.List(fields.Nested(ActivitySchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


class ActivitySignupSchema(Schema):
    activity_id = fields.Integer(required=True)
    volunteer_id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"description": "signed, withdrawn"})
    signed_by = fields.String(required=True)
    signed_at = UtcDateTime(required=True)
    withdrawn_at = UtcDateTime(required=True, allow_none=True)
    checked_in_at = UtcDateTime(required=True, allow_none=True)
    checked_in_by = fields.String(required=True, allow_none=True)
    checked_in_via = fields.String(required=True, allow_none=True)
    checked_out_at = UtcDateTime(required=True, allow_none=True)
    checked_out_by = fields.String(required=True, allow_none=True)
    checked_out_via = fields.String(required=True, allow_none=True)
    service_record_id = fields.Integer(required=True, allow_none=True)
    minutes = fields.Integer(
        required=True, allow_none=True, metadata={"description": "null until a record exists."}
    )


class ActivityMineItemSchema(Schema):
    activity = fields.Nested(ActivitySchema, required=True)
    signup = fields.Nested(ActivitySignupSchema, required=True, allow_none=True)


class ActivityMineSchema(Schema):
    items = fields.List(fields.Nested(ActivityMineItemSchema), required=True)


class ActivityVolunteerSchema(Schema):
    volunteer_id = Id(
        load_default=None,
        metadata={"description": "Who; a volunteer's own token may leave it out."},
    )


class ActivityOnSiteSchema(Schema):
    volunteer_id = Id(required=True)


class ActivityCancelSchema(Schema):
    reason = _text(activities.REASON_MAX, required=True)


class ActivityQrSchema(Schema):
    code = fields.String(required=True)
    scan_url = fields.String(
        required=True, metadata={"description": "Relative: the volunteer's scan page."}
    )
    window_seconds = fields.Integer(required=True)
    valid_until = UtcDateTime(
        required=True, metadata={"description": "Accepted until then (this window and next)."}
    )


class ActivityScanSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(1, 64))


class ActivityScanResultSchema(Schema):
    way = fields.String(required=True, metadata={"description": "in, out"})
    signup = fields.Nested(ActivitySignupSchema, required=True)


class ActivityAttendanceQuerySchema(Schema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "csv", "xlsx")),
        metadata={"description": "json, or the list as a csv or xlsx download."},
    )


class ActivityAttendanceRowSchema(Schema):
    volunteer_id = fields.Integer(required=True)
    name = fields.String(required=True)
    card_code_masked = fields.String(required=True)
    state = fields.String(
        required=True, metadata={"description": "signed, here, left, no_show, withdrawn"}
    )
    record_status = fields.String(required=True, allow_none=True)
    points = fields.Integer(required=True)
    signup = fields.Nested(ActivitySignupSchema, required=True)


class ActivityAttendanceSchema(Schema):
    activity = fields.Nested(ActivitySchema, required=True)
    items = fields.List(fields.Nested(ActivityAttendanceRowSchema), required=True)


class ActivityCloseSchema(Schema):
    activity = fields.Nested(ActivitySchema, required=True)
    records_made = fields.Integer(
        required=True, metadata={"description": "Pending records for who never checked out."}
    )
    no_shows = fields.Integer(required=True)
    refused = fields.List(
        fields.Dict(),
        required=True,
        metadata={"description": "Volunteers whose record was refused, and why."},
    )


def _shown(info: activities.ActivityInfo) -> dict[str, Any]:
    shown = asdict(info)
    shown["district"] = info.district_code
    return shown


def _etag(info: activities.ActivityInfo) -> dict[str, str]:
    return {"ETag": f'"{info.version}"'}


def _actor() -> str:
    from points import audit

    return audit.current_actor().actor


def _activity_in_reach(principal: Principal, activity_id: int) -> activities.ActivityInfo:
    """The activity, if the principal's node holds the activity's node. Raises 404, 403."""
    info = activities.get_activity(activity_id)
    require_scope(principal, district_info(info.district_id).path, "this activity")
    return info


def _volunteer_may_see(principal: Principal, info: activities.ActivityInfo) -> None:
    """A volunteer reads an activity of their node or one above it."""
    node = district_info(info.district_id)
    if principal.role == "volunteer":
        if not principal.path.startswith(node.path):
            raise ForbiddenError("this activity is not for your community")
        return
    require_scope(principal, node.path, "this activity")


def _volunteer_in_reach(principal: Principal, volunteer_id: int | None) -> int:
    """Whom a sign-up is for: a volunteer's token only for themselves; an office for a
    volunteer of its node or below. Raises 403, 404, 422."""
    if principal.role == "volunteer":
        if volunteer_id not in (None, principal.volunteer_id):
            raise ForbiddenError("a volunteer token signs up only its own volunteer")
        return principal.volunteer_id
    if volunteer_id is None:
        raise InvalidInputError("volunteer_id is required", errors={"volunteer_id": ["Required."]})
    reach_volunteer(principal, volunteer_id)
    return volunteer_id


def _if_match() -> int | None:
    value = request.headers.get("If-Match")
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 10:
        raise PreconditionFailedError(
            "If-Match must be the ETag a read of this activity gave",
            errors={"If-Match": ["Not an ETag of this activity."]},
        )
    return int(tag)


@blp.route("")
class Activities(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(ActivityListQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, ActivityPageSchema)
    def get(self, query):
        """The activities of a node and below, by start then id."""
        principal = current_principal()
        node = principal.district_id
        if query["district"] is not None:
            node = district_in_reach(principal, query["district"]).id
        limit = query["limit"]
        items = activities.activities_of_node(
            node,
            status=query["status"],
            since=query["since"],
            until=query["until"],
            limit=limit,
            after_id=decode_cursor(query["cursor"]) if query["cursor"] else None,
        )
        last = items[-1].id if len(items) == limit else None
        return {
            "items": [_shown(info) for info in items],
            "next_cursor": encode_cursor(last) if last is not None else None,
        }

    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(ActivityCreateSchema)
    @blp.response(201, ActivitySchema)
    def post(self, body):
        """Post an open activity for a node (422: a message per field, record_details.<f>
        and extra.<f> included)."""
        principal = current_principal()
        node = principal.district_id
        district = body.pop("district")
        if district is not None:
            node = district_in_reach(principal, district).id
        info = activities.post_activity(node, **body, actor=_actor())
        return _shown(info), 201, _etag(info)


@blp.route("/mine")
class MyActivities(MethodView):
    @allow("volunteer", admin=False, who="a volunteer's own token")
    @blp.response(200, ActivityMineSchema)
    def get(self):
        """The volunteer's activities, soonest first: open ones of their node and above
        they may join, and every one they signed up for (cancelled ones too)."""
        principal = current_principal()
        found = activities.activities_for_volunteer(principal.volunteer_id)
        return {
            "items": [
                {"activity": _shown(info), "signup": asdict(signup) if signup else None}
                for info, signup in found
            ]
        }


@blp.route(f"/<{ROW_ID}:activity_id>")
class ActivityOne(MethodView):
    @allow(
        "office",
        "auditor",
        "volunteer",
        who="admin, offices and auditors of the node or above, volunteers of the node or below",
    )
    @blp.response(200, ActivitySchema)
    def get(self, activity_id):
        """One activity, its version as the ETag."""
        info = activities.get_activity(activity_id)
        _volunteer_may_see(current_principal(), info)
        return _shown(info), 200, _etag(info)

    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(ActivityPatchSchema)
    @blp.response(200, ActivitySchema)
    def patch(self, body, activity_id):
        """Change some fields of an open activity (412: If-Match is stale; 409: the
        body's version is stale, or it is closed or cancelled, or the times, kind and
        details once someone checked in; 422: places below those signed up)."""
        _activity_in_reach(current_principal(), activity_id)
        header = _if_match()
        version = body.pop("version", None)
        try:
            info = activities.edit_activity(
                activity_id,
                changes=body,
                expected_version=header if header is not None else version,
                actor=_actor(),
            )
        except activities.StaleVersionError as error:
            if header is None:
                raise
            raise PreconditionFailedError(error.detail, errors=error.errors) from None
        return _shown(info), 200, _etag(info)


@blp.route(f"/<{ROW_ID}:activity_id>/cancel")
class ActivityCancel(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(ActivityCancelSchema)
    @blp.response(200, ActivitySchema)
    def post(self, body, activity_id):
        """Cancel an open activity nobody checked in to; the signed-up see it with the
        reason (409 once someone checked in: close it instead)."""
        _activity_in_reach(current_principal(), activity_id)
        return _shown(
            activities.cancel_activity(activity_id, reason=body["reason"], actor=_actor())
        )


@blp.route(f"/<{ROW_ID}:activity_id>/signups")
class ActivitySignups(MethodView):
    @allow("office", "volunteer", who="admin, an office of the node or above, the volunteer")
    @blp.arguments(ActivityVolunteerSchema)
    @blp.response(201, ActivitySignupSchema)
    def post(self, body, activity_id):
        """Sign a volunteer up (409: full, sign-up closed, not open, star level too low;
        403: not under the activity's node). Signing up twice answers the sign-up."""
        principal = current_principal()
        info = activities.get_activity(activity_id)
        if principal.role != "volunteer":
            require_scope(principal, district_info(info.district_id).path, "this activity")
        volunteer_id = _volunteer_in_reach(principal, body["volunteer_id"])
        return asdict(activities.sign_up(activity_id, volunteer_id, actor=_actor()))


@blp.route(f"/<{ROW_ID}:activity_id>/signups/<{ROW_ID}:volunteer_id>/withdraw")
class ActivityWithdraw(MethodView):
    @allow("office", "volunteer", who="admin, an office of the node or above, the volunteer")
    @blp.response(200, ActivitySignupSchema)
    def post(self, activity_id, volunteer_id):
        """Withdraw a sign-up, before the deadline and before check-in (409 otherwise)."""
        principal = current_principal()
        info = activities.get_activity(activity_id)
        if principal.role != "volunteer":
            require_scope(principal, district_info(info.district_id).path, "this activity")
        volunteer_id = _volunteer_in_reach(principal, volunteer_id)
        return asdict(activities.withdraw(activity_id, volunteer_id, actor=_actor()))


@blp.route(f"/<{ROW_ID}:activity_id>/qr")
class ActivityQr(MethodView):
    @allow("office", who="admin, or an office (the organiser) of the node or above")
    @blp.response(200, ActivityQrSchema)
    def get(self, activity_id):
        """The rotating code of the current 30 s window, for the organiser's screen (409
        when the activity is not open). Never cache it."""
        from datetime import UTC, datetime

        _activity_in_reach(current_principal(), activity_id)
        now = datetime.now(UTC)
        code = activities.qr_code(activity_id, now=now)
        window = int(now.timestamp()) // activities.QR_WINDOW_SECONDS
        # Accepted in this window and the next one.
        valid_until = datetime.fromtimestamp((window + 2) * activities.QR_WINDOW_SECONDS, UTC)
        return (
            {
                "code": code,
                "scan_url": f"/me/activities/{activity_id}/scan?c={code}",
                "window_seconds": activities.QR_WINDOW_SECONDS,
                "valid_until": valid_until,
            },
            200,
            {"Cache-Control": "no-store"},
        )


@blp.route(f"/<{ROW_ID}:activity_id>/scan")
class ActivityScan(MethodView):
    @allow("volunteer", admin=False, who="a volunteer's own token, signed up")
    @blp.arguments(ActivityScanSchema)
    @blp.response(200, ActivityScanResultSchema)
    def post(self, body, activity_id):
        """The volunteer scanned the code: check in (first scan) or out (second; makes
        the service record). 409: the code is old or wrong, not signed up, outside the
        check-in or check-out window."""
        principal = current_principal()
        _volunteer_may_see(principal, activities.get_activity(activity_id))
        way, signup = activities.scan(
            activity_id, principal.volunteer_id, body["code"], actor=_actor()
        )
        return {"way": way, "signup": asdict(signup)}


@blp.route(f"/<{ROW_ID}:activity_id>/check-in")
class ActivityCheckIn(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(ActivityOnSiteSchema)
    @blp.response(200, ActivitySignupSchema)
    def post(self, body, activity_id):
        """Check a signed-up volunteer in, from 30 minutes before the start to the end."""
        _activity_in_reach(current_principal(), activity_id)
        return asdict(
            activities.check_in(activity_id, body["volunteer_id"], actor=_actor(), via="office")
        )


@blp.route(f"/<{ROW_ID}:activity_id>/check-out")
class ActivityCheckOut(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(ActivityOnSiteSchema)
    @blp.response(200, ActivitySignupSchema)
    def post(self, body, activity_id):
        """Check a volunteer out and make their service record (min(real, scheduled)
        minutes, through the earning rules and approval policy); a second check-out
        answers the first."""
        _activity_in_reach(current_principal(), activity_id)
        return asdict(
            activities.check_out(activity_id, body["volunteer_id"], actor=_actor(), via="office")
        )


@blp.route(f"/<{ROW_ID}:activity_id>/attendance")
class ActivityAttendance(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(ActivityAttendanceQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, ActivityAttendanceSchema)
    @blp.alt_response(
        200, description="The list (format=csv).", content_type="text/csv", success=True
    )
    @blp.alt_response(
        200,
        description="The list (format=xlsx).",
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        success=True,
    )
    def get(self, query, activity_id):
        """Who signed up, who is here, who left, no-shows; each with their record's
        status and points. Names in full, card codes masked."""
        info = _activity_in_reach(current_principal(), activity_id)
        if query["format"] != "json":
            return report_files.attachment(
                activities.attendance_tables(activity_id),
                query["format"],
                f"attendance-{activity_id}",
            )
        rows = activities.attendance(activity_id)
        return {
            "activity": _shown(info),
            "items": [{**asdict(row), "signup": asdict(row.signup)} for row in rows],
        }


@blp.route(f"/<{ROW_ID}:activity_id>/close")
class ActivityClose(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.response(200, ActivityCloseSchema)
    def post(self, activity_id):
        """Close the activity (409 before its start: cancel instead): who checked in and
        never out gets a record of the scheduled minutes, pending for the office."""
        _activity_in_reach(current_principal(), activity_id)
        result = activities.close_activity(activity_id, actor=_actor())
        return {
            "activity": _shown(result.activity),
            "records_made": result.records_made,
            "no_shows": result.no_shows,
            "refused": [{"volunteer_id": v, "reason": r} for v, r in result.refused],
        }
