"""Transfers: a volunteer gives points to family or a household in need, under policy.

Gifts the policy sends to the office wait as requests, which the office lists, approves
(the gift is posted then) or rejects.
"""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import RAISE, Schema, fields, validate

from points import queue, redemptions
from points.api import idempotency
from points.api.body import Blueprint
from points.api.common import (
    ROW_ID,
    DecideSchema,
    Id,
    OutcomesSchema,
    Points,
    UtcDateTime,
    allow,
    decode_cursor,
    encode_cursor,
)
from points.api.districts import district_in_reach
from points.auth import current_principal, reach_volunteer, require_scope, volunteer_path
from points.extensions import db
from points.models import TRANSFER_REQUEST_STATES, District, Entry, TransferRequest

blp = Blueprint(
    "transfers",
    __name__,
    url_prefix="/api/v1/transfers",
    description="Gifts of points, and the office's decisions on those that wait for it.",
)


class TransferCreateSchema(Schema):
    from_volunteer_id = Id(required=True)
    to_volunteer_id = Id(required=True)
    points = Points(required=True)
    memo = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 500))
    relation = fields.String(
        load_default="family",
        validate=validate.OneOf(redemptions.RELATIONS),
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
    created_at = UtcDateTime(required=True)


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


class TransferRequestsQuerySchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "A node: its requests and those below. Default: the token's."},
    )
    status = fields.String(load_default=None, validate=validate.OneOf(TRANSFER_REQUEST_STATES))
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class TransferRequestSchema(Schema):
    id = fields.Integer(required=True)
    district = fields.String(required=True, metadata={"description": "The giver's node."})
    from_volunteer_id = fields.Integer(required=True)
    to_volunteer_id = fields.Integer(required=True)
    points = fields.Integer(required=True)
    relation = fields.String(required=True)
    memo = fields.String(required=True, metadata={"description": "The giver's reason."})
    status = fields.String(required=True, metadata={"description": "pending, approved, rejected"})
    requested_by = fields.String(required=True, metadata={"description": "Who asked."})
    created_at = UtcDateTime(required=True)
    decided_at = UtcDateTime(required=True, allow_none=True)
    decided_by = fields.String(required=True, allow_none=True)
    decision_reason = fields.String(required=True, allow_none=True)
    entry_id = fields.Integer(
        required=True, allow_none=True, metadata={"description": "The gift's entry, once approved."}
    )


class TransferRequestPageSchema(Schema):
    items = fields.List(fields.Nested(TransferRequestSchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


class TransferRejectSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, 500))


class GiftDecideSchema(DecideSchema):
    decision = fields.String(required=True, validate=validate.OneOf(queue.GIFT_DECISIONS))


def describe_request(found: redemptions.TransferRequestInfo) -> dict:
    """Return a gift request as the API shows it."""
    return {
        "id": found.id,
        "district": found.district,
        "from_volunteer_id": found.from_volunteer_id,
        "to_volunteer_id": found.to_volunteer_id,
        "points": found.points,
        "relation": found.relation,
        "memo": found.reason,
        "status": found.status,
        "requested_by": found.actor,
        "created_at": found.created_at,
        "decided_at": found.decided_at,
        "decided_by": found.decided_by,
        "decision_reason": found.decision_reason,
        "entry_id": found.entry_id,
    }


def _request_in_reach(principal, request_id: int) -> None:
    found = redemptions.get_transfer_request(request_id)
    path = db.session.get(District, found.district_id).path
    require_scope(principal, path, "this transfer request")


@blp.route("/requests")
class TransferRequests(MethodView):
    @allow("office", "auditor", who="admin, office and auditor of the node or above")
    @blp.arguments(TransferRequestsQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, TransferRequestPageSchema)
    def get(self, query):
        """List the gift requests of a node and below, newest first; page with the cursor."""
        principal = current_principal()
        if query["district"] is None:
            district_id = principal.district_id
        else:
            district_id = district_in_reach(principal, query["district"]).id
        before = decode_cursor(query["cursor"]) if query["cursor"] is not None else None
        found = redemptions.list_transfer_requests(
            district_id, status=query["status"], before_id=before, limit=query["limit"] + 1
        )
        page = found[: query["limit"]]
        return {
            "items": [describe_request(row) for row in page],
            "next_cursor": encode_cursor(page[-1].id) if len(found) > len(page) else None,
        }


@blp.route(f"/requests/<{ROW_ID}:request_id>/approve")
class TransferRequestApprove(MethodView):
    @allow("office", replay=True, who="admin, the giver's office")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.response(200, TransferRequestSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, request_id):
        """Approve a pending gift: post it now (409 if the giver no longer has the points)."""
        principal = current_principal()
        _request_in_reach(principal, request_id)

        def work() -> dict:
            redemptions.approve_transfer(request_id, principal.actor)
            found = redemptions.get_transfer_request(request_id)
            return TransferRequestSchema().dump(describe_request(found))

        return idempotency.idempotent(
            principal, "approve_transfer", {"request_id": request_id}, work, status=200
        )


@blp.route(f"/requests/<{ROW_ID}:request_id>/reject")
class TransferRequestReject(MethodView):
    @allow("office", who="admin, the giver's office")
    @blp.arguments(TransferRejectSchema)
    @blp.response(200, TransferRequestSchema)
    def post(self, body, request_id):
        """Reject a pending gift with a reason; nothing moves."""
        principal = current_principal()
        _request_in_reach(principal, request_id)
        redemptions.reject_transfer(request_id, principal.actor, body["reason"])
        return describe_request(redemptions.get_transfer_request(request_id))


@blp.route("/requests/decide")
class TransferRequestsDecide(MethodView):
    @allow("office", who="admin, the givers' office")
    @blp.arguments(GiftDecideSchema)
    @blp.response(200, OutcomesSchema)
    def post(self, body):
        """Approve or reject (with a reason) many pending gifts: each in its own unit, so
        one that cannot be decided says why in its result and leaves the others decided."""
        outcomes = queue.decide_gifts(
            current_principal(), body["ids"], body["decision"], body["reason"]
        )
        return {"results": [outcome.as_dict() for outcome in outcomes]}
