"""The plugin manager, and the meta-test: every hook is documented and tested."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from points import hookspecs
from points.app import create_app
from points.plugins import (
    BUILTIN_PLUGINS,
    activity_kinds,
    config_schemas,
    describe_plugins,
    make_plugin_manager,
    plugin_names,
    registered,
)
from tests.plugins import misspelled

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(
    name
    for name, value in vars(hookspecs).items()
    if inspect.isfunction(value) and hasattr(value, "points_spec")
)


def signature(name: str) -> str:
    return name + str(inspect.signature(getattr(hookspecs, name)))


def test_every_hook_has_a_documented_section_headed_by_its_signature():
    headings = re.findall(r"^### (.+)$", (ROOT / "docs" / "plugins.md").read_text(), re.M)
    missing = [signature(name) for name in HOOKS if signature(name) not in headings]
    assert not missing, f"undocumented hooks (add a '### signature' section): {missing}"


def test_every_hook_has_a_test():
    sources = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    untested = [name for name in HOOKS if not re.search(rf"def test_hook_{name}\b", sources)]
    assert not untested, f"hooks without a test_hook_<name> test: {untested}"


def test_hooks_found():
    assert "award_points" in HOOKS and "entry_posted" in HOOKS and len(HOOKS) == 15


def test_manager_registers_builtins_by_short_name():
    pm = make_plugin_manager()
    assert set(BUILTIN_PLUGINS) <= set(plugin_names(pm))
    rows = {row["name"]: row for row in describe_plugins(pm)}
    assert rows["steward"]["source"] == "built-in"
    assert "award_points" in rows["steward"]["hooks"]


def test_manager_is_one_per_app_never_shared():
    first = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    second = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    assert first.extensions["points.plugins"] is not second.extensions["points.plugins"]


def test_disabled_plugins_are_never_registered():
    app = create_app(
        {"DATABASE_URL": "sqlite://", "SECRET_KEY": "x", "DISABLED_PLUGINS": "caps, stars"}
    )
    names = plugin_names(app.extensions["points.plugins"])
    assert "caps" not in names and "stars" not in names and "steward" in names


def test_disabled_plugins_from_the_environment(monkeypatch):
    monkeypatch.setenv("POINTS_DISABLED_PLUGINS", "transfers")
    app = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    assert "transfers" not in plugin_names(app.extensions["points.plugins"])


def test_unknown_disabled_name_stops_start_up():
    with pytest.raises(ValueError, match="stewart"):
        make_plugin_manager(["stewart"])


def test_misspelled_hook_stops_start_up_with_a_clear_error():
    pm = make_plugin_manager()
    pm.register(misspelled, name="misspelled")
    with pytest.raises(pluggy.PluginValidationError, match="award_point"):
        pm.check_pending()


def test_registered_always_unregisters_the_same_object():
    pm = make_plugin_manager()
    with pytest.raises(RuntimeError), registered(pm, misspelled, "temporary"):
        assert "temporary" in plugin_names(pm)
        raise RuntimeError("test failed inside")
    assert "temporary" not in plugin_names(pm)


def test_derived_registries_follow_registration():
    from tests.plugins import recorder

    pm = make_plugin_manager()
    assert "planting" not in activity_kinds(pm)
    with registered(pm, recorder, "recorder"):
        assert "planting" in activity_kinds(pm)
        assert "recorder" in config_schemas(pm)
    assert "planting" not in activity_kinds(pm)


@pytest.mark.parametrize("name", BUILTIN_PLUGINS)
def test_builtin_defaults_load(name):
    schema = config_schemas(make_plugin_manager())[name]
    loaded = schema.load({})
    assert isinstance(loaded, dict) and loaded
    assert set(loaded) == set(schema.fields)
