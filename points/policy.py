"""Per-district plugin configuration: versioned storage, resolution down the tree.

Public: set_policy(district, plugin, config, *, author, locked=(), enabled=None,
effective_from=None, comment=None) -> VersionInfo; resolve_policy(district, as_of=None)
-> Policy; plugin_config(name, district, as_of=None) -> PluginConfig;
show_policy(district, as_of=None) -> dict; policy_history(district, plugin) ->
list[VersionInfo]; check_draft(...), which a draft's preview (points.service.preview)
shares with set_policy; district_info(district) -> DistrictInfo; VERSIONS_STAMP and
check_versions(stamp), for a reader that can fetch the stamp with a row it needs anyway.

Resolution walks from the root of the tree down to the node: each node's version in
effect (the latest effective_from at or before `as_of`, then the highest version)
overrides its ancestors key by key (nested objects merge, lists replace), except keys an
ancestor locked. Versions and the policies resolved from them are cached in the process
(per plugin manager) and checked once per request against a stamp of the whole table,
which any process's write changes; a write by this process drops them at once.
"""

from __future__ import annotations

import dataclasses
import json
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from flask import g
from marshmallow import ValidationError
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from points import audit, ledger
from points.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
)
from points.extensions import db
from points.models import District, PolicyVersion, utcnow
from points.plugins import (
    DistrictInfo,
    PluginConfig,
    call_each,
    config_schemas,
    default_enabled,
    plugin_manager,
    plugin_names,
)

ENABLED = "enabled"


@dataclass(frozen=True)
class VersionInfo:
    """One stored version of a plugin's configuration at one node."""

    id: int
    district_id: int
    plugin: str
    version: int
    config: dict
    locked: tuple[str, ...]
    enabled: bool | None
    author: str
    comment: str | None
    effective_from: datetime
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "district_id": self.district_id,
            "plugin": self.plugin,
            "version": self.version,
            "config": self.config,
            "locked": list(self.locked),
            "enabled": self.enabled,
            "author": self.author,
            "comment": self.comment,
            "effective_from": self.effective_from.isoformat(),
            "created_at": self.created_at.isoformat(),
        }


class Policy:
    """Every plugin's configuration resolved for one node at one time."""

    def __init__(self, district: DistrictInfo, configs: dict[str, PluginConfig]):
        self.district = district
        self.configs = configs

    def config(self, name: str) -> PluginConfig:
        """Return plugin `name`'s configuration (empty for a plugin without a schema)."""
        return self.configs[name]

    def enabled(self, name: str) -> bool:
        """Return whether plugin `name` is on at this node."""
        config = self.configs.get(name)
        return config is not None and config.enabled

    @property
    def enabled_names(self) -> list[str]:
        return sorted(name for name, config in self.configs.items() if config.enabled)


# -- districts ---------------------------------------------------------------------------


def _cache() -> dict[str, Any]:
    if "points_policy" not in g:
        g.points_policy = {"districts": {}, "resolved": {}}
    return g.points_policy


def invalidate_cache() -> None:
    """Forget the nodes read in this request and the process's cached versions and
    policies (called after every write of a version)."""
    g.pop("points_policy", None)
    plugin_manager().derived.pop(_VERSIONS_CACHE, None)


