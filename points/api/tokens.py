"""API tokens: offices make kiosk and volunteer tokens within their node; admins any."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from points import directory, kiosks, tokens
from points.api.body import Blueprint
from points.api.common import ROW_ID, Id, Moment, UtcDateTime, allow
from points.auth import current_principal, require_scope
from points.errors import NotFoundError
from points.extensions import db
from points.models import ApiToken, District

blp = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens", description="API tokens.")


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


class TokenRowSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    district = fields.String(required=True)
    volunteer_id = fields.Integer(required=True, allow_none=True)
    provider_id = fields.Integer(required=True, allow_none=True)
    created_at = UtcDateTime(required=True)
    expires_at = UtcDateTime(required=True, allow_none=True)
    revoked_at = UtcDateTime(required=True, allow_none=True)


class TokenListSchema(Schema):
    items = fields.List(fields.Nested(TokenRowSchema), required=True)


@blp.route("")
class Tokens(MethodView):
    @allow("office", "auditor", who="admin, office and auditor (their node and below)")
    @blp.response(200, TokenListSchema)
    def get(self):
        """List the valid machine tokens of the node and below (never their secrets), newest
        first; sessions are not listed, revocations are in the audit log."""
        rows = tokens.list_tokens(current_principal())
        return {"items": [row.__dict__ for row in rows]}

    @allow("office", who="admin (any role), an office (kiosk and volunteer tokens in its node)")
    @blp.arguments(TokenCreateSchema)
    @blp.response(201, TokenCreatedSchema)
    def post(self, body):
        """Create a token; it is shown only in this answer."""
        token, secret = tokens.issue_token(
            current_principal(),
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
        tokens.revoke_as(current_principal(), token_id)
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
