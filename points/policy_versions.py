"""A node's own layer of a plugin's policy: change one key of it, list and compare versions.

Public: own_layer(district, plugin, as_of=None) -> Layer; merge_patch(target, patch) ->
dict (RFC 7396); patch_policy(district, plugin, patch, *, author, ...) -> VersionInfo;
get_version(district, plugin, number) -> VersionInfo; diff_versions(district, plugin,
older, newer) -> list[Change].

A node's version holds every key set at that node, so writing one means restating the
others. An office adding a catalog item wants none of that: `patch_policy` applies a
JSON merge patch to the node's layer in effect and stores the result as the next
version, through `policy.set_policy` (the one writer of versions, with its checks and
its audit row). The node's newest version number is its ETag: a patch or a PUT that
names it in If-Match is refused (412) when someone else wrote since.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select

from points.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
)
from points.extensions import db
from points.models import PolicyVersion, utcnow
from points.policy import (
    ENABLED,
    VersionInfo,
    _effective_time,
    _known_plugin,
    _leaves,
    _version_info,
    district_info,
    set_policy,
)


@dataclass(frozen=True)
class Layer:
    """What a node itself sets for a plugin at a time, and the node's newest version."""

    district: str
    plugin: str
    version: VersionInfo | None  # the one in effect at the time; None: nothing set here
    newest: int  # the node's newest version number (0: none), its ETag

    @property
    def config(self) -> dict:
        return copy.deepcopy(self.version.config) if self.version else {}

    @property
    def locked(self) -> list[str]:
        return list(self.version.locked) if self.version else []

    @property
    def enabled(self) -> bool | None:
        return self.version.enabled if self.version else None


def newest_version(district_id: int, plugin: str) -> int:
    """The node's newest version number of the plugin (0: none)."""
    return (
        db.session.scalar(
            select(func.max(PolicyVersion.version)).where(
                PolicyVersion.district_id == district_id, PolicyVersion.plugin == plugin
            )
        )
        or 0
    )


def own_layer(district, plugin: str, as_of: datetime | None = None) -> Layer:
    """Return the version the node itself has in effect at `as_of` (now) for `plugin`."""
    node = district_info(district)
    _known_plugin(plugin)
    as_of = as_of or utcnow()
    row = db.session.scalars(
        select(PolicyVersion)
        .where(
            PolicyVersion.district_id == node.id,
            PolicyVersion.plugin == plugin,
            PolicyVersion.effective_from <= as_of,
        )
        .order_by(PolicyVersion.effective_from.desc(), PolicyVersion.version.desc())
        .limit(1)
    ).first()
    return Layer(
        node.code,
        plugin,
        _version_info(row) if row is not None else None,
        newest_version(node.id, plugin),
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON merge patch: objects merge key by key, null removes a key,
    anything else (lists included) replaces.

    One departure: an object that the patch's nulls leave empty is removed too. In a
    node's layer an empty object is a value (it replaces what the nodes above set), so
    clearing the last key a node set under `items.haircut` must leave the node setting
    nothing there, not an empty item. An empty object the patch itself gives stays."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
            continue
        merged = merge_patch(result.get(key), value)
        if isinstance(merged, Mapping) and not merged and value:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


_UNSET = object()


def patch_policy(
    district,
    plugin: str,
    patch: Mapping[str, Any],
    *,
    author: str,
    locked: list[str] | None = None,
    enabled: Any = _UNSET,
    effective_from: datetime | date | None = None,
    comment: str | None = None,
    expected_version: int | None = None,
) -> VersionInfo:
    """Store the node's layer in effect at `effective_from` (now), changed by the merge
    patch `patch` of its config, as the node's next version; return it.

    `locked` replaces the node's locks when given; `enabled` (True, False or None:
    inherited) replaces its switch when given. Raises what set_policy raises.
    """
    if not isinstance(patch, Mapping):
        raise InvalidInputError(
            "config must be a JSON object", errors={"config": ["Must be an object."]}
        )
    node = district_info(district)
    when = _effective_time(effective_from, node)
    layer = own_layer(node, plugin, when)
    try:
        return set_policy(
            node,
            plugin,
            merge_patch(layer.config, patch),
            author=author,
            locked=layer.locked if locked is None else locked,
            enabled=layer.enabled if enabled is _UNSET else enabled,
            effective_from=when,
            comment=comment,
            expected_version=layer.newest if expected_version is None else expected_version,
        )
    except PreconditionFailedError:
        if expected_version is not None:
            raise
        # The caller named no version: the layer changed under this patch, a race.
        raise ConflictError(
            f"another change to {plugin!r} at {node.code} came first; try again"
        ) from None


def versions(district, plugin: str) -> list[VersionInfo]:
    """Every version the node set for `plugin`, newest first."""
    from points.policy import policy_history

    return policy_history(district, plugin)


def get_version(district, plugin: str, number: int) -> VersionInfo:
    """One version of the node's `plugin` by its number; NotFoundError."""
    node = district_info(district)
    _known_plugin(plugin)
    row = db.session.scalars(
        select(PolicyVersion).where(
            PolicyVersion.district_id == node.id,
            PolicyVersion.plugin == plugin,
            PolicyVersion.version == number,
        )
    ).first()
    if row is None:
        raise NotFoundError(
            f"no version {number} of {plugin!r} at {node.code}",
            errors={"version": ["No such version."]},
        )
    return _version_info(row)


@dataclass(frozen=True)
class Change:
    """One key that differs between two versions: "added", "removed" or "changed"."""

    key: str
    change: str
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _flat(version: VersionInfo | None) -> dict[str, Any]:
    """A version as dotted keys to leaf values, with its switch and locks as keys too."""
    if version is None:
        return {}
    flat = {f"config.{path}": value for path, value, leaf in _leaves(version.config) if leaf}
    if version.enabled is not None:
        flat[ENABLED] = version.enabled
    if version.locked:
        flat["locked"] = sorted(version.locked)
    return flat


def diff(older: VersionInfo | None, newer: VersionInfo | None) -> list[Change]:
    """The keys that differ from `older` to `newer`, in key order."""
    before, after = _flat(older), _flat(newer)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if key not in before:
            changes.append(Change(key, "added", after=after[key]))
        elif key not in after:
            changes.append(Change(key, "removed", before=before[key]))
        elif before[key] != after[key]:
            changes.append(Change(key, "changed", before[key], after[key]))
    return changes


def diff_versions(district, plugin: str, older: int, newer: int) -> list[Change]:
    """The keys that differ between two versions of the node's `plugin` (0: nothing set)."""
    first = get_version(district, plugin, older) if older else None
    second = get_version(district, plugin, newer) if newer else None
    return diff(first, second)
