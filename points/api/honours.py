"""Honours with a public notice (points.honours): offices propose, answer and decide;
anyone reads a notice and lodges an objection, without a token."""

from __future__ import annotations

from flask import request
from flask.views import MethodView
from marshmallow import RAISE, Schema, fields, validate

from points import honours, rankings
from points.api.body import Blueprint
from points.api.common import ROW_ID, Moment, UtcDateTime, allow
from points.api.districts import district_in_reach
from points.auth import current_principal, require_scope
from points.errors import InvalidInputError
from points.policy import district_info

blp = Blueprint(
    "honours",
    __name__,
    url_prefix="/api/v1",
    description="Honour lists on public notice (公示), objections, finalising.",
)


class HonourProposeSchema(Schema):
    district = fields.String(required=True, validate=validate.Length(1, 64))
    title = fields.String(required=True, validate=validate.Length(1, honours.TITLE_MAX))
    by = fields.String(load_default="hours", validate=validate.OneOf(rankings.BY))
    since = Moment(required=True)
    until = Moment(required=True)
    size = fields.Integer(
        load_default=10,
        strict=True,
        validate=validate.Range(1, honours.SIZE_MAX),
        metadata={"description": "Places on the list; ties at the last place are all on it."},
    )


class MemberSchema(Schema):
    place = fields.Integer(required=True)
    volunteer_id = fields.Integer(required=True)
    name = fields.String(required=True)
    community = fields.String(required=True)
    value = fields.Integer(required=True, metadata={"description": "Minutes, or points."})


class ObjectionSchema(Schema):
    id = fields.Integer(required=True)
    text = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    answer = fields.String(allow_none=True)
    answered_by = fields.String(allow_none=True)
    answered_at = UtcDateTime(allow_none=True)


class HonourSchema(Schema):
    id = fields.Integer(required=True)
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    title = fields.String(required=True)
    ranked_by = fields.String(required=True)
    period_start = UtcDateTime(required=True)
    period_end = UtcDateTime(required=True)
    public_code = fields.String(
        required=True, metadata={"description": "The public notice: /honours/{public_code}."}
    )
    status = fields.String(required=True, metadata={"description": "notice, final, withdrawn"})
    notice_until = UtcDateTime(required=True)
    proposed_by = fields.String(required=True)
    created_at = UtcDateTime(required=True)
    decided_by = fields.String(allow_none=True)
    decided_at = UtcDateTime(allow_none=True)
    reason = fields.String(allow_none=True)
    members = fields.List(fields.Nested(MemberSchema), required=True)
    objections = fields.List(fields.Nested(ObjectionSchema), required=True)


class HonourListQuerySchema(Schema):
    district = fields.String(
        load_default=None,
        validate=validate.Length(1, 64),
        metadata={"description": "This node and below. Default: the token's."},
    )


class HonourSummarySchema(Schema):
    id = fields.Integer(required=True)
    district_name = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.String(required=True)
    notice_until = UtcDateTime(required=True)
    members = fields.Integer(required=True)
    unanswered = fields.Integer(required=True)


class HonourListSchema(Schema):
    items = fields.List(fields.Nested(HonourSummarySchema), required=True)


class AnswerSchema(Schema):
    answer = fields.String(required=True, validate=validate.Length(1, honours.OBJECTION_MAX * 2))


class WithdrawSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(1, honours.OBJECTION_MAX))


class PublicMemberSchema(Schema):
    place = fields.Integer(required=True)
    name = fields.String(required=True, metadata={"description": "Masked: 王*英."})
    community = fields.String(required=True)
    value = fields.Integer(required=True, metadata={"description": "Minutes, or points."})


class NoticeSchema(Schema):
    title = fields.String(required=True)
    district_name = fields.String(required=True)
    ranked_by = fields.String(required=True)
    period_start = UtcDateTime(required=True)
    period_end = UtcDateTime(required=True)
    status = fields.String(required=True)
    notice_until = UtcDateTime(required=True)
    open_for_objections = fields.Boolean(required=True)
    members = fields.List(fields.Nested(PublicMemberSchema), required=True)


class ObjectionCreateSchema(Schema):
    text = fields.String(required=True, validate=validate.Length(1, honours.OBJECTION_MAX))


class ObjectionCreatedSchema(Schema):
    id = fields.Integer(required=True)


def _in_reach(honour_id: int) -> None:
    require_scope(current_principal(), district_info(honours.get(honour_id).district).path)


