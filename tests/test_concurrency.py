"""Real threads on real connections: balances never go below zero, nothing is lost or doubled."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from points import errors, ledger
from points.directory import register_volunteer
from points.extensions import db
from points.models import Account, Entry, Posting
from points.verify import verify


def run_together(app, workers: int, task) -> list:
    """Run task(i) in `workers` threads released at the same moment; return results or errors."""
    barrier = threading.Barrier(workers)

    def worker(i):
        with app.app_context():
            barrier.wait()
            try:
                return task(i)
            except errors.PointsError as error:
                return error
            finally:
                db.session.remove()

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(worker, range(workers)))
    # The caller's read transaction may hold a snapshot from before (SQLite WAL): end it.
    db.session.rollback()
    return results


def assert_ledger_ok():
    ledger.seal()
    report = verify()
    assert report.ok, report.problems


def test_racing_redemptions_of_a_whole_balance_one_wins(app, volunteer, provider):
    ledger.earn(volunteer, 100, actor="office", reason="patrol")
    results = run_together(
        app,
        16,
        lambda i: ledger.redeem(
            volunteer, 100, provider_id=provider, actor=f"kiosk-{i}", reason="repair"
        ),
    )
    wins = [r for r in results if isinstance(r, ledger.PostedEntry)]
    losses = [r for r in results if isinstance(r, errors.InsufficientPointsError)]
    assert len(wins) == 1 and len(losses) == 15, results
    assert ledger.balance(volunteer)[2:] == (0, 0, 0)
    assert_ledger_ok()


def test_racing_holds_never_overdraw_available(app, volunteer, provider):
    ledger.earn(volunteer, 100, actor="office", reason="patrol")
    results = run_together(
        app,
        12,
        lambda i: ledger.hold(volunteer, 30, provider_id=provider, actor="kiosk", reason="meal"),
    )
    assert sum(isinstance(r, ledger.HoldState) for r in results) == 3
    assert ledger.balance(volunteer)[2:] == (100, 90, 10)
    assert_ledger_ok()


def test_a_thousand_concurrent_earns_lose_nothing(app, tree):
    volunteers = [register_volunteer(f"v{i}", "xizhaosi", "204857").id for i in range(4)]
    workers, each = 8, 125

    def task(i):
        for n in range(each):
            ledger.earn(volunteers[(i + n) % 4], 3, actor=f"w{i}", reason="patrol")
        return each

    assert run_together(app, workers, task) == [each] * workers
    assert db.session.scalar(select(func.count(Entry.id))) == workers * each
    assert (
        db.session.scalar(select(func.sum(Account.balance)).where(Account.kind == "volunteer"))
        == workers * each * 3
    )
    issuance = db.session.scalar(
        select(func.sum(Posting.amount))
        .join(Account, Account.id == Posting.account_id)
        .where(Account.kind == "issuance")
    )
    assert issuance == -workers * each * 3
    assert_ledger_ok()


def test_one_idempotency_key_from_eight_workers_posts_once(app, volunteer, provider):
    ledger.earn(volunteer, 100, actor="office", reason="patrol")
    results = run_together(
        app,
        8,
        lambda i: ledger.redeem(
            volunteer,
            40,
            provider_id=provider,
            actor="kiosk",
            reason="haircut",
            idempotency_key="kiosk-7:tx-1",
        ),
    )
    assert all(isinstance(r, ledger.PostedEntry) for r in results), results
    assert len({r.id for r in results}) == 1
    assert Counter(r.replayed for r in results) == {True: 7, False: 1}
    assert ledger.balance(volunteer).balance == 60
    assert_ledger_ok()


def test_crossing_transfers_do_not_deadlock(app, volunteer, other_volunteer):
    ledger.earn(volunteer, 500, actor="office", reason="patrol")
    ledger.earn(other_volunteer, 500, actor="office", reason="patrol")
    pair = [(volunteer, other_volunteer), (other_volunteer, volunteer)]

    def task(i):
        giver, receiver = pair[i % 2]
        for _ in range(20):
            ledger.transfer(giver, receiver, 1, actor="v", reason="family")
        return True

    assert run_together(app, 6, task) == [True] * 6
    assert ledger.balance(volunteer).balance + ledger.balance(other_volunteer).balance == 1000
    assert_ledger_ok()


@pytest.mark.parametrize("workers", [4])
def test_sealing_beside_writers_keeps_the_chain_whole(app, volunteer, workers):
    def task(i):
        for _ in range(25):
            if i == 0:
                ledger.seal()
            else:
                ledger.earn(volunteer, 1, actor="w", reason="log")
        return True

    assert run_together(app, workers, task) == [True] * workers
    assert_ledger_ok()


def test_a_unit_of_work_survives_a_dropped_connection(app, volunteer, backend):
    from sqlalchemy import create_engine, text

    if backend != "postgresql":
        pytest.skip("connections are dropped by the PostgreSQL server")
    ledger.earn(volunteer, 1, actor="office", reason="patrol")  # the pool now holds a connection
    killer = create_engine(db.engine.url.render_as_string(hide_password=False))
    with killer.begin() as connection:
        dropped = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    killer.dispose()
    assert dropped >= 1
    ledger.earn(volunteer, 2, actor="office", reason="patrol")
    assert ledger.balance(volunteer).balance == 3
    assert_ledger_ok()


def test_records_of_one_volunteer_at_once_never_pass_a_daily_cap_together(app, volunteer):
    """Each record reads the history its cap counts; two at once must not both see an
    empty day. A record's unit locks the volunteer first, so they take turns."""
    from datetime import UTC, datetime, timedelta

    from points.policy import set_policy
    from points.service import record_service

    start = datetime.now(UTC) - timedelta(days=400)
    set_policy("longtan", "caps", {"overall": {"day": 10}}, author="t", effective_from=start)
    set_policy("longtan", "approval", {"auto_kinds": ["patrol"]}, author="t", effective_from=start)
    set_policy(
        "longtan", "steward", {"patrol": {"points_per_hour": 5}}, author="t", effective_from=start
    )
    day = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0) - timedelta(days=2)
    records = run_together(
        app,
        4,
        lambda i: record_service(
            volunteer, "patrol", day + timedelta(minutes=10 * i), 120, actor=f"steward-{i}"
        ),
    )
    assert not [r for r in records if isinstance(r, Exception)], records
    assert sum(r.points for r in records) == 10
    assert ledger.balance(volunteer).balance == 10
    assert_ledger_ok()


def test_a_connection_lost_during_commit_is_not_written_twice(app, volunteer, backend, monkeypatch):
    """The COMMIT went through but its reply was lost: running the unit again would earn
    twice. It raises instead (a 503 over HTTP); an idempotency key settles a resend."""
    from sqlalchemy.exc import OperationalError

    if backend != "postgresql":
        pytest.skip("connections are lost between client and PostgreSQL server")
    import psycopg

    app.config["FUSED_WRITES"] = False
    commit = psycopg.Connection.commit
    lost: list[bool] = []

    def commit_then_lose_the_reply(self):
        commit(self)
        if not lost:
            lost.append(True)
            self.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(psycopg.Connection, "commit", commit_then_lose_the_reply)
    with pytest.raises(OperationalError):
        ledger.earn(volunteer, 10, actor="office", reason="patrol")
    monkeypatch.undo()
    assert ledger.balance(volunteer).balance == 10
    assert_ledger_ok()
