"""The one-call writers (PostgreSQL): the same rows as the step-by-step path, and a fall
back to it, or a retry, whenever the call cannot be sure."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from flask import g
from sqlalchemy import select, text

from points import errors, ledger
from points.extensions import db
from points.ledger import fused, units
from points.models import Account, Entry, Hold, IdempotencyKey, Lot, LotUse, Posting
from points.verify import verify

EXPIRY = datetime(2031, 6, 30, 16, tzinfo=UTC)
PAGE = 16  # the step-by-step path reads lots a page at a time


@pytest.fixture
def postgres(backend):
    if backend != "postgresql":
        pytest.skip("the one-call writers exist on PostgreSQL only")


def assert_ok():
    ledger.seal()
    report = verify()
    assert report.ok, report.problems


def story(volunteer: int, provider: int, fused_writes: bool, app) -> None:
    """Earn with and without expiry and keys, redeem across both lots, replay, and
    redeem from one lot."""
    app.config["FUSED_WRITES"] = fused_writes
    tag = "fused" if fused_writes else "steps"
    ledger.earn(
        volunteer,
        50,
        actor="office",
        reason="巡查 2 小时 × 5 分 = 10 分",
        expires_at=EXPIRY,
        plugin="steward",
        rule="patrol",
        config_version=3,
        idempotency_key=f"{tag}-1",
    )
    ledger.earn(volunteer, 30, actor="office", reason="visit")
    ledger.redeem(
        volunteer,
        60,
        provider_id=provider,
        actor="kiosk",
        reason="haircut",
        idempotency_key=f"{tag}-2",
    )
    again = ledger.redeem(
        volunteer,
        60,
        provider_id=provider,
        actor="kiosk",
        reason="haircut",
        idempotency_key=f"{tag}-2",
    )
    assert again.replayed
    # 20 points left, in the lot that never expires: one lot covers this one.
    ledger.redeem(
        volunteer,
        5,
        provider_id=provider,
        actor="kiosk",
        reason="repair",
        idempotency_key=f"{tag}-3",
    )


def rows_of(volunteer: int) -> dict:
    """What the ledger holds for one volunteer, with ids replaced by what they stand for."""
    account = db.session.scalar(select(Account).where(Account.volunteer_id == volunteer))
    kinds = {
        a.id: "volunteer" if a.id == account.id else a.kind
        for a in db.session.scalars(select(Account))
    }
    entry_ids = db.session.scalars(
        select(Posting.entry_id).where(Posting.account_id == account.id).order_by(Posting.entry_id)
    ).all()
    entries = []
    for number, entry_id in enumerate(entry_ids):
        entry = db.session.get(Entry, entry_id)
        hold = db.session.get(Hold, entry.hold_id) if entry.hold_id else None
        postings = db.session.execute(
            select(Posting.account_id, Posting.amount, Posting.lot_id.is_not(None))
            .where(Posting.entry_id == entry_id)
            .order_by(Posting.id)
        ).all()
        # Lot uses and the lots named by postings apart: the two paths must write the
        # same rows, not only spend the same lots.
        uses = db.session.execute(
            select(LotUse.amount, Lot.expires_at)
            .join(Lot, Lot.id == LotUse.lot_id)
            .where(LotUse.entry_id == entry_id)
            .order_by(Lot.expires_at.is_(None), Lot.expires_at)
        ).all()
        named = db.session.execute(
            select(-Posting.amount, Lot.expires_at)
            .join(Lot, Lot.id == Posting.lot_id)
            .where(Posting.entry_id == entry_id)
        ).all()
        lots = db.session.execute(
            select(Lot.amount, Lot.remaining, Lot.expires_at).where(Lot.entry_id == entry_id)
        ).all()
        entries.append(
            {
                "number": number,
                "fields": (
                    entry.kind,
                    entry.actor,
                    entry.reason,
                    entry.plugin,
                    entry.rule,
                    entry.config_version,
                ),
                "hash_ok": entry.hash
                == ledger.entry_hash(
                    {f: getattr(entry, f) for f in ledger.HASHED_FIELDS},
                    [(p.account_id, p.amount) for p in postings],
                ),
                "postings": [(kinds[a], x, names_lot) for a, x, names_lot in postings],
                "uses": [tuple(u) for u in uses],
                "named lots": [tuple(n) for n in named],
                "lots": [tuple(lot) for lot in lots],
                "hold": hold
                and (
                    hold.status,
                    hold.amount,
                    hold.actor,
                    hold.reason,
                    hold.resolved_by,
                    hold.resolution,
                ),
            }
        )
    keys = {
        k.key.split("-", 1)[1]: entry_ids.index(k.result["entry_id"])
        for k in db.session.scalars(select(IdempotencyKey))
        if k.result and k.result["entry_id"] in entry_ids
    }
    return {"balance": ledger.balance(volunteer)[2:], "entries": entries, "keys": keys}


def test_the_statement_writes_what_the_steps_write(
    app, postgres, volunteer, other_volunteer, provider
):
    story(volunteer, provider, True, app)
    story(other_volunteer, provider, False, app)
    fused_rows, step_rows = rows_of(volunteer), rows_of(other_volunteer)
    assert fused_rows == step_rows
    assert fused_rows["balance"] == (15, 0, 15)
    assert all(entry["hash_ok"] for entry in fused_rows["entries"])
    assert_ok()


def test_an_earn_or_a_redemption_alone_is_one_statement(
    app, postgres, volunteer, provider, monkeypatch
):
    import psycopg

    ledger.earn(volunteer, 10, actor="office", reason="warm the account cache")
    ledger.redeem(volunteer, 1, provider_id=provider, actor="kiosk", reason="warm")
    sent: list[str] = []
    execute, commit = psycopg.Cursor.execute, psycopg.Connection.commit

    def record_execute(self, query, *args, **kwargs):
        sent.append(str(query).split()[0])
        return execute(self, query, *args, **kwargs)

    def record_commit(self):
        if not self.autocommit:
            sent.append("COMMIT")
        return commit(self)

    monkeypatch.setattr(psycopg.Cursor, "execute", record_execute)
    monkeypatch.setattr(psycopg.Connection, "commit", record_commit)
    ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="k1")
    ledger.redeem(
        volunteer, 5, provider_id=provider, actor="kiosk", reason="tea", idempotency_key="k2"
    )
    alone = list(sent)
    sent.clear()
    # Without a key a lost reply could not be told from a lost write: a transaction,
    # whose BEGIN finds a dead connection before anything is written.
    ledger.earn(volunteer, 1, actor="office", reason="patrol")
    monkeypatch.undo()
    assert alone == ["SELECT", "SELECT"]
    assert sent == ["SELECT", "COMMIT"]
    assert ledger.balance(volunteer)[2:] == (15, 0, 15)
    assert_ok()


def test_a_write_alone_ends_the_session_transaction_first(app, postgres, volunteer):
    """Rows read before a write beside the session would otherwise stay stale, and a row
    lock held by the session would make the write wait on itself."""
    ledger.earn(volunteer, 1, actor="office", reason="warm", idempotency_key="warm")
    account = db.session.scalar(select(Account).where(Account.volunteer_id == volunteer))
    assert account.balance == 1
    ledger.earn(volunteer, 5, actor="office", reason="patrol", idempotency_key="k")
    assert account.balance == 6


def _kept_backend() -> int | None:
    """The server pid of the autocommit connection the app context keeps, if any."""
    kept = getattr(g, units._KEPT, None)
    return None if kept is None else kept.pooled.driver_connection.info.backend_pid


def test_writes_alone_keep_one_connection_for_the_app_context(app, postgres, volunteer, provider):
    """Pool checkout and check-in cost a write's client more than its hashing: a loop of
    writes in one app context takes one connection, idle between writes, and gives it
    back when the context ends. Sessions and units of work beside it take their own."""
    ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="a")
    kept = _kept_backend()
    assert kept is not None
    ledger.redeem(
        volunteer, 2, provider_id=provider, actor="kiosk", reason="tea", idempotency_key="b"
    )
    assert _kept_backend() == kept
    held = ledger.hold(volunteer, 3, provider_id=provider, actor="kiosk", reason="haircut")
    ledger.post_hold(held.id, actor="kiosk", reason="haircut")  # a unit of work, beside it
    assert ledger.balance(volunteer).balance == 5  # a session read, beside it
    ledger.earn(volunteer, 1, actor="office", reason="patrol", idempotency_key="c")
    assert _kept_backend() == kept
    assert db.engine.pool.checkedout() == 1  # the session's went back; the kept one stays
    states = db.session.execute(
        text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": kept}
    ).scalars()
    assert list(states) == ["idle"]
    db.session.remove()
    units.release_autocommit_connection()
    assert _kept_backend() is None
    assert db.engine.pool.checkedout() == 0


def test_the_app_context_gives_its_kept_connection_back_when_it_ends(app, postgres, volunteer):
    db.session.remove()
    with app.app_context():
        ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="a")
        assert _kept_backend() is not None
        assert db.engine.pool.checkedout() == 1
    assert db.engine.pool.checkedout() == 0  # the teardown gave it back


def test_a_connection_left_in_a_transaction_is_not_kept_nor_pooled_in_autocommit(app, postgres):
    """Lent on in autocommit, it would make the next unit of work's rollback undo
    nothing; mid-way through a transaction, it would carry someone's open work."""
    with pytest.raises(ZeroDivisionError), units.autocommit_connection() as connection:
        connection.execute("BEGIN")
        1 / 0  # noqa: B018 - anything that leaves the block before the transaction ends
    assert _kept_backend() is None
    fresh = db.engine.raw_connection()
    try:
        assert fresh.driver_connection.autocommit is False
        assert fresh.driver_connection.info.transaction_status == 0  # idle
    finally:
        fresh.close()


