"""The catalog as an office edits it: the items in effect at a node, one item at a time.

Public: items_at(principal, district) -> CatalogView; save_item(principal, district, sku,
values, *, new, expected_version) -> VersionInfo | None (None: nothing differed);
retire_item / restore_item (same);
providers_for(district) -> list[Provider].

Items live in the `catalog` plugin's configuration (plugins/catalog.py), so every change
is a new policy version written by policy_versions.patch_policy: validated by the
plugin's schema (a provider must exist and be open), refused below a lock, kept in the
version history and the audit log. Only what differs from the item in effect goes into
the patch, so a community that changes the price of its street's haircut sets that one
key and keeps inheriting the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select

from points.auth import Principal, require_scope
from points.errors import ForbiddenError, InvalidInputError
from points.extensions import db
from points.models import District, Provider, utcnow
from points.policy import VersionInfo, district_info, resolve_policy, show_policy
from points.policy_versions import own_layer, patch_policy

PLUGIN = "catalog"
# The keys of an item, as the catalog plugin's schema writes them.
ITEM_KEYS = (
    "names",
    "cost",
    "provider",
    "stock_per_month",
    "per_person",
    "min_star",
    "active_from",
    "active_until",
    "unit_price_fen",
)


@dataclass(frozen=True)
class Item:
    """One item in effect at a node, as the plugin's schema writes it, and where it is set."""

    sku: str
    values: dict[str, Any]
    set_here: bool  # the item (or some key of it) is set at this node
    origin: str  # the code of the node that first set the item
    state: str  # "open", "retired" (past active_until) or "upcoming" (before active_from)


@dataclass(frozen=True)
class CatalogView:
    district: str
    enabled: bool
    locked_by: str | None  # the node above that locked the items, if one did
    newest: int  # the node's newest catalog version: what a form hands back
    items: list[Item]


def _today(node) -> date:
    return utcnow().astimezone(ZoneInfo(node.timezone)).date()


def _state(values: dict[str, Any], today: date) -> str:
    until, start = values.get("active_until"), values.get("active_from")
    if until and date.fromisoformat(until) < today:
        return "retired"
    if start and date.fromisoformat(start) > today:
        return "upcoming"
    return "open"


def _reach(principal: Principal, district: str):
    node = district_info(district)
    require_scope(principal, node.path)
    return node


def items_at(principal: Principal, district: str) -> CatalogView:
    """The catalog in effect at a node in the principal's reach, open items first."""
    node = _reach(principal, district)
    config = resolve_policy(node).config(PLUGIN)
    shown = _items_in_effect(node)
    codes = dict(db.session.execute(select(District.id, District.code)).all())
    today = _today(node)
    items = []
    for sku, values in shown.items():
        origin = config.origins.get(f"items.{sku}", node.id)
        set_here = any(
            key == f"items.{sku}" or key.startswith(f"items.{sku}.")
            for key, owner in config.origins.items()
            if owner == node.id
        )
        items.append(
            Item(sku, values, set_here, codes.get(origin, node.code), _state(values, today))
        )
    order = {"open": 0, "upcoming": 1, "retired": 2}
    items.sort(key=lambda item: (order[item.state], item.values["names"]["zh-CN"], item.sku))
    return CatalogView(
        node.code,
        config.enabled,
        _locked_above(node),
        own_layer(node, PLUGIN).newest,
        items,
    )


def _items_in_effect(node) -> dict[str, dict[str, Any]]:
    """The node's catalog items as the plugin's schema writes them (what a PUT takes)."""
    return show_policy(node)["plugins"][PLUGIN]["config"]["items"]


def _locked_above(node) -> str | None:
    """The code of the nearest node above that locked the catalog's items, if any."""
    for ancestor in reversed(node.ancestor_ids[:-1]):
        if "items" in own_layer(ancestor, PLUGIN).locked:
            return district_info(ancestor).code
    return None


