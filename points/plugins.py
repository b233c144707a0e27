"""The plugin manager and the plain values that flow through hooks.

Public: make_plugin_manager(disabled=()), plugin_manager(), call_each(pm, hook, kwargs,
enabled=None, config_for=None), registered(pm, plugin, name), activity_kinds(pm),
config_schemas(pm), plugin_names(pm), describe_plugins(pm), rate(value, rule);
values: ActivityKind, Award, Limit, Decision, CatalogItem, DistrictInfo, RecordInfo,
VolunteerInfo, LotInfo, PastRecord, History, PluginConfig; `hookimpl` for plugin authors.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pluggy
from flask import current_app
from marshmallow import Schema

from points import hookspecs
from points.errors import PluginError, PointsError

hookimpl = pluggy.HookimplMarker("points")

log = logging.getLogger(__name__)

# Built-in plugins: module plugins.<name>, registered under that short, stable name.
BUILTIN_PLUGINS = (
    "steward",
    "caps",
    "approval",
    "expiry",
    "catalog",
    "stars",
    "transfers",
    "budget",
)

ENTRY_POINT_GROUP = "points"

# The one rounding rule for rates and multipliers: half a point and more counts as one.
ROUNDING = ROUND_HALF_UP


def rate(value: Decimal | int, rule: str = ROUNDING) -> int:
    """Return `value` rounded to whole points by the project's rounding rule."""
    return int(Decimal(value).quantize(Decimal(1), rounding=rule))


# -- values that flow through hooks ------------------------------------------------------


@dataclass(frozen=True)
class ActivityKind:
    """A kind of service: its name, details schema, labels, and how it counts minutes.

    `minutes` is "required" or "optional"; `once_per_day` refuses a second record of the
    kind by the same volunteer on the same local day (a check-in).
    """

    name: str
    schema: type[Schema]
    label_zh: str
    label_en: str
    minutes: str = "required"
    once_per_day: bool = False
    plugin: str = ""


@dataclass(frozen=True)
class Award:
    """Points a plugin proposes for a record: the rule that gave them and why, in zh and en.

    `plugin` and `config_version` are filled in by the core; a plugin cannot set them.
    """

    points: int
    rule: str
    reason_zh: str
    reason_en: str
    plugin: str = ""
    config_version: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.plugin, self.rule)


@dataclass(frozen=True)
class Limit:
    """A ceiling: at most `points` for the awards of `rule` (None: all awards together)."""

    points: int
    reason_zh: str
    reason_en: str
    rule: str | None = None
    plugin: str = ""


@dataclass(frozen=True)
class Decision:
    """A plugin's answer: allowed or not, why (zh and en), and for transfers whether the
    office must approve first."""

    allowed: bool
    reason_zh: str
    reason_en: str
    needs_approval: bool = False
    plugin: str = ""

    @classmethod
    def allow(cls, reason_zh: str, reason_en: str, *, needs_approval: bool = False) -> Decision:
        return cls(True, reason_zh, reason_en, needs_approval)

    @classmethod
    def deny(cls, reason_zh: str, reason_en: str) -> Decision:
        return cls(False, reason_zh, reason_en)


@dataclass(frozen=True)
class CatalogItem:
    """Something a volunteer can redeem points for, as a catalog plugin offers it.

    `provider` is a provider code. `pool_district_id` is the node whose stock it draws on
    (where the item was configured). Limits of None mean unlimited.
    """

    sku: str
    name_zh: str
    name_en: str
    cost: int
    provider: str
    pool_district_id: int
    stock_per_month: int | None = None
    per_person_limit: int | None = None
    per_person_period: str = "month"
    min_star: int = 0
    active_from: date | None = None
    active_until: date | None = None
    # What the office pays the provider a voucher, in fen (0.01 yuan); None: no price.
    unit_price_fen: int | None = None
    plugin: str = ""


