"""Exports: a node's entries, service records, redemptions, volunteers or audit log as
CSV or XLSX (points.exports)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from points import exports
from points.api.body import Blueprint
from points.api.common import Moment, allow
from points.auth import current_principal

blp = Blueprint(
    "exports",
    __name__,
    url_prefix="/api/v1/exports",
    description="A node's data as CSV or XLSX, streamed.",
)


class ExportQuerySchema(Schema):
    format = fields.String(load_default="csv", validate=validate.OneOf(exports.FORMATS))
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "This node and below. Default: the token's."},
    )
    since = Moment(load_default=None, metadata={"description": "From this time (its column)."})
    until = Moment(load_default=None, metadata={"description": "Before this time."})


@blp.route("/<any(" + ", ".join(exports.DATASETS) + "):dataset>")
class Export(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(ExportQuerySchema, location="query")
    @blp.response(
        200,
        description="The rows, headers in Chinese and English, times in the node's zone.",
        content_type="text/csv",
    )
    @blp.alt_response(
        200,
        description="XLSX (format=xlsx).",
        content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        success=True,
    )
    def get(self, query, dataset):
        """Download a dataset of a node and below, in a period: entries (one row a
        posting, by effective time), records (by service start), redemptions, volunteers
        (by registration), the audit log. Auditors get phones masked and no card or
        voucher codes. The export is in the audit log."""
        export = exports.prepare(
            current_principal(),
            dataset,
            district=query["district"],
            since=query["since"],
            until=query["until"],
        )
        return exports.response(export, query["format"])
