"""Plugins and per-district policy: what is installed, what is in effect, drafts."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from apispec.ext.marshmallow.openapi import OpenAPIConverter
from flask import request
from flask.views import MethodView
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import select

from points import policy, policy_drafts, policy_versions
from points.api.body import Blueprint
from points.api.common import Moment, UtcDateTime, allow, check_storable
from points.api.districts import READERS, district_in_reach
from points.auth import current_principal
from points.errors import NotFoundError, PreconditionFailedError
from points.extensions import db
from points.fields import StrictBoolean
from points.models import District, PolicyVersion
from points.plugins import activity_kinds, config_schemas, describe_plugins, plugin_manager
from points.service import preview_policy

blp = Blueprint(
    "policy",
    __name__,
    url_prefix="/api/v1",
    description="Installed plugins and each node's configuration of them.",
)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
PLUGIN_NAME = "string(maxlength=64)"


class DateOrDateTime(fields.Field):
    """A local date (midnight in the node's time zone) or a time with a UTC offset."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("A date (2027-03-01) or a time with a UTC offset.")
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                if not 1900 <= day.year <= 9998:
                    raise ValidationError("Must be between the years 1900 and 9998.")
                return day
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValidationError("A date (2027-03-01) or a time with a UTC offset.") from None
        if moment.tzinfo is None:
            raise ValidationError("Give the time with a UTC offset.")
        return check_storable(moment)


class PluginSchema(Schema):
    name = fields.String(required=True)
    source = fields.String(required=True, metadata={"description": "builtin or an entry point"})
    hooks = fields.List(fields.String(), required=True)
    default_enabled = StrictBoolean(required=True)
    config_schema = fields.Dict(
        required=True,
        allow_none=True,
        metadata={"description": "JSON Schema of the plugin's configuration; null: none."},
    )
    activity_kinds = fields.List(
        fields.Dict(), required=True, metadata={"description": "Kinds of service it adds."}
    )


class PluginListSchema(Schema):
    items = fields.List(fields.Nested(PluginSchema), required=True)


class KeyOriginSchema(Schema):
    district = fields.String(required=True)
    version = fields.Integer(required=True)


class PluginPolicySchema(Schema):
    enabled = StrictBoolean(required=True)
    version = fields.Integer(
        required=True, allow_none=True, metadata={"description": "Newest version id in effect."}
    )
    locked = fields.List(fields.String(), required=True)
    config = fields.Dict(required=True, metadata={"description": "The effective configuration."})
    set_by = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(KeyOriginSchema),
        required=True,
        metadata={"description": "Per dotted key: the node and version that set it."},
    )


class PolicySchema(Schema):
    district = fields.String(required=True)
    plugins = fields.Dict(
        keys=fields.String(), values=fields.Nested(PluginPolicySchema), required=True
    )


class PolicyWriteSchema(Schema):
    config = fields.Dict(keys=fields.String(), load_default=dict)
    enabled = StrictBoolean(
        load_default=None, allow_none=True, metadata={"description": "null: inherited."}
    )
    locked = fields.List(
        fields.String(validate=validate.Length(1, 200)),
        load_default=list,
        metadata={"description": "Keys the nodes below may not change."},
    )
    effective_from = DateOrDateTime(
        load_default=None,
        allow_none=True,
        metadata={"type": "string", "description": "A date or time; default now."},
    )
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 1000))


class PolicyVersionSchema(Schema):
    id = fields.Integer(required=True)
    district = fields.String(required=True)
    plugin = fields.String(required=True)
    version = fields.Integer(required=True)
    config = fields.Dict(required=True)
    locked = fields.List(fields.String(), required=True)
    enabled = StrictBoolean(required=True, allow_none=True)
    author = fields.String(required=True)
    comment = fields.String(required=True, allow_none=True)
    effective_from = UtcDateTime(required=True)
    created_at = UtcDateTime(required=True)