@dataclass(frozen=True)
class DistrictInfo:
    """A node of the district tree as plugins see it."""

    id: int
    code: str
    name: str
    level: str
    timezone: str
    path: str

    @property
    def ancestor_ids(self) -> tuple[int, ...]:
        """The ids from the root down to this node, this node last."""
        return tuple(int(part) for part in self.path.strip("/").split("/"))


@dataclass(frozen=True)
class RecordInfo:
    """A service record as plugins see it; `local_start` is in the district's time zone."""

    id: int | None
    district_id: int
    volunteer_id: int
    kind: str
    started_at: datetime
    minutes: int | None
    details: Mapping[str, Any]
    timezone: str
    verified: bool = False

    @property
    def local_start(self) -> datetime:
        return self.started_at.astimezone(ZoneInfo(self.timezone))


@dataclass(frozen=True)
class VolunteerInfo:
    """A volunteer as plugins see it: service minutes (only grow) and star level."""

    id: int
    district_id: int
    name: str
    service_minutes: int
    star_level: int = 0
    status: str = "active"


@dataclass(frozen=True)
class LotInfo:
    """Points about to be credited as a lot: who, how many, when, and which award."""

    volunteer_id: int
    district_id: int
    points: int
    earned_at: datetime
    plugin: str
    rule: str
    timezone: str


@dataclass(frozen=True)
class PastRecord:
    """An approved record in a volunteer's history, with the points and rules it earned."""

    id: int | None
    kind: str
    started_at: datetime
    minutes: int | None
    points: int
    details: Mapping[str, Any]
    rules: tuple[str, ...] = ()


