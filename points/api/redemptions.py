"""The catalog and redemptions: points held for an item, then fulfilled or cancelled."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import or_, select

from points import directory, ledger, providers, redemptions, volunteers
from points.api import idempotency
from points.api.body import Blueprint
from points.api.common import MAX_INT_ID, ROW_ID, Id, UtcDateTime, allow
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
from points.fields import StrictBoolean
from points.models import District, Hold, Provider, Redemption, utcnow

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
    eligible = StrictBoolean(
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
    expires_at = UtcDateTime(
        required=True, metadata={"description": "The points return if not fulfilled by then."}
    )


class RedemptionStateSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True)
    points = fields.Integer(required=True)


class CancelSchema(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(1, 500))


class VoucherCode(fields.String):
    """A voucher code as printed: read in either case, spaces anywhere ignored.

    Codes are issued in upper case from the card alphabet (no spaces), so this reading
    finds every code that was issued, however it was typed or scanned.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Length(1, 64))
        kwargs.setdefault(
            "metadata",
            {"description": "The voucher code; either case, spaces ignored (`ab12 cd34ef`)."},
        )
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        code = "".join(text.split()).upper()
        if not code:
            raise ValidationError("Must not be blank.")
        return code


class VoucherQuerySchema(Schema):
    voucher_code = VoucherCode(required=True)


class VoucherFulfilSchema(Schema):
    voucher_code = VoucherCode(required=True)


class RedemptionDetailSchema(Schema):
    id = fields.Integer(required=True)
    volunteer_id = fields.Integer(required=True)
    sku = fields.String(required=True)
    points = fields.Integer(required=True)
    provider = fields.String(required=True, metadata={"description": "The provider's code."})
    voucher_code = fields.String(required=True)
    status = fields.String(
        required=True, metadata={"description": "held, fulfilled, cancelled or expired"}
    )
    created_at = UtcDateTime(required=True)
    resolved_at = UtcDateTime(
        required=True, allow_none=True, metadata={"description": "null while held."}
    )
    entry_id = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "The posted entry, once fulfilled."},
    )


def _item(line: dict) -> dict:
    """A catalog line as the API shows it: the reasons joined as "中文 / English"."""
    reasons = line.pop("reasons", None)
    if reasons is not None:
        line["reason"] = "; ".join(f"{r['zh']} / {r['en']}" for r in reasons) or None
    return line


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
        return {"items": [_item(line) for line in volunteers.catalog(district.code, volunteer_id)]}


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


def _describe(redemption_id: int) -> dict:
    """Return a redemption as the API shows it: no name, no phone."""
    row, provider = db.session.execute(
        select(Redemption, Provider.code)
        .join(Provider, Provider.id == Redemption.provider_id)
        .where(Redemption.id == redemption_id)
        .execution_options(populate_existing=True)
    ).one()
    return {
        "id": row.id,
        "volunteer_id": row.volunteer_id,
        "sku": row.sku,
        "points": row.points,
        "provider": provider,
        "voucher_code": row.voucher_code,
        "status": row.status,
        "created_at": row.created_at,
        "resolved_at": row.resolved_at,
        "entry_id": row.entry_id,
    }


def _voucher_in_reach(principal, voucher_code: str) -> int:
    """Return the id of the redemption with this voucher, if in the token's reach.

    A voucher of another node, or for a provider's link another provider's, answers
    exactly like an unknown one (404, not 403), so that voucher codes cannot be probed.
    Raises NotFoundError.
    """
    return providers.voucher_in_reach(principal, voucher_code)


def _settle_lapsed(redemption_id: int) -> None:
    """Record now that a held redemption's hold has run out, if it has.

    An idempotent fulfilment runs inside a unit of work, which its 409 rolls back; settled
    first, the redemption reads "expired" at once instead of at the next time-out run.
    """
    lapsed = db.session.execute(
        select(Redemption.id)
        .join(Hold, Hold.id == Redemption.hold_id)
        .where(
            Redemption.id == redemption_id,
            Redemption.status == "held",
            or_(Hold.status != "pending", Hold.expires_at <= utcnow()),
        )
    ).first()
    if lapsed is not None:
        redemptions.expire_redemptions()


def _fulfil(principal, redemption_id: int, operation: str, arguments: dict):
    """Fulfil a redemption in reach, once per Idempotency-Key."""
    _settle_lapsed(redemption_id)

    def work() -> dict:
        done = redemptions.fulfil_redemption(redemption_id, actor=principal.actor)
        return {"id": done.id, "status": done.status, "points": done.points}

    return idempotency.idempotent(principal, operation, arguments, work, status=200)


@blp.route("/redemptions")
class Redemptions(MethodView):
    @allow(
        "office",
        "kiosk",
        "provider",
        who="admin, an office or kiosk of the redemption's node, its provider's link token",
    )
    @blp.arguments(VoucherQuerySchema, location="query")
    @blp.response(200, RedemptionDetailSchema)
    def get(self, query):
        """Find the redemption with a voucher code (404 if none in this token's reach)."""
        principal = current_principal()
        return _describe(_voucher_in_reach(principal, query["voucher_code"]))

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


@blp.route(f"/redemptions/<{ROW_ID}:redemption_id>")
class RedemptionOne(MethodView):
    @allow(
        "office",
        "auditor",
        "kiosk",
        "volunteer",
        "session",
        who="admin, an office, auditor or kiosk of its node, the volunteer",
    )
    @blp.response(200, RedemptionDetailSchema)
    def get(self, redemption_id):
        """Read one redemption: its item, points, provider, voucher and state."""
        principal = current_principal()
        _redemption_in_reach(principal, redemption_id, self_ok=True)
        return _describe(redemption_id)


@blp.route("/redemptions/fulfil")
class RedemptionFulfilByVoucher(MethodView):
    @allow(
        "office",
        "kiosk",
        "provider",
        replay=True,
        who="admin, an office or kiosk of its node, its provider's link token",
    )
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.arguments(VoucherFulfilSchema)
    @blp.response(200, RedemptionStateSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, body):
        """Mark the redemption with this voucher delivered: its points go to the provider."""
        principal = current_principal()
        redemption_id = _voucher_in_reach(principal, body["voucher_code"])
        return _fulfil(
            principal, redemption_id, "fulfil_voucher", {"voucher_code": body["voucher_code"]}
        )


@blp.route(f"/redemptions/<{ROW_ID}:redemption_id>/fulfil")
class RedemptionFulfil(MethodView):
    @allow("office", "kiosk", replay=True, who="admin, an office or kiosk of its node")
    @blp.doc(parameters=[idempotency.PARAMETER])
    @blp.response(200, RedemptionStateSchema, headers=idempotency.REPLAY_HEADER_DOC)
    def post(self, redemption_id):
        """Mark a redemption delivered: its points go to the provider."""
        principal = current_principal()
        _redemption_in_reach(principal, redemption_id, self_ok=False)
        return _fulfil(principal, redemption_id, "fulfil", {"redemption_id": redemption_id})


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