class LayerSchema(Schema):
    district = fields.String(required=True)
    plugin = fields.String(required=True)
    version = fields.Integer(
        required=True,
        metadata={"description": "The version in effect set at this node (0: none)."},
    )
    newest = fields.Integer(
        required=True, metadata={"description": "The node's newest version (its ETag)."}
    )
    config = fields.Dict(required=True, metadata={"description": "Keys set at this node."})
    locked = fields.List(fields.String(), required=True)
    enabled = StrictBoolean(required=True, allow_none=True)
    effective_from = UtcDateTime(required=True, allow_none=True)


class PolicyPatchSchema(Schema):
    config = fields.Dict(
        keys=fields.String(),
        load_default=dict,
        metadata={"description": "A JSON merge patch (RFC 7396) of the node's keys."},
    )
    enabled = StrictBoolean(
        allow_none=True, metadata={"description": "Left out: unchanged; null: inherited."}
    )
    locked = fields.List(
        fields.String(validate=validate.Length(1, 200)),
        load_default=None,
        metadata={"description": "Left out: unchanged; else the node's locks."},
    )
    effective_from = DateOrDateTime(
        load_default=None,
        allow_none=True,
        metadata={"type": "string", "description": "A date or time; default now."},
    )
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 1000))


class VersionListSchema(Schema):
    items = fields.List(fields.Nested(PolicyVersionSchema), required=True)


class DiffQuerySchema(Schema):
    older = fields.Integer(data_key="from", required=True, validate=validate.Range(0, 2**31 - 1))
    newer = fields.Integer(data_key="to", required=True, validate=validate.Range(0, 2**31 - 1))


class ChangeSchema(Schema):
    key = fields.String(
        required=True, metadata={"description": "config.<dotted key>, enabled or locked"}
    )
    change = fields.String(required=True, metadata={"description": "added, removed, changed"})
    before = fields.Raw(required=True, allow_none=True)
    after = fields.Raw(required=True, allow_none=True)


class DiffSchema(Schema):
    district = fields.String(required=True)
    plugin = fields.String(required=True)
    older = fields.Integer(data_key="from", required=True)
    newer = fields.Integer(data_key="to", required=True)
    changes = fields.List(fields.Nested(ChangeSchema), required=True)


class PreviewRequestSchema(Schema):
    config = fields.Dict(keys=fields.String(), load_default=dict)
    enabled = StrictBoolean(load_default=None, allow_none=True)
    locked = fields.List(fields.String(validate=validate.Length(1, 200)), load_default=list)
    since = Moment(required=True)
    until = Moment(required=True)


class PreviewRowSchema(Schema):
    volunteer_id = fields.Integer(required=True)
    name = fields.String(required=True)
    records = fields.Integer(required=True)
    actual = fields.Integer(required=True, metadata={"description": "Points posted."})
    current = fields.Integer(required=True, metadata={"description": "Under today's policy."})
    draft = fields.Integer(required=True, metadata={"description": "Under the draft."})
    difference = fields.Integer(required=True, metadata={"description": "draft - current"})


class PreviewSchema(Schema):
    district = fields.String(required=True)
    plugin = fields.String(required=True)
    since = UtcDateTime(required=True)
    until = UtcDateTime(required=True)
    records = fields.Integer(required=True)
    current_total = fields.Integer(required=True)
    draft_total = fields.Integer(required=True)
    actual_total = fields.Integer(required=True)
    difference = fields.Integer(required=True, metadata={"description": "draft - current"})
    volunteers = fields.List(fields.Nested(PreviewRowSchema), required=True)


def json_schema(schema: Schema) -> dict[str, Any]:
    """Return a marshmallow schema as JSON Schema (2020-12, through apispec)."""
    converter = OpenAPIConverter(
        openapi_version="3.1.0", schema_name_resolver=lambda _schema: None, spec=None
    )
    converted = converter.schema2jsonschema(schema)
    return {"$schema": JSON_SCHEMA_DIALECT, **json.loads(json.dumps(converted, default=str))}


