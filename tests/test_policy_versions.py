"""Changing one key or one catalog item of a node's policy, versions, diffs, If-Match."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from points.extensions import db
from points.models import AuditEvent
from points.policy_versions import merge_patch
from tests.test_api_hostile import problem_of

pytest_plugins = ("tests.api_fixtures",)

SHOES = {"names": {"zh-CN": "修鞋", "en": "shoe repair"}, "cost": 10, "provider": "barber-wang"}
JSON_LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=3)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(JSON, JSON)
def test_merge_patch_follows_rfc_7396(target, patch):
    result = merge_patch(target, patch)
    if not isinstance(patch, dict):
        assert result == patch
        return
    assert isinstance(result, dict)
    for key, value in patch.items():
        if value is None:
            assert key not in result
        elif not isinstance(value, dict):
            assert result[key] == value
    kept = {k: v for k, v in (target if isinstance(target, dict) else {}).items()}
    for key in kept.keys() - patch.keys():
        assert result[key] == kept[key]


def test_merge_patch_examples_of_the_rfc():
    # RFC 7396, appendix A (a few of them).
    assert merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert merge_patch({"a": "b"}, {"b": "c"}) == {"a": "b", "b": "c"}
    assert merge_patch({"a": "b"}, {"a": None}) == {}
    assert merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    # The RFC gives {"a": {"bb": {}}}; in a layer an empty object replaces what the nodes
    # above set, so an object the patch's nulls empty goes too (see merge_patch).
    assert merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {}
    assert merge_patch({"i": {"x": {"until": 1}}}, {"i": {"x": {"until": None}}}) == {}
    assert merge_patch({"a": 1}, {"b": {}}) == {"a": 1, "b": {}}  # given empty: kept


def _patch(api, token, body, etag=None, plugin="catalog", node="longtan"):
    headers = {"If-Match": etag} if etag is not None else {}
    return api.client.patch(
        f"/api/v1/districts/{node}/policy/{plugin}",
        json=body,
        headers={"Authorization": f"Bearer {token}", **headers},
        content_type="application/merge-patch+json",
    )


def test_a_catalog_item_is_added_edited_and_removed_without_touching_the_others(api, world):
    admin = world.tokens["office_above"]
    layer = api.get("districts/longtan/policy/catalog", admin)
    assert layer.status_code == 200, layer.get_json()
    etag = layer.headers["ETag"]
    assert set(layer.get_json()["config"]["items"]) == {"haircut", "repair"}

    added = _patch(api, admin, {"config": {"items": {"shoes": SHOES}}}, etag)
    assert added.status_code == 200, added.get_json()
    assert set(added.get_json()["config"]["items"]) == {"haircut", "repair", "shoes"}
    assert added.headers["ETag"] != etag

    edited = _patch(api, admin, {"config": {"items": {"shoes": {"cost": 12}}}})
    assert edited.status_code == 200, edited.get_json()
    assert edited.get_json()["config"]["items"]["shoes"]["cost"] == 12
    assert edited.get_json()["config"]["items"]["haircut"]["cost"] == 30

    removed = _patch(api, admin, {"config": {"items": {"shoes": None}}})
    assert set(removed.get_json()["config"]["items"]) == {"haircut", "repair"}
    shown = api.get("districts/longtan/policy", admin).get_json()["plugins"]["catalog"]
    assert set(shown["config"]["items"]) == {"haircut", "repair"}


def test_a_stale_if_match_is_refused_and_changes_nothing(api, world):
    admin = world.tokens["office_above"]
    etag = api.get("districts/longtan/policy/catalog", admin).headers["ETag"]
    assert _patch(api, admin, {"config": {"items": {"shoes": SHOES}}}, etag).status_code == 200
    stale = _patch(api, admin, {"config": {"items": {"haircut": {"cost": 1}}}}, etag)
    assert problem_of(stale, 412)["errors"]
    again = api.put(
        "districts/longtan/policy/catalog", admin, {"config": {}}, headers={"If-Match": etag}
    )
    problem_of(again, 412)
    junk = _patch(api, admin, {"config": {}}, "*")
    problem_of(junk, 412)
    shown = api.get("districts/longtan/policy/catalog", admin).get_json()
    assert shown["config"]["items"]["haircut"]["cost"] == 30
    assert "shoes" in shown["config"]["items"]


def test_a_patch_is_validated_like_a_put(api, world):
    office = world.tokens["office_above"]
    bad = _patch(api, office, {"config": {"items": {"shoes": {**SHOES, "provider": "nobody"}}}})
    assert problem_of(bad, 422)["errors"] == {"config.items.shoes.provider": ["No such provider."]}
    partial = _patch(api, office, {"config": {"items": {"shoes": {"cost": 5}}}})
    assert "config.items.shoes.names" in problem_of(partial, 422)["errors"]
    wrong_type = api.client.patch(
        "/api/v1/districts/longtan/policy/catalog",
        data="{}",
        headers={"Authorization": f"Bearer {office}"},
        content_type="text/plain",
    )
    problem_of(wrong_type, 415)


def test_enabled_and_locks_are_kept_unless_given(api, world):
    office = world.tokens["office_above"]
    put = api.put(
        "districts/longtan/policy/caps",
        office,
        {"config": {"overall": {"day": 50}}, "locked": ["overall"], "enabled": True},
    )
    assert put.status_code == 200, put.get_json()
    patched = _patch(api, office, {"config": {"per_kind": {"log": {"day": 2}}}}, plugin="caps")
    assert patched.status_code == 200, patched.get_json()
    body = patched.get_json()
    assert body["locked"] == ["overall"] and body["enabled"] is True
    assert body["config"] == {"overall": {"day": 50}, "per_kind": {"log": {"day": 2}}}
    inherit = _patch(api, office, {"enabled": None}, plugin="caps")
    assert inherit.get_json()["enabled"] is None
    # A node below cannot patch a key locked above it.
    locked = _patch(
        api,
        world.tokens["office_in"],
        {"config": {"overall": {"day": 500}}},
        plugin="caps",
        node="xizhaosi",
    )
    assert "config.overall.day" in problem_of(locked, 422)["errors"]


def test_versions_list_one_and_a_diff_between_two(api, world):
    office = world.tokens["office_above"]
    _patch(api, office, {"config": {"items": {"shoes": SHOES}}})
    _patch(api, office, {"config": {"items": {"shoes": {"cost": 12}, "repair": None}}})
    listed = api.get("districts/longtan/policy/catalog/versions", world.tokens["auditor_in"])
    assert listed.status_code == 403  # an auditor of a node below does not reach longtan
    listed = api.get("districts/longtan/policy/catalog/versions", office)
    numbers = [row["version"] for row in listed.get_json()["items"]]
    assert numbers == [3, 2, 1]
    one = api.get("districts/longtan/policy/catalog/versions/2", office).get_json()
    assert one["config"]["items"]["shoes"]["cost"] == 10
    diff = api.get("districts/longtan/policy/catalog/diff?from=2&to=3", office).get_json()
    assert diff["changes"] == [
        {
            "key": "config.items.repair.cost",
            "change": "removed",
            "before": 60,
            "after": None,
        },
        {
            "key": "config.items.repair.min_star",
            "change": "removed",
            "before": 1,
            "after": None,
        },
        {
            "key": "config.items.repair.names.en",
            "change": "removed",
            "before": "appliance repair",
            "after": None,
        },
        {
            "key": "config.items.repair.names.zh-CN",
            "change": "removed",
            "before": "家电维修",
            "after": None,
        },
        {
            "key": "config.items.repair.provider",
            "change": "removed",
            "before": "barber-wang",
            "after": None,
        },
        {
            "key": "config.items.repair.stock_per_month",
            "change": "removed",
            "before": 1,
            "after": None,
        },
        {"key": "config.items.shoes.cost", "change": "changed", "before": 10, "after": 12},
    ]
    from_nothing = api.get("districts/longtan/policy/catalog/diff?from=0&to=1", office).get_json()
    assert {c["change"] for c in from_nothing["changes"]} == {"added"}
    problem_of(api.get("districts/longtan/policy/catalog/versions/9", office), 404)
    problem_of(api.get("districts/longtan/policy/catalog/diff?from=1&to=9", office), 404)
    problem_of(api.get("districts/longtan/policy/catalog/diff?from=x", office), 422)


def test_every_patch_writes_an_audit_row_with_what_changed(api, world):
    office = world.tokens["office_above"]
    _patch(api, office, {"config": {"items": {"shoes": SHOES}}})
    row = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "policy.version")
        .order_by(AuditEvent.id.desc())
    ).first()
    assert row.target_id == "longtan/catalog"
    assert "shoes" in row.after["config"]["items"] and "shoes" not in row.before["config"]["items"]
