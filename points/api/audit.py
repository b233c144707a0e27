"""The audit log: who changed what, where, when and from where."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from points import audit, directory
from points.api.body import Blueprint
from points.api.common import Moment, UtcDateTime, allow, decode_cursor, encode_cursor
from points.auth import current_principal

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="The audit log.")


class AuditQuerySchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "Only this node and below."},
    )
    action = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "An action (volunteer.edit) or its group (volunteer)."},
    )
    actor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "staff:3, office:12, cli:root..."},
    )
    target_type = fields.String(load_default=None, validate=validate.Length(1, 32))
    target_id = fields.String(load_default=None, validate=validate.Length(1, 64))
    since = Moment(load_default=None)
    until = Moment(load_default=None)
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))


class AuditEventSchema(Schema):
    id = fields.Integer(required=True)
    at = UtcDateTime(required=True)
    actor = fields.String(required=True)
    actor_name = fields.String(required=True, allow_none=True)
    action = fields.String(required=True)
    target_type = fields.String(required=True, allow_none=True)
    target_id = fields.String(required=True, allow_none=True)
    district = fields.String(required=True, allow_none=True)
    ip = fields.String(required=True, allow_none=True)
    request_id = fields.String(required=True, allow_none=True)
    before = fields.Dict(
        required=True, allow_none=True, metadata={"description": "Changed fields, before."}
    )
    after = fields.Dict(
        required=True, allow_none=True, metadata={"description": "Changed fields, after."}
    )


class AuditPageSchema(Schema):
    items = fields.List(fields.Nested(AuditEventSchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


@blp.route("")
class AuditLog(MethodView):
    @allow("office", "auditor", who="admin (all), office and auditor (their node and below)")
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditPageSchema)
    def get(self, query):
        """Read the audit log, newest first, with filters and a cursor."""
        principal = current_principal()
        path = directory.district_by_code(query["district"]).path if query["district"] else None
        rows = audit.events(
            principal,
            audit.Filters(
                district_path=path,
                action=query["action"],
                actor=query["actor"],
                target_type=query["target_type"],
                target_id=query["target_id"],
                since=query["since"],
                until=query["until"],
            ),
            before=decode_cursor(query["cursor"]) if query["cursor"] else None,
            limit=query["limit"] + 1,
        )
        page, more = rows[: query["limit"]], len(rows) > query["limit"]
        codes = directory.codes_of({row.district_id for row in page if row.district_id})
        return {
            "items": [
                {**audit.as_dict(row), "district": codes.get(row.district_id)} for row in page
            ],
            "next_cursor": encode_cursor(page[-1].id) if more else None,
        }