def _shown(found: honours.HonourView) -> dict:
    shown = {k: v for k, v in found.__dict__.items() if k not in ("members", "objections")}
    shown["members"] = [m.__dict__ for m in found.members]
    shown["objections"] = [o.__dict__ for o in found.objections]
    return shown


@blp.route("/honours")
class Honours(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    # A misspelt filter is an error, not a silently wider list.
    @blp.arguments(HonourListQuerySchema, location="query", unknown=RAISE)
    @blp.response(200, HonourListSchema)
    def get(self, query):
        """The honour lists of a node and below, newest first."""
        principal = current_principal()
        if query["district"] is None:
            node = principal.district_id
        else:
            node = district_in_reach(principal, query["district"]).id
        return {
            "items": [
                {
                    "id": item["honour"].id,
                    "district_name": item["district_name"],
                    "title": item["honour"].title,
                    "status": item["honour"].status,
                    "notice_until": item["honour"].notice_until,
                    "members": item["members"],
                    "unanswered": item["unanswered"],
                }
                for item in honours.of_node(node)
            ]
        }

    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(HonourProposeSchema)
    @blp.response(201, HonourSchema)
    def post(self, body):
        """Propose an honour list of the node's best by hours or points in a period; its
        public notice opens for the node's notice days (policy `stars.notice_days`)."""
        node = district_in_reach(current_principal(), body["district"])
        if body["until"] <= body["since"]:
            raise InvalidInputError("until comes after since", errors={"until": ["After since."]})
        return _shown(
            honours.propose(
                node.id, body["title"], body["by"], body["since"], body["until"], body["size"]
            )
        )


@blp.route(f"/honours/<{ROW_ID}:honour_id>")
class HonourOne(MethodView):
    @allow("office", "auditor", who="admin, offices and auditors of the node or above")
    @blp.response(200, HonourSchema)
    def get(self, honour_id):
        """An honour list with its members (full names) and every objection."""
        _in_reach(honour_id)
        return _shown(honours.get(honour_id))


@blp.route(f"/honours/<{ROW_ID}:honour_id>/finalise")
class HonourFinalise(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.response(200, HonourSchema)
    def post(self, honour_id):
        """Finalise: the notice is over and every objection answered (else 409)."""
        _in_reach(honour_id)
        return _shown(honours.finalise(honour_id))


@blp.route(f"/honours/<{ROW_ID}:honour_id>/withdraw")
class HonourWithdraw(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(WithdrawSchema)
    @blp.response(200, HonourSchema)
    def post(self, body, honour_id):
        """Withdraw a list on notice, with a reason; its public notice disappears."""
        _in_reach(honour_id)
        return _shown(honours.withdraw(honour_id, body["reason"]))


@blp.route(f"/honours/objections/<{ROW_ID}:objection_id>/answer")
class ObjectionAnswer(MethodView):
    @allow("office", who="admin, or an office of the node or above")
    @blp.arguments(AnswerSchema)
    @blp.response(200, HonourSchema)
    def post(self, body, objection_id):
        """Answer an objection (an earlier answer is replaced while the list is on notice)."""
        _in_reach(honours.objection_honour(objection_id))
        return _shown(honours.answer(objection_id, body["answer"]))


def _notice(found: honours.HonourView) -> dict:
    return {
        "title": found.title,
        "district_name": found.district_name,
        "ranked_by": found.ranked_by,
        "period_start": found.period_start,
        "period_end": found.period_end,
        "status": found.status,
        "notice_until": found.notice_until,
        "open_for_objections": found.on_notice,
        "members": [
            {"place": m.place, "name": m.masked_name, "community": m.community, "value": m.value}
            for m in found.members
        ],
    }


@blp.route("/notices/<string(maxlength=32):code>")
class Notice(MethodView):
    @blp.response(200, NoticeSchema)
    def get(self, code):
        """A public notice (no token): names masked, each member's community and figure;
        no phone, no card."""
        return _notice(honours.public(code))


@blp.route("/notices/<string(maxlength=32):code>/objections")
class NoticeObjections(MethodView):
    @blp.arguments(ObjectionCreateSchema)
    @blp.response(201, ObjectionCreatedSchema)
    def post(self, body, code):
        """Lodge an objection to a notice (no token), while it is on notice (else 409):
        at most 3 an hour from one place (429). The office answers it before finalising."""
        return {"id": honours.lodge_objection(code, body["text"], request.remote_addr)}
