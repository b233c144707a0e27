"""Districts: nodes of the administrative tree (city > district > street > community > grid)."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from points import directory
from points.api.body import Blueprint
from points.api.common import allow
from points.auth import current_principal, require_scope
from points.errors import ForbiddenError, InvalidInputError
from points.extensions import db
from points.models import District

# Every role may read the nodes within its reach.
READERS = ("office", "auditor", "kiosk", "volunteer", "session")

blp = Blueprint(
    "districts", __name__, url_prefix="/api/v1/districts", description="The district tree."
)


class DistrictCreateSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.Regexp(directory.CODE_PATTERN),
        metadata={"description": "Lower-case letters, digits and '-'."},
    )
    name = fields.String(required=True, validate=validate.Length(1, 200))
    parent = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 64),
        metadata={"description": "The parent node's code; only an admin may add a root."},
    )
    level = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.OneOf(directory.LEVELS),
        metadata={"description": "Defaults to the level below the parent's (city for a root)."},
    )
    timezone = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 64),
        metadata={"description": "An IANA time zone; defaults to the parent's."},
    )
    contact = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 200),
        metadata={
            "description": "The office's contact line, shown to volunteers and printed on "
            "cards (龙潭街道办事处 010-6711 2233)."
        },
    )


class DistrictSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    level = fields.String(required=True)
    parent = fields.String(required=True, allow_none=True)
    timezone = fields.String(required=True)
    contact = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "The office's contact line; null: the nearest above's."},
    )
    path = fields.List(
        fields.String(),
        required=True,
        metadata={"description": "Codes from the root down to this node."},
    )


class DistrictNodeSchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)
    level = fields.String(required=True)
    parent = fields.String(required=True, allow_none=True)
    depth = fields.Integer(
        required=True, metadata={"description": "0 for the token's own node, 1 below it..."}
    )


class DistrictTreeSchema(Schema):
    items = fields.List(
        fields.Nested(DistrictNodeSchema),
        required=True,
        metadata={"description": "The nodes in reach, each parent before its children."},
    )


def district_in_reach(principal, code: str) -> District:
    """Return the district `code` if `principal` reaches it. Raises NotFoundError, 403."""
    district = directory.district_by_code(code)
    require_scope(principal, district.path)
    return district


def describe(district: District) -> dict:
    """Return a district as the API shows it."""
    ids = [int(part) for part in district.path.strip("/").split("/")]
    rows = db.session.execute(select(District.id, District.code).where(District.id.in_(ids)))
    codes = {row.id: row.code for row in rows}
    return {
        "code": district.code,
        "name": district.name,
        "level": district.level,
        "parent": codes[ids[-2]] if len(ids) > 1 else None,
        "timezone": district.timezone,
        "contact": district.contact,
        "path": [codes[i] for i in ids],
    }


@blp.route("")
class Districts(MethodView):
    @allow("office", "auditor", who="admin (every node), office and auditor (their node and below)")
    @blp.response(200, DistrictTreeSchema)
    def get(self):
        """List the nodes in reach as a tree: each parent first, then its children."""
        principal = current_principal()
        nodes = directory.tree(None if principal.role == "admin" else principal.path)
        return {"items": [node.__dict__ for node in nodes]}

    @allow("office", who="admin, or an office whose node holds the parent")
    @blp.arguments(DistrictCreateSchema)
    @blp.response(201, DistrictSchema)
    def post(self, body):
        """Add a node below a parent."""
        principal = current_principal()
        parent = None
        if body["parent"] is None:
            if principal.role != "admin":
                raise ForbiddenError("only an admin may add a root node")
        else:
            parent = district_in_reach(principal, body["parent"])
        level = body["level"]
        if level is None:
            if parent is None:
                level = directory.LEVELS[0]
            elif parent.level == directory.LEVELS[-1]:
                raise InvalidInputError(
                    "a grid has no level below it", errors={"parent": ["A grid has no children."]}
                )
            else:
                level = directory.LEVELS[directory.LEVELS.index(parent.level) + 1]
        district = directory.create_district(
            body["code"],
            body["name"],
            level,
            parent=body["parent"],
            timezone=body["timezone"],
            contact=body["contact"],
        )
        return describe(district)


@blp.route("/<string(maxlength=64):code>")
class DistrictByCode(MethodView):
    @allow(*READERS, who="any token whose node holds this one")
    @blp.response(200, DistrictSchema)
    def get(self, code):
        """Show a node of the tree."""
        principal = current_principal()
        return describe(district_in_reach(principal, code))
