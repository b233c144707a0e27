"""Who is asking (`GET /me`), and the staff accounts of the office console."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from points import directory, office, staff
from points.api.body import Blueprint
from points.api.common import ROW_ID, UtcDateTime, allow
from points.api.reports import BudgetUsageSchema
from points.auth import ROLES, current_principal, require_scope
from points.extensions import db
from points.models import STAFF_ROLES, District

blp = Blueprint("staff", __name__, url_prefix="/api/v1", description="Who is asking; staff.")


class MeSchema(Schema):
    role = fields.String(required=True)
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    token_id = fields.Integer(required=True)
    name = fields.String(
        required=True, allow_none=True, metadata={"description": "The token's name or username."}
    )
    volunteer_id = fields.Integer(required=True, allow_none=True)
    provider_id = fields.Integer(required=True, allow_none=True)
    staff_id = fields.Integer(required=True, allow_none=True)


@blp.route("/me")
class Me(MethodView):
    @allow(*ROLES, who="any token")
    @blp.response(200, MeSchema)
    def get(self):
        """Say who this token (or console session) is: role, node, and whose it is."""
        principal = current_principal()
        node = db.session.get(District, principal.district_id)
        return {
            "role": principal.role,
            "district": node.code,
            "district_name": node.name,
            "token_id": principal.token_id,
            "name": principal.name,
            "volunteer_id": principal.volunteer_id,
            "provider_id": principal.provider_id,
            "staff_id": principal.staff_id,
        }


class StaffSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    district = fields.String(required=True)
    district_name = fields.String(required=True)
    status = fields.String(required=True)
    locked_until = UtcDateTime(required=True, allow_none=True)
    must_change_password = fields.Boolean(required=True)
    created_at = UtcDateTime(required=True)


class StaffListSchema(Schema):
    items = fields.List(fields.Nested(StaffSchema), required=True)


class StaffCreateSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(1, 64))
    name = fields.String(required=True, validate=validate.Length(1, 200))
    role = fields.String(required=True, validate=validate.OneOf(STAFF_ROLES))
    district = fields.String(required=True, validate=validate.Length(1, 64))
    password = fields.String(
        load_default=None,
        load_only=True,
        validate=validate.Length(1, 200),
        metadata={
            "description": f"At least {staff.MIN_PASSWORD_LENGTH} characters, not a common "
            "one. Left out, a temporary password is answered once, to change at first sign-in."
        },
    )


class StaffCreatedSchema(StaffSchema):
    password = fields.String(metadata={"description": "The temporary password, shown once."})


class StaffPatchSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(staff.STATES))


class TemporaryPasswordSchema(Schema):
    password = fields.String(required=True, metadata={"description": "Shown only this once."})


@blp.route("/staff")
class StaffAccounts(MethodView):
    @allow("office", "auditor", who="admin (all), office and auditor (their node and below)")
    @blp.response(200, StaffListSchema)
    def get(self):
        """List the staff accounts of the node and below."""
        return {"items": [a.as_dict() for a in staff.list_staff(current_principal())]}

    @allow("office", who="admin, an office (office and auditor accounts below its node)")
    @blp.arguments(StaffCreateSchema)
    @blp.response(201, StaffCreatedSchema)
    def post(self, body):
        """Create a staff account."""
        principal = current_principal()
        node = directory.district_by_code(body["district"])
        require_scope(principal, node.path)
        made = body["password"] is None
        password = staff.temporary_password() if made else body["password"]
        account = staff.create_staff(
            body["username"],
            body["name"],
            body["role"],
            body["district"],
            password,
            by=principal,
            must_change_password=made,
        )
        answer = account.as_dict()
        return {**answer, "password": password} if made else answer


@blp.route(f"/staff/<{ROW_ID}:staff_id>")
class StaffAccount(MethodView):
    @allow("office", who="admin, an office (office and auditor accounts below its node)")
    @blp.arguments(StaffPatchSchema)
    @blp.response(200, StaffSchema)
    def patch(self, body, staff_id):
        """Disable an account (its sessions end at once) or reactivate it."""
        principal = current_principal()
        require_scope(principal, staff.staff_info(staff_id).path, "this staff account")
        return staff.set_status(staff_id, body["status"], by=principal).as_dict()


@blp.route(f"/staff/<{ROW_ID}:staff_id>/password-reset")
class StaffPasswordReset(MethodView):
    @allow("office", who="admin, an office (office and auditor accounts below its node)")
    @blp.response(200, TemporaryPasswordSchema)
    def post(self, staff_id):
        """Give the account a temporary password (answered once) to change at sign-in; its
        sessions end."""
        principal = current_principal()
        require_scope(principal, staff.staff_info(staff_id).path, "this staff account")
        return {"password": staff.reset_password(staff_id, by=principal)}


class LapsingSchema(Schema):
    id = fields.Integer(required=True)
    voucher_code = fields.String(required=True)
    sku = fields.String(required=True)
    points = fields.Integer(required=True)
    volunteer_id = fields.Integer(required=True)
    name = fields.String(required=True)
    provider = fields.String(required=True)
    expires_at = UtcDateTime(required=True)


class LockedSchema(Schema):
    volunteer_id = fields.Integer(required=True)
    name = fields.String(required=True)
    district = fields.String(required=True, metadata={"description": "The node's name."})
    locked_until = UtcDateTime(required=True)


class TodaySchema(Schema):
    pending_records = fields.Integer(required=True)
    pending_gifts = fields.Integer(required=True)
    oldest_pending = UtcDateTime(
        required=True,
        allow_none=True,
        metadata={"description": "When the oldest waiting record came."},
    )
    lapsing = fields.List(
        fields.Nested(LapsingSchema),
        required=True,
        metadata={"description": "Held vouchers lapsing within 3 days, soonest first (20)."},
    )
    lapsing_count = fields.Integer(required=True)
    locked = fields.List(
        fields.Nested(LockedSchema),
        required=True,
        metadata={"description": "Cards locked now (20)."},
    )
    locked_count = fields.Integer(required=True)
    budgets = fields.List(
        fields.Nested(BudgetUsageSchema),
        required=True,
        metadata={"description": "Budgets set at the node and below: this period's use."},
    )


@blp.route("/today")
class Today(MethodView):
    @allow("office", "auditor", who="admin (all), office and auditor (their node and below)")
    @blp.response(200, TodaySchema)
    def get(self):
        """What waits for the office today: decisions, vouchers about to lapse, locked cards."""
        return office.today(current_principal()).as_dict()
