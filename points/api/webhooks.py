"""Webhooks (points.webhooks): offices register endpoints at their node for events,
read the delivery log, disable an endpoint and replay a delivery; auditors read."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import RAISE, Schema, fields, validate

from points import webhooks
from points.api.body import Blueprint
from points.api.common import ENTRY_ID, ROW_ID, UtcDateTime, allow, decode_cursor, encode_cursor
from points.api.districts import district_in_reach
from points.auth import current_principal, require_scope
from points.models import WEBHOOK_DELIVERY_STATES, WEBHOOK_EVENTS

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api/v1/webhooks",
    description="Webhook endpoints of a node, their deliveries, replays (docs/webhooks.md).",
)


class WebhookCreateSchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "The node it hears (and every node below). Default: the token's."},
    )
    url = fields.String(
        required=True,
        validate=validate.Length(1, webhooks.endpoints.URL_MAX),
        metadata={"description": "http:// or https://; inner addresses are refused."},
    )
    events = fields.List(
        fields.String(validate=validate.OneOf(WEBHOOK_EVENTS)),
        required=True,
        validate=validate.Length(1, len(WEBHOOK_EVENTS)),
    )


class WebhookSchema(Schema):
    id = fields.Integer(required=True)
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)
    status = fields.String(required=True, metadata={"description": "active, disabled"})
    created_by = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    disabled_by = fields.String(required=True, allow_none=True)
    disabled_at = UtcDateTime(required=True, allow_none=True)
    pending = fields.Integer(required=True, metadata={"description": "Deliveries waiting."})
    failed = fields.Integer(required=True, metadata={"description": "Deliveries given up on."})


class WebhookCreatedSchema(WebhookSchema):
    secret = fields.String(
        required=True,
        metadata={"description": "The signing secret: in this answer only."},
    )


class WebhookListQuerySchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "This node and below. Default: the token's."},
    )


class WebhookListSchema(Schema):
    items = fields.List(fields.Nested(WebhookSchema), required=True)


class WebhookAttemptSchema(Schema):
    attempted_at = UtcDateTime(required=True)
    status_code = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    milliseconds = fields.Integer(required=True)


class WebhookDeliverySchema(Schema):
    id = fields.Integer(required=True)
    endpoint_id = fields.Integer(required=True)
    event = fields.String(required=True)
    event_id = fields.String(required=True, metadata={"description": "Stable: deduplicate on it."})
    subject_id = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"description": "pending, delivered, failed"})
    attempts = fields.Integer(required=True)
    next_attempt_at = UtcDateTime(required=True, allow_none=True)
    last_status = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    created_at = UtcDateTime(required=True)
    delivered_at = UtcDateTime(required=True, allow_none=True)
    log = fields.List(fields.Nested(WebhookAttemptSchema), required=True)


class WebhookDeliveriesQuerySchema(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(WEBHOOK_DELIVERY_STATES))
    cursor = fields.String(
        load_default=None,
        validate=validate.Length(1, 200),
        metadata={"description": "From next_cursor."},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(1, webhooks.endpoints.PAGE_MAX))


class WebhookDeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(WebhookDeliverySchema), required=True)
    next_cursor = fields.String(
        required=True, allow_none=True, metadata={"description": "null on the last page."}
    )


def _in_reach(endpoint_id: int) -> None:
    require_scope(current_principal(), webhooks.endpoint_path(endpoint_id))


def _shown(view) -> dict:
    shown = dict(view.__dict__)
    if "log" in shown:
        shown["log"] = [attempt.__dict__ for attempt in view.log]
    return shown


@blp.route("")
class Webhooks(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(WebhookListQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, WebhookListSchema)
    def get(self, query):
        """The webhook endpoints of a node and below, active first, newest first."""
        principal = current_principal()
        node = principal.district_id
        if query["district"] is not None:
            node = district_in_reach(principal, query["district"]).id
        return {"items": [_shown(view) for view in webhooks.endpoints_of_node(node)]}

    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(WebhookCreateSchema)
    @blp.response(201, WebhookCreatedSchema)
    def post(self, body):
        """Register an endpoint for events of the node and below; the answer holds its
        signing secret, shown this once."""
        principal = current_principal()
        node = principal.district_id
        if body["district"] is not None:
            node = district_in_reach(principal, body["district"]).id
        made, secret = webhooks.create_endpoint(node, body["url"], body["events"])
        return {**_shown(made), "secret": secret}


@blp.route(f"/<{ROW_ID}:endpoint_id>")
class WebhookOne(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.response(200, WebhookSchema)
    def get(self, endpoint_id):
        """One endpoint, its events and how many deliveries wait or failed."""
        _in_reach(endpoint_id)
        return _shown(webhooks.get_endpoint(endpoint_id))


@blp.route(f"/<{ROW_ID}:endpoint_id>/disable")
class WebhookDisable(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.response(200, WebhookSchema)
    def post(self, endpoint_id):
        """Disable the endpoint: nothing more is queued or sent to it (409 if disabled)."""
        _in_reach(endpoint_id)
        return _shown(webhooks.disable_endpoint(endpoint_id))


@blp.route(f"/<{ROW_ID}:endpoint_id>/deliveries")
class WebhookDeliveries(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(WebhookDeliveriesQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, WebhookDeliveryPageSchema)
    def get(self, query, endpoint_id):
        """The endpoint's deliveries, newest first, each with every try (status code or
        error, how long it took)."""
        _in_reach(endpoint_id)
        items, last = webhooks.deliveries(
            endpoint_id,
            query["status"],
            decode_cursor(query["cursor"]) if query["cursor"] else None,
            query["limit"],
        )
        return {
            "items": [_shown(item) for item in items],
            "next_cursor": encode_cursor(last) if last is not None else None,
        }


@blp.route(f"/deliveries/<{ENTRY_ID}:delivery_id>/replay")
class WebhookReplay(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.response(200, WebhookDeliverySchema)
    def post(self, delivery_id):
        """Send a delivered or failed delivery again, with the same event id (409 while
        it is pending or when the endpoint is disabled)."""
        _in_reach(webhooks.delivery_endpoint(delivery_id))
        return _shown(webhooks.replay(delivery_id))