def test_a_kept_connection_lost_between_writes_is_replaced(app, postgres, volunteer):
    """The server dropped it while idle (a restart, a proxy timeout): the next keyed
    write retries on a fresh connection, and the key keeps it to one entry."""
    ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="a")
    lost = _kept_backend()
    db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost})
    db.session.commit()
    ledger.earn(volunteer, 5, actor="office", reason="patrol", idempotency_key="b")
    assert _kept_backend() not in (None, lost)
    assert ledger.balance(volunteer).balance == 15
    assert_ok()


def test_a_child_forked_with_a_kept_connection_leaves_it_to_the_parent(app, postgres, volunteer):
    """Closing it in the child would end the parent's session on the server."""
    import os

    ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="a")
    kept = _kept_backend()
    db.session.remove()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by its exit status
        try:
            db.engine.dispose(close=False)  # what SQLAlchemy asks of a forked child
            units.release_autocommit_connection()
            os._exit(0 if _kept_backend() is None else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ledger.earn(volunteer, 5, actor="office", reason="patrol", idempotency_key="b")
    assert _kept_backend() == kept  # the same session, still alive
    assert ledger.balance(volunteer).balance == 15


def test_a_disposed_engine_drops_the_kept_connection(app, postgres, volunteer):
    """Its old pool would leave it open; the context closes it instead."""
    ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="a")
    connection = getattr(g, units._KEPT).pooled.driver_connection
    db.session.remove()
    db.engine.dispose()
    units.release_autocommit_connection()
    assert connection.closed


