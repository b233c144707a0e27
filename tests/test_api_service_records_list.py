"""GET /service-records: an office's records of its node and below, newest first, by
status, kind and volunteer, paged by cursor; nothing of a sibling node."""

from __future__ import annotations

from datetime import datetime

from points import service


def _record(world, who: str, hours_ago: float, kind: str = "patrol") -> int:
    details = {"summary": "路灯不亮"} if kind == "report" else {}
    # Five hours of patrol wait for the office (the approval policy of the world).
    record = service.record_service(
        world.volunteers[who],
        kind,
        datetime.fromisoformat(world.started(hours_ago)),
        300,
        details,
        actor="office:test",
    )
    assert record.status == "pending"
    return record.id


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def test_lists_the_node_and_below_newest_first_with_filters(api, world):
    mine = [_record(world, "self", 30 + 6 * hour) for hour in range(3)]
    peer = _record(world, "peer", 40)
    far = _record(world, "far", 50)
    service.approve(mine[0], actor="office:test")
    service.reject(mine[1], actor="office:test", reason="记重了")
    office = world.tokens["office_in"]

    everything = api.get("service-records", office)
    assert _ids(everything) == sorted([*mine, peer], reverse=True)
    assert far not in _ids(everything)
    row = everything.get_json()["items"][-1]
    assert row["district"] == "xizhaosi" and row["minutes"] == 300 and row["kind"] == "patrol"

    assert _ids(api.get("service-records?status=pending", office)) == [peer, mine[2]]
    rejected = api.get("service-records?status=rejected", office).get_json()["items"]
    assert [r["id"] for r in rejected] == [mine[1]] and rejected[0]["decision_reason"] == "记重了"
    by_peer = api.get(f"service-records?volunteer_id={world.volunteers['peer']}", office)
    assert _ids(by_peer) == [peer]
    assert _ids(api.get("service-records?kind=visit", office)) == []

    street = api.get("service-records?district=longtan", world.tokens["office_above"])
    assert far in _ids(street) and peer in _ids(street)


def test_pages_by_cursor_without_gaps_or_repeats(api, world):
    made = [_record(world, "self", 30 + 6 * hour) for hour in range(5)]
    office = world.tokens["office_in"]
    seen, url = [], "service-records?limit=2"
    while True:
        page = api.get(url, office).get_json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        url = f"service-records?limit=2&cursor={page['next_cursor']}"
    assert seen == sorted(made, reverse=True)


def test_bad_filters_are_refused_with_field_messages(api, world):
    office = world.tokens["office_in"]
    for query, field in (
        ("status=lost", "status"),
        ("cursor=!!", "cursor"),
        ("limit=0", "limit"),
        ("volunteer_id=x", "volunteer_id"),
    ):
        response = api.get(f"service-records?{query}", office)
        assert response.status_code == 422, query
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert field in str(response.get_json()), query
    assert api.get("service-records?district=zuoanmen", office).status_code == 403
    assert api.get("service-records?district=nowhere", office).status_code in (403, 404)
