"""Gift requests over HTTP: the office lists, approves and rejects gifts that wait for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from points import ledger
from points.policy import set_policy
from points.verify import verify
from tests.test_api import problem_of

pytest_plugins = ("tests.api_fixtures",)


@pytest.fixture
def needy(world) -> int:
    """far (in zuoanmen) is a listed household in need: gifts to far wait for the office."""
    set_policy(
        "longtan",
        "transfers",
        {"households_in_need": [world.volunteers["far"]]},
        author="office:test",
        effective_from=datetime.now(UTC) - timedelta(days=1),
    )
    return world.volunteers["far"]


def _ask(api, world, needy, points=50, memo="帮扶困难家庭") -> dict:
    response = api.post(
        "transfers",
        world.tokens["volunteer_self"],
        {
            "from_volunteer_id": world.volunteers["self"],
            "to_volunteer_id": needy,
            "points": points,
            "relation": "household_in_need",
            "memo": memo,
        },
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "pending" and body["id"] is None and body["request_id"]
    return body


def test_api_office_lists_and_approves_a_pending_gift_once(api, world, needy):
    gift = _ask(api, world, needy)
    office = world.tokens["office_in"]
    assert ledger.balance(needy).balance == 1000
    listed = api.get("transfers/requests?district=xizhaosi&status=pending", office)
    assert listed.status_code == 200
    page = listed.get_json()
    assert page["next_cursor"] is None
    [item] = page["items"]
    assert item == {
        "id": gift["request_id"],
        "district": "xizhaosi",
        "from_volunteer_id": world.volunteers["self"],
        "to_volunteer_id": needy,
        "points": 50,
        "relation": "household_in_need",
        "memo": "帮扶困难家庭",
        "status": "pending",
        "requested_by": item["requested_by"],
        "created_at": item["created_at"],
        "decided_at": None,
        "decided_by": None,
        "decision_reason": None,
        "entry_id": None,
    }
    assert item["requested_by"].startswith("volunteer:")

    path = f"transfers/requests/{gift['request_id']}/approve"
    approved = api.post(path, office, headers={"Idempotency-Key": "approve-1"})
    assert approved.status_code == 200, approved.get_json()
    body = approved.get_json()
    assert body["status"] == "approved" and body["entry_id"]
    assert body["decided_by"].startswith("office:") and body["decided_at"]
    assert ledger.balance(needy).balance == 1050
    assert ledger.balance(world.volunteers["self"]).balance == 950
    replay = api.post(path, office, headers={"Idempotency-Key": "approve-1"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == body
    assert "approved" in problem_of(api.post(path, office), 409)["detail"]
    reject = f"transfers/requests/{gift['request_id']}/reject"
    problem_of(api.post(reject, office, {"reason": "too late"}), 409)
    assert ledger.balance(needy).balance == 1050

    assert api.get("transfers/requests?status=pending", office).get_json()["items"] == []
    [shown] = api.get("transfers/requests?status=approved", office).get_json()["items"]
    assert shown == body
    # The giver's node and its parents see it; the receiver's node does not.
    assert api.get("transfers/requests", world.tokens["office_above"]).get_json()["items"]
    assert api.get("transfers/requests", world.tokens["auditor_in"]).get_json()["items"]
    assert api.get("transfers/requests", world.tokens["auditor_out"]).get_json()["items"] == []
    ledger.seal()
    assert verify().ok


def test_api_rejected_gift_moves_nothing(api, world, needy):
    gift = _ask(api, world, needy)
    office = world.tokens["office_in"]
    path = f"transfers/requests/{gift['request_id']}/reject"
    assert "reason" in problem_of(api.post(path, office, {}), 422)["errors"]
    problem_of(api.post(path, office, {"reason": ""}), 422)
    rejected = api.post(path, office, {"reason": "不在本月名单 / not on this month's list"})
    assert rejected.status_code == 200, rejected.get_json()
    body = rejected.get_json()
    assert body["status"] == "rejected" and body["entry_id"] is None
    assert body["decision_reason"] == "不在本月名单 / not on this month's list"
    assert ledger.balance(needy).balance == 1000
    assert ledger.balance(world.volunteers["self"]).balance == 1000
    problem_of(api.post(path, office, {"reason": "again"}), 409)
    approve = f"transfers/requests/{gift['request_id']}/approve"
    assert "rejected" in problem_of(api.post(approve, office), 409)["detail"]
    assert ledger.balance(needy).balance == 1000


def test_api_gift_requests_page_newest_first_with_cursor(api, world, needy):
    ids = [_ask(api, world, needy, points=n, memo=f"gift {n}")["request_id"] for n in range(1, 6)]
    office = world.tokens["office_above"]
    first = api.get("transfers/requests?district=xizhaosi&limit=2", office).get_json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    second = api.get(
        f"transfers/requests?district=xizhaosi&limit=2&cursor={first['next_cursor']}", office
    ).get_json()
    assert [item["id"] for item in second["items"]] == ids[::-1][2:4]
    third = api.get(
        f"transfers/requests?district=xizhaosi&limit=2&cursor={second['next_cursor']}", office
    ).get_json()
    assert [item["id"] for item in third["items"]] == ids[:1]
    assert third["next_cursor"] is None
    # Nodes below are included; another branch is not.
    assert len(api.get("transfers/requests?district=longtan", office).get_json()["items"]) == 5
    assert api.get("transfers/requests?district=zuoanmen", office).get_json()["items"] == []
    problem_of(api.get("transfers/requests?cursor=garbage", office), 422)
    problem_of(api.get("transfers/requests?limit=0", office), 422)
    assert "status" in problem_of(api.get("transfers/requests?status=done", office), 422)["errors"]
    problem_of(api.get("transfers/requests?district=nowhere", office), 404)


def test_api_gift_requests_stay_in_their_node(api, world, needy):
    gift = _ask(api, world, needy)
    approve = f"transfers/requests/{gift['request_id']}/approve"
    reject = f"transfers/requests/{gift['request_id']}/reject"
    # The receiver's office does not decide: the request belongs to the giver's node.
    for token in ("office_out", "auditor_in", "volunteer_self", "kiosk_in", "session"):
        problem_of(api.post(approve, world.tokens[token]), 403)
        problem_of(api.post(reject, world.tokens[token], {"reason": "no"}), 403)
    problem_of(api.get("transfers/requests?district=xizhaosi", world.tokens["office_out"]), 403)
    for token in ("volunteer_self", "kiosk_in", "session"):
        problem_of(api.get("transfers/requests", world.tokens[token]), 403)
    # An unknown id: a 404 for an office, a 403 (as for any id) for a volunteer or kiosk.
    problem_of(api.post("transfers/requests/424242/approve", world.tokens["office_in"]), 404)
    problem_of(api.post("transfers/requests/424242/approve", world.tokens["volunteer_self"]), 403)
    problem_of(api.post("transfers/requests/424242/approve", world.tokens["kiosk_in"]), 403)
    assert ledger.balance(needy).balance == 1000
    listed = api.get("transfers/requests?status=pending", world.tokens["office_in"])
    assert [item["id"] for item in listed.get_json()["items"]] == [gift["request_id"]]


def test_api_approving_a_gift_the_giver_can_no_longer_afford_is_409(api, world, needy):
    gift = _ask(api, world, needy, points=500)
    me = world.volunteers["self"]
    ledger.transfer(me, world.volunteers["peer"], 700, actor="office:test", reason="family")
    office = world.tokens["office_in"]
    approve = f"transfers/requests/{gift['request_id']}/approve"
    problem_of(api.post(approve, office, headers={"Idempotency-Key": "poor-1"}), 409)
    assert ledger.balance(needy).balance == 1000 and ledger.balance(me).balance == 300
    [item] = api.get("transfers/requests", office).get_json()["items"]
    assert item["status"] == "pending" and item["decided_at"] is None
    # Nothing was stored for the key: the office may reject now, or retry later.
    reject = f"transfers/requests/{gift['request_id']}/reject"
    assert api.post(reject, office, {"reason": "余额不足"}).status_code == 200
