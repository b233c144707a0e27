"""Transfers: a volunteer gives points to another (family, a household in need)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from points import ledger
from points.api import idempotency
from points.api.common import Id, Points, allow
from points.auth import current_principal, reach_volunteer, volunteer_path
from points.extensions import db
from points.models import Entry

blp = Blueprint(
    "transfers", __name__, url_prefix="/api/v1/transfers", description="Gifts of points."
)


class TransferCreateSchema(Schema):
    from_volunteer_id = Id(required=True)
    to_volunteer_id = Id(required=True)
    points = Points(required=True)
    memo = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 500))


class TransferSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "The transfer's entry."})
    from_volunteer_id = fields.Integer(required=True)
    to_volunteer_id = fields.Integer(required=True)
    points = fields.Integer(required=True)
    memo = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)


@blp.route("")
class Transfers(MethodView):
    @allow("office", "volunteer", replay=True, who="admin, the giver's office, the giver")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.arguments(TransferCreateSchema)
    @blp.response(201, TransferSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, body):
        """Give points to another volunteer."""
        principal = current_principal()
        reach_volunteer(principal, body["from_volunteer_id"])
        volunteer_path(body["to_volunteer_id"])

        def work() -> dict:
            entry = ledger.transfer(
                body["from_volunteer_id"],
                body["to_volunteer_id"],
                body["points"],
                actor=principal.actor,
                reason=body["memo"] or "transfer",
            )
            created_at = db.session.get(Entry, entry.id).created_at
            return TransferSchema().dump({**body, "id": entry.id, "created_at": created_at})

        return idempotency.idempotent(principal, "transfer", body, work)