def district_info(district: int | str | DistrictInfo) -> DistrictInfo:
    """Return the node by id or code; raise NotFoundError."""
    if isinstance(district, DistrictInfo):
        return district
    cache = _cache()["districts"]
    if district in cache:
        return cache[district]
    column = District.code if isinstance(district, str) else District.id
    if isinstance(district, bool) or not isinstance(district, int | str):
        raise InvalidInputError("district must be a code or an id", errors={"district": ["Bad."]})
    row = db.session.execute(
        select(
            District.id,
            District.code,
            District.name,
            District.level,
            District.timezone,
            District.path,
        ).where(column == district)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no district {district!r}", errors={"district": ["No such district."]})
    info = DistrictInfo(*row)
    cache[info.id] = cache[info.code] = info
    return info


def remember_district(info: DistrictInfo) -> None:
    """Keep a node read elsewhere (joined to a volunteer) for the rest of the request."""
    cache = _cache()["districts"]
    cache[info.id] = cache[info.code] = info


# -- stored versions, cached in the process ---------------------------------------------


_VERSIONS = select(
    *[getattr(PolicyVersion, name) for name in VersionInfo.__dataclass_fields__]
).where(PolicyVersion.district_id.in_(bindparam("ids", expanding=True)))

# Any process's write to policy_versions changes this pair, at a cost that does not grow
# with the table: versions are only ever inserted, so the newest id tells a new one,
# except that on PostgreSQL a write can commit after a later id is visible; counting the
# ids in a window below the newest tells those too. More versions than the window drawn
# while one write is in flight is not credible. (A version deleted by hand goes unseen.)
RECENT_VERSIONS = 100
_NEWEST = select(func.max(PolicyVersion.id)).scalar_subquery()
VERSIONS_STAMP = (
    _NEWEST.label("versions_newest"),
    select(func.count())
    .select_from(PolicyVersion)
    .where(PolicyVersion.id > _NEWEST - RECENT_VERSIONS)
    .scalar_subquery()
    .label("versions_recent"),
)
_STAMP = select(*VERSIONS_STAMP)
_VERSIONS_CACHE = "policy_versions"


class _Versions:
    """Stored versions of the nodes read so far and the policies resolved from them,
    shared by the requests of the process while the stamp they were read under holds.

    Rows are read after their stamp (in the same snapshot or a later one), so while a
    request reads the same stamp they are complete. A new stamp starts a new _Versions
    instead of clearing this one: a request still using this one never mixes the two.
    Entries are added whole, never changed, so threads may share it.
    """

    def __init__(self, stamp: tuple[int | None, int]):
        self.stamp = stamp
        self.rows: dict[int, list[VersionInfo]] = {}
        self.times: dict[tuple[int, ...], list[datetime]] = {}
        self.policies: dict[tuple[DistrictInfo, int], Policy] = {}

    def rows_for(self, district_ids: Iterable[int]) -> dict[int, list[VersionInfo]]:
        """Return every stored version of the given nodes, oldest in effect first."""
        missing = [i for i in district_ids if i not in self.rows]
        if missing:
            found: dict[int, list[VersionInfo]] = {i: [] for i in missing}
            for row in db.session.connection().execute(_VERSIONS, {"ids": missing}):
                version = VersionInfo(*row)
                found[version.district_id].append(
                    dataclasses.replace(version, locked=tuple(version.locked))
                )
            for rows in found.values():
                rows.sort(key=lambda v: (v.effective_from, v.version))
            self.rows.update(found)
        return {i: self.rows[i] for i in district_ids}

    def policy(self, node: DistrictInfo, as_of: datetime) -> Policy:
        """Return the node's policy at `as_of`, resolved once per span between the
        effective times of its chain's versions (the versions in effect change only there)."""
        chain = node.ancestor_ids
        times = self.times.get(chain)
        if times is None:
            rows = self.rows_for(chain)
            times = self.times[chain] = sorted({v.effective_from for i in chain for v in rows[i]})
        key = (node, bisect_right(times, as_of))
        policy = self.policies.get(key)
        if policy is None:
            policy = self.policies[key] = _resolve(node, self.rows_for(chain), as_of)
        return policy


def check_versions(stamp: tuple[int | None, int]) -> None:
    """Use the process's cached versions in this request if `stamp` (the VERSIONS_STAMP
    columns, read by the caller along with a row it needed anyway) still matches them,
    else start them afresh: the check then costs no round trip of its own."""
    _use_versions(tuple(stamp))


def _use_versions(stamp: tuple[int | None, int]) -> _Versions:
    derived = plugin_manager().derived
    versions = derived.get(_VERSIONS_CACHE)
    if versions is None or versions.stamp != stamp:
        versions = derived[_VERSIONS_CACHE] = _Versions(stamp)
    _cache()["versions"] = versions
    return versions


def _versions() -> _Versions:
    """Return the cached versions for this request, reading the stamp on first use (or
    when a plugin registered since, which drops everything derived from plugins)."""
    versions = _cache().get("versions")
    if versions is None or plugin_manager().derived.get(_VERSIONS_CACHE) is not versions:
        versions = _use_versions(tuple(db.session.connection().execute(_STAMP).one()))
    return versions


def _version_info(row: PolicyVersion) -> VersionInfo:
    return VersionInfo(
        row.id,
        row.district_id,
        row.plugin,
        row.version,
        row.config,
        tuple(row.locked),
        row.enabled,
        row.author,
        row.comment,
        row.effective_from,
        row.created_at,
    )


def _in_effect(rows: list[VersionInfo], plugin: str, as_of: datetime) -> VersionInfo | None:
    chosen = None
    for row in rows:  # sorted by (effective_from, version)
        if row.plugin == plugin and row.effective_from <= as_of:
            chosen = row
    return chosen


# -- merging -----------------------------------------------------------------------------


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any, bool]]:
    """Yield (dotted path, value, is_leaf) for every key of a nested document."""
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield path, value, False
            yield from _leaves(value, path + ".")
        else:
            yield path, value, True


