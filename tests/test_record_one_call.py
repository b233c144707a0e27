"""A service record in one call (PostgreSQL): the rows the locked path writes, three
statements and no transaction, and a fresh evaluation whenever the volunteer's row or
history changed between the read and the write."""

from __future__ import annotations

import threading
import types
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from points import errors, ledger, service
from points.extensions import db
from points.ledger import fused
from points.models import Entry, Lot, Posting, ServiceMinutes, ServiceRecord, Volunteer
from points.plugins import Limit, hookimpl, plugin_manager, registered
from points.policy import set_policy
from points.service import approve, record_service, submission
from points.verify import verify

LONG_AGO = datetime.now(UTC) - timedelta(days=400)
DAY = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0) - timedelta(days=2)


@pytest.fixture
def postgres(backend):
    if backend != "postgresql":
        pytest.skip("the one-call record exists on PostgreSQL only")


@pytest.fixture
def policy(tree):
    """Patrols approved at once, 5 points an hour, at most 15 points a day."""
    for plugin, config in (
        ("caps", {"overall": {"day": 15}}),
        ("approval", {"auto_kinds": ["patrol", "checkin"], "auto_approve_up_to": None}),
        ("steward", {"patrol": {"points_per_hour": 5}}),
    ):
        set_policy("longtan", plugin, config, author="office:test", effective_from=LONG_AGO)


def patrol(volunteer, minutes=120, at=DAY, **kwargs):
    return record_service(volunteer, "patrol", at, minutes, actor="office:test", **kwargs)


def assert_ok():
    ledger.seal()
    report = verify()
    assert report.ok, report.problems


def story(volunteer: int) -> None:
    """Two patrols on one day (the second clipped by the cap), a check-in, a visit left
    for the office and then approved, and a refused second check-in."""
    patrol(volunteer, 120)
    patrol(volunteer, 120, DAY + timedelta(hours=3))
    record_service(volunteer, "checkin", DAY + timedelta(hours=5), actor="office:test")
    visit = record_service(
        volunteer, "visit", DAY + timedelta(days=1), 60, {"households": 3}, actor="office:test"
    )
    assert visit.status == "pending"
    approve(visit.id, "office:wang")
    with pytest.raises(errors.ConflictError):
        record_service(volunteer, "checkin", DAY + timedelta(hours=7), actor="office:test")


def rows_of(volunteer: int) -> dict:
    """A volunteer's records, entries, lots and minutes, ids replaced by ordinals."""
    records = db.session.scalars(
        select(ServiceRecord).where(ServiceRecord.volunteer_id == volunteer).order_by("id")
    ).all()
    number = {r.id: i for i, r in enumerate(records)}
    entries = db.session.scalars(
        select(Entry)
        .where(Entry.service_record_id.in_(number))
        .order_by(Entry.service_record_id, Entry.id)
    ).all()
    lots = {lot.entry_id: lot for lot in db.session.scalars(select(Lot))}
    minutes = db.session.scalars(
        select(ServiceMinutes)
        .where(ServiceMinutes.volunteer_id == volunteer)
        .order_by(ServiceMinutes.id)
    ).all()
    return {
        "records": [
            (
                r.kind,
                r.started_at,
                r.minutes,
                r.details,
                r.status,
                r.dedupe_key,
                r.submitted_by,
                r.points,
                r.awards,
                r.queue_reason,
                r.decided_by,
                r.decision_reason,
                r.decided_at is None,
            )
            for r in records
        ],
        "entries": [
            (
                number[e.service_record_id],
                e.kind,
                e.actor,
                e.reason,
                e.plugin,
                e.rule,
                e.config_version,
                e.hash
                == ledger.entry_hash(
                    {f: getattr(e, f) for f in ledger.HASHED_FIELDS},
                    [
                        tuple(row)
                        for row in db.session.execute(
                            select(Posting.account_id, Posting.amount).where(
                                Posting.entry_id == e.id
                            )
                        )
                    ],
                ),
                lots[e.id].amount,
                lots[e.id].remaining,
                lots[e.id].expires_at is None,
            )
            for e in entries
        ],
        "minutes": [
            (number[m.service_record_id], m.minutes, m.kind, m.actor, m.reason.split()[0])
            for m in minutes
        ],
        "total_minutes": db.session.get(Volunteer, volunteer).service_minutes,
        "balance": ledger.balance(volunteer)[2:],
    }