class History:
    """A volunteer's approved service, read lazily: one query for the widest range asked
    so far, again only when a call reaches outside it.

    `loader(since, until)` returns the PastRecords that started in [since, until) (None:
    unbounded); `extra` are records added in memory (a preview's simulated awards).
    """

    def __init__(
        self,
        loader: Callable[[datetime | None, datetime | None], list[PastRecord]] | None = None,
        extra: Iterable[PastRecord] = (),
    ):
        self._loader = loader
        self._loaded: list[PastRecord] = []
        self._range: tuple[datetime | None, datetime | None] | None = None
        self.extra: list[PastRecord] = list(extra)

    def _ensure(self, since: datetime | None, until: datetime | None) -> None:
        if self._loader is None:
            return
        if self._range is not None:
            start, end = self._range
            if (start is None or (since is not None and since >= start)) and (
                end is None or (until is not None and until <= end)
            ):
                return
            # Widen to cover both, so that earlier answers stay answerable.
            since = None if since is None or start is None else min(since, start)
            until = None if until is None or end is None else max(until, end)
        self._loaded = self._loader(since, until)
        self._range = (since, until)

    def records(
        self,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[PastRecord]:
        """Return past records of `kind` that started in [since, until), oldest first."""
        self._ensure(since, until)
        found = [
            r
            for r in (*self._loaded, *self.extra)
            if (kind is None or r.kind == kind)
            and (since is None or r.started_at >= since)
            and (until is None or r.started_at < until)
        ]
        found.sort(key=lambda r: (r.started_at, r.id or 0))
        return found

    def awarded(
        self, since: datetime | None = None, until: datetime | None = None, kind: str | None = None
    ) -> int:
        """Return the points earned by records of `kind` that started in [since, until)."""
        return sum(r.points for r in self.records(kind, since, until))


# The config version an award records when its plugin ran on its built-in defaults, with
# no policy version at the node or above (policy version ids start at 1).
DEFAULTS_VERSION = 0


class PluginConfig(Mapping):
    """A plugin's configuration resolved for one district node: a read-only mapping.

    `versions` are the ids of the policy versions that contributed, `version` the newest
    of them, or DEFAULTS_VERSION when the plugin runs on its built-in defaults (so every
    award names what produced it); `origins` maps a dotted key to the node that set it.
    """

    def __init__(
        self,
        plugin: str,
        values: Mapping[str, Any],
        *,
        enabled: bool = True,
        versions: tuple[int, ...] = (),
        locked: frozenset[str] = frozenset(),
        origins: Mapping[str, int] | None = None,
        district_id: int | None = None,
        timezone: str = "Asia/Shanghai",
    ):
        self.plugin = plugin
        self._values = dict(values)
        self.enabled = enabled
        self.versions = versions
        self.locked = locked
        self.origins = dict(origins or {})
        self.district_id = district_id
        self.timezone = timezone

    @property
    def version(self) -> int:
        return max(self.versions) if self.versions else DEFAULTS_VERSION

    def origin(self, key: str) -> int | None:
        """Return the district node that set `key` (dotted), or None for a default."""
        while key:
            if key in self.origins:
                return self.origins[key]
            key = key.rpartition(".")[0]
        return None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PluginConfig({self.plugin!r}, version={self.version})"


# -- the plugin manager ------------------------------------------------------------------


class PointsPluginManager(pluggy.PluginManager):
    """A pluggy manager that forgets what it derived from plugins when they change."""

    def __init__(self, project_name: str = "points"):
        super().__init__(project_name)
        self.derived: dict[str, Any] = {}
        self.sources: dict[str, str] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        registered = super().register(plugin, name)
        self.derived.clear()
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        removed = super().unregister(plugin, name)
        self.derived.clear()
        return removed


def make_plugin_manager(disabled: Iterable[str] | str = ()) -> PointsPluginManager:
    """Build the app's plugin manager: specs, blocked names, entry points, built-ins.

    `disabled` (a list, or a comma-separated string as POINTS_DISABLED_PLUGINS gives it)
    names plugins never to register. Raises pluggy.PluginValidationError when a plugin
    implements a hook that has no spec (a misspelled hook), and ValueError for an
    unknown name in `disabled` or two plugins under one name.
    """
    if isinstance(disabled, str):
        disabled = [name.strip() for name in disabled.split(",")]
    blocked = {name for name in disabled if name}
    pm = PointsPluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in blocked:
        pm.set_blocked(name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin, dist in pm.list_plugin_distinfo():
        pm.sources[pm.get_name(plugin)] = f"{dist.project_name} {dist.version}"
    for name in BUILTIN_PLUGINS:
        if name in blocked:
            continue
        if pm.has_plugin(name):
            raise ValueError(f"plugin name {name!r} is taken by a built-in plugin")
        pm.register(importlib.import_module(f"plugins.{name}"), name=name)
        pm.sources[name] = "built-in"
    known = set(BUILTIN_PLUGINS) | _entry_point_names()
    unknown = sorted(blocked - known)
    if unknown:
        raise ValueError(f"POINTS_DISABLED_PLUGINS names unknown plugins: {', '.join(unknown)}")
    pm.check_pending()
    config_schemas(pm)
    activity_kinds(pm)
    return pm


def _entry_point_names() -> set[str]:
    import importlib.metadata

    return {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def plugin_manager() -> PointsPluginManager:
    """Return the current app's plugin manager."""
    return current_app.extensions["points.plugins"]


@contextlib.contextmanager
def registered(pm: pluggy.PluginManager, plugin: object, name: str | None = None):
    """Register `plugin` for the duration of the block; always unregister the same object."""
    pm.register(plugin, name=name)
    try:
        yield plugin
    finally:
        pm.unregister(plugin)


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """Return the names of the registered plugins, sorted."""
    derived = getattr(pm, "derived", {})
    if "names" not in derived:
        derived["names"] = sorted(
            name for name, plugin in pm.list_name_plugin() if plugin is not None
        )
    return derived["names"]


def describe_plugins(pm: PointsPluginManager) -> list[dict[str, Any]]:
    """Return one dict per plugin: name, source, hooks it implements, whether configurable."""
    schemas = config_schemas(pm)
    rows = []
    for name in plugin_names(pm):
        plugin = pm.get_plugin(name)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        rows.append(
            {
                "name": name,
                "source": pm.sources.get(name, "registered"),
                "hooks": hooks,
                "configurable": name in schemas,
                "default_enabled": default_enabled(pm, name),
            }
        )
    return rows


def default_enabled(pm: pluggy.PluginManager, name: str) -> bool:
    """Return whether plugin `name` is on where no policy says otherwise."""
    return bool(getattr(pm.get_plugin(name), "DEFAULT_ENABLED", True))


def config_schemas(pm: PointsPluginManager) -> dict[str, Schema]:
    """Return {plugin name: Schema instance} from register_config_schemas (cached)."""
    if "schemas" not in pm.derived:
        schemas: dict[str, Schema] = {}
        for name, pairs in call_each(pm, "register_config_schemas", {}):
            for plugin_name, schema in pairs or ():
                if plugin_name != name:
                    raise ValueError(f"plugin {name!r} registered a schema for {plugin_name!r}")
                if plugin_name in schemas:
                    raise ValueError(f"two config schemas for plugin {plugin_name!r}")
                schemas[plugin_name] = schema() if isinstance(schema, type) else schema
        pm.derived["schemas"] = schemas
    return pm.derived["schemas"]


def activity_kinds(pm: PointsPluginManager) -> dict[str, ActivityKind]:
    """Return {kind name: ActivityKind} from register_activity_kinds (cached)."""
    if "kinds" not in pm.derived:
        kinds: dict[str, ActivityKind] = {}
        for name, found in call_each(pm, "register_activity_kinds", {}):
            for kind in found or ():
                if kind.name in kinds:
                    raise ValueError(
                        f"activity kind {kind.name!r} registered twice "
                        f"({kinds[kind.name].plugin} and {name})"
                    )
                if kind.minutes not in ("required", "optional"):
                    raise ValueError(
                        f"activity kind {kind.name!r}: minutes must be required/optional"
                    )
                kinds[kind.name] = _with(kind, plugin=name)
        pm.derived["kinds"] = kinds
    return pm.derived["kinds"]


def activity_labels() -> dict[str, tuple[str, str]]:
    """Each activity kind's label in zh-CN and English, by name."""
    kinds = activity_kinds(plugin_manager())
    return {name: (kind.label_zh, kind.label_en) for name, kind in kinds.items()}


def _with(value: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(value, **changes)


def call_each(
    pm: pluggy.PluginManager,
    hook: str,
    kwargs: Mapping[str, Any],
    *,
    enabled: Callable[[str], bool] | None = None,
    config_for: Callable[[str], PluginConfig] | None = None,
) -> list[tuple[str, Any]]:
    """Call `hook` on each plugin (enabled ones only), sorted by plugin name.

    Each implementation gets only the arguments it declares; `config` is that plugin's
    own (from `config_for`). Returns (plugin name, result) pairs, None results left out.
    A plugin's PointsError passes through; any other exception becomes a PluginError
    naming the plugin, so that the caller's unit of work rolls back.
    """
    derived = getattr(pm, "derived", {})
    impls = derived.get(("impls", hook))
    if impls is None:
        impls = derived[("impls", hook)] = sorted(
            getattr(pm.hook, hook).get_hookimpls(), key=lambda impl: impl.plugin_name
        )
    results = []
    for impl in impls:
        name = impl.plugin_name
        if enabled is not None and not enabled(name):
            continue
        arguments = dict(kwargs)
        if "config" in impl.argnames:
            arguments["config"] = config_for(name) if config_for else PluginConfig(name, {})
        try:
            result = impl.function(**{arg: arguments[arg] for arg in impl.argnames})
        except PointsError:
            raise
        except Exception as error:
            log.exception("plugin %r failed in %s", name, hook)
            raise PluginError(
                f"plugin {name!r} failed in {hook}: {type(error).__name__}; nothing was posted",
                plugin=name,
                hook=hook,
            ) from error
        if result is not None:
            results.append((name, result))
    return results