def providers_for(district: str) -> list[Provider]:
    """Open providers an item of this node may name: those of its own node, the nodes
    above it and the nodes below it, by name."""
    node = district_info(district)
    ancestors = [int(part) for part in node.path.strip("/").split("/")]
    return list(
        db.session.scalars(
            select(Provider)
            .join(District, District.id == Provider.district_id)
            .where(
                Provider.status == "active",
                or_(
                    District.id.in_(ancestors),
                    District.path.startswith(node.path, autoescape=True),
                ),
            )
            .order_by(Provider.name)
        )
    )


def _changes(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that makes item `before` into `after` (null clears a key)."""
    if before is None:
        return {key: value for key, value in after.items() if value is not None}
    patch: dict[str, Any] = {}
    for key in ITEM_KEYS:
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            patch[key] = {k: v for k, v in new.items() if old.get(k) != v}
        else:
            patch[key] = new
    return patch


def _write(
    principal: Principal, node, patch: dict, comment: str, expected_version: int | None
) -> VersionInfo:
    if principal.role not in ("office", "admin"):
        raise ForbiddenError("auditors read the catalog and change nothing")
    return patch_policy(
        node,
        PLUGIN,
        {"items": patch},
        author=principal.actor,
        comment=comment,
        expected_version=expected_version,
    )


def save_item(
    principal: Principal,
    district: str,
    sku: str,
    values: dict[str, Any],
    *,
    new: bool,
    expected_version: int | None = None,
) -> VersionInfo | None:
    """Add item `sku` (new=True) or change it at the node: only what differs from the
    item in effect is written. Raises InvalidInputError with `config.items.<sku>.<key>`
    field errors, PreconditionFailedError when the catalog changed since
    `expected_version`, ForbiddenError. Returns None when nothing differed."""
    node = _reach(principal, district)
    current = _items_in_effect(node).get(sku)
    if new and current is not None:
        raise InvalidInputError(
            f"there is already an item {sku!r}",
            errors={f"config.items.{sku}": ["An item with this code exists; edit it instead."]},
        )
    if not new and current is None:
        raise InvalidInputError(
            f"no item {sku!r} here", errors={f"config.items.{sku}": ["No such item here."]}
        )
    patch = _changes(current, values)
    if not patch:
        return None
    verb = "add" if new else "edit"
    return _write(principal, node, {sku: patch}, f"catalog: {verb} {sku}", expected_version)


def retire_item(
    principal: Principal, district: str, sku: str, *, expected_version: int | None = None
) -> VersionInfo:
    """Close item `sku` at the node from today: its last day was yesterday. Vouchers
    already held for it stay valid; the versions keep what it was."""
    node = _reach(principal, district)
    yesterday = (_today(node) - timedelta(days=1)).isoformat()
    current = _items_in_effect(node).get(sku)
    if current is None:
        raise InvalidInputError(
            f"no item {sku!r} here", errors={f"config.items.{sku}": ["No such item here."]}
        )
    patch: dict[str, Any] = {"active_until": yesterday}
    if current.get("active_from") and current["active_from"] > yesterday:
        patch["active_from"] = yesterday
    return _write(principal, node, {sku: patch}, f"catalog: retire {sku}", expected_version)


def restore_item(
    principal: Principal, district: str, sku: str, *, expected_version: int | None = None
) -> VersionInfo:
    """Open a retired item again at the node (it no longer ends)."""
    node = _reach(principal, district)
    patch = {sku: {"active_until": None}}
    own = own_layer(node, PLUGIN).config.get("items", {}).get(sku, {})
    if "active_until" not in own:
        # Retired above this node: clearing here would change nothing; say so.
        raise InvalidInputError(
            f"{sku!r} was closed above this node",
            errors={f"config.items.{sku}": ["Closed by a node above; reopen it there."]},
        )
    return _write(principal, node, patch, f"catalog: reopen {sku}", expected_version)


def parse_date(value: str) -> str | None:
    """A form's date as the schema writes it, or None when left empty."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except ValueError:
        return value  # the schema's own message says what is wrong
