"""Points as of a past instant, and statements: on random histories the as-of balance
equals a replay of what was posted up to that instant, today's equals the ledger's own
balance, and a statement's opening plus its lines is its closing; over the API too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from points import errors, ledger, statements
from points.directory import create_district, create_provider, register_volunteer

# (operation, amount, days back for an award's effective time)
operation = st.one_of(
    st.tuples(st.just("earn"), st.integers(1, 50), st.integers(0, 60)),
    st.tuples(st.just("hold"), st.integers(1, 30), st.just(0)),
    st.tuples(st.just("post"), st.integers(0, 10), st.just(0)),
    st.tuples(st.just("void"), st.integers(0, 10), st.just(0)),
    st.tuples(st.just("give"), st.integers(1, 20), st.just(0)),
    st.tuples(st.just("reverse"), st.integers(0, 10), st.just(0)),
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(operation, min_size=1, max_size=25),
    instants=st.lists(st.integers(0, 70 * 24), min_size=1, max_size=6),
)
def test_as_of_equals_a_replay_of_the_history(fresh_app, steps, instants):
    with fresh_app():
        create_district("city", "市", "city")
        create_district("east", "东", "community", parent="city")
        provider = create_provider("shop", "店", "city").id
        me = register_volunteer("甲", "east", "204857").id
        other = register_volunteer("乙", "east", "204857").id
        now = datetime.now(UTC)
        moves: list[tuple[datetime, int]] = []  # (effective, change of my balance)
        mine: list[tuple[int, int]] = []  # entries that moved my points: (id, change)
        pending: list[tuple[int, int]] = []  # my pending holds: (id, amount)
        for kind, amount, days in steps:
            try:
                if kind == "earn":
                    when = now - timedelta(days=days, minutes=amount)
                    entry = ledger.earn(me, amount, actor="t", reason="r", effective_at=when)
                    moves.append((when, amount))
                    mine.append((entry.id, amount))
                elif kind == "hold":
                    held = ledger.hold(me, amount, provider_id=provider, actor="t", reason="r")
                    pending.append((held.id, amount))
                elif kind in ("post", "void") and pending:
                    hold_id, held_amount = pending.pop(amount % len(pending))
                    if kind == "post":
                        entry = ledger.post_hold(hold_id, actor="t")
                        moves.append((datetime.now(UTC), -held_amount))
                        mine.append((entry.id, -held_amount))
                    else:
                        ledger.void_hold(hold_id, actor="t", reason="r")
                elif kind == "give":
                    entry = ledger.transfer(me, other, amount, actor="t", reason="r")
                    moves.append((datetime.now(UTC), -amount))
                    mine.append((entry.id, -amount))
                elif kind == "reverse" and mine:
                    entry_id, change = mine.pop(amount % len(mine))
                    ledger.reverse(entry_id, actor="t", reason="r")
                    moves.append((datetime.now(UTC), -change))
            except (errors.InsufficientPointsError, errors.AlreadyReversedError):
                continue
        today = statements.as_of(me, datetime.now(UTC))
        booked = ledger.balance(me)
        assert (today.balance, today.held) == (booked.balance, booked.held)
        for hours in instants:
            moment = now - timedelta(hours=hours)
            expected = sum(change for when, change in moves if when <= moment)
            assert statements.as_of(me, moment).balance == expected, (hours, moves)
        start = now - timedelta(days=30)
        statement = statements.statement(me, start, now + timedelta(minutes=1))
        assert statement.opening == sum(c for w, c in moves if w < start)
        assert statement.closing == statements.as_of(me, now + timedelta(minutes=1)).balance
        running = statement.opening
        for line in statement.lines:
            running += line["points"]
            assert line["balance_after"] == running


def test_a_statement_needs_an_aware_period_that_ends_after_it_starts(volunteer):
    now = datetime.now(UTC)
    for start, end in ((now, now), (now, now - timedelta(days=1)), (now.replace(tzinfo=None), now)):
        try:
            statements.statement(volunteer, start, end)
        except errors.InvalidInputError as error:
            assert error.errors
        else:
            raise AssertionError((start, end))


def test_the_api_answers_as_of_and_statements(api, world):
    me = world.volunteers["self"]
    then = datetime.now(UTC)
    ledger.earn(me, 7, actor="office:test", reason="visit")
    token = world.tokens["volunteer_self"]
    past = api.get(f"volunteers/{me}/balance?as_of={quote(then.isoformat())}", token)
    assert past.status_code == 200, past.get_json()
    assert past.get_json()["balance"] == 1000 and past.get_json()["as_of"]
    assert api.get(f"volunteers/{me}/balance", token).get_json()["balance"] == 1007
    since = quote((then - timedelta(days=1)).isoformat())
    until = quote((datetime.now(UTC) + timedelta(minutes=1)).isoformat())
    answer = api.get(f"volunteers/{me}/statement?since={since}&until={until}", token)
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["opening"] + sum(line["points"] for line in body["lines"]) == body["closing"]
    assert body["closing"] == 1007 and body["lines"][-1]["balance_after"] == 1007
    bad = api.get(f"volunteers/{me}/statement?since={until}&until={since}", token)
    assert bad.status_code == 422 and "until" in bad.get_json()["errors"]
    naive = api.get(f"volunteers/{me}/balance?as_of=2026-01-01T00:00:00", token)
    assert naive.status_code == 422 and "as_of" in naive.get_json()["errors"]
    other = world.tokens["volunteer_peer"]
    assert (
        api.get(f"volunteers/{me}/statement?since={since}&until={until}", other).status_code == 403
    )


def test_the_statement_pages_for_the_volunteer_and_the_office(client, accounts):
    from tests.office_fixtures import sign_in

    me = accounts.volunteers["self"]
    month = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    assert sign_in(client, "xizhaosi").status_code == 302
    page = client.get(f"/office/volunteers/{me}/statement?month={month}")
    assert page.status_code == 200
    assert "月初积分" in page.text and "月末积分" in page.text and "获得" in page.text
    assert "data-closing>1,000<" in page.text
    assert client.get(f"/office/volunteers/{me}/statement?month=2026-13").status_code == 422
    far = accounts.volunteers["far"]
    assert client.get(f"/office/volunteers/{far}/statement").status_code == 403