@blp.route("/plugins")
class Plugins(MethodView):
    @allow("office", "auditor", "kiosk", "volunteer", "session", who="any token")
    @blp.response(200, PluginListSchema)
    def get(self):
        """List the installed plugins: their hooks, activity kinds and config schema."""
        pm = plugin_manager()
        schemas = config_schemas(pm)
        kinds = activity_kinds(pm)
        items = []
        for row in describe_plugins(pm):
            schema = schemas.get(row["name"])
            items.append(
                {
                    "name": row["name"],
                    "source": row["source"],
                    "hooks": row["hooks"],
                    "default_enabled": row["default_enabled"],
                    "config_schema": json_schema(schema) if schema is not None else None,
                    "activity_kinds": [
                        {
                            "name": kind.name,
                            "label": f"{kind.label_zh} / {kind.label_en}",
                            "minutes": kind.minutes,
                            "details_schema": json_schema(kind.schema()),
                        }
                        for kind in kinds.values()
                        if kind.plugin == row["name"]
                    ],
                }
            )
        return {"items": items}


def _set_by(config, codes: dict[int, str], versions: dict[int, tuple[int, int]]) -> dict:
    """Per dotted key set by some node: that node's code and its version number."""
    by_district = {district_id: number for district_id, number in versions.values()}
    return {
        key: {"district": codes[district_id], "version": by_district[district_id]}
        for key, district_id in sorted(config.origins.items())
        if district_id in by_district
    }


@blp.route("/districts/<string(maxlength=64):code>/policy")
class DistrictPolicy(MethodView):
    @allow(*READERS, who="any token whose node holds this one")
    @blp.response(200, PolicySchema)
    def get(self, code):
        """Show each plugin's effective configuration, and which node and version set each
        key."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        shown = policy.show_policy(district.code)
        resolved = policy.resolve_policy(district.code)
        version_ids = {v for config in resolved.configs.values() for v in config.versions}
        versions = {
            row.id: (row.district_id, row.version)
            for row in db.session.execute(
                select(PolicyVersion.id, PolicyVersion.district_id, PolicyVersion.version).where(
                    PolicyVersion.id.in_(version_ids)
                )
            )
        }
        ids = [int(part) for part in district.path.strip("/").split("/")]
        codes = {
            row.id: row.code
            for row in db.session.execute(
                select(District.id, District.code).where(District.id.in_(ids))
            )
        }
        plugins = {}
        for name, config in resolved.configs.items():
            mine = {v: versions[v] for v in config.versions if v in versions}
            plugins[name] = {
                "enabled": config.enabled,
                "version": config.version,
                "locked": sorted(config.locked),
                "config": shown["plugins"][name]["config"],
                "set_by": _set_by(config, codes, mine),
            }
        return {"district": district.code, "plugins": plugins}


def _if_match() -> int | None:
    """The version an If-Match header names ("3", W/"3"), or None without one."""
    value = request.headers.get("If-Match")
    if value is None:
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise PreconditionFailedError(
            "If-Match must be the ETag a read of this policy gave",
            errors={"If-Match": ["Not an ETag of this policy."]},
        )
    return int(tag)


def _etag(number: int) -> dict[str, str]:
    return {"ETag": f'"{number}"'}


def _version(stored: policy.VersionInfo, code: str) -> dict[str, Any]:
    return {
        **stored.as_dict(),
        "district": code,
        "locked": list(stored.locked),
        "effective_from": stored.effective_from,
        "created_at": stored.created_at,
    }


@blp.route(f"/districts/<string(maxlength=64):code>/policy/<{PLUGIN_NAME}:plugin>")
class DistrictPluginPolicy(MethodView):
    @allow("office", "auditor", who="offices and auditors whose node holds this one")
    @blp.response(200, LayerSchema)
    def get(self, code, plugin):
        """Show what the node itself sets for the plugin (not what it inherits), with its
        newest version as the ETag for a PUT or PATCH with If-Match."""
        district = district_in_reach(current_principal(), code)
        layer = policy_versions.own_layer(district.code, plugin)
        shown = layer.version
        return (
            {
                "district": district.code,
                "plugin": plugin,
                "version": shown.version if shown else 0,
                "newest": layer.newest,
                "config": layer.config,
                "locked": layer.locked,
                "enabled": layer.enabled,
                "effective_from": shown.effective_from if shown else None,
            },
            200,
            _etag(layer.newest),
        )

    @allow("office", who="admin, an office whose node holds this one")
    @blp.arguments(PolicyWriteSchema)
    @blp.response(200, PolicyVersionSchema)
    def put(self, body, code, plugin):
        """Store a new version of the plugin's configuration at the node (422: field
        errors; 412: If-Match names a version that is no longer the newest)."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        stored = policy.set_policy(
            district.code,
            plugin,
            body["config"],
            author=principal.actor,
            locked=body["locked"],
            enabled=body["enabled"],
            effective_from=body["effective_from"],
            comment=body["comment"],
            expected_version=_if_match(),
        )
        return _version(stored, district.code), 200, _etag(stored.version)

    @allow("office", who="admin, an office whose node holds this one")
    @blp.arguments(PolicyPatchSchema, content_type="application/merge-patch+json")
    @blp.response(200, PolicyVersionSchema)
    def patch(self, body, code, plugin):
        """Change some keys of what the node sets, leaving the rest: `config` is a JSON
        merge patch (RFC 7396; null removes a key, e.g. a catalog item). Stored as the
        node's next version (422: field errors; 412: If-Match is stale)."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        stored = policy_versions.patch_policy(
            district.code,
            plugin,
            body["config"],
            author=principal.actor,
            locked=body["locked"],
            **({"enabled": body["enabled"]} if "enabled" in body else {}),
            effective_from=body["effective_from"],
            comment=body["comment"],
            expected_version=_if_match(),
        )
        return _version(stored, district.code), 200, _etag(stored.version)


@blp.route(f"/districts/<string(maxlength=64):code>/policy/<{PLUGIN_NAME}:plugin>/versions")
class DistrictPluginVersions(MethodView):
    @allow("office", "auditor", who="offices and auditors whose node holds this one")
    @blp.response(200, VersionListSchema)
    def get(self, code, plugin):
        """Every version of the plugin's configuration set at the node, newest first."""
        district = district_in_reach(current_principal(), code)
        rows = policy_versions.versions(district.code, plugin)
        return {"items": [_version(row, district.code) for row in rows]}


