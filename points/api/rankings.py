"""Rankings: a node's volunteers by service hours or points earned in a period."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from points import rankings
from points.api.body import Blueprint
from points.api.common import Moment, allow
from points.api.districts import district_in_reach
from points.auth import current_principal
from points.policy import district_info

blp = Blueprint(
    "rankings",
    __name__,
    url_prefix="/api/v1/rankings",
    description="Volunteers ranked by service hours or points earned.",
)


class RankingQuerySchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "This node and below. Default: the token's."},
    )
    by = fields.String(load_default="hours", validate=validate.OneOf(rankings.BY))
    since = Moment(required=True)
    until = Moment(required=True)
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class RankedSchema(Schema):
    rank = fields.Integer(required=True, metadata={"description": "Ties share a rank."})
    volunteer_id = fields.Integer(required=True)
    name = fields.String(required=True)
    district = fields.String(required=True, metadata={"description": "The node's name."})
    value = fields.Integer(required=True, metadata={"description": "Minutes, or points."})


class RankingSchema(Schema):
    district = fields.String(required=True)
    by = fields.String(required=True)
    items = fields.List(fields.Nested(RankedSchema), required=True)


@blp.route("")
class Rankings(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.arguments(RankingQuerySchema, location="query")
    @blp.response(200, RankingSchema)
    def get(self, query):
        """Rank a node's volunteers by service minutes (`hours`) or points earned
        (`points`: awards less their corrections; spending never lowers a rank) in
        [since, until); ties share a rank."""
        principal = current_principal()
        if query["district"] is None:
            code = principal.district_id
        else:
            code = district_in_reach(principal, query["district"]).id
        ranked = rankings.rank(
            code, query["by"], query["since"], query["until"], limit=query["limit"]
        )
        return {
            "district": district_info(code).code,
            "by": query["by"],
            "items": [row.__dict__ for row in ranked],
        }