def _locked_by(path: str, locks: Mapping[str, int]) -> int | None:
    """Return the node that locked `path` (or a key above or below it), if any."""
    for lock, node in locks.items():
        if path == lock or path.startswith(lock + ".") or lock.startswith(path + "."):
            return node
    return None


def _set(doc: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        child = doc.get(key)
        if not isinstance(child, dict):
            child = doc[key] = {}
        doc = child
    doc[last] = json.loads(json.dumps(value)) if isinstance(value, list | dict) else value


@dataclass
class _Merged:
    raw: dict
    origins: dict[str, int]
    locks: dict[str, int]
    enabled: bool
    versions: tuple[int, ...]


def _merge(rows: Iterable[VersionInfo], enabled: bool) -> _Merged:
    merged = _Merged({}, {}, {}, enabled, ())
    for row in rows:
        for path, value, leaf in _leaves(row.config):
            if _locked_by(path, merged.locks) is not None:
                continue
            if leaf:
                _set(merged.raw, path, value)
                merged.origins[path] = row.district_id
            else:
                merged.origins.setdefault(path, row.district_id)
        if row.enabled is not None and ENABLED not in merged.locks:
            merged.enabled = row.enabled
        for lock in row.locked:
            merged.locks.setdefault(lock, row.district_id)
        merged.versions += (row.id,)
    return merged


# -- resolution --------------------------------------------------------------------------


def resolve_policy(
    district: int | str | DistrictInfo,
    as_of: datetime | None = None,
    *,
    overrides: Mapping[tuple[int, str], VersionInfo] | None = None,
) -> Policy:
    """Return every registered plugin's configuration for the node at `as_of` (now).

    `overrides` replaces the version in effect at (node id, plugin) (a preview's draft).
    """
    node = district_info(district)
    as_of = as_of or utcnow()
    versions = _versions()
    if overrides:
        return _resolve(node, versions.rows_for(node.ancestor_ids), as_of, overrides)
    return versions.policy(node, as_of)


def _resolve(
    node: DistrictInfo,
    rows: Mapping[int, list[VersionInfo]],
    as_of: datetime,
    overrides: Mapping[tuple[int, str], VersionInfo] | None = None,
) -> Policy:
    pm = plugin_manager()
    schemas = config_schemas(pm)
    chain = node.ancestor_ids
    # Versions never change once stored, so a configuration loaded from a given set of
    # versions is kept for the life of the plugin manager, across changes of the stamp.
    # Drafts (overrides) stay in the request.
    resolved = _cache()["resolved"] if overrides else pm.derived.setdefault("configs", {})
    configs = {}
    for name in plugin_names(pm):
        chosen = []
        for node_id in chain:
            row = (overrides or {}).get((node_id, name)) or _in_effect(rows[node_id], name, as_of)
            if row is not None:
                chosen.append(row)
        key = (node.id, node.timezone, name, tuple(row.id for row in chosen), id(overrides))
        if key not in resolved:
            merged = _merge(chosen, default_enabled(pm, name))
            schema = schemas.get(name)
            values = schema.load(merged.raw) if schema is not None else {}
            resolved[key] = PluginConfig(
                name,
                values,
                enabled=merged.enabled,
                versions=tuple(v for v in merged.versions if v > 0),
                locked=frozenset(merged.locks),
                origins=merged.origins,
                district_id=node.id,
                timezone=node.timezone,
            )
        configs[name] = resolved[key]
    return Policy(node, configs)


def plugin_config(
    name: str, district: int | str | DistrictInfo, as_of: datetime | None = None
) -> PluginConfig:
    """Return one plugin's configuration for a node: the one reader of per-district config."""
    policy = resolve_policy(district, as_of)
    if name not in policy.configs:
        raise NotFoundError(f"no plugin {name!r}", errors={"plugin": ["No such plugin."]})
    return policy.config(name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _shown(name: str, config: PluginConfig, schemas: Mapping[str, Any]) -> dict:
    """A resolved configuration as its schema writes it (`zh-CN`, not the attribute `zh`),
    so that what a node shows is accepted back as a draft as it is."""
    schema = schemas.get(name)
    if schema is None:
        return _jsonable(dict(config))
    return _jsonable(schema.dump(dict(config)))


def show_policy(district: int | str | DistrictInfo, as_of: datetime | None = None) -> dict:
    """Return the resolved policy of a node as JSON-ready data, plugin by plugin."""
    policy = resolve_policy(district, as_of)
    schemas = config_schemas(plugin_manager())
    return {
        "district": policy.district.code,
        "plugins": {
            name: {
                "enabled": config.enabled,
                "version": config.version,
                "versions": list(config.versions),
                "locked": sorted(config.locked),
                "config": _shown(name, config, schemas),
            }
            for name, config in policy.configs.items()
        },
    }


def policy_history(district: int | str | DistrictInfo, plugin: str) -> list[VersionInfo]:
    """Return every version of `plugin`'s configuration set at the node, newest first."""
    node = district_info(district)
    _known_plugin(plugin)
    rows = db.session.execute(
        select(PolicyVersion)
        .where(PolicyVersion.district_id == node.id, PolicyVersion.plugin == plugin)
        .order_by(PolicyVersion.version.desc())
    ).scalars()
    return [_version_info(row) for row in rows]


# -- writing -----------------------------------------------------------------------------


def _known_plugin(plugin: Any) -> None:
    if not isinstance(plugin, str) or plugin not in plugin_names(plugin_manager()):
        raise NotFoundError(f"no plugin {plugin!r}", errors={"plugin": ["No such plugin."]})


def _flatten(messages: Any, prefix: str) -> dict[str, list[str]]:
    """marshmallow's nested messages as dotted field names. A Dict field reports a bad
    entry under "key" or "value"; the field is the entry itself (`items.shoes.cost`)."""
    if isinstance(messages, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            if key in ("key", "value") and set(messages) <= {"key", "value"} and prefix:
                flat.update(_flatten(value, prefix))
                continue
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return {prefix: list(messages)}
    return {prefix: [str(messages)]}


def _effective_time(value: datetime | date | None, node: DistrictInfo) -> datetime:
    if value is None:
        return utcnow()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidInputError(
                "effective_from needs a time zone",
                errors={"effective_from": ["Give a time with a UTC offset, or a date."]},
            )
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(0), ZoneInfo(node.timezone))
    raise InvalidInputError(
        "effective_from must be a date or time", errors={"effective_from": ["Not a date."]}
    )


def _provider_problems(
    node: DistrictInfo, plugin: str, draft: Mapping[str, Any], merged: _Merged, values: Any
) -> dict[str, list[str]]:
    """Field errors for the draft's catalog items that name an unknown or closed provider.

    Checked here, when the policy is written, rather than on each resolution: a provider
    closed later must not break a node's whole configuration, only its redemptions.
    The plugin's items are asked for as `register_catalog_items` gives them; an item
    found under the draft's `items.<sku>` is reported on `config.items.<sku>.provider`.
    """
    from points.directory import provider_problem

    config = PluginConfig(
        plugin, values, origins=merged.origins, district_id=node.id, timezone=node.timezone
    )
    answers = call_each(
        plugin_manager(),
        "register_catalog_items",
        {"district": node},
        enabled=lambda name: name == plugin,
        config_for=lambda _name: config,
    )
    drafted = draft.get("items") if isinstance(draft.get("items"), Mapping) else {}
    errors: dict[str, list[str]] = {}
    for _name, items in answers:
        for item in items:
            if item.sku not in drafted:
                continue
            problem = provider_problem(item.provider)
            if problem is not None:
                errors[f"config.items.{item.sku}.provider"] = [problem]
    return errors


def check_draft(
    district: int | str | DistrictInfo,
    plugin: str,
    config: Any,
    *,
    locked: Iterable[str] = (),
    enabled: bool | None = None,
    effective_from: datetime | date | None = None,
) -> tuple[DistrictInfo, dict, tuple[str, ...], datetime]:
    """Validate a draft version as set_policy would; return (node, config, locked, when).

    Raises InvalidInputError with an error per field (`config.<key>`, `locked`,
    `enabled`, `effective_from`), NotFoundError for an unknown node or plugin.
    """
    node = district_info(district)
    _known_plugin(plugin)
    when = _effective_time(effective_from, node)
    errors: dict[str, list[str]] = {}
    if not isinstance(config, Mapping):
        raise InvalidInputError(
            "config must be a JSON object", errors={"config": ["Must be an object."]}
        )
    try:
        config = json.loads(json.dumps(dict(config)))
    except (TypeError, ValueError):
        raise InvalidInputError(
            "config must be plain JSON", errors={"config": ["Must be plain JSON."]}
        ) from None
    schema = config_schemas(plugin_manager()).get(plugin)
    if isinstance(locked, str) or not all(isinstance(key, str) and key for key in locked):
        raise InvalidInputError(
            "locked must be a list of keys", errors={"locked": ["A list of keys."]}
        )
    locked = tuple(dict.fromkeys(locked))
    fields_known = set(schema.fields) if schema is not None else set()
    for key in locked:
        if key != ENABLED and key.split(".")[0] not in fields_known:
            errors.setdefault("locked", []).append(f"Unknown key {key!r}.")
    if enabled is not None and not isinstance(enabled, bool):
        errors["enabled"] = ["Must be true or false."]
    if schema is None and config:
        errors["config"] = [f"Plugin {plugin!r} takes no configuration."]
    # What the ancestors decide, as it will stand when this version takes effect.
    rows = _versions().rows_for(node.ancestor_ids)
    ancestors = [
        row
        for node_id in node.ancestor_ids[:-1]
        if (row := _in_effect(rows[node_id], plugin, when)) is not None
    ]
    above = _merge(ancestors, True)
    codes = {}
    for path, _value, leaf in _leaves(config):
        if not leaf:
            continue
        owner = _locked_by(path, above.locks)
        if owner is not None:
            codes.setdefault(owner, district_info(owner).code)
            errors[f"config.{path}"] = [f"Locked by {codes[owner]}; it cannot be changed here."]
    if enabled is not None and ENABLED in above.locks:
        errors[ENABLED] = [f"Locked by {district_info(above.locks[ENABLED]).code}."]
    if schema is not None and not errors:
        draft = VersionInfo(0, node.id, plugin, 0, config, locked, enabled, "", None, when, when)
        merged = _merge([*ancestors, draft], True)
        try:
            values = schema.load(merged.raw)
        except ValidationError as error:
            errors.update(_flatten(error.messages, "config"))
        else:
            errors.update(_provider_problems(node, plugin, config, merged, values))
    if errors:
        raise InvalidInputError(f"invalid configuration for plugin {plugin!r}", errors=errors)
    return node, config, locked, when


def _audited(row: PolicyVersion) -> dict[str, Any]:
    """What the audit log keeps of a version: all of it but its author and times."""
    return {
        "version": row.version,
        "config": row.config,
        "locked": list(row.locked),
        "enabled": row.enabled,
        "effective_from": row.effective_from,
        "comment": row.comment,
    }


def set_policy(
    district: int | str | DistrictInfo,
    plugin: str,
    config: Any,
    *,
    author: str,
    locked: Iterable[str] = (),
    enabled: bool | None = None,
    effective_from: datetime | date | None = None,
    comment: str | None = None,
    expected_version: int | None = None,
) -> VersionInfo:
    """Store a new version of `plugin`'s configuration at the node; return it.

    `config` holds only the keys set at this node; `locked` keys cannot be overridden
    below it; `enabled` None inherits. Older versions stay readable. `expected_version`
    (0: none yet) must be the node's newest version number when given (an If-Match).
    Raises InvalidInputError (field errors, nothing stored), NotFoundError,
    PreconditionFailedError (not the newest any more), ConflictError (a concurrent change
    took the version number: try again).
    """
    if not isinstance(author, str) or not author.strip():
        raise InvalidInputError("author is required", errors={"author": ["Must not be empty."]})
    if comment is not None and not isinstance(comment, str):
        raise InvalidInputError("comment must be text", errors={"comment": ["Must be text."]})
    node, config, locked, when = check_draft(
        district, plugin, config, locked=locked, enabled=enabled, effective_from=effective_from
    )

    def work() -> VersionInfo:
        previous = db.session.execute(
            select(PolicyVersion)
            .where(PolicyVersion.district_id == node.id, PolicyVersion.plugin == plugin)
            .order_by(PolicyVersion.version.desc())
            .limit(1)
        ).scalar_one_or_none()
        latest = previous.version if previous is not None else None
        if expected_version is not None and (latest or 0) != expected_version:
            raise PreconditionFailedError(
                f"{plugin!r} at {node.code} is at version {latest or 0}, "
                f"not {expected_version}: read it again",
                errors={"version": [f"Now {latest or 0}."]},
            )
        row = PolicyVersion(
            district_id=node.id,
            plugin=plugin,
            version=(latest or 0) + 1,
            config=config,
            locked=list(locked),
            enabled=enabled,
            author=author,
            comment=comment,
            effective_from=when,
            created_at=utcnow(),
        )
        db.session.add(row)
        try:
            db.session.flush()
        except IntegrityError:
            raise ConflictError(
                f"another change to {plugin!r} at {node.code} came first; try again"
            ) from None
        audit.record(
            "policy.version",
            district_id=node.id,
            target=("policy", f"{node.code}/{plugin}"),
            before=_audited(previous) if previous is not None else None,
            after=_audited(row),
        )
        return _version_info(row)

    try:
        return ledger.atomic(work)
    finally:
        invalidate_cache()