def test_without_the_functions_writes_go_step_by_step(app, postgres, volunteer, provider):
    """A database not yet upgraded to 0003 (or code deployed before its migration)."""
    hide = "ALTER FUNCTION {0} RENAME TO {0}_hidden"  # the definitions stay as migrated
    for function in ("points_earn", "points_redeem"):
        db.session.execute(text(hide.format(function)))
    db.session.commit()
    try:
        assert not fused.enabled()
        ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="k")
        ledger.redeem(volunteer, 4, provider_id=provider, actor="kiosk", reason="tea")
        assert ledger.balance(volunteer)[2:] == (6, 0, 6)
        assert_ok()
    finally:
        db.session.rollback()
        for function in ("points_earn", "points_redeem"):
            db.session.execute(text(f"ALTER FUNCTION {function}_hidden RENAME TO {function}"))
        db.session.commit()
    assert fused.enabled() is False  # decided once per app
    app.extensions.pop("points.fused_installed")
    assert fused.enabled()


def test_a_lost_database_under_a_write_alone_is_a_database_error(tmp_path):
    """What the app turns into a 503, not a driver error that would be a 500."""
    from sqlalchemy.exc import OperationalError

    from points.app import create_app

    app = create_app(
        {
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
            "SECRET_KEY": "test",
            "WRITE_RETRIES": 0,
        }
    )
    with app.app_context():
        app.extensions["points.fused_installed"] = True
        with pytest.raises(OperationalError):
            ledger.earn(1, 5, actor="office", reason="patrol", idempotency_key="k")


