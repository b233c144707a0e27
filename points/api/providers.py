"""Service providers: the link tokens that open a provider's voucher page."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from points import directory, providers
from points.api.body import Blueprint
from points.api.common import UtcDateTime, allow
from points.auth import current_principal, require_scope
from points.extensions import db
from points.models import District

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


class ProviderCreateSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.Regexp(directory.CODE_PATTERN),
        metadata={"description": "Lower-case letters, digits and '-'; catalog items name it."},
    )
    name = fields.String(required=True, validate=validate.Length(1, 200))
    district = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": "The node the provider serves (and everything below)."},
    )


class ProviderPatchSchema(Schema):
    name = fields.String(validate=validate.Length(1, 200))
    status = fields.String(
        validate=validate.OneOf(directory.PROVIDER_STATES),
        metadata={"description": "closed: no item may name it; its vouchers stay valid."},
    )


class ProviderSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    district = fields.String(required=True)
    status = fields.String(required=True)
    created_at = UtcDateTime(required=True)


class ProviderListSchema(Schema):
    items = fields.List(fields.Nested(ProviderSchema), required=True)


def describe(provider, code: str) -> dict:
    return {
        "code": provider.code,
        "name": provider.name,
        "district": code,
        "status": provider.status,
        "created_at": provider.created_at,
    }


def provider_in_reach(principal, code: str):
    """Return (provider, its node's code) if `principal` reaches the provider's node."""
    provider = directory.provider_by_code(code)
    district = db.session.get(District, provider.district_id)
    require_scope(principal, district.path, "this provider")
    return provider, district.code


@blp.route("")
class Providers(MethodView):
    @allow("office", "auditor", who="admin, office and auditor (their node and below)")
    @blp.response(200, ProviderListSchema)
    def get(self):
        """List the service providers of the node and below."""
        principal = current_principal()
        path = None if principal.role == "admin" else principal.path
        return {"items": [describe(p, code) for p, code in directory.list_providers(path)]}

    @allow("office", who="admin, an office whose node holds the provider's")
    @blp.arguments(ProviderCreateSchema)
    @blp.response(201, ProviderSchema)
    def post(self, body):
        """Add a service provider; catalog items of the node and below may then name it."""
        principal = current_principal()
        node = directory.district_by_code(body["district"])
        require_scope(principal, node.path)
        provider = directory.create_provider(body["code"], body["name"], body["district"])
        return describe(provider, node.code)


@blp.route("/<string(maxlength=64):code>")
class ProviderByCode(MethodView):
    @allow("office", "auditor", who="admin, office and auditor of the provider's node or above")
    @blp.response(200, ProviderSchema)
    def get(self, code):
        """Show a provider."""
        return describe(*provider_in_reach(current_principal(), code))

    @allow("office", who="admin, an office of the provider's node or above")
    @blp.arguments(ProviderPatchSchema)
    @blp.response(200, ProviderSchema)
    def patch(self, body, code):
        """Rename a provider, close it or reopen it."""
        _, node_code = provider_in_reach(current_principal(), code)
        provider = directory.update_provider(code, name=body.get("name"), status=body.get("status"))
        return describe(provider, node_code)
