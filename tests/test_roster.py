"""The office's volunteers over the API: search, edit, suspend, PIN reset, unlock, reissue,
providers, the tree, `GET /me`, and what the audit log says of each."""

from __future__ import annotations

import pytest

from points import auth
from points.errors import AuthenticationError, WrongPinError

pytest_plugins = ("tests.api_fixtures",)


def audit_rows(api, token: str, **filters) -> list[dict]:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    response = api.get(f"audit?{query}", token)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["items"]


def test_search_by_card_phone_and_name_start(api, world):
    office = world.tokens["office_in"]
    by_card = api.get(f"volunteers?q={world.cards['self'].lower()}", office).get_json()["items"]
    assert [row["id"] for row in by_card] == [world.volunteers["self"]]
    by_phone = api.get("volunteers?q=13900000001", office).get_json()["items"]
    assert [row["name"] for row in by_phone] == ["王秀英"]
    by_name = api.get("volunteers?q=李", office).get_json()["items"]
    assert [row["name"] for row in by_name] == ["李桂兰"]
    # Not the far volunteer: another community.
    everyone = api.get("volunteers", office).get_json()["items"]
    assert {row["name"] for row in everyone} == {"王秀英", "李桂兰"}
    assert everyone[0]["available"] == everyone[0]["balance"] - everyone[0]["held"]


def test_search_pages_with_a_cursor(api, world):
    office = world.tokens["office_above"]
    first = api.get("volunteers?limit=2", office).get_json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.get(f"volunteers?limit=2&cursor={first['next_cursor']}", office).get_json()
    names = [row["name"] for row in first["items"] + rest["items"]]
    assert names == sorted(names) and len(names) == 3 and rest["next_cursor"] is None
    bad = api.get("volunteers?cursor=nonsense", office)
    assert bad.status_code == 422 and "cursor" in bad.get_json()["errors"]


def test_auditors_see_phones_masked_and_no_card_codes(api, world):
    rows = api.get("volunteers?q=王", world.tokens["auditor_in"]).get_json()["items"]
    assert rows[0]["phone"] == "139****0001" and rows[0]["card_code"] is None


def test_edit_name_and_phone_is_audited_with_before_and_after(api, world):
    office, peer = world.tokens["office_in"], world.volunteers["peer"]
    response = api.patch(f"volunteers/{peer}", office, {"name": "李桂芳", "phone": "13700000009"})
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["name"], response.get_json()["phone"]) == ("李桂芳", "13700000009")
    (row,) = audit_rows(api, office, action="volunteer.edit")
    assert row["before"] == {"name": "李桂兰", "phone": None}
    assert row["after"] == {"name": "李桂芳", "phone": "13700000009"}
    assert row["target_id"] == str(peer) and row["district"] == "xizhaosi"
    # One phone number per node.
    taken = api.patch(f"volunteers/{peer}", office, {"phone": "13900000001"})
    assert taken.status_code == 422 and "phone" in taken.get_json()["errors"]
    cleared = api.patch(f"volunteers/{peer}", office, {"phone": None})
    assert cleared.get_json()["phone"] is None
    assert api.patch(f"volunteers/{peer}", office, {"name": ""}).status_code == 422


def test_suspend_stops_the_card_and_reactivate_restores_it(api, world):
    office, self_id = world.tokens["office_in"], world.volunteers["self"]
    done = api.patch(f"volunteers/{self_id}", office, {"status": "suspended", "reason": "搬家"})
    assert done.get_json()["status"] == "suspended"
    refused = api.post(
        "kiosk/sessions",
        world.tokens["kiosk_in"],
        {"card_code": world.cards["self"], "pin": world.pins["self"]},
    )
    assert refused.status_code == 409
    # The kiosk session open for self ended with the suspension.
    assert api.get("kiosk/sessions/current", world.tokens["session"]).status_code == 401
    api.patch(f"volunteers/{self_id}", office, {"status": "active"})
    again = api.post(
        "kiosk/sessions",
        world.tokens["kiosk_in"],
        {"card_code": world.cards["self"], "pin": world.pins["self"]},
    )
    assert again.status_code == 201
    rows = audit_rows(api, office, action="volunteer", target_id=self_id)
    assert [row["action"] for row in rows][:2] == ["volunteer.reactivate", "volunteer.suspend"]
    assert rows[1]["after"] == {"status": "suspended", "reason": "搬家"}


def test_pin_reset_shows_a_new_pin_once_that_signs_in(api, world, app):
    office, peer = world.tokens["office_in"], world.volunteers["peer"]
    pin = api.post(f"volunteers/{peer}/pin-reset", office).get_json()["pin"]
    assert len(pin) == 6 and pin != world.pins["peer"]
    with app.test_request_context():
        with pytest.raises(WrongPinError):
            auth.verify_card(None, world.cards["peer"], world.pins["peer"])
        assert auth.verify_card(None, world.cards["peer"], pin).volunteer_id == peer
    (row,) = audit_rows(api, office, action="volunteer.pin_reset")
    assert pin not in str(row) and row["actor"].startswith("office:")


def test_unlock_clears_a_locked_card(api, world, app):
    with app.test_request_context():
        for _ in range(5):
            with pytest.raises(Exception):  # noqa: B017 (wrong PINs, then the lock)
                auth.verify_card(None, world.cards["peer"], "999999")
    row = api.get("volunteers?q=李", world.tokens["office_in"]).get_json()["items"][0]
    assert row["locked_until"] is not None
    assert api.post(f"volunteers/{world.volunteers['peer']}/unlock", world.tokens["office_in"])
    row = api.get("volunteers?q=李", world.tokens["office_in"]).get_json()["items"][0]
    assert row["locked_until"] is None
    with app.test_request_context():
        auth.verify_card(None, world.cards["peer"], world.pins["peer"])


