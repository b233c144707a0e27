"""Provider settlement (points.settlements): a provider's statement for a period at a
node, as JSON, CSV or XLSX, and settling it."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from points import settlements
from points.api.body import Blueprint
from points.api.common import UtcDateTime, allow
from points.api.reports import NodePeriodSchema, node_and_period
from points.auth import current_principal
from points.report_files import MIMETYPES, attachment

blp = Blueprint(
    "settlements",
    __name__,
    url_prefix="/api/v1/providers",
    description="What the office owes a provider for fulfilled vouchers, and settling it.",
)


class StatementQuerySchema(NodePeriodSchema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "csv", "xlsx")),
        metadata={"description": "json, or the statement as a csv or xlsx download."},
    )


class SettledVoucherSchema(Schema):
    redemption_id = fields.Integer(required=True)
    voucher_code = fields.String(required=True)
    sku = fields.String(required=True)
    points = fields.Integer(required=True)
    unit_price_fen = fields.Integer(allow_none=True)
    fulfilled_at = UtcDateTime(required=True)
    district_name = fields.String(required=True)
    settlement_id = fields.Integer(allow_none=True)


class SettlementSchema(Schema):
    id = fields.Integer(required=True)
    provider = fields.String(required=True)
    district = fields.String(required=True)
    period_start = UtcDateTime(required=True)
    period_end = UtcDateTime(required=True)
    vouchers = fields.Integer(required=True)
    points = fields.Integer(required=True)
    amount_fen = fields.Integer(required=True, metadata={"description": "Money, in fen."})
    unpriced = fields.Integer(required=True, metadata={"description": "Vouchers without a price."})
    settled_by = fields.String(required=True)
    created_at = UtcDateTime(required=True)


class UnsettledSchema(Schema):
    vouchers = fields.Integer(required=True)
    points = fields.Integer(required=True)
    amount_fen = fields.Integer(required=True)


class ProviderStatementSchema(Schema):
    provider = fields.String(required=True)
    provider_name = fields.String(required=True)
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    start = UtcDateTime(required=True)
    end = UtcDateTime(required=True)
    vouchers = fields.Integer(required=True)
    points = fields.Integer(required=True)
    amount_fen = fields.Integer(required=True)
    unpriced = fields.Integer(required=True)
    to_settle = fields.Nested(UnsettledSchema, required=True)
    unpaid_points = fields.Integer(
        required=True,
        metadata={"description": "Points of fulfilled vouchers not yet settled, any period."},
    )
    lines = fields.List(fields.Nested(SettledVoucherSchema), required=True)
    settlements = fields.List(fields.Nested(SettlementSchema), required=True)


@blp.route("/<string(maxlength=64):code>/statement")
class ProviderStatement(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(StatementQuerySchema, location="query")
    @blp.response(200, ProviderStatementSchema)
    @blp.alt_response(200, description="CSV (format=csv).", content_type="text/csv", success=True)
    @blp.alt_response(
        200,
        description="XLSX (format=xlsx).",
        content_type=MIMETYPES["xlsx"],
        success=True,
    )
    def get(self, query, code):
        """The provider's vouchers fulfilled at the node and below in a period (by when
        they were fulfilled): each with its points, unit price and settlement; totals,
        the money owed where items carry a price, and the node's settlements. Auditors
        see each voucher code's last four characters only."""
        node, start, end = node_and_period(query)
        masked = current_principal().role == "auditor"
        found = settlements.statement(code, node.id, start, end, masked=masked)
        if query["format"] == "json":
            return found.as_dict()
        zone = ZoneInfo(node.timezone)
        name = f"settlement-{code}-{node.code}-{start.astimezone(zone):%Y%m%d}"
        return attachment(settlements.tables(found, zone), query["format"], name)


@blp.route("/<string(maxlength=64):code>/settlements")
class ProviderSettlements(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(NodePeriodSchema)
    @blp.response(201, SettlementSchema)
    @blp.alt_response(200, schema=SettlementSchema, description="Settled before: nothing left.")
    def post(self, body, code):
        """Settle the provider's fulfilled, unpaid vouchers of the period at the node and
        below: their points move out of the provider's accounts into the nodes' settled
        accounts. Asked again, it answers the earlier settlement (200); 409 when the
        period has nothing to settle and was never settled."""
        node, start, end = node_and_period(body)
        made, created = settlements.settle(code, node.id, start, end)
        return made.__dict__, 201 if created else 200
