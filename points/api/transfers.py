"""Transfers: a volunteer gives points to family or a household in need, under policy."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from points import redemptions
from points.api import idempotency
from points.api.common import Id, Points, allow
from points.auth import current_principal, reach_volunteer, volunteer_path
from points.extensions import db
from points.models import Entry, TransferRequest

blp = Blueprint(
    "transfers", __name__, url_prefix="/api/v1/transfers", description="Gifts of points."
)


class TransferCreateSchema(Schema):
    from_volunteer_id = Id(required=True)
    to_volunteer_id = Id(required=True)
    points = Points(required=True)
    memo = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 500))
    relation = fields.String(
        load_default="family",
        validate=validate.Length(1, 32),
        metadata={
            "description": (
                "family, household_in_need or other: the transfers policy decides what each "
                "may give, and whether the office approves first."
            )
        },
    )


class TransferSchema(Schema):
    id = fields.Integer(
        required=True, allow_none=True, metadata={"description": "The entry, once posted."}
    )
    status = fields.String(
        required=True, metadata={"description": "posted, or pending the office's approval"}
    )
    request_id = fields.Integer(
        required=True, allow_none=True, metadata={"description": "The request, if pending."}
    )
    from_volunteer_id = fields.Integer(required=True)
    to_volunteer_id = fields.Integer(required=True)
    points = fields.Integer(required=True)
    relation = fields.String(required=True)
    memo = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)


@blp.route("")
class Transfers(MethodView):
    @allow("office", "volunteer", replay=True, who="admin, the giver's office, the giver")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.arguments(TransferCreateSchema)
    @blp.response(201, TransferSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, body):
        """Give points to another volunteer (posted at once, or pending the office)."""
        principal = current_principal()
        reach_volunteer(principal, body["from_volunteer_id"])
        volunteer_path(body["to_volunteer_id"])

        def work() -> dict:
            gift = redemptions.give_points(
                body["from_volunteer_id"],
                body["to_volunteer_id"],
                body["points"],
                body["relation"],
                actor=principal.actor,
                reason=body["memo"] or "赠送积分 / a gift of points",
            )
            if gift.entry_id is not None:
                created_at = db.session.get(Entry, gift.entry_id).created_at
            else:
                created_at = db.session.get(TransferRequest, gift.request_id).created_at
            return TransferSchema().dump(
                {
                    **body,
                    "id": gift.entry_id,
                    "status": gift.status,
                    "request_id": gift.request_id,
                    "created_at": created_at,
                }
            )

        return idempotency.idempotent(principal, "transfer", body, work)
