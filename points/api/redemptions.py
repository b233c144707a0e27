"""The catalog and redemptions: points held for an item, then fulfilled or cancelled."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from points import directory, ledger, redemptions
from points.api import idempotency
from points.api.common import MAX_INT_ID, ROW_ID, Id, allow
from points.api.districts import READERS, district_in_reach
from points.auth import (
    current_principal,
    end_kiosk_session,
    reach_volunteer,
    require_scope,
    verify_card,
)
from points.errors import ForbiddenError, InvalidInputError
from points.extensions import db
from points.models import District, Redemption

blp = Blueprint(
    "redemptions",
    __name__,
    url_prefix="/api/v1",
    description="The catalog of a node, and redemptions of its items.",
)


class CatalogQuerySchema(Schema):
    volunteer_id = fields.Integer(
        load_default=None,
        validate=validate.Range(1, MAX_INT_ID),
        metadata={"description": "Also say whether this volunteer may redeem each item."},
    )


class CatalogItemSchema(Schema):
    sku = fields.String(required=True)
    name = fields.String(required=True, metadata={"description": "zh-CN"})
    name_en = fields.String(required=True)
    cost = fields.Integer(required=True)
    provider = fields.String(required=True)
    stock_left = fields.Integer(
        required=True, allow_none=True, metadata={"description": "This month; null: no limit."}
    )
    min_star = fields.Integer(required=True)
    eligible = fields.Boolean(
        metadata={"description": "With volunteer_id: no rule refuses and the points suffice."}
    )
    reason = fields.String(
        allow_none=True, metadata={"description": "With volunteer_id: why not, zh-CN / en."}
    )


class CatalogSchema(Schema):
    items = fields.List(fields.Nested(CatalogItemSchema), required=True)


class RedemptionCreateSchema(Schema):
    sku = fields.String(required=True, validate=validate.Length(1, 64))
    volunteer_id = Id(load_default=None, metadata={"description": "An office names the volunteer."})
    card_code = fields.String(
        load_default=None,
        validate=validate.Length(1, 32),
        metadata={"description": "A kiosk without a session sends card code and PIN."},
    )
    pin = fields.String(
        load_default=None, load_only=True, validate=validate.Regexp(directory.PIN_PATTERN)
    )


class RedemptionSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    points = fields.Integer(required=True)
    voucher_code = fields.String(required=True)
    expires_at = fields.DateTime(
        required=True, metadata={"description": "The points return if not fulfilled by then."}
    )


class RedemptionStateSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    points = fields.Integer(required=True)


class CancelSchema(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(1, 500))


def _item(entry: redemptions.CatalogEntry, usage: redemptions.Usage, for_volunteer: bool):
    item = entry.item
    stock_left = None
    if item.stock_per_month is not None:
        stock_left = max(0, item.stock_per_month - usage.item_count(item, "month"))
    shown = {
        "sku": item.sku,
        "name": item.name_zh,
        "name_en": item.name_en,
        "cost": item.cost,
        "provider": item.provider,
        "stock_left": stock_left,
        "min_star": item.min_star,
    }
    if for_volunteer:
        refusals = [r for r in entry.reasons if not r["allowed"]]
        reasons = [f"{r['zh']} / {r['en']}" for r in refusals]
        if entry.affordable is False:
            reasons.append(f"积分不足 / not enough points (needs {item.cost})")
        shown["eligible"] = not reasons
        shown["reason"] = "; ".join(reasons) or None
    return shown


@blp.route("/districts/<string(maxlength=64):code>/catalog")
class Catalog(MethodView):
    @allow(*READERS, who="any token whose node holds this one; volunteers only for themselves")
    @blp.arguments(CatalogQuerySchema, location="query")
    @blp.response(200, CatalogSchema)
    def get(self, query, code):
        """List what the node offers; with volunteer_id, whether they may redeem each."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        volunteer_id = query["volunteer_id"]
        if volunteer_id is not None:
            if principal.role == "kiosk":
                raise ForbiddenError("a kiosk sees volunteers only in a kiosk session")
            reach_volunteer(principal, volunteer_id)
        entries = redemptions.catalog_for(district.code, volunteer_id)
        usage = redemptions.Usage(district.timezone)
        return {"items": [_item(e, usage, volunteer_id is not None) for e in entries]}


