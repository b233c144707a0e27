"""Rankings: by points earned (spending never lowers a rank, a corrected award does) and
by service hours; ties share a place; a node sees itself and below; over the API, on the
console and on the volunteer's statement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from points import ledger, rankings
from points.directory import register_volunteer
from tests.office_fixtures import sign_in

START = datetime.now(UTC) - timedelta(days=1)
END = datetime.now(UTC) + timedelta(days=1)


def _places(by: str, district: str = "xizhaosi") -> list[tuple[int, str, int]]:
    return [(r.rank, r.name, r.value) for r in rankings.rank(district, by, START, END)]


def test_points_earned_with_ties_and_no_effect_of_spending(tree, volunteer, other_volunteer):
    third = register_volunteer("赵德明", "xizhaosi", "204857").id
    ledger.earn(volunteer, 10, actor="t", reason="r")
    ledger.earn(other_volunteer, 10, actor="t", reason="r")
    late = ledger.earn(third, 12, actor="t", reason="r")
    assert _places("points") == [(1, "赵德明", 12), (2, "王秀英", 10), (2, "李桂兰", 10)]
    ledger.transfer(volunteer, other_volunteer, 5, actor="t", reason="gift")
    assert _places("points")[1:] == [(2, "王秀英", 10), (2, "李桂兰", 10)]  # gifts don't count
    ledger.reverse(late.id, actor="t", reason="logged twice")
    assert _places("points") == [(1, "王秀英", 10), (1, "李桂兰", 10)]  # the correction does


def test_hours_and_the_node_below(tree, volunteer, far_volunteer):
    ledger.add_service_minutes(volunteer, 90, actor="t", reason="patrol")
    ledger.add_service_minutes(far_volunteer, 120, actor="t", reason="patrol")
    assert _places("hours") == [(1, "王秀英", 90)]
    assert [r.name for r in rankings.rank("longtan", "hours", START, END)] == [
        rankings.rank("zuoanmen", "hours", START, END)[0].name,
        "王秀英",
    ]
    before = rankings.rank("xizhaosi", "hours", START - timedelta(days=9), START)
    assert before == []


def test_the_api_and_its_errors(api, world):
    since = quote(START.isoformat())
    until = quote(END.isoformat())
    office = world.tokens["office_above"]
    answer = api.get(f"rankings?district=longtan&by=points&since={since}&until={until}", office)
    assert answer.status_code == 200, answer.get_json()
    items = answer.get_json()["items"]
    assert [item["rank"] for item in items] == [1, 1] and items[0]["value"] == 1000
    bad = api.get(f"rankings?by=balance&since={since}&until={until}", office)
    assert bad.status_code == 422 and "by" in bad.get_json()["errors"]
    backwards = api.get(f"rankings?since={until}&until={since}", office)
    assert backwards.status_code == 422 and "until" in backwards.get_json()["errors"]
    assert (
        api.get(
            f"rankings?district=zuoanmen&since={since}&until={until}", world.tokens["office_in"]
        ).status_code
        == 403
    )
    assert (
        api.get(f"rankings?since={since}&until={until}", world.tokens["volunteer_self"]).status_code
        == 403
    )


def test_the_console_page_and_the_statement_show_places(client, accounts):
    assert sign_in(client, "longtan").status_code == 302
    page = client.get("/office/rankings?by=points")
    assert page.status_code == 200 and 'id="ranking"' in page.text
    assert page.text.count('<td class="number">1</td>') == 2  # self and far tie at 1000
    assert client.get("/office/rankings?period=days&since=x&until=y").status_code == 422
    me = accounts.volunteers["self"]
    statement = client.get(f"/office/volunteers/{me}/statement")
    assert "获得积分排第 1 名" in statement.text
