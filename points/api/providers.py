"""Service providers: the link tokens that open a provider's voucher page."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from points import providers
from points.api.common import allow
from points.auth import current_principal

blp = Blueprint(
    "providers",
    __name__,
    url_prefix="/api/v1/providers",
    description="Service providers and their page links.",
)


class ProviderLinkSchema(Schema):
    id = fields.Integer(
        required=True, metadata={"description": "The token's id: revoke with DELETE /tokens/{id}."}
    )
    token = fields.String(required=True, metadata={"description": "Shown only this once."})
    provider = fields.String(required=True)
    url = fields.String(
        required=True,
        metadata={"description": "The provider's page link (holds the token): give it once."},
    )


def public_url() -> str:
    """The address people reach this service at: PUBLIC_URL, else this request's."""
    return (current_app.config.get("PUBLIC_URL") or request.url_root).rstrip("/")


@blp.route("/<string(maxlength=64):code>/links")
class ProviderLinks(MethodView):
    @allow("office", who="admin, or an office whose node holds the provider's")
    @blp.response(201, ProviderLinkSchema)
    def post(self, code):
        """Issue a link to the provider's voucher page; it reaches only their vouchers."""
        link = providers.issue_link(current_principal(), code)
        return {
            "id": link.token_id,
            "token": link.token,
            "provider": link.provider,
            "url": link.url(public_url()),
        }