def test_one_call_writes_what_the_locked_path_writes(
    app, postgres, policy, volunteer, other_volunteer, monkeypatch
):
    calls = []
    record = fused.record
    monkeypatch.setattr(fused, "record", lambda *a, **k: calls.append(1) or record(*a, **k))
    patrol(volunteer, 60, DAY - timedelta(days=1))  # the first looks the accounts up
    patrol(other_volunteer, 60, DAY - timedelta(days=1))
    calls.clear()
    story(volunteer)
    assert len(calls) == 4  # two patrols, a check-in, the visit; not the refused check-in
    monkeypatch.setattr(fused, "records_enabled", lambda: False)
    story(other_volunteer)
    one_call, locked = rows_of(volunteer), rows_of(other_volunteer)
    assert one_call == locked
    # The day's cap of 15 clips the second patrol and leaves the check-in nothing.
    assert [r[7] for r in one_call["records"]] == [5, 10, 5, 0, 6]
    assert one_call["total_minutes"] == 60 + 120 + 120 + 60
    assert all(entry[7] for entry in one_call["entries"])
    assert_ok()


def test_a_record_is_three_statements_and_no_transaction(
    app, postgres, policy, volunteer, monkeypatch
):
    import psycopg

    patrol(volunteer, 60, DAY - timedelta(days=1))
    sent: list[tuple[str, str]] = []
    execute = psycopg.Cursor.execute

    def record_execute(self, query, *args, **kwargs):
        result = execute(self, query, *args, **kwargs)
        status = self.connection.info.transaction_status
        sent.append((" ".join(str(query).split()[:2]), status.name))
        return result

    monkeypatch.setattr(psycopg.Cursor, "execute", record_execute)
    done = patrol(volunteer)
    monkeypatch.undo()
    assert done.status == "approved" and done.points == 10
    # The volunteer (with the new record's id), the day's history, the write: each a
    # transaction of its own, none left open.
    assert sent == [
        ("SELECT volunteers.id,", "IDLE"),
        ("SELECT service_records.id,", "IDLE"),
        ("SELECT points_record(", "IDLE"),
    ]
    assert_ok()


def _meanwhile(app, monkeypatch, change, times=1):
    """Run `change()` in another thread, on its own connection, just before each of the
    next `times` one-call writes of this thread: after its read, before its write.
    Returns a count of this thread's writes in `calls`."""
    record = fused.record
    state = {"left": times, "calls": 0}
    caller = threading.get_ident()

    def write(*args, **kwargs):
        if threading.get_ident() != caller:
            return record(*args, **kwargs)
        state["calls"] += 1
        if state["left"]:
            state["left"] -= 1
            _in_another_thread(app, change)
        return record(*args, **kwargs)

    monkeypatch.setattr(fused, "record", write)
    return state


def test_a_record_overtaken_by_another_is_evaluated_again(
    app, postgres, policy, volunteer, monkeypatch
):
    patrol(volunteer, 60, DAY - timedelta(days=1))
    # Another record of the same day lands between this one's read and its write: the
    # cap it counted no longer holds, so it is evaluated again and clipped.
    state = _meanwhile(app, monkeypatch, lambda: patrol(volunteer, 120, DAY + timedelta(hours=4)))
    done = patrol(volunteer, 120)
    assert state["calls"] == 2
    assert done.points == 5 and done.awards[0]["clip"]["plugin"] == "caps"
    day = select(func.sum(ServiceRecord.points)).where(ServiceRecord.started_at >= DAY)
    assert db.session.scalar(day) == 15
    assert ledger.balance(volunteer).balance == 5 + 15
    assert_ok()