@blp.route(
    f"/districts/<string(maxlength=64):code>/policy/<{PLUGIN_NAME}:plugin>"
    "/versions/<int(max=2147483647):number>"
)
class DistrictPluginVersion(MethodView):
    @allow("office", "auditor", who="offices and auditors whose node holds this one")
    @blp.response(200, PolicyVersionSchema)
    def get(self, code, plugin, number):
        """One version of the plugin's configuration at the node."""
        district = district_in_reach(current_principal(), code)
        return _version(policy_versions.get_version(district.code, plugin, number), district.code)


@blp.route(f"/districts/<string(maxlength=64):code>/policy/<{PLUGIN_NAME}:plugin>/diff")
class DistrictPluginDiff(MethodView):
    @allow("office", "auditor", who="offices and auditors whose node holds this one")
    @blp.arguments(DiffQuerySchema, location="query")
    @blp.response(200, DiffSchema)
    def get(self, query, code, plugin):
        """The keys that differ between two versions at the node (`from=0`: nothing set),
        with their values before and after."""
        district = district_in_reach(current_principal(), code)
        changes = policy_versions.diff_versions(
            district.code, plugin, query["older"], query["newer"]
        )
        return {
            "district": district.code,
            "plugin": plugin,
            "older": query["older"],
            "newer": query["newer"],
            "changes": [change.as_dict() for change in changes],
        }