def test_reissue_stops_the_old_card_at_once(api, world, app):
    office, peer = world.tokens["office_in"], world.volunteers["peer"]
    code = api.post(f"volunteers/{peer}/reissue-card", office).get_json()["card_code"]
    assert code != world.cards["peer"]
    with app.test_request_context():
        with pytest.raises(WrongPinError):
            auth.verify_card(None, world.cards["peer"], world.pins["peer"])
        assert auth.verify_card(None, code, world.pins["peer"]).volunteer_id == peer
    (row,) = audit_rows(api, office, action="volunteer.reissue_card")
    assert row["before"] == {"card_code": world.cards["peer"]} and row["after"] == {
        "card_code": code
    }


def test_an_auditor_changes_nothing(api, world):
    auditor, peer = world.tokens["auditor_in"], world.volunteers["peer"]
    for method, path, body in (
        ("PATCH", f"volunteers/{peer}", {"name": "x"}),
        ("POST", f"volunteers/{peer}/pin-reset", None),
        ("POST", f"volunteers/{peer}/unlock", None),
        ("POST", f"volunteers/{peer}/reissue-card", None),
        ("POST", "providers", {"code": "x", "name": "x", "district": "xizhaosi"}),
        ("PATCH", "providers/barber-wang", {"status": "closed"}),
    ):
        assert api.call(method, path, auditor, body).status_code == 403, path


def test_register_without_a_pin_draws_one_shown_once(api, world):
    made = api.post(
        "volunteers", world.tokens["office_in"], {"name": "赵志强", "district": "xizhaosi"}
    )
    assert made.status_code == 201
    body = made.get_json()
    assert len(body["pin"]) == 6
    row = audit_rows(api, world.tokens["office_in"], action="volunteer.register")[0]
    assert body["pin"] not in str(row["after"]) and row["after"]["name"] == "赵志强"


def test_providers_create_close_and_the_catalog_refuses_a_closed_one(api, world):
    office = world.tokens["office_above"]
    made = api.post(
        "providers", office, {"code": "repair-li", "name": "李师傅家电维修", "district": "longtan"}
    )
    assert made.status_code == 201, made.get_json()
    assert (
        api.post(
            "providers", office, {"code": "repair-li", "name": "x", "district": "longtan"}
        ).status_code
        == 409
    )
    closed = api.patch("providers/repair-li", office, {"status": "closed"})
    assert closed.get_json()["status"] == "closed"
    refused = api.put(
        "districts/longtan/policy/catalog",
        office,
        {
            "config": {
                "items": {
                    "fridge": {
                        "names": {"zh-CN": "冰箱检修", "en": "Fridge check"},
                        "cost": 40,
                        "provider": "repair-li",
                    }
                }
            }
        },
    )
    assert refused.status_code == 422
    assert "closed" in str(refused.get_json()["errors"])
    listed = api.get("providers", world.tokens["office_in"]).get_json()["items"]
    assert "repair-li" not in [p["code"] for p in listed]  # longtan's, above xizhaosi
    assert [row["action"] for row in audit_rows(api, office, target_id="repair-li")] == [
        "provider.close",
        "provider.create",
    ]


def test_the_tree_and_me(api, world):
    tree = api.get("districts", world.tokens["office_above"]).get_json()["items"]
    assert [(node["code"], node["depth"]) for node in tree] == [
        ("longtan", 0),
        ("xizhaosi", 1),
        ("zuoanmen", 1),
    ]
    me = api.get("me", world.tokens["volunteer_self"]).get_json()
    assert (me["role"], me["volunteer_id"], me["district"]) == (
        "volunteer",
        world.volunteers["self"],
        "xizhaosi",
    )


def test_a_sibling_office_sees_no_audit_row_of_another_community(api, world):
    api.post(f"volunteers/{world.volunteers['peer']}/unlock", world.tokens["office_in"])
    assert audit_rows(api, world.tokens["office_in"], action="volunteer.unlock")
    assert not audit_rows(api, world.tokens["office_out"], action="volunteer.unlock")
    assert audit_rows(api, world.tokens["office_above"], action="volunteer.unlock")
    refused = api.get("audit?district=xizhaosi", world.tokens["office_out"])
    assert refused.status_code == 403


def test_staff_sessions_are_revocable_tokens(api, world, app):
    from points import staff

    staff.create_staff("wangfang", "王芳", "office", "xizhaosi", "lantern-harbour-42")
    with app.test_request_context():
        signed = staff.sign_in("wangfang", "lantern-harbour-42")
    me = api.get("me", signed.token).get_json()
    assert (me["role"], me["name"]) == ("office", "wangfang")
    account = api.get("staff", world.tokens["office_above"]).get_json()["items"][0]
    api.patch(f"staff/{account['id']}", world.tokens["office_above"], {"status": "disabled"})
    with pytest.raises(AuthenticationError):
        auth.authenticate_token(signed.token)


def test_today_counts_only_what_is_in_reach(api, world, app):
    from datetime import datetime

    from points import service

    service.record_service(
        world.volunteers["far"],
        "patrol",
        datetime.fromisoformat(world.started(60)),
        300,
        actor="office:test",
    )
    far = api.get("today", world.tokens["office_out"]).get_json()
    near = api.get("today", world.tokens["office_in"]).get_json()
    above = api.get("today", world.tokens["office_above"]).get_json()
    assert (far["pending_records"], near["pending_records"], above["pending_records"]) == (1, 0, 1)
    assert far["oldest_pending"] is not None and near["oldest_pending"] is None