def test_minutes_counted_meanwhile_make_the_record_read_again(
    app, postgres, policy, volunteer, monkeypatch
):
    patrol(volunteer, 60, DAY - timedelta(days=1))
    state = _meanwhile(
        app,
        monkeypatch,
        lambda: ledger.add_service_minutes(volunteer, 600, actor="office", reason="training"),
    )
    done = patrol(volunteer, 120)
    assert state["calls"] == 2 and done.points == 10
    assert db.session.get(Volunteer, volunteer).service_minutes == 60 + 600 + 120
    assert_ok()


def test_a_record_overtaken_every_time_takes_the_locked_path(
    app, postgres, policy, volunteer, monkeypatch
):
    patrol(volunteer, 60, DAY - timedelta(days=1))
    minutes = iter(range(1, 100))
    state = _meanwhile(
        app,
        monkeypatch,
        lambda: ledger.add_service_minutes(volunteer, next(minutes), actor="o", reason="r"),
        times=service.ONE_CALL_ATTEMPTS,
    )
    done = patrol(volunteer, 120)
    assert state["calls"] == service.ONE_CALL_ATTEMPTS
    assert done.status == "approved" and done.points == 10
    assert db.session.scalar(select(func.count(ServiceRecord.id))) == 2
    assert db.session.get(Volunteer, volunteer).service_minutes == 60 + 1 + 2 + 3 + 120
    assert_ok()


def test_a_check_in_recorded_meanwhile_is_a_conflict(app, postgres, policy, volunteer, monkeypatch):
    patrol(volunteer, 60, DAY - timedelta(days=1))
    _meanwhile(
        app,
        monkeypatch,
        lambda: record_service(volunteer, "checkin", DAY + timedelta(hours=2), actor="kiosk"),
    )
    with pytest.raises(errors.ConflictError) as raised:
        record_service(volunteer, "checkin", DAY, actor="office:test")
    assert "started_at" in raised.value.errors
    db.session.rollback()
    kinds = select(ServiceRecord.kind).order_by(ServiceRecord.id)
    assert db.session.scalars(kinds).all() == ["patrol", "checkin"]  # the other's check-in
    assert_ok()


def test_an_account_closed_meanwhile_writes_nothing(app, postgres, policy, volunteer, monkeypatch):
    patrol(volunteer, 60, DAY - timedelta(days=1))

    def close():
        with db.engine.begin() as connection:
            connection.execute(
                text("UPDATE accounts SET status = 'closed' WHERE volunteer_id = :v"),
                {"v": volunteer},
            )

    _meanwhile(app, monkeypatch, close)
    counts = select(func.count(ServiceRecord.id)), select(func.count(Entry.id))
    before = [db.session.scalar(q) for q in counts]
    with pytest.raises(errors.AccountClosedError):
        patrol(volunteer, 120)
    db.session.rollback()
    assert [db.session.scalar(q) for q in counts] == before
    assert db.session.get(Volunteer, volunteer).service_minutes == 60


def test_a_connection_lost_before_the_write_takes_the_locked_path(
    app, postgres, policy, volunteer, monkeypatch
):
    patrol(volunteer, 60, DAY - timedelta(days=1))
    rows = submission._driver_rows
    lost = []

    def lose_first(connection):
        if not lost:
            lost.append(True)
            connection.close()  # as a dead network would leave it
        return rows(connection)

    monkeypatch.setattr(submission, "_driver_rows", lose_first)
    done = patrol(volunteer, 120)
    assert lost and done.status == "approved" and done.points == 10
    assert db.session.scalar(select(func.count(ServiceRecord.id))) == 2
    assert_ok()


