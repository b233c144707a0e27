"""Issuance budgets: clip or queue beyond a node's budget, exact under concurrency on both
databases, counted by period in the node's time zone, verified and rebuilt."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from points import budgets, ledger
from points.directory import create_district, register_volunteer
from points.extensions import db
from points.models import utcnow
from points.policy import district_info, set_policy
from points.service import approve, record_service
from points.verify import verify
from tests.test_concurrency import run_together

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


def open_policy(node: str) -> None:
    """Patrols approved at once, 10 points an hour, no caps: only budgets bind."""
    set_policy(node, "approval", {"auto_kinds": ["patrol"]}, author="t", effective_from=LONG_AGO)
    set_policy(
        node, "steward", {"patrol": {"points_per_hour": 10}}, author="t", effective_from=LONG_AGO
    )
    set_policy(
        node,
        "caps",
        {"overall": {"day": None}, "per_kind": {}},
        author="t",
        effective_from=LONG_AGO,
    )


def set_budget(node: str, points: int | None, period="month", overflow="clip") -> None:
    set_policy(
        node,
        "budget",
        {"points": points, "period": period, "overflow": overflow},
        author="t",
        effective_from=LONG_AGO,
    )


def patrol(volunteer: int, hours: int = 1, *, when=None, **kwargs):
    started = when or utcnow() - timedelta(minutes=60 * hours + random.randint(1, 10_000))
    return record_service(volunteer, "patrol", started, 60 * hours, actor="t", **kwargs)


def awarded_under(code: str) -> int:
    """Points awarded this month under the node, summed from the entries."""
    node = district_info(code)
    return budgets.used(budgets.Budget(node, 0, "month", "clip"), utcnow())


def assert_ledger_ok() -> None:
    ledger.seal()
    report = verify()
    assert report.ok, report.problems


@pytest.fixture
def people(tree):
    open_policy("beijing")
    return {
        "east": register_volunteer("王秀英", "xizhaosi", "204857").id,
        "west": register_volunteer("张建国", "zuoanmen", "204857").id,
    }


def test_an_award_beyond_the_budget_is_clipped_with_a_reason_naming_the_node(people):
    set_budget("longtan", 25)
    assert patrol(people["east"], 2).points == 20
    clipped = patrol(people["west"], 2)
    assert clipped.status == "approved" and clipped.points == 5
    clip = clipped.awards[0]["clip"]
    assert clip["plugin"] == "budget"
    assert clip["reason_zh"] == "本月龙潭街道积分预算仅余 5 分"
    assert "龙潭街道" in clip["reason_en"] and "the month" in clip["reason_en"]
    spent = patrol(people["east"], 1)
    assert spent.points == 0
    assert spent.awards[0]["clip"]["reason_zh"] == "本月龙潭街道积分预算已用完"
    assert spent.awards[0]["clip"]["reason_en"] == "the budget of 龙潭街道 for the month is spent"
    assert awarded_under("longtan") == 25
    assert_ledger_ok()


def test_a_budget_is_not_inherited_as_a_fresh_budget_by_each_child(people):
    # The street's 30 bound both communities together, not 30 each.
    set_budget("longtan", 30)
    assert patrol(people["east"], 2).points == 20
    assert patrol(people["west"], 2).points == 10
    in_force = budgets.in_force(district_info("xizhaosi"), utcnow())
    assert [b.node.code for b in in_force] == ["longtan"]
    assert_ledger_ok()


def test_the_tightest_budget_on_the_path_binds(people):
    set_budget("dongcheng", 1000)
    set_budget("longtan", 100)
    set_budget("xizhaosi", 15)
    assert patrol(people["east"], 2).points == 15
    assert patrol(people["west"], 2).points == 20  # the street still has room
    assert [
        u.used for u in budgets.usage([district_info(c) for c in ("dongcheng", "longtan")])
    ] == [
        35,
        35,
    ]
    assert_ledger_ok()


def test_a_queueing_node_sends_the_record_to_the_office_with_a_reason(people):
    set_budget("longtan", 25, overflow="queue")
    assert patrol(people["east"], 2).points == 20
    waiting = patrol(people["west"], 2)
    assert waiting.status == "pending" and waiting.points == 0
    assert "龙潭街道积分预算余 5 分，不足 20 分，待街道审核" in waiting.queue_reason
    assert "waits for the office" in waiting.queue_reason
    assert awarded_under("longtan") == 20  # a queued record took nothing
    # The office approves it: clipped to what is left, never beyond.
    approved = approve(waiting.id, "office")
    assert approved.status == "approved" and approved.points == 5
    assert approved.awards[0]["clip"]["plugin"] == "budget"
    assert awarded_under("longtan") == 25
    assert_ledger_ok()


def test_awards_before_the_budget_was_set_count_against_it(people):
    assert patrol(people["east"], 2).points == 20
    set_budget("longtan", 25)
    assert patrol(people["west"], 2).points == 5
    assert_ledger_ok()


def test_periods_are_the_node_time_zone_months(app, people):
    # 2026-02-28 17:30 UTC is already March 1st in Beijing (UTC+8).
    node = district_info("longtan")
    start, end = budgets.period_bounds(
        datetime(2026, 2, 28, 17, 30, tzinfo=UTC), "month", node.timezone
    )
    assert start == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
    q = budgets.period_bounds(datetime(2026, 12, 31, 15, 0, tzinfo=UTC), "quarter", "UTC")
    assert q == (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    y = budgets.period_bounds(datetime(2026, 12, 31, 16, 30, tzinfo=UTC), "year", "Asia/Shanghai")
    assert y == (datetime(2026, 12, 31, 16, tzinfo=UTC), datetime(2027, 12, 31, 16, tzinfo=UTC))


def test_imported_past_service_counts_against_its_own_period(people):
    from points.service.past import PastService, record_past_service

    set_budget("longtan", 25)
    last_month = utcnow() - timedelta(days=40)
    services = [
        PastService(f"k{i}", i, "patrol", last_month + timedelta(hours=3 * i), 120, {})
        for i in range(2)
    ]
    outcomes = record_past_service(
        people["east"], services, actor="t", reason="import", run_id=_run_id()
    )
    assert [o.points for o in outcomes] == [20, 5]
    # This month's budget is untouched by last month's service.
    assert patrol(people["west"], 2).points == 20
    assert_ledger_ok()


def _run_id() -> int:
    """An import run for record_past_service to name."""
    from points.models import ImportRun

    def run() -> int:
        row = ImportRun(
            district_id=district_info("longtan").id,
            kind="records",
            file_name="paper.csv",
            file_sha256="0" * 64,
            mapping={},
            dry_run=False,
            status="running",
            rows_total=2,
            rows_done=0,
            posted=0,
            duplicates=0,
            refused=0,
            points=0,
            minutes=0,
            started_by="t",
        )
        db.session.add(row)
        db.session.flush()
        return row.id

    return ledger.atomic(run)


def test_an_award_counts_in_the_month_of_the_node_time_zone(people):
    """Beijing's November starts at 16:00 UTC on October 31st: service imported on either
    side of that instant counts against different months' budgets."""
    from points.service.past import PastService, record_past_service

    set_budget("longtan", 25)
    october = datetime(2026, 10, 31, 13, 0, tzinfo=UTC)  # 21:00 in Beijing, October
    november = datetime(2026, 10, 31, 16, 30, tzinfo=UTC)  # 00:30 in Beijing, November
    later = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
    services = [
        PastService(f"tz{i}", i, "patrol", when, 120, {})
        for i, when in enumerate((october, november, later))
    ]
    outcomes = record_past_service(
        people["east"], services, actor="t", reason="import", run_id=_run_id()
    )
    assert [o.points for o in outcomes] == [20, 20, 5]
    assert_ledger_ok()


