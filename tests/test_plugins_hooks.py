"""One test per hook, through the core that calls it (a test plugin records the calls)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from points import errors, ledger
from points.plugins import plugin_manager, registered
from points.policy import set_policy
from points.redemptions import (
    catalog_for,
    check_redemption,
    check_transfer,
    create_redemption,
    give_points,
)
from points.service import record_service, star_level, volunteer_info
from tests.plugins import recorder

NOW = datetime.now(UTC)


@pytest.fixture
def plugin(app):
    recorder.calls.clear()
    with registered(plugin_manager(), recorder, "recorder"):
        yield recorder


def configure(district, plugin, config, **kwargs):
    """Set a policy in effect since before the records of the test started."""
    kwargs.setdefault("effective_from", NOW - timedelta(days=2))
    return set_policy(district, plugin, config, author="office:test", **kwargs)


def called(hook):
    return [args for name, args in recorder.calls if name == hook]


def plant(volunteer, trees=3, **kwargs):
    return record_service(
        volunteer,
        "planting",
        NOW - timedelta(hours=1),
        60,
        {"trees": trees},
        actor="office:test",
        **kwargs,
    )


def test_hook_register_activity_kinds(plugin, volunteer):
    record = plant(volunteer)
    assert record.kind == "planting" and record.details == {"trees": 3}
    with pytest.raises(errors.InvalidInputError) as raised:
        plant(volunteer, trees=0)
    assert "details.trees" in raised.value.errors


def test_hook_register_config_schemas(plugin, tree):
    configure("longtan", "recorder", {"bonus": 4})
    with pytest.raises(errors.InvalidInputError) as raised:
        configure("longtan", "recorder", {"bonus": -1, "nope": 1})
    assert set(raised.value.errors) == {"config.bonus", "config.nope"}


def test_hook_award_points(plugin, volunteer):
    record = plant(volunteer, trees=4)
    assert record.status == "approved"
    assert [(a["plugin"], a["rule"], a["points"]) for a in record.awards] == [
        ("recorder", "trees", 4)
    ]
    assert ledger.balance(volunteer).balance == 4
    assert {"kind": "planting"} in called("award_points")


def test_hook_award_bonuses(plugin, volunteer):
    configure("xizhaosi", "recorder", {"bonus": 2})
    record = plant(volunteer, trees=4)
    assert [(a["rule"], a["points"]) for a in record.awards] == [("trees", 4), ("bonus", 2)]
    assert called("award_bonuses")[-1] == {"awards": 1}
    assert ledger.balance(volunteer).balance == 6


def test_hook_limit_awards(plugin, volunteer):
    configure("xizhaosi", "recorder", {"bonus": 2, "ceiling": 5})
    record = plant(volunteer, trees=4)
    # The bonus is clipped before the base award.
    assert [(a["rule"], a["points"], a["proposed"]) for a in record.awards] == [
        ("trees", 4, 4),
        ("bonus", 1, 2),
    ]
    assert record.awards[1]["clip"]["reason_en"] == "test ceiling"
    assert ledger.balance(volunteer).balance == 5


def test_hook_review_record(plugin, volunteer):
    assert plant(volunteer).status == "approved"
    patrol = record_service(volunteer, "patrol", NOW - timedelta(hours=4), 180, actor="office:test")
    assert patrol.status == "pending" and "15 points" in patrol.queue_reason
    assert {"kind": "patrol"} in called("review_record")


def test_hook_expiry_for(plugin, volunteer):
    configure("xizhaosi", "recorder", {"expiry_days": 3})
    configure("xizhaosi", "expiry", {"rule": "never"})
    plant(volunteer)
    from sqlalchemy import select

    from points.extensions import db
    from points.models import Lot

    expires = db.session.scalar(select(Lot.expires_at))
    assert timedelta(days=2, hours=23) < expires - datetime.now(UTC) < timedelta(days=3, minutes=1)


def test_hook_star_level_for(plugin, volunteer):
    assert star_level(6000, "xizhaosi") == 1  # stars: 100 hours
    configure("xizhaosi", "recorder", {"stars": 4})
    assert star_level(6000, "xizhaosi") == 4  # the highest answer wins
    assert volunteer_info(volunteer).star_level == 4


def test_hook_register_catalog_items(plugin, volunteer, provider):
    items = catalog_for("xizhaosi", volunteer)
    assert [entry.item.sku for entry in items] == ["recorder-mug"]
    assert items[0].item.plugin == "recorder" and items[0].affordable is False
    assert called("register_catalog_items")[-1] == {"district": "xizhaosi"}


def test_hook_check_redemption(plugin, volunteer, provider):
    ledger.earn(volunteer, 20, actor="office:test", reason="seed")
    assert check_redemption(volunteer, "recorder-mug").allowed
    configure("xizhaosi", "recorder", {"deny_redemption": True})
    decision = check_redemption(volunteer, "recorder-mug")
    assert not decision.allowed and decision.reasons[0]["en"] == "refused by the recorder"
    with pytest.raises(errors.RefusedError) as raised:
        create_redemption(volunteer, "recorder-mug", actor="kiosk:1")
    assert raised.value.reasons[0]["plugin"] == "recorder"
    assert ledger.balance(volunteer).held == 0


def test_hook_check_transfer(plugin, volunteer, other_volunteer):
    ledger.earn(volunteer, 20, actor="office:test", reason="seed")
    assert check_transfer(volunteer, other_volunteer, 5, "family").allowed
    configure("xizhaosi", "recorder", {"deny_transfer": True})
    with pytest.raises(errors.RefusedError):
        give_points(volunteer, other_volunteer, 5, "family", actor="v", reason="for mum")
    assert called("check_transfer")[-1] == {"points": 5, "relation": "family"}
    assert ledger.balance(volunteer).balance == 20


def test_hook_entry_posted(plugin, volunteer):
    record = plant(volunteer)
    assert called("entry_posted") == [{"entry_id": record.entry_ids[0], "kind": "earn"}]


def test_entry_posted_waits_for_the_callers_commit(plugin, volunteer):
    def failing_caller():
        plant(volunteer)
        assert called("entry_posted") == []
        raise RuntimeError("the caller's next step failed")

    with pytest.raises(RuntimeError):
        ledger.atomic(failing_caller)
    assert called("entry_posted") == []
    assert ledger.balance(volunteer).balance == 0
    record = ledger.atomic(lambda: plant(volunteer))
    assert called("entry_posted") == [{"entry_id": record.entry_ids[0], "kind": "earn"}]


def test_hook_register_commands(app):
    from points.app import create_app

    pm_app = create_app(dict(app.config))
    with registered(pm_app.extensions["points.plugins"], recorder, "recorder"):
        from points.app import register_plugin_commands

        register_plugin_commands(pm_app)
        result = pm_app.test_cli_runner().invoke(args=["recorder-hello"])
    assert result.output.strip() == "hello from recorder"


def test_disabled_plugin_is_not_called(plugin, volunteer):
    configure("longtan", "recorder", {}, enabled=False)
    with pytest.raises(errors.InvalidInputError) as raised:
        plant(volunteer)
    assert "kind" in raised.value.errors
    assert not called("award_points")
