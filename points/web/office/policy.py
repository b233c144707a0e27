"""/office/policy: each plugin's configuration at a node, edited as a draft, previewed
against past records, then activated now or from a date; and its version history with a
diff between any two versions.

The form is built from the plugin's JSON Schema (points.web.policy_form): every key
with the value in effect, the node that set it, and whether a node above locked it.
Every change goes through points.policy_drafts, as the API's `.../draft` operations do.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import abort, g, redirect, request, url_for
from flask_babel import gettext as _

from points import directory, policy_drafts, policy_versions
from points.api.policy import json_schema
from points.errors import (
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
)
from points.extensions import db
from points.models import District
from points.plugins import config_schemas, plugin_manager
from points.policy import district_info, resolve_policy, show_policy
from points.web import policy_form
from points.web.forms import PLUGIN_NAMES
from points.web.office import bp, local_day, staff_page
from points.web.pages import field_errors, render_page

# The preview looks this many days back unless asked otherwise.
PREVIEW_DAYS = 30
# The preview lists at most this many volunteers, the largest differences first.
PREVIEW_ROWS = 100


def _node():
    """The node the page is about (?district=, default the staff member's), in reach."""
    code = request.values.get("district") or g.staff.district_code
    try:
        node = district_info(code)
    except NotFoundError:
        abort(404)
    if not g.principal.covers(node.path):
        raise ForbiddenError(_("This node is outside your reach."))
    return node


def _schemas() -> dict:
    return config_schemas(plugin_manager())


def _plugin(name: str):
    schema = _schemas().get(name)
    if schema is None:
        abort(404)
    return schema


def _nodes():
    return directory.tree(None if g.principal.role == "admin" else g.principal.path)


def _codes(ids) -> dict[int, str]:
    return directory.codes_of(set(ids))


@bp.get("/policy", endpoint="policy")
@staff_page
def policy_list():
    """The plugins that take a configuration, with what the node sets and any draft."""
    node = _node()
    resolved = resolve_policy(node.id)
    rows = []
    for name in sorted(_schemas()):
        layer = policy_versions.own_layer(node, name)
        rows.append(
            {
                "name": name,
                "label": PLUGIN_NAMES.get(name, (name, name)),
                "enabled": resolved.configs[name].enabled,
                "newest": layer.newest,
                "set_here": sum(
                    1 for owner in resolved.configs[name].origins.values() if owner == node.id
                ),
                "draft": policy_drafts.get_draft(g.principal, node, name) is not None,
            }
        )
    return render_page(
        "web/office/policy/list.html",
        node=node,
        rows=rows,
        nodes=_nodes(),
        done=request.args.get("done"),
    )


def _locks_above(node, plugin: str) -> dict[str, str]:
    """Each key a node above locked, with that node's code."""
    locks: dict[str, str] = {}
    for ancestor in node.ancestor_ids[:-1]:
        layer = policy_versions.own_layer(ancestor, plugin)
        for key in layer.locked:
            locks.setdefault(key, district_info(ancestor).code)
    return locks


def _inherited(node, plugin: str) -> dict:
    """What the node would have if it set nothing: its parent's policy, or the defaults."""
    parent = node.ancestor_ids[-2] if len(node.ancestor_ids) > 1 else None
    if parent is not None:
        return show_policy(parent)["plugins"][plugin]["config"]
    schema = _plugin(plugin)
    return policy_form_defaults(schema)


def policy_form_defaults(schema) -> dict:
    import json

    return json.loads(json.dumps(schema.dump(schema.load({})), default=str))


def _origin(origins: dict[str, int], path: str) -> set[int]:
    """The nodes that set a key or anything inside it."""
    return {
        node_id
        for key, node_id in origins.items()
        if key == path or key.startswith(path + ".") or path.startswith(key + ".")
    }


def _fields(node, plugin: str, draft) -> list[dict[str, Any]]:
    """Every leaf of the form: its value in effect, who set it, the lock above, and the
    draft's value."""
    schema = _plugin(plugin)
    effective = show_policy(node.id)["plugins"][plugin]["config"]
    origins = resolve_policy(node.id).configs[plugin].origins
    codes = _codes(origins.values())
    above = _locks_above(node, plugin)
    rows = []
    for leaf in policy_form.leaves(json_schema(schema)):
        lock_owner = next(
            (
                owner
                for key, owner in above.items()
                if leaf.path == key or leaf.path.startswith(key + ".")
            ),
            None,
        )
        in_draft = policy_form.has(draft.config, leaf.path)
        value = (
            policy_form.value_at(draft.config, leaf.path)
            if in_draft
            else policy_form.value_at(effective, leaf.path, None)
        )
        rows.append(
            {
                "leaf": leaf,
                "effective": policy_form.shown(
                    policy_form.value_at(effective, leaf.path, None), leaf
                ),
                "set_by": sorted(codes[i] for i in _origin(origins, leaf.path) if i in codes),
                "locked_above": lock_owner,
                "set_here": in_draft,
                "value": policy_form.shown(value, leaf),
                "locked": any(
                    leaf.path == key or leaf.path.startswith(key + ".") for key in draft.locked
                ),
            }
        )
    return rows


def _edit_page(plugin: str, status: int = 200, *, draft=None, form=None, errors=None, **context):
    node = _node()
    draft = draft or policy_drafts.start_draft(g.principal, node, plugin)
    rows = _fields(node, plugin, draft)
    if form is not None:  # a form sent back with its errors: show what was typed
        for row in rows:
            name = row["leaf"].name
            if f"v__{name}" in form:
                row["value"] = form[f"v__{name}"]
                row["set_here"] = bool(form.get(f"set__{name}"))
                row["locked"] = bool(form.get(f"lock__{name}"))
    zone = ZoneInfo(node.timezone)
    today = datetime.now(zone).date()
    return render_page(
        "web/office/policy/edit.html",
        status,
        node=node,
        plugin=plugin,
        label=PLUGIN_NAMES.get(plugin, (plugin, plugin)),
        draft=draft,
        rows=rows,
        errors=errors or {},
        labels={row["leaf"].name: row["leaf"].path for row in rows}
        | {
            "since": _("From"),
            "until": _("To"),
            "effective_from": _("From the day"),
            "comment": _("Why"),
        },
        preview_since=request.form.get("since")
        or (today - timedelta(days=PREVIEW_DAYS)).isoformat(),
        preview_until=request.form.get("until") or today.isoformat(),
        tomorrow=(today + timedelta(days=1)).isoformat(),
        today=today.isoformat(),
        done=request.args.get("done"),
        **context,
    )


def _enabled(text: str | None) -> bool | None:
    return {"on": True, "off": False}.get(text or "")


def _form_errors(error: InvalidInputError, fields) -> dict[str, list[str]]:
    """The draft's field errors (`config.overall.day`) as the form's fields."""
    shown: dict[str, list[str]] = {}
    for key, messages in field_errors(error).items():
        if key.startswith("config."):
            leaf = policy_form.leaf_of(fields, key.removeprefix("config."))
            target = leaf.name if leaf is not None else "form"
        elif key == "locked":
            target = "form"
        else:
            target = key
        shown.setdefault(target, []).extend(messages)
    return shown


@bp.route("/policy/<string(maxlength=64):plugin>", methods=["GET", "POST"])
@staff_page
def policy_edit(plugin: str):
    """The plugin's form: save it as the node's draft."""
    _plugin(plugin)
    if request.method == "GET":
        return _edit_page(plugin)
    if g.principal.role not in ("office", "admin"):
        raise ForbiddenError(_("Auditors read everything in reach and change nothing."))
    node = _node()
    fields = policy_form.leaves(json_schema(_plugin(plugin)))
    config, locked, problems = policy_form.read_form(request.form, fields, _inherited(node, plugin))
    # Locks of keys set as whole objects (not by this form's leaves) stay as they were.
    start = policy_drafts.start_draft(g.principal, node, plugin)
    leaf_paths = {leaf.path for leaf in fields}
    locked += [
        key
        for key in start.locked
        if key not in leaf_paths and policy_form.leaf_of(fields, key) is None
    ]
    if problems:
        errors = {
            policy_form.leaf_of(fields, path).name: messages for path, messages in problems.items()
        }
        return _edit_page(plugin, 422, form=request.form, errors=errors)
    try:
        policy_drafts.save_draft(
            g.principal,
            node,
            plugin,
            config,
            locked=locked,
            enabled=_enabled(request.form.get("enabled")),
            comment=request.form.get("comment", "").strip()[:1000] or None,
        )
    except InvalidInputError as error:
        return _edit_page(plugin, 422, form=request.form, errors=_form_errors(error, fields))
    return redirect(
        url_for("web_office.policy_edit", plugin=plugin, district=node.code, done="saved")
    )


@bp.post("/policy/<string(maxlength=64):plugin>/preview")
@staff_page(change=True)
def policy_preview(plugin: str):
    """What the saved draft would have awarded over a past period, beside today's policy."""
    _plugin(plugin)
    node = _node()
    zone = ZoneInfo(node.timezone)
    since = local_day(request.form.get("since", ""), zone)
    until = local_day(request.form.get("until", ""), zone)
    errors: dict[str, list[str]] = {}
    if since is None:
        errors["since"] = [_("Enter a date.")]
    if until is None:
        errors["until"] = [_("Enter a date.")]
    elif since is not None and until < since:
        errors["until"] = [_("The last day comes on or after the first.")]
    if errors:
        return _edit_page(plugin, 422, errors=errors)
    try:
        preview = policy_drafts.preview_draft(
            g.principal,
            node,
            plugin,
            since.astimezone(UTC),
            (until + timedelta(days=1)).astimezone(UTC),
        )
    except NotFoundError:
        return _edit_page(plugin, 409, errors={"form": [_("Save the draft first.")]})
    except InvalidInputError as error:
        return _edit_page(
            plugin, 422, errors={"form": [m for ms in field_errors(error).values() for m in ms]}
        )
    rows = sorted(preview.rows, key=lambda row: (-abs(row.draft - row.current), row.name))
    return _edit_page(plugin, preview=preview, preview_rows=rows[:PREVIEW_ROWS])


@bp.post("/policy/<string(maxlength=64):plugin>/activate")
@staff_page(change=True)
def policy_activate(plugin: str):
    """Store the saved draft as the node's next version, now or from a day."""
    _plugin(plugin)
    node = _node()
    when = None
    if request.form.get("when") == "later":
        day = local_day(request.form.get("effective_from", ""), ZoneInfo(node.timezone))
        if day is None:
            return _edit_page(plugin, 422, errors={"effective_from": [_("Enter a date.")]})
        when = day.date()
    try:
        stored = policy_drafts.activate_draft(g.principal, node, plugin, when)
    except NotFoundError:
        return _edit_page(plugin, 409, errors={"form": [_("Save the draft first.")]})
    except PreconditionFailedError:
        return _edit_page(
            plugin,
            409,
            errors={
                "form": [
                    _(
                        "Someone stored a newer version after this draft began. Nothing was "
                        "activated: compare the history, then save the draft again."
                    )
                ]
            },
        )
    except InvalidInputError as error:
        errors = field_errors(error)
        if "effective_from" in errors:
            return _edit_page(plugin, 422, errors={"effective_from": [_("Today or later.")]})
        fields = policy_form.leaves(json_schema(_plugin(plugin)))
        return _edit_page(plugin, 422, errors=_form_errors(error, fields))
    return redirect(
        url_for(
            "web_office.policy_versions_page",
            plugin=plugin,
            district=node.code,
            done="activated",
            to=stored.version,
            **{"from": stored.version - 1},
        )
    )


@bp.post("/policy/<string(maxlength=64):plugin>/discard")
@staff_page(change=True)
def policy_discard(plugin: str):
    """Throw the draft away."""
    _plugin(plugin)
    node = _node()
    # Discarded already (another tab): the page shows the layer in effect either way.
    with suppress(NotFoundError):
        policy_drafts.discard_draft(g.principal, node, plugin)
    return redirect(
        url_for("web_office.policy_edit", plugin=plugin, district=node.code, done="discarded")
    )


def _whole(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 10 else None


@bp.get("/policy/<string(maxlength=64):plugin>/versions", endpoint="policy_versions_page")
@staff_page
def policy_history(plugin: str):
    """Every version the node set, newest first, and the difference between two."""
    _plugin(plugin)
    node = _node()
    versions = policy_versions.versions(node, plugin)
    newest = versions[0].version if versions else 0
    newer = _whole(request.args.get("to"))
    older = _whole(request.args.get("from"))
    newer = newest if newer is None else newer
    older = max(newer - 1, 0) if older is None else older
    changes, errors = None, {}
    if versions:
        try:
            changes = policy_versions.diff_versions(node, plugin, older, newer)
        except NotFoundError:
            errors = {"form": [_("No such version here.")]}
    return render_page(
        "web/office/policy/versions.html",
        422 if errors else 200,
        node=node,
        plugin=plugin,
        label=PLUGIN_NAMES.get(plugin, (plugin, plugin)),
        versions=versions,
        older=older,
        newer=newer,
        changes=changes,
        errors=errors,
        labels={},
        done=request.args.get("done"),
        district_name=db.session.get(District, node.id).name,
    )