def test_a_debit_across_many_lots_spends_the_soonest_first(app, postgres, volunteer, provider):
    for day in range(PAGE + 4):
        ledger.earn(
            volunteer, 2, actor="office", reason="check-in", expires_at=EXPIRY + timedelta(days=day)
        )
    entry = ledger.redeem(volunteer, 2 * PAGE + 3, provider_id=provider, actor="k", reason="repair")
    used = db.session.execute(
        select(LotUse.amount, Lot.expires_at)
        .join(Lot)
        .where(LotUse.entry_id == entry.id)
        .order_by(Lot.expires_at)
    ).all()
    assert [u.amount for u in used] == [2] * (PAGE + 1) + [1]
    assert used[-1].expires_at == EXPIRY + timedelta(days=PAGE + 1)
    assert_ok()


def test_refusals_come_from_the_steps_and_write_nothing(app, postgres, volunteer, provider):
    ledger.earn(volunteer, 10, actor="office", reason="patrol", idempotency_key="first")
    with pytest.raises(errors.InsufficientPointsError):
        ledger.redeem(volunteer, 11, provider_id=provider, actor="k", reason="too much")
    with pytest.raises(errors.IdempotencyConflictError):
        ledger.earn(volunteer, 11, actor="office", reason="patrol", idempotency_key="first")
    assert ledger.earn(
        volunteer, 10, actor="office", reason="patrol", idempotency_key="first"
    ).replayed
    ledger.close_account(ledger.balance(volunteer).account_id)
    with pytest.raises(errors.AccountClosedError):
        ledger.earn(volunteer, 1, actor="office", reason="patrol")
    with pytest.raises(errors.AccountClosedError):
        ledger.redeem(volunteer, 1, provider_id=provider, actor="k", reason="tea")
    assert ledger.balance(volunteer)[2:] == (10, 0, 10)
    assert db.session.scalar(text("SELECT count(*) FROM entries")) == 1
    assert_ok()


def test_a_stale_cached_account_id_writes_nothing_wrong(
    app, postgres, tree, volunteer, other_volunteer
):
    ledger.earn(volunteer, 1, actor="office", reason="fill the cache")
    cache = app.extensions["points.account_ids"]
    # As if the database had been restored under a running process: ids now mean others.
    cache[("volunteer", volunteer)] = ledger.balance(other_volunteer).account_id
    ledger.earn(volunteer, 5, actor="office", reason="patrol")
    assert ledger.balance(volunteer).balance == 6
    assert ledger.balance(other_volunteer).balance == 0
    assert_ok()


