"""API tokens: offices make kiosk and volunteer tokens within their node; admins any."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from points import directory, kiosks
from points.api.body import Blueprint
from points.api.common import ROW_ID, Id, Moment, UtcDateTime, allow
from points.auth import SESSION_PREFIX, current_principal, reach_volunteer, require_scope
from points.errors import ForbiddenError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import ApiToken, District, utcnow

blp = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens", description="API tokens.")

# What an office may create; an admin may create any role.
OFFICE_MAY_CREATE = ("kiosk", "volunteer")
# What an office may revoke: also the provider links it issues (POST /providers/{code}/links).
OFFICE_MAY_REVOKE = (*OFFICE_MAY_CREATE, "provider")


class TokenCreateSchema(Schema):
    role = fields.String(required=True, validate=validate.OneOf(directory.ROLES))
    district = fields.String(required=True, validate=validate.Length(1, 64))
    volunteer_id = Id(load_default=None, allow_none=True)
    name = fields.String(required=True, validate=validate.Length(1, 200))
    expires_at = Moment(load_default=None, allow_none=True)


class TokenCreatedSchema(Schema):
    id = fields.Integer(required=True)
    token = fields.String(required=True, metadata={"description": "Shown only this once."})
    role = fields.String(required=True)
    district = fields.String(required=True)
    volunteer_id = fields.Integer(required=True, allow_none=True)
    name = fields.String(required=True)
    expires_at = UtcDateTime(required=True, allow_none=True)


@blp.route("")
class Tokens(MethodView):
    @allow("office", who="admin (any role), an office (kiosk and volunteer tokens in its node)")
    @blp.arguments(TokenCreateSchema)
    @blp.response(201, TokenCreatedSchema)
    def post(self, body):
        """Create a token; it is shown only in this answer."""
        principal = current_principal()
        if principal.role != "admin" and body["role"] not in OFFICE_MAY_CREATE:
            raise ForbiddenError("an office may create only kiosk and volunteer tokens")
        if body["name"].startswith(SESSION_PREFIX):
            raise InvalidInputError(
                "that name is reserved", errors={"name": [f"May not start {SESSION_PREFIX!r}."]}
            )
        if body["expires_at"] is not None and body["expires_at"] <= utcnow():
            raise InvalidInputError(
                "the token would be expired", errors={"expires_at": ["Must be in the future."]}
            )
        district = directory.district_by_code(body["district"])
        require_scope(principal, district.path)
        if body["volunteer_id"] is not None:
            _, path = reach_volunteer(principal, body["volunteer_id"])
            if not path.startswith(district.path):
                raise InvalidInputError(
                    "the volunteer is not in that node",
                    errors={"district": ["Must hold the volunteer."]},
                )
        token, secret = directory.create_token(
            body["role"],
            body["district"],
            name=body["name"],
            volunteer_id=body["volunteer_id"],
            expires_at=body["expires_at"],
        )
        return {**body, "id": token.id, "token": secret}


@blp.route(f"/<{ROW_ID}:token_id>")
class TokenById(MethodView):
    @allow("office", who="admin, an office (kiosk, volunteer and provider tokens of its node)")
    @blp.response(204)
    def delete(self, token_id):
        """Revoke a token at once."""
        principal = current_principal()
        row = db.session.execute(
            select(ApiToken.role, District.path)
            .join(District, District.id == ApiToken.district_id)
            .where(ApiToken.id == token_id)
        ).one_or_none()
        if row is None:
            raise NotFoundError(f"no token {token_id}")
        if principal.role != "admin" and row.role not in OFFICE_MAY_REVOKE:
            raise ForbiddenError("an office may revoke only kiosk, volunteer and provider tokens")
        require_scope(principal, row.path, "this token")
        directory.revoke_token(token_id)
        return None


class PairingCodeSchema(Schema):
    token_id = fields.Integer(required=True)
    pairing_code = fields.String(
        required=True,
        metadata={"description": "8 characters, shown only this once; typed at /kiosk/pair."},
    )
    expires_at = fields.DateTime(required=True, metadata={"description": "Valid 30 minutes."})


@blp.route(f"/<{ROW_ID}:token_id>/pairing-code")
class TokenPairingCode(MethodView):
    @allow("office", who="admin, an office (kiosk tokens of its node)")
    @blp.response(201, PairingCodeSchema)
    def post(self, token_id):
        """Give a kiosk token a one-time pairing code for its device (any earlier one lapses)."""
        principal = current_principal()
        row = db.session.execute(
            select(ApiToken.role, District.path)
            .join(District, District.id == ApiToken.district_id)
            .where(ApiToken.id == token_id)
        ).one_or_none()
        if row is None or row.role != "kiosk":
            raise NotFoundError(f"no kiosk token {token_id}")
        require_scope(principal, row.path, "this kiosk")
        code = kiosks.issue_pairing_code(token_id)
        return {"token_id": token_id, "pairing_code": code.code, "expires_at": code.expires_at}