def test_a_connection_lost_during_the_write_is_raised_not_sent_again(
    app, postgres, policy, volunteer, monkeypatch
):
    """The call may have committed before the reply was lost: sending it again (or
    taking the locked path) could record the service twice. It raises (a 503 over
    HTTP), like a unit of work whose COMMIT was lost."""
    import psycopg
    from sqlalchemy.exc import OperationalError

    patrol(volunteer, 60, DAY - timedelta(days=1))
    record = fused.record
    calls = []

    def write_then_lose_the_reply(connection, *args, **kwargs):
        calls.append(1)
        record(connection, *args, **kwargs)
        connection.close()
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(fused, "record", write_then_lose_the_reply)
    with pytest.raises(OperationalError):
        patrol(volunteer, 120)
    monkeypatch.undo()
    assert calls == [1]
    assert db.session.scalar(select(func.count(ServiceRecord.id))) == 2  # written once
    assert ledger.balance(volunteer).balance == 5 + 10
    assert_ok()


def _wide_reader():
    """A limit plugin, sorted after `caps`, that reads a wider range than the day."""
    module = types.ModuleType("quota")

    @hookimpl
    def limit_awards(record, history):
        history.awarded(since=record.local_start - timedelta(days=40))
        return [Limit(1000, "月配额", "monthly quota")]

    module.limit_awards = limit_awards
    return module


def test_history_changed_between_two_reads_is_evaluated_again(
    app, postgres, policy, volunteer, monkeypatch
):
    """`caps` reads the day; a later plugin widens the read. An approval of a record
    without minutes (the volunteer's row unchanged) lands between the two reads: the
    day `caps` counted is no longer the day, so the record is evaluated again."""
    patrol(volunteer, 60, DAY - timedelta(days=1))
    patrol(volunteer, 60, DAY)  # 5 of the day's 15
    report = record_service(
        volunteer, "report", DAY + timedelta(hours=1), None, {"problem": "lamp"}, actor="o"
    )
    assert report.status == "pending"
    load = submission._SeenHistory.__call__
    caller, loads = threading.get_ident(), []

    def load_then_approve(self, since, until):
        rows = load(self, since, until)
        if threading.get_ident() == caller:
            loads.append(since)
            if len(loads) == 1:
                _in_another_thread(app, lambda: approve(report.id, "office:wang"))
        return rows

    monkeypatch.setattr(submission._SeenHistory, "__call__", load_then_approve)
    with registered(plugin_manager(), _wide_reader(), "quota"):
        done = patrol(volunteer, 120)
    # The day, then the wider read, overtaken (not counted here); the day, the wider.
    assert len(loads) == 3 and loads[0] == loads[1] > loads[2]
    day = select(func.sum(ServiceRecord.points)).where(
        ServiceRecord.started_at >= DAY, ServiceRecord.started_at < DAY + timedelta(days=1)
    )
    assert db.session.scalar(day) == 15 and done.points == 15 - 5 - 2
    assert_ok()


def test_plugins_write_through_units_of_their_own(app, postgres, policy, volunteer):
    """Neither a plugin evaluating the record nor a listener hearing of its entries may
    write on the record's autocommit connection, where a rollback of their unit of work
    would not undo it: the connection is not lent to the ledger's writers."""
    patrol(volunteer, 60, DAY - timedelta(days=1))
    module = types.ModuleType("listener")
    heard, lent = [], []

    @hookimpl
    def limit_awards():
        lent.append(ledger.units.alone_connection())

    @hookimpl
    def entry_posted(entry):
        heard.append((entry.id, ledger.units.alone_connection()))

        def unit():
            ledger.earn(volunteer, 7, actor="listener", reason="listener bonus")
            raise RuntimeError("the listener's unit fails after its earn")

        with pytest.raises(RuntimeError):
            ledger.atomic(unit)

    module.entry_posted = entry_posted
    module.limit_awards = limit_awards
    with registered(plugin_manager(), module, "listener"):
        patrol(volunteer, 120)
    assert lent == [None]
    assert len(heard) == 1 and heard[0][1] is None
    bonus = select(func.count(Entry.id)).where(Entry.reason == "listener bonus")
    assert db.session.scalar(bonus) == 0
    assert_ok()


def _in_another_thread(app, change) -> None:
    failed = []

    def other():
        with app.app_context():
            try:
                change()
            except Exception as error:
                failed.append(error)
            finally:
                db.session.remove()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert not failed, failed
