"""Per-district policy: versioned storage, validation, resolution down the tree with locks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from points import errors
from points.extensions import db
from points.models import PolicyVersion
from points.plugins import DEFAULTS_VERSION
from points.policy import (
    plugin_config,
    policy_history,
    resolve_policy,
    set_policy,
    show_policy,
)

NOW = datetime.now(UTC)
LEVELS = ["beijing", "dongcheng", "longtan", "xizhaosi"]


def put(district, plugin, config, **kwargs):
    kwargs.setdefault("author", "office:test")
    return set_policy(district, plugin, config, **kwargs)


def count():
    return db.session.scalar(select(func.count(PolicyVersion.id)))


@pytest.fixture
def grid(tree):
    from points.directory import create_district

    create_district("grid-7", "第七网格", "grid", parent="xizhaosi")
    return tree


@pytest.mark.parametrize("level", [*LEVELS, "grid-7"])
def test_defaults_resolve_at_every_level(grid, level):
    config = plugin_config("steward", level)
    assert config["patrol"]["points_per_hour"] == 5
    assert config.version == DEFAULTS_VERSION and config.enabled


@pytest.mark.parametrize("setter", range(5))
def test_a_key_set_at_one_level_reaches_every_level_below_only(grid, setter):
    nodes = [*LEVELS, "grid-7"]
    version = put(nodes[setter], "steward", {"patrol": {"points_per_hour": 8}})
    for i, node in enumerate(nodes):
        config = plugin_config("steward", node)
        expected = 8 if i >= setter else 5
        assert config["patrol"]["points_per_hour"] == expected, node
        assert config.version == (version.id if i >= setter else DEFAULTS_VERSION)
        assert config["visit"]["points_per_household"] == 2  # untouched keys keep defaults


def test_children_override_key_by_key(grid):
    put("beijing", "steward", {"patrol": {"points_per_hour": 6}, "fix": {"points": 4}})
    put("longtan", "steward", {"fix": {"points": 9}})
    put("grid-7", "steward", {"patrol": {"points_per_hour": 7}})
    assert plugin_config("steward", "dongcheng")["fix"]["points"] == 4
    assert plugin_config("steward", "xizhaosi")["fix"]["points"] == 9
    assert plugin_config("steward", "xizhaosi")["patrol"]["points_per_hour"] == 6
    grid_config = plugin_config("steward", "grid-7")
    assert (grid_config["fix"]["points"], grid_config["patrol"]["points_per_hour"]) == (9, 7)
    assert len(grid_config.versions) == 3


@pytest.mark.parametrize("locker", range(4))
def test_a_lock_binds_every_level_below(grid, locker):
    nodes = [*LEVELS, "grid-7"]
    put(
        nodes[locker],
        "steward",
        {"patrol": {"points_per_hour": 6}},
        locked=["patrol.points_per_hour"],
    )
    for node in nodes[locker + 1 :]:
        before = count()
        with pytest.raises(errors.InvalidInputError) as raised:
            put(node, "steward", {"patrol": {"points_per_hour": 9}})
        assert "config.patrol.points_per_hour" in raised.value.errors
        assert nodes[locker] in raised.value.errors["config.patrol.points_per_hour"][0]
        assert count() == before
        # Other keys stay open.
        put(node, "steward", {"fix": {"points": 1}})
    # The locking node itself may still change the key.
    put(
        nodes[locker],
        "steward",
        {"patrol": {"points_per_hour": 4}},
        locked=["patrol.points_per_hour"],
    )
    assert plugin_config("steward", "grid-7")["patrol"]["points_per_hour"] == 4


def test_a_lock_on_a_whole_section_covers_its_keys(grid):
    put("dongcheng", "steward", {}, locked=["checkin"])
    with pytest.raises(errors.InvalidInputError) as raised:
        put("xizhaosi", "steward", {"checkin": {"grace_minutes": 30}})
    assert "config.checkin.grace_minutes" in raised.value.errors


def test_a_lock_added_later_wins_over_existing_children(grid):
    put("xizhaosi", "steward", {"patrol": {"points_per_hour": 9}})
    put("longtan", "steward", {"patrol": {"points_per_hour": 6}}, locked=["patrol"])
    assert plugin_config("steward", "xizhaosi")["patrol"]["points_per_hour"] == 6


def test_enabling_is_per_district_and_lockable(grid):
    put("longtan", "transfers", {}, enabled=False)
    assert resolve_policy("dongcheng").enabled("transfers")
    assert not resolve_policy("longtan").enabled("transfers")
    assert not resolve_policy("grid-7").enabled("transfers")
    put("xizhaosi", "transfers", {}, enabled=True)
    assert resolve_policy("grid-7").enabled("transfers")
    put("beijing", "caps", {}, enabled=True, locked=["enabled"])
    with pytest.raises(errors.InvalidInputError) as raised:
        put("longtan", "caps", {}, enabled=False)
    assert "enabled" in raised.value.errors


def test_versions_are_kept_with_author_time_and_comment(tree):
    first = put("longtan", "caps", {"overall": {"day": 50}}, comment="tighter")
    second = put("longtan", "caps", {"overall": {"day": 80}}, author="office:wang")
    assert (first.version, second.version) == (1, 2)
    history = policy_history("longtan", "caps")
    assert [v.version for v in history] == [2, 1]
    assert history[1].config == {"overall": {"day": 50}} and history[1].comment == "tighter"
    assert history[0].author == "office:wang"
    assert plugin_config("caps", "longtan")["overall"]["day"] == 80


def test_effective_date_in_the_future_waits(tree):
    put("longtan", "caps", {"overall": {"day": 50}})
    put(
        "longtan",
        "caps",
        {"overall": {"day": 20}},
        effective_from=date.today() + timedelta(days=10),
    )
    assert plugin_config("caps", "longtan")["overall"]["day"] == 50
    later = NOW + timedelta(days=12)
    assert resolve_policy("longtan", later).config("caps")["overall"]["day"] == 20


def test_resolution_is_cached_and_invalidated_on_change(tree):
    from sqlalchemy import event

    statements = []

    def count_statements(*args):
        statements.append(args)

    put("longtan", "caps", {"overall": {"day": 50}})
    resolve_policy("xizhaosi")
    event.listen(db.engine, "before_cursor_execute", count_statements)
    try:
        for _ in range(5):
            resolve_policy("xizhaosi")
            plugin_config("caps", "xizhaosi")
        assert statements == []
        put("longtan", "caps", {"overall": {"day": 60}})
        assert plugin_config("caps", "xizhaosi")["overall"]["day"] == 60
    finally:
        event.remove(db.engine, "before_cursor_execute", count_statements)


@pytest.mark.parametrize(
    ("plugin", "config", "field"),
    [
        ("steward", [1, 2], "config"),
        ("steward", {"patrol": {"points_per_hour": "5"}}, "config.patrol.points_per_hour"),
        ("steward", {"patrol": {"points_per_hour": 5, "bonus": 1}}, "config.patrol.bonus"),
        ("steward", {"surprise": 1}, "config.surprise"),
        ("caps", {"overall": {"day": -1}}, "config.overall.day"),
        (
            "catalog",
            {
                "items": {
                    "cut": {
                        "names": {"zh-CN": "理发", "en": "haircut"},
                        "cost": -5,
                        "provider": "p",
                    }
                }
            },
            "config.items.cut.cost",
        ),
        ("stars", {"levels_hours": [300, 100]}, "config.levels_hours"),
        ("steward", {"checkin": {"duty_time": "8 o'clock"}}, "config.checkin.duty_time"),
    ],
    ids=[
        "not-object",
        "wrong-type",
        "unknown-nested",
        "unknown-top",
        "negative-cap",
        "negative-cost",
        "stars-order",
        "bad-time",
    ],
)
def test_bad_config_is_refused_naming_the_field(tree, plugin, config, field):
    before = count()
    with pytest.raises(errors.InvalidInputError) as raised:
        put("longtan", plugin, config)
    assert field in raised.value.errors, raised.value.errors
    assert count() == before


def test_unknown_plugin_and_district_are_refused(tree):
    with pytest.raises(errors.NotFoundError) as raised:
        put("longtan", "lottery", {})
    assert "plugin" in raised.value.errors
    with pytest.raises(errors.NotFoundError):
        put("atlantis", "caps", {})
    with pytest.raises(errors.InvalidInputError) as raised:
        put("longtan", "caps", {}, locked=["nonsense"])
    assert "locked" in raised.value.errors
    with pytest.raises(errors.InvalidInputError):
        put("longtan", "caps", {}, effective_from=datetime(2027, 1, 1))
    assert count() == 0


def test_show_policy_is_json_ready(tree, provider):
    import json

    put(
        "longtan",
        "catalog",
        {
            "items": {
                "cut": {
                    "names": {"zh-CN": "理发", "en": "haircut"},
                    "cost": 30,
                    "provider": "barber-wang",
                    "active_from": "2026-01-01",
                }
            }
        },
    )
    shown = show_policy("xizhaosi")
    json.dumps(shown)
    assert shown["plugins"]["catalog"]["config"]["items"]["cut"]["active_from"] == "2026-01-01"