def test_verify_finds_a_tampered_counter_and_the_rebuild_repairs_it(people, runner):
    set_budget("longtan", 100)
    patrol(people["east"], 2)
    patrol(people["west"], 1)
    assert_ledger_ok()

    def tamper():
        db.session.execute(
            text("UPDATE budget_counters SET used = used + 7, reserved = reserved + 7")
        )

    ledger.atomic(tamper)
    report = verify()
    assert not report.ok
    assert any(p.check == "budgets" and "awards sum to 30" in str(p.rows) for p in report.problems)
    result = runner.invoke(args=["ledger", "budgets"])
    assert result.exit_code == 0 and "rebuilt the counters of 1 budget periods" in result.output
    assert_ledger_ok()
    assert patrol(people["east"], 10).points == 70


def test_a_budget_changed_mid_period_applies_at_once(people):
    set_budget("longtan", 100)
    assert patrol(people["east"], 2).points == 20
    set_budget("longtan", 30)
    assert patrol(people["west"], 2).points == 10
    assert patrol(people["west"], 1).points == 0
    set_budget("longtan", None)
    assert patrol(people["west"], 1).points == 10
    assert_ledger_ok()


# -- concurrency -----------------------------------------------------------------------


def test_racing_siblings_never_overrun_their_shared_parent_budget(app, people):
    """Threads award at once at two sibling communities under the street's budget: the
    total is the budget exactly, never more, on both databases and both write paths."""
    set_budget("longtan", 300)
    set_budget("dongcheng", 100_000)
    east = [register_volunteer(f"东{i}", "xizhaosi", "204857").id for i in range(4)]
    west = [register_volunteer(f"西{i}", "zuoanmen", "204857").id for i in range(4)]
    people = east + west
    for person in people:  # a first record each: the one-call path knows their accounts
        ledger.earn(person, 1, actor="t", reason="warm up")
    results = run_together(
        app,
        8,
        lambda i: [
            patrol(people[i], 2, idempotency_key=f"k{i}-{n}" if n % 2 else None).points
            for n in range(5)
        ],
    )
    granted = [p for r in results for p in r]
    assert sum(granted) == 300, results
    assert awarded_under("longtan") == 300
    assert awarded_under("dongcheng") == 300
    assert_ledger_ok()


