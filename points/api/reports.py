"""Reports: a node's figures for a month or a period (points.reports)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from points import report_files, reports
from points.api.body import Blueprint
from points.api.common import Moment, UtcDateTime, allow
from points.api.districts import district_in_reach
from points.auth import current_principal
from points.policy import district_info

blp = Blueprint(
    "reports",
    __name__,
    url_prefix="/api/v1/reports",
    description="A node's points issued, redeemed, expired and outstanding, hours, people.",
)


class NodePeriodSchema(Schema):
    """A node (default the token's) and a month in its zone, or [since, until)."""

    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "This node and below. Default: the token's."},
    )
    month = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^\d{4}-(0[1-9]|1[0-2])$"),
        metadata={"description": "A month (YYYY-MM) in the node's time zone."},
    )
    since = Moment(load_default=None)
    until = Moment(load_default=None)

    @validates_schema
    def _one_period(self, data, **_kwargs):
        if data.get("month") is None and (data.get("since") is None or data.get("until") is None):
            raise ValidationError("Give a month, or since and until.", field_name="month")
        if data.get("month") is not None and (data.get("since") or data.get("until")):
            raise ValidationError("A month, or since and until: not both.", field_name="month")
        if data.get("since") and data.get("until") and data["until"] <= data["since"]:
            raise ValidationError("After since.", field_name="until")


def node_and_period(query: dict):
    """The node a NodePeriodSchema names (in the token's reach: else 403) as a
    DistrictInfo, and its period as (start, end)."""
    principal = current_principal()
    if query["district"] is None:
        node = district_info(principal.district_id)
    else:
        node = district_info(district_in_reach(principal, query["district"]).id)
    if query["month"] is not None:
        return node, *reports.month_bounds(query["month"], node.timezone)
    return node, query["since"], query["until"]


class ReportQuerySchema(NodePeriodSchema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "csv", "xlsx")),
        metadata={"description": "json, or the report's tables as a csv or xlsx download."},
    )


class ItemSchema(Schema):
    provider = fields.String(required=True)
    provider_name = fields.String(required=True)
    sku = fields.String(required=True)
    vouchers = fields.Integer(required=True)
    points = fields.Integer(required=True)


class ReportFiguresSchema(Schema):
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    start = UtcDateTime(required=True)
    end = UtcDateTime(required=True)
    outstanding_start = fields.Integer(
        required=True, metadata={"description": "What the node's volunteers held at start."}
    )
    outstanding_end = fields.Integer(required=True)
    issued = fields.Integer(required=True)
    redeemed = fields.Integer(required=True)
    expired = fields.Integer(required=True)
    corrections = fields.Integer(required=True, metadata={"description": "Net, signed."})
    gifts_in = fields.Integer(required=True)
    gifts_out = fields.Integer(required=True)
    service_minutes = fields.Integer(required=True)
    service_hours = fields.Float(required=True)
    active_volunteers = fields.Integer(required=True)
    new_volunteers = fields.Integer(required=True)
    volunteers = fields.Integer(required=True, metadata={"description": "Registered by end."})
    issued_by_kind = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    issued_by_rule = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    redeemed_by_item = fields.List(fields.Nested(ItemSchema), required=True)


class BudgetUsageSchema(Schema):
    district_id = fields.Integer(required=True)
    district = fields.String(required=True, metadata={"description": "The node's code."})
    name = fields.String(required=True)
    period = fields.String(required=True, metadata={"description": "month, quarter or year."})
    label = fields.String(
        required=True,
        metadata={"description": "The period in the node's zone: 2026-12, 2026-Q4, 2026."},
    )
    start = UtcDateTime(required=True, metadata={"description": "The period's start."})
    end = UtcDateTime(required=True, metadata={"description": "The period's end (exclusive)."})
    budget = fields.Integer(required=True, metadata={"description": "Points per period."})
    used = fields.Integer(required=True, metadata={"description": "Awarded in the period."})
    left = fields.Integer(required=True)
    overflow = fields.String(required=True, metadata={"description": "clip or queue."})


class ReportSchema(ReportFiguresSchema):
    star_levels = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"description": "Volunteers registered by the end, per star level then."},
    )
    children = fields.List(fields.Nested(ReportFiguresSchema), required=True)
    budgets = fields.List(
        fields.Nested(BudgetUsageSchema),
        required=True,
        metadata={
            "description": "Budgets set at the node and its children: the period around "
            "the report's last moment (now, if it runs on), budget, used and left."
        },
    )


@blp.route("")
class Reports(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(ReportQuerySchema, location="query")
    @blp.response(200, ReportSchema)
    @blp.alt_response(
        200,
        description="The tables one after another (format=csv).",
        content_type="text/csv",
        success=True,
    )
    @blp.alt_response(
        200,
        description="A sheet per table (format=xlsx).",
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        success=True,
    )
    def get(self, query):
        """A node's report for a month or [since, until): points issued (by activity kind
        and by rule), redeemed (by provider and item), expired, corrected, given in and
        out, outstanding at the start and the end, service hours, active and new
        volunteers; with the same figures for each child node."""
        node, start, end = node_and_period(query)
        found = reports.report(node.id, start, end)
        if query["format"] == "json":
            return found.as_dict()
        return report_files.download(found, query["format"])