def _redemption_in_reach(principal, redemption_id: int, *, self_ok: bool) -> Redemption:
    row = db.session.get(Redemption, redemption_id)
    if row is None:
        redemptions.get_redemption(redemption_id)  # raises NotFoundError
    if principal.role in ("volunteer", "session"):
        if not self_ok or row.volunteer_id != principal.volunteer_id:
            raise ForbiddenError("a volunteer token reaches only its own redemptions")
        return row
    require_scope(principal, db.session.get(District, row.district_id).path, "this redemption")
    return row


@blp.route("/redemptions")
class Redemptions(MethodView):
    @allow(
        "office",
        "kiosk",
        "session",
        replay=True,
        who=(
            "admin, an office ({volunteer_id, sku}), a kiosk ({card_code, pin, sku}), a "
            "kiosk session ({sku}; the session ends with the redemption)"
        ),
    )
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.arguments(RedemptionCreateSchema)
    @blp.response(201, RedemptionSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, body):
        """Redeem an item: check the rules, hold its cost, issue a voucher."""
        principal = current_principal()
        arguments = {"sku": body["sku"], "volunteer_id": body["volunteer_id"]}
        if principal.role == "kiosk":
            if body["card_code"] is None or body["pin"] is None:
                raise InvalidInputError(
                    "a kiosk sends the card code and PIN",
                    errors={
                        name: ["Required at a kiosk without a session."]
                        for name in ("card_code", "pin")
                        if body[name] is None
                    },
                )
            arguments |= {
                "card_code": body["card_code"],
                "pin": idempotency.keyed_secret(body["pin"]),
            }
        elif body["card_code"] is not None or body["pin"] is not None:
            raise InvalidInputError(
                "only a kiosk without a session sends a card code and PIN",
                errors={"card_code": ["Only from a kiosk without a session."]},
            )
        early = idempotency.replayed(principal, "redeem", arguments)
        if early is not None:
            return early
        if principal.role == "kiosk":
            volunteer_id = verify_card(principal, body["card_code"], body["pin"]).volunteer_id
        elif principal.role == "session":
            volunteer_id = principal.volunteer_id
        else:
            volunteer_id = body["volunteer_id"]
            if volunteer_id is None:
                raise InvalidInputError(
                    "name the volunteer", errors={"volunteer_id": ["Required for an office."]}
                )
            reach_volunteer(principal, volunteer_id)

        def work() -> dict:
            made = redemptions.create_redemption(volunteer_id, body["sku"], actor=principal.actor)
            # A kiosk session ends with its redemption; a retry may still replay it.
            end_kiosk_session(principal)
            return RedemptionSchema().dump(
                {
                    "id": made.id,
                    "status": made.status,
                    "points": made.points,
                    "voucher_code": made.voucher_code,
                    "expires_at": ledger.load_hold(made.hold_id).expires_at,
                }
            )

        return idempotency.idempotent(principal, "redeem", arguments, work)


@blp.route(f"/redemptions/<{ROW_ID}:redemption_id>/fulfil")
class RedemptionFulfil(MethodView):
    @allow("office", "kiosk", replay=True, who="admin, an office or kiosk of its node")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.response(200, RedemptionStateSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, redemption_id):
        """Mark a redemption delivered: its points go to the provider."""
        principal = current_principal()
        _redemption_in_reach(principal, redemption_id, self_ok=False)

        def work() -> dict:
            done = redemptions.fulfil_redemption(redemption_id, actor=principal.actor)
            return {"id": done.id, "status": done.status, "points": done.points}

        return idempotency.idempotent(
            principal, "fulfil", {"redemption_id": redemption_id}, work, status=200
        )


@blp.route(f"/redemptions/<{ROW_ID}:redemption_id>/cancel")
class RedemptionCancel(MethodView):
    @allow(
        "office",
        "kiosk",
        "volunteer",
        "session",
        replay=True,
        who="admin, an office or kiosk of its node, the volunteer",
    )
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.arguments(CancelSchema)
    @blp.response(200, RedemptionStateSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, body, redemption_id):
        """Cancel a held redemption: its points are available again."""
        principal = current_principal()
        _redemption_in_reach(principal, redemption_id, self_ok=True)
        reason = body["reason"] or f"cancelled by {principal.actor}"

        def work() -> dict:
            done = redemptions.cancel_redemption(
                redemption_id, actor=principal.actor, reason=reason
            )
            return {"id": done.id, "status": done.status, "points": done.points}

        return idempotency.idempotent(
            principal, "cancel", {"redemption_id": redemption_id, **body}, work, status=200
        )