# -- property: random trees, budgets and awards ----------------------------------------


_TAGS = itertools.count()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_awards_never_exceed_any_budget_on_the_path(app, data):
    db.session.rollback()
    ledger.atomic(
        lambda: [
            db.session.execute(text(f"DELETE FROM {t}"))
            for t in ("budget_counters", "budget_periods")
        ]
    )
    tag = next(_TAGS)
    root = create_district(f"c{tag}", f"城{tag}", "city")
    codes = [root.code]
    parents = {root.code: None}
    for i in range(data.draw(st.integers(1, 5))):
        parent = data.draw(st.sampled_from(codes))
        level = {"city": "district", "district": "street", "street": "community"}.get(
            district_info(parent).level, "grid"
        )
        if district_info(parent).level == "grid":
            continue
        node = create_district(f"n{tag}-{i}", f"节点{tag}-{i}", level, parent=parent)
        codes.append(node.code)
        parents[node.code] = parent
    open_policy(root.code)
    limits = {}
    for code in codes:
        points = data.draw(st.none() | st.integers(0, 60))
        if points is not None:
            limits[code] = points
            set_budget(code, points, overflow=data.draw(st.sampled_from(["clip", "queue"])))
    people = {code: register_volunteer(f"人{code}", code, "204857").id for code in codes}
    for _ in range(data.draw(st.integers(1, 12))):
        code = data.draw(st.sampled_from(codes))
        patrol(people[code], data.draw(st.integers(1, 3)))

    def subtree(code):
        return [c for c in codes if c == code or _under(c, code, parents)]

    for code, limit in limits.items():
        total = awarded_under(code)
        assert total <= limit, (code, total, limit)
        assert total == sum(_awarded_at(c) for c in subtree(code))
    assert not budgets.check()


def _under(code, ancestor, parents) -> bool:
    while parents.get(code):
        code = parents[code]
        if code == ancestor:
            return True
    return False


def _awarded_at(code) -> int:
    node = district_info(code)
    return int(
        db.session.execute(
            text(
                "SELECT coalesce(sum(r.points), 0) FROM service_records r "
                "WHERE r.district_id = :d AND r.status = 'approved'"
            ),
            {"d": node.id},
        ).scalar()
    )


def _points(record) -> int:
    assert record.status == "approved", record
    return record.points


def test_the_migration_goes_down_and_up_with_budgets(scratch_url):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from points.app import create_app
    from tests.conftest import _config

    app = create_app(_config(scratch_url))
    with app.app_context():
        upgrade()
        create_district("city", "City", "city")
        create_district("street", "Street", "street", parent="city")
        open_policy("city")
        set_budget("street", 15)
        person = register_volunteer("王秀英", "street", "204857").id
        assert patrol(person, 2).points == 15
        db.session.remove()
        downgrade(revision="0018")
        assert "budget_counters" not in inspect(db.engine).get_table_names()
        if db.engine.dialect.name == "postgresql":
            functions = db.session.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'points_budget%'")
            ).scalar()
            assert functions == 0
        db.session.remove()
        upgrade()
        # Counted afresh from the entries: the 15 awarded before count again.
        assert patrol(person, 1).points == 0
        assert_ledger_ok()
        db.session.remove()
        db.engine.dispose()