@blp.route(f"/districts/<string(maxlength=64):code>/policy/<{PLUGIN_NAME}:plugin>/preview")
class DistrictPluginPreview(MethodView):
    @allow("office", who="admin, an office whose node holds this one")
    @blp.arguments(PreviewRequestSchema)
    @blp.response(200, PreviewSchema)
    def post(self, body, code, plugin):
        """Re-run a draft over the node's records in [since, until): per volunteer and total,
        what it would award beside today's policy. Writes nothing."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        preview = preview_policy(
            district.code,
            plugin,
            body["config"],
            start=body["since"],
            end=body["until"],
            locked=body["locked"],
            enabled=body["enabled"],
        )
        return _preview(preview)


def _preview(preview) -> dict[str, Any]:
    """A preview as the API answers it."""
    return {
        "district": preview.district,
        "plugin": preview.plugin,
        "since": preview.start,
        "until": preview.end,
        "records": preview.records,
        "current_total": preview.current_total,
        "draft_total": preview.draft_total,
        "actual_total": preview.actual_total,
        "difference": preview.draft_total - preview.current_total,
        "volunteers": [
            {**row.__dict__, "difference": row.draft - row.current} for row in preview.rows
        ],
    }


class DraftWriteSchema(Schema):
    config = fields.Dict(keys=fields.String(), load_default=dict)
    enabled = StrictBoolean(
        load_default=None, allow_none=True, metadata={"description": "null: inherited."}
    )
    locked = fields.List(
        fields.String(validate=validate.Length(1, 200)),
        load_default=list,
        metadata={"description": "Keys the nodes below may not change."},
    )
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 1000))


class DraftSchema(Schema):
    district = fields.String(required=True)
    plugin = fields.String(required=True)
    config = fields.Dict(required=True, metadata={"description": "Keys the node will set."})
    locked = fields.List(fields.String(), required=True)
    enabled = StrictBoolean(required=True, allow_none=True)
    base_version = fields.Integer(
        required=True, metadata={"description": "The node's newest version when it began."}
    )
    author = fields.String(required=True, allow_none=True)
    comment = fields.String(required=True, allow_none=True)
    updated_at = UtcDateTime(required=True, allow_none=True)


class DraftPreviewSchema(Schema):
    since = Moment(required=True)
    until = Moment(required=True)


class DraftActivateSchema(Schema):
    effective_from = DateOrDateTime(
        load_default=None,
        allow_none=True,
        metadata={"type": "string", "description": "A date or time, today or later; default now."},
    )


DRAFT = f"/districts/<string(maxlength=64):code>/policy/<{PLUGIN_NAME}:plugin>/draft"


@blp.route(DRAFT)
class DistrictPluginDraft(MethodView):
    @allow("office", "auditor", who="offices and auditors whose node holds this one")
    @blp.response(200, DraftSchema)
    def get(self, code, plugin):
        """The node's saved draft of the plugin's next version (404: none)."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        draft = policy_drafts.get_draft(principal, district.code, plugin)
        if draft is None:
            raise NotFoundError(f"no draft of {plugin!r} at {district.code}")
        return draft.as_dict()

    @allow("office", who="admin, an office whose node holds this one")
    @blp.arguments(DraftWriteSchema)
    @blp.response(200, DraftSchema)
    def put(self, body, code, plugin):
        """Save the node's draft: the whole layer it will set (config, locks, switch),
        checked as a version would be (422: field errors), replacing an earlier draft."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        return policy_drafts.save_draft(
            principal,
            district.code,
            plugin,
            body["config"],
            locked=body["locked"],
            enabled=body["enabled"],
            comment=body["comment"],
        ).as_dict()

    @allow("office", who="admin, an office whose node holds this one")
    @blp.response(204)
    def delete(self, code, plugin):
        """Discard the node's draft (404: none)."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        policy_drafts.discard_draft(principal, district.code, plugin)


@blp.route(DRAFT + "/preview")
class DistrictPluginDraftPreview(MethodView):
    @allow("office", who="admin, an office whose node holds this one")
    @blp.arguments(DraftPreviewSchema)
    @blp.response(200, PreviewSchema)
    def post(self, body, code, plugin):
        """Re-run the saved draft over the node's records in [since, until): per volunteer
        and total, beside today's policy. Writes nothing."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        return _preview(
            policy_drafts.preview_draft(
                principal, district.code, plugin, body["since"], body["until"]
            )
        )


@blp.route(DRAFT + "/activate")
class DistrictPluginDraftActivate(MethodView):
    @allow("office", who="admin, an office whose node holds this one")
    @blp.arguments(DraftActivateSchema)
    @blp.response(200, PolicyVersionSchema)
    def post(self, body, code, plugin):
        """Store the saved draft as the node's next version, now or from a date, and
        remove the draft (412: a newer version was stored since the draft began)."""
        principal = current_principal()
        district = district_in_reach(principal, code)
        stored = policy_drafts.activate_draft(
            principal, district.code, plugin, body["effective_from"]
        )
        return _version(stored, district.code), 200, _etag(stored.version)
