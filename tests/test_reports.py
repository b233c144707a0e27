"""Reports: on random histories a node's figures equal sums over what was posted, the
outstanding points at the end equal the start plus every movement, and today's
outstanding equals what the node's volunteers hold; over the API and on the console
with charts of the same numbers as their table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from points import errors, ledger, reports, rollups
from points.directory import create_district, create_provider, register_volunteer
from points.extensions import db
from points.models import Account, Entry, Posting
from tests.office_fixtures import sign_in

operation = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 2), st.integers(1, 40), st.integers(0, 40)),
    st.tuples(st.just("redeem"), st.integers(0, 2), st.integers(1, 20), st.just(0)),
    st.tuples(st.just("give"), st.integers(0, 2), st.integers(1, 15), st.integers(0, 2)),
    st.tuples(st.just("reverse"), st.integers(0, 99), st.just(0), st.just(0)),
    st.tuples(st.just("expire"), st.integers(0, 2), st.integers(1, 10), st.just(0)),
    st.tuples(st.just("serve"), st.integers(0, 2), st.integers(10, 240), st.just(0)),
)


def _posted(members: list[int], start: datetime | None, end: datetime) -> dict[str, list[int]]:
    """Credits and debits per entry kind on the members' accounts in [start, end), summed
    here from the postings, apart from the rollup the reports read."""
    query = (
        select(Entry.kind, Posting.amount)
        .join(Posting, Posting.entry_id == Entry.id)
        .join(Account, Account.id == Posting.account_id)
        .where(Account.volunteer_id.in_(members), Entry.effective_at < end)
    )
    if start is not None:
        query = query.where(Entry.effective_at >= start)
    sums: dict[str, list[int]] = {}
    for kind, amount in db.session.execute(query):
        pair = sums.setdefault(kind, [0, 0])
        pair[0 if amount > 0 else 1] += abs(amount)
    return sums


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(operation, min_size=1, max_size=25),
    window=st.tuples(st.integers(0, 50), st.integers(1, 50)),
    whole_hours=st.booleans(),
)
def test_reports_equal_sums_over_random_histories(fresh_app, steps, window, whole_hours):
    with fresh_app():
        create_district("city", "市", "city")
        create_district("street", "街", "street", parent="city")
        create_district("east", "东", "community", parent="street")
        create_district("west", "西", "community", parent="street")
        provider = create_provider("shop", "店", "city").id
        people = [
            register_volunteer("甲", "east", "204857").id,
            register_volunteer("乙", "east", "204857").id,
            register_volunteer("丙", "west", "204857").id,
        ]
        now = datetime.now(UTC)
        earned: list[tuple[datetime, int, int]] = []  # (effective, volunteer, points)
        posted: list[int] = []
        for kind, who, amount, other in steps:
            me = people[who % 3]
            try:
                if kind == "earn":
                    when = now - timedelta(days=other, minutes=amount)
                    entry = ledger.earn(me, amount, actor="t", reason="r", effective_at=when)
                    earned.append((when, me, amount))
                    posted.append(entry.id)
                elif kind == "redeem":
                    hold = ledger.hold(me, amount, provider_id=provider, actor="t", reason="r")
                    posted.append(ledger.post_hold(hold.id, actor="t").id)
                elif kind == "give":
                    to = people[(who + 1 + other) % 3]
                    posted.append(ledger.transfer(me, to, amount, actor="t", reason="r").id)
                elif kind == "reverse" and posted:
                    ledger.reverse(posted[who % len(posted)], actor="t", reason="r")
                elif kind == "expire":
                    earned.append((now - timedelta(days=60), me, amount))
                    ledger.earn(
                        me,
                        amount,
                        actor="t",
                        reason="old",
                        effective_at=now - timedelta(days=60),
                        expires_at=now - timedelta(days=1),
                    )
                    ledger.expire_lots(now - timedelta(hours=1))
                elif kind == "serve":
                    ledger.add_service_minutes(me, amount, actor="t", reason="r")
            except (
                errors.InsufficientPointsError,
                errors.AlreadyReversedError,
                errors.InvalidInputError,
            ):
                continue
        start = now - timedelta(days=window[0] + window[1])
        end = now - timedelta(days=window[0]) + timedelta(minutes=5)
        if whole_hours:  # read from the rollup alone; otherwise its ends from the postings
            start, end = (t.replace(minute=0, second=0, microsecond=0) for t in (start, end))
        assert rollups.check() == []
        for node, members in (("street", people), ("east", people[:2]), ("west", people[2:])):
            found = reports.report(node, start, end)
            assert found.balances, found.as_dict()
            moved = _posted(members, start, end)
            credits, debits = (
                {kind: pair[side] for kind, pair in moved.items()} for side in (0, 1)
            )
            assert found.redeemed == debits.get("redeem", 0) - credits.get("redeem", 0)
            assert found.expired == debits.get("expire", 0) - credits.get("expire", 0)
            assert found.corrections == credits.get("reversal", 0) - debits.get("reversal", 0)
            assert (found.gifts_in, found.gifts_out) == (
                credits.get("transfer", 0),
                debits.get("transfer", 0),
            )
            before = sum(c - d for c, d in _posted(members, None, start).values())
            assert found.outstanding_start == before
            # Read forwards from the first hour, or backwards from what is held now.
            nodes = reports._subtree(reports.district_info(node).path)
            assert [rollups.owed(nodes, start, from_now=way) for way in (False, True)] == [
                before,
                before,
            ]
            # Corrections of awards are counted apart, as corrections.
            assert found.issued == sum(p for w, v, p in earned if start <= w < end and v in members)
            today = reports.report(node, start, now + timedelta(days=1))
            assert today.outstanding_end == sum(ledger.balance(v).balance for v in members)
        street = reports.report("street", start, end)
        for figure in ("issued", "redeemed", "expired", "outstanding_end", "service_minutes"):
            assert getattr(street, figure) == sum(
                getattr(child, figure) for child in street.children
            ), figure


def test_issued_counts_awards_by_kind_and_rule(tree, volunteer, provider):
    now = datetime.now(UTC)
    ledger.earn(volunteer, 5, actor="t", reason="r", plugin="steward", rule="patrol-hours")
    ledger.earn(volunteer, 20, actor="t", reason="campaign")
    hold = ledger.hold(volunteer, 8, provider_id=provider, actor="t", reason="r")
    ledger.post_hold(hold.id, actor="t")
    found = reports.report("longtan", now - timedelta(hours=1), now + timedelta(hours=1))
    assert found.issued == 25 and found.redeemed == 8 and found.outstanding_end == 17
    assert found.issued_by_rule == {"steward/patrol-hours": 5, "other": 20}
    assert found.issued_by_kind == {"other": 25}
    assert [child.district for child in found.children] == ["xizhaosi", "zuoanmen"]
    try:
        reports.report("longtan", now, now)
    except errors.InvalidInputError as error:
        assert "until" in error.errors
    else:
        raise AssertionError("an empty period is refused")


def test_the_api_and_the_console(api, world, client, accounts):
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    office = world.tokens["office_above"]
    answer = api.get(f"reports?district=longtan&month={month}", office)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["issued"] == 2000 and body["outstanding_end"] == 2000
    assert {child["district"] for child in body["children"]} == {"xizhaosi", "zuoanmen"}
    since = quote((datetime.now(UTC) - timedelta(days=1)).isoformat())
    until = quote((datetime.now(UTC) + timedelta(days=1)).isoformat())
    assert api.get(f"reports?since={since}&until={until}", office).get_json()["issued"] == 2000
    assert api.get("reports", office).status_code == 422
    assert api.get(f"reports?month={month}&since={since}", office).status_code == 422
    assert (
        api.get(f"reports?district=zuoanmen&month={month}", world.tokens["office_in"]).status_code
        == 403
    )
    assert api.get(f"reports?month={month}", world.tokens["kiosk_in"]).status_code == 403

    assert sign_in(client, "longtan").status_code == 302
    page = client.get("/office/reports")
    assert page.status_code == 200
    assert 'data-figure="issued">2,000<' in page.text
    assert f'data-month="{month}" data-value="2000"' in page.text  # the chart's bar
    assert client.get("/office/reports?month=2026-13").status_code == 422


def test_star_levels_count_volunteers_by_their_minutes_at_the_end(tree, volunteer, other_volunteer):
    now = datetime.now(UTC)
    for _ in range(5):  # 120 hours
        ledger.add_service_minutes(volunteer, 1440, actor="t", reason="patrols")
    found = reports.report("longtan", now - timedelta(days=1), now + timedelta(hours=1))
    levels = found.star_levels
    assert sum(levels.values()) == found.volunteers >= 2
    assert max(levels) == 1  # 100 hours earn the first star by default
    # Before the minutes were credited, everyone stood at the bottom.
    earlier = reports.report("longtan", now - timedelta(days=2), now)
    assert set(earlier.star_levels) == {0}


def test_the_report_downloads_as_csv_and_xlsx(api, world, client, accounts):
    import csv
    import io

    from openpyxl import load_workbook

    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    office = world.tokens["office_above"]
    answer = api.get(f"reports?district=longtan&month={month}&format=csv", office)
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    text = answer.get_data(as_text=True).lstrip("\ufeff")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["概况 / Summary"]
    figures = {row[0]: row[1] for row in lines if len(row) == 2}
    assert figures["发放 / Issued"] == "2000"
    assert figures["期末未兑积分 / Outstanding at the end"] == "2000"
    assert ["按节点 / By node"] in lines and ["近 12 个月 / The last 12 months"] in lines
    assert [month, "2000", "0", "0", "2000", "0.0"] in lines
    answer = api.get(f"reports?district=longtan&month={month}&format=xlsx", office)
    assert answer.status_code == 200
    book = load_workbook(io.BytesIO(answer.get_data()), read_only=True)
    assert book.sheetnames[:2] == ["Summary", "By node"]
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=3, values_only=True)}
    assert summary["发放 / Issued"] == 2000
    assert api.get(f"reports?month={month}&format=pdf", office).status_code == 422
    # The console's buttons give the same files.
    assert sign_in(client, "longtan").status_code == 302
    page = client.get(f"/office/reports?month={month}")
    assert "format=xlsx" in page.text and 'data-series="issued_by_kind"' in page.text
    download = client.get(f"/office/reports?month={month}&format=csv")
    assert download.status_code == 200 and download.get_data() == answer_csv(api, month, office)


def answer_csv(api, month, token) -> bytes:
    return api.get(f"reports?district=longtan&month={month}&format=csv", token).get_data()


def test_a_month_in_a_half_hour_zone_is_read_from_utc_hours(app):
    """Kolkata's midnight is 18:30 UTC: the month's ends fall inside the rollup's hours."""
    create_district("city", "市", "city", timezone="Asia/Kolkata")
    create_district("ward", "区", "community", parent="city", timezone="Asia/Kolkata")
    me = register_volunteer("甲", "ward", "204857").id
    zone = ZoneInfo("Asia/Kolkata")
    for day, points in ((datetime(2026, 1, 1, 0, 10), 10), (datetime(2026, 2, 1, 0, 10), 7)):
        ledger.earn(me, points, actor="t", reason="r", effective_at=day.replace(tzinfo=zone))
    # And one a quarter of an hour before January's end, in the same UTC hour as Feb's start.
    ledger.earn(
        me, 5, actor="t", reason="r", effective_at=datetime(2026, 1, 31, 23, 45, tzinfo=zone)
    )
    january = reports.report("ward", *reports.month_bounds("2026-01", "Asia/Kolkata"))
    february = reports.report("ward", *reports.month_bounds("2026-02", "Asia/Kolkata"))
    assert (january.outstanding_start, january.issued, january.outstanding_end) == (0, 15, 15)
    assert (february.outstanding_start, february.issued, february.outstanding_end) == (15, 7, 22)
    months = reports.monthly("ward", 2, "2026-02")
    assert [(m.issued, m.outstanding) for m in months] == [(15, 15), (7, 22)]