# -- where the office reads budgets --------------------------------------------------------


def test_today_reports_and_their_downloads_show_used_and_left(api, world, client, accounts):
    import csv
    import io
    from zoneinfo import ZoneInfo

    from tests.office_fixtures import sign_in

    open_policy("beijing")
    set_budget("longtan", 500)
    set_budget("xizhaosi", 30, period="quarter", overflow="queue")
    assert patrol(world.volunteers["self"], 2).points == 20
    assert patrol(world.volunteers["far"], 1).points == 10
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")

    # The API: Today for the street's office, and the street's report.
    today = api.get("today", world.tokens["office_above"]).get_json()
    rows = {row["district"]: row for row in today["budgets"]}
    assert (rows["longtan"]["used"], rows["longtan"]["left"]) == (30, 470)
    assert (rows["xizhaosi"]["used"], rows["xizhaosi"]["left"]) == (20, 10)
    assert rows["xizhaosi"]["period"] == "quarter" and rows["xizhaosi"]["overflow"] == "queue"
    # A community's office sees the budgets of its own node, not its street's.
    inside = api.get("today", world.tokens["office_out"]).get_json()["budgets"]
    assert inside == []
    report = api.get(f"reports?district=longtan&month={month}", world.tokens["office_above"])
    assert {(r["district"], r["used"], r["left"]) for r in report.get_json()["budgets"]} == {
        ("longtan", 30, 470),
        ("xizhaosi", 20, 10),
    }
    answer = api.get(
        f"reports?district=longtan&month={month}&format=csv", world.tokens["office_above"]
    )
    lines = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert ["积分预算 / Budgets"] in lines
    assert ["longtan", "龙潭街道", month, "500", "30", "470", "削减 / clipped"] in lines

    # The console: Today and the reports page.
    assert sign_in(client, "longtan").status_code == 302
    page = client.get("/office").text
    assert "积分预算" in page or "Budgets" in page
    assert 'data-budget="longtan"' in page and 'data-left="470"' in page
    assert 'data-budget="xizhaosi"' in page and 'data-used="20"' in page
    page = client.get(f"/office/reports?district=longtan&month={month}").text
    assert 'data-budget="xizhaosi"' in page and 'data-left="10"' in page


def test_the_policy_editor_sets_a_budget_without_a_deploy(world, client, accounts):
    """The budget is edited at /office/policy like any plugin: a draft, then activated;
    the next record at the node is clipped with the reason naming it."""
    import re

    from tests.office_fixtures import csrf, sign_in

    open_policy("beijing")
    assert sign_in(client, "xizhaosi").status_code == 302
    edit = "/office/policy/budget?district=xizhaosi"
    page = client.get(edit).text
    assert 'id="v__points"' in page
    assert "积分预算" in client.get("/office/policy").text
    fields = dict(re.findall(r'<input id="(v__[\w]+)" name="\1" type="text" value="([^"]*)"', page))
    fields |= {name: "1" for name in re.findall(r'name="(set__\w+)" value="1" checked', page)}
    answer = client.post(
        edit, data={**fields, "csrf_token": csrf(client.get(edit)), "v__points": "15"}
    )
    assert answer.status_code == 302, answer.text[:3000]
    activated = client.post(
        "/office/policy/budget/activate?district=xizhaosi",
        data={"csrf_token": csrf(client.get(edit)), "when": "now"},
    )
    assert activated.status_code == 302, activated.text[:3000]
    assert [b.points for b in budgets.in_force(district_info("xizhaosi"))] == [15]
    record = patrol(world.volunteers["self"], 2)
    assert record.points == 15
    assert record.awards[0]["clip"]["reason_zh"].startswith("本月夕照寺社区积分预算")
    # The street's nodes below xizhaosi have none, and its sibling has none: zuoanmen
    # is not bounded by xizhaosi's budget.
    assert patrol(world.volunteers["far"], 2).points == 20