def test_a_race_lost_on_the_account_writes_nothing_and_is_refused(
    app, postgres, volunteer, provider
):
    """A redemption that waited on the account while another unit spent its points finds
    the debit's condition false: it writes nothing, and the step-by-step path refuses it."""
    ledger.earn(volunteer, 10, actor="office", reason="patrol")
    ledger.redeem(volunteer, 1, provider_id=provider, actor="k", reason="warm the cache")
    spent, go_on = threading.Event(), threading.Event()
    outcome: dict = {}

    def spender():
        with app.app_context():

            def work():
                ledger.redeem(volunteer, 9, provider_id=provider, actor="k1", reason="first")
                spent.set()
                go_on.wait(10)

            ledger.atomic(work)
            db.session.remove()

    def racer():
        with app.app_context():
            try:
                outcome["entry"] = ledger.redeem(
                    volunteer, 9, provider_id=provider, actor="k2", reason="second"
                )
            except errors.PointsError as error:
                outcome["error"] = error
            db.session.remove()

    first = threading.Thread(target=spender)
    first.start()
    assert spent.wait(10)
    second = threading.Thread(target=racer)
    second.start()
    waiting = 0.0
    while waiting < 5 and not db.session.scalar(
        text("SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'")
    ):
        db.session.rollback()
        threading.Event().wait(0.02)
        waiting += 0.02
    go_on.set()
    first.join(10)
    second.join(10)
    db.session.rollback()
    assert isinstance(outcome.get("error"), errors.InsufficientPointsError), outcome
    assert ledger.balance(volunteer)[2:] == (0, 0, 0)
    assert_ok()


def test_fused_writes_can_be_turned_off(app, volunteer):
    app.config["FUSED_WRITES"] = False
    assert not fused.enabled()
    ledger.earn(volunteer, 3, actor="office", reason=str(uuid.uuid4()))
    assert ledger.balance(volunteer).balance == 3


def test_entry_hash_around_fills_the_hold_id_in(app):
    fields = {f: None for f in ledger.HASHED_FIELDS} | {
        "district_id": 7,
        "kind": "redeem",
        "effective_at": datetime(2026, 3, 5, tzinfo=UTC),
        "actor": 'kiosk "hold_id":0,',
        "reason": "理发",
    }
    postings = [(3, -5), (9, 5)]
    head, tail = ledger.entry_hash_around(fields, postings, "hold_id")
    import hashlib

    assert hashlib.sha256(head + b"12345" + tail).hexdigest() == ledger.entry_hash(
        fields | {"hold_id": 12345}, postings
    )


def test_a_lot_is_open_while_it_holds_points(app, volunteer, provider):
    """The database keeps `is_open`; debits, expiry and reversal all find lots by it."""
    ledger.earn(volunteer, 10, actor="office", reason="巡查")
    ledger.earn(volunteer, 5, actor="office", reason="走访")
    ledger.redeem(volunteer, 12, provider_id=provider, actor="kiosk", reason="理发")

    def lots():
        db.session.expire_all()
        return db.session.execute(select(Lot.remaining, Lot.is_open).order_by(Lot.id)).all()

    assert [(r, bool(o)) for r, o in lots()] == [(0, False), (3, True)]
    ledger.redeem(volunteer, 3, provider_id=provider, actor="kiosk", reason="理发")
    assert [bool(o) for _, o in lots()] == [False, False]
    assert_ok()


def test_a_partial_debit_updates_its_lot_in_place(app, postgres, volunteer):
    """A debit that leaves points in a lot changes no indexed value: PostgreSQL updates
    the row in place (HOT), without new index entries. An index on `remaining`, or a
    predicate over it, would end that; emptying the lot may leave the page."""
    ledger.earn(volunteer, 10, actor="office", reason="巡查")
    lot = db.session.scalar(select(Lot.id))
    db.session.remove()
    hot = text("SELECT pg_stat_get_xact_tuples_hot_updated('lots'::regclass)")
    updated = text("SELECT pg_stat_get_xact_tuples_updated('lots'::regclass)")
    debit = text("UPDATE lots SET remaining = remaining - :take WHERE id = :lot")
    with db.engine.connect() as connection, connection.begin():
        connection.execute(debit, {"take": 4, "lot": lot})
        connection.execute(debit, {"take": 5, "lot": lot})
        assert connection.scalar(updated) == 2
        assert connection.scalar(hot) == 2
        connection.execute(debit, {"take": 1, "lot": lot})  # empties it: leaves the index
        assert connection.scalar(updated) == 3
        assert connection.scalar(hot) == 2
