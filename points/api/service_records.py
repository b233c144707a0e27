"""Service records: volunteers' service, approved at once by policy or by the office."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from points import queue, service, volunteers
from points.api import idempotency
from points.api.body import Blueprint
from points.api.common import (
    MAX_INT_ID,
    ROW_ID,
    DecideSchema,
    Id,
    Moment,
    OutcomesSchema,
    UtcDateTime,
    allow,
    decode_cursor,
    encode_cursor,
)
from points.api.districts import district_in_reach
from points.auth import current_principal, reach_volunteer, require_scope
from points.errors import InvalidInputError
from points.extensions import db
from points.ledger import MAX_SERVICE_MINUTES
from points.models import SERVICE_STATES, District

blp = Blueprint(
    "service-records",
    __name__,
    url_prefix="/api/v1/service-records",
    description="Service records and the office's decisions on them.",
)


class ServiceRecordCreateSchema(Schema):
    volunteer_id = Id(required=True)
    kind = fields.String(
        required=True,
        validate=validate.Length(1, 32),
        metadata={"description": "patrol, visit, fix, report, log, checkin (see GET /plugins)."},
    )
    started_at = Moment(required=True)
    minutes = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(1, MAX_SERVICE_MINUTES),
    )
    details = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": "Per kind, as the kind's schema says."},
    )


class AwardSchema(Schema):
    points = fields.Integer(required=True)
    plugin = fields.String(required=True)
    rule = fields.String(required=True)
    reason = fields.String(required=True, metadata={"description": "zh-CN / en"})


class ServiceRecordSchema(Schema):
    id = fields.Integer(required=True)
    volunteer_id = fields.Integer(required=True)
    kind = fields.String(required=True)
    status = fields.String(required=True, metadata={"description": "approved, pending"})
    points = fields.Integer(required=True, metadata={"description": "Points posted so far."})
    awards = fields.List(fields.Nested(AwardSchema), required=True)
    queue_reason = fields.String(
        required=True, allow_none=True, metadata={"description": "Why it waits, if pending."}
    )


class ServiceRecordsQuerySchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "A node: its records and those below. Default: the token's."},
    )
    status = fields.String(load_default=None, validate=validate.OneOf(SERVICE_STATES))
    kind = fields.String(load_default=None, validate=validate.Length(1, 32))
    volunteer_id = fields.Integer(load_default=None, validate=validate.Range(1, MAX_INT_ID))
    since = Moment(load_default=None, metadata={"description": "Service started at or after."})
    until = Moment(load_default=None, metadata={"description": "Service started before."})
    order = fields.String(load_default="newest", validate=validate.OneOf(("newest", "oldest")))
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class ServiceRecordRowSchema(ServiceRecordSchema):
    district = fields.String(required=True, metadata={"description": "The record's node."})
    started_at = UtcDateTime(required=True)
    minutes = fields.Integer(required=True, allow_none=True)
    verified = fields.Boolean(required=True)
    decision_reason = fields.String(required=True, allow_none=True)


class ServiceRecordPageSchema(Schema):
    items = fields.List(fields.Nested(ServiceRecordRowSchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


class DecisionSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    points = fields.Integer(required=True)


class RejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class RecordDecideSchema(DecideSchema):
    decision = fields.String(required=True, validate=validate.OneOf(queue.RECORD_DECISIONS))


class VerifySchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    points = fields.Integer(required=True)
    verified = fields.Boolean(required=True)


def describe_record(record: service.RecordResult) -> dict:
    """Return a service record as the API shows it."""
    return {
        "id": record.id,
        "volunteer_id": record.volunteer_id,
        "kind": record.kind,
        "status": record.status,
        "points": record.points,
        "awards": [
            {
                "points": award["points"],
                "plugin": award["plugin"],
                "rule": award["rule"],
                "reason": f"{award['reason_zh']} / {award['reason_en']}",
            }
            for award in record.awards
        ],
        "queue_reason": record.queue_reason,
    }


def _record_in_reach(principal, record_id: int) -> service.RecordResult:
    record = service.get_record(record_id)
    path = db.session.get(District, record.district_id).path
    require_scope(principal, path, "this service record")
    return record


@blp.route("")
class ServiceRecords(MethodView):
    @allow("office", "auditor", who="admin, office and auditor of the node or above")
    @blp.arguments(ServiceRecordsQuerySchema, location="query")
    @blp.response(200, ServiceRecordPageSchema)
    def get(self, query):
        """List the service records of a node and below, newest or oldest first, by
        status, kind, volunteer and when the service started; page with the cursor."""
        principal = current_principal()
        if query["district"] is None:
            district_id = principal.district_id
        else:
            district_id = district_in_reach(principal, query["district"]).id
        before = decode_cursor(query["cursor"]) if query["cursor"] is not None else None
        found = service.records_of_node(
            district_id,
            status=query["status"],
            kind=query["kind"],
            volunteer_id=query["volunteer_id"],
            since=query["since"],
            until=query["until"],
            oldest_first=query["order"] == "oldest",
            after_id=before,
            limit=query["limit"] + 1,
        )
        page = found[: query["limit"]]
        codes = dict(
            db.session.execute(
                select(District.id, District.code).where(
                    District.id.in_({record.district_id for record in page})
                )
            ).all()
        )
        return {
            "items": [
                {
                    **describe_record(record),
                    "district": codes[record.district_id],
                    "started_at": record.started_at,
                    "minutes": record.minutes,
                    "verified": record.verified,
                    "decision_reason": record.decision_reason,
                }
                for record in page
            ],
            "next_cursor": encode_cursor(page[-1].id) if len(found) > len(page) else None,
        }

    @allow("office", "volunteer", replay=True, who="admin, the volunteer's office, self")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.arguments(ServiceRecordCreateSchema)
    @blp.response(201, ServiceRecordSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, body):
        """Record service; it is approved at once if the approval policy says so."""
        principal = current_principal()
        district_id, _ = reach_volunteer(principal, body["volunteer_id"])

        def work() -> dict:
            # Checked in the work, after a retry was replayed: a policy changed since the
            # first answer does not turn the retry into an error.
            if principal.role == "volunteer" and body["kind"] not in volunteers.volunteer_kinds(
                district_id
            ):
                raise InvalidInputError(
                    f"volunteers do not report {body['kind']!r} themselves here",
                    errors={"kind": ["The office records this kind (approval.volunteer_kinds)."]},
                )
            record = service.record_service(
                body["volunteer_id"],
                body["kind"],
                body["started_at"],
                body["minutes"],
                body["details"],
                actor=principal.actor,
            )
            return ServiceRecordSchema().dump(describe_record(record))

        return idempotency.idempotent(principal, "record_service", body, work, one_write=True)


@blp.route(f"/<{ROW_ID}:record_id>/approve")
class ServiceRecordApprove(MethodView):
    @allow("office", replay=True, who="admin, the record's office")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.response(200, DecisionSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, record_id):
        """Approve a pending record: post its awards and count its minutes."""
        principal = current_principal()
        _record_in_reach(principal, record_id)

        def work() -> dict:
            record = service.approve(record_id, principal.actor)
            return DecisionSchema().dump(
                {"id": record.id, "status": record.status, "points": record.points}
            )

        return idempotency.idempotent(
            principal, "approve_record", {"record_id": record_id}, work, status=200
        )


@blp.route(f"/<{ROW_ID}:record_id>/reject")
class ServiceRecordReject(MethodView):
    @allow("office", who="admin, the record's office")
    @blp.arguments(RejectSchema)
    @blp.response(200, DecisionSchema)
    def post(self, body, record_id):
        """Reject a pending record with a reason; nothing is posted."""
        principal = current_principal()
        _record_in_reach(principal, record_id)
        record = service.reject(record_id, principal.actor, body["reason"])
        return {"id": record.id, "status": record.status, "points": record.points}


@blp.route("/decide")
class ServiceRecordsDecide(MethodView):
    @allow("office", who="admin, the records' office")
    @blp.arguments(RecordDecideSchema)
    @blp.response(200, OutcomesSchema)
    def post(self, body):
        """Approve, reject (with a reason) or mark verified many records: each in its own
        unit, so one that cannot be decided (409 decided already, 403 out of reach, 404)
        says why in its result and leaves the others decided."""
        outcomes = queue.decide_records(
            current_principal(), body["ids"], body["decision"], body["reason"]
        )
        return {"results": [outcome.as_dict() for outcome in outcomes]}


@blp.route(f"/<{ROW_ID}:record_id>/verify")
class ServiceRecordVerify(MethodView):
    @allow("office", who="admin, the record's office")
    @blp.response(200, VerifySchema)
    def post(self, record_id):
        """Mark a record (a report) verified by the office; an approved one earns the
        bonus verification adds (the steward plugin's verified bonus), once."""
        principal = current_principal()
        _record_in_reach(principal, record_id)
        record = service.mark_verified(record_id, principal.actor)
        return {
            "id": record.id,
            "status": record.status,
            "points": record.points,
            "verified": record.verified,
        }
