"""The ledger's public API: each operation, its bad input, and that bad input changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from points import errors, ledger
from points.extensions import db
from points.ledger import accounts as ledger_accounts
from points.ledger import posting as ledger_posting
from points.models import Entry, Hold, Lot, Posting
from points.verify import verify

NOW = datetime.now(UTC)


def earn(volunteer_id, points, **kwargs):
    kwargs.setdefault("actor", "office:test")
    kwargs.setdefault("reason", "patrol 2 h")
    return ledger.earn(volunteer_id, points, **kwargs)


def snapshot():
    """Everything that a refused call must leave exactly as it was."""
    return (
        db.session.scalar(select(func.count(Entry.id))),
        db.session.scalar(select(func.count(Posting.id))),
        db.session.scalar(select(func.count(Hold.id))),
        tuple(db.session.execute(select(Lot.id, Lot.remaining).order_by(Lot.id)).all()),
    )


def assert_ok():
    ledger.seal()
    report = verify()
    assert report.ok, report.problems


def test_earn_credits_volunteer_from_issuance(volunteer, tree):
    entry = earn(volunteer, 10, plugin="steward", rule="patrol", config_version=3)
    assert entry.kind == "earn"
    assert sorted(amount for _, amount in entry.postings) == [-10, 10]
    assert ledger.balance(volunteer) == (volunteer, entry.postings[1][0], 10, 0, 10)
    row = db.session.get(Entry, entry.id)
    assert (row.plugin, row.rule, row.config_version, row.actor) == (
        "steward",
        "patrol",
        3,
        "office:test",
    )
    assert_ok()


@pytest.mark.parametrize(
    "points", [0, -5, 1.5, "10", None, True, 2**53 + 1, float("nan")], ids=repr
)
def test_earn_refuses_bad_points_and_changes_nothing(volunteer, points):
    before = snapshot()
    with pytest.raises(errors.InvalidAmountError) as raised:
        earn(volunteer, points)
    assert raised.value.errors and "points" in raised.value.errors
    assert snapshot() == before


def test_earn_accepts_the_largest_amount(volunteer):
    earn(volunteer, 2**53)
    assert ledger.balance(volunteer).balance == 2**53
    assert_ok()


def test_earn_unknown_volunteer_is_not_found(tree):
    with pytest.raises(errors.NotFoundError):
        earn(999, 5)


def test_earn_into_closed_account_is_refused(volunteer):
    account = ledger.balance(volunteer).account_id
    ledger.close_account(account)
    before = snapshot()
    with pytest.raises(errors.AccountClosedError):
        earn(volunteer, 5)
    assert snapshot() == before


def test_debits_use_soonest_expiring_lots_first(volunteer, other_volunteer, provider):
    earn(volunteer, 10, expires_at=NOW + timedelta(days=300))
    earn(volunteer, 10)  # never expires: used last
    earn(volunteer, 10, expires_at=NOW + timedelta(days=30))
    ledger.redeem(volunteer, 15, provider_id=provider, actor="kiosk", reason="haircut")
    lots = db.session.execute(
        select(Lot.amount, Lot.remaining, Lot.expires_at)
        .where(Lot.account_id == ledger.balance(volunteer).account_id)
        .order_by(Lot.id)
    ).all()
    assert [lot.remaining for lot in lots] == [5, 10, 0]
    assert_ok()


def test_hold_reserves_points_then_post_pays_provider(volunteer, provider):
    earn(volunteer, 50)
    held = ledger.hold(volunteer, 30, provider_id=provider, actor="kiosk", reason="haircut")
    assert held.status == "pending"
    assert ledger.balance(volunteer)[2:] == (50, 30, 20)
    with pytest.raises(errors.InsufficientPointsError):
        ledger.hold(volunteer, 21, provider_id=provider, actor="kiosk", reason="repair")
    entry = ledger.post_hold(held.id, actor="provider")
    assert entry.kind == "redeem"
    assert ledger.balance(volunteer)[2:] == (20, 0, 20)
    with pytest.raises(errors.HoldStateError):
        ledger.post_hold(held.id, actor="provider")
    with pytest.raises(errors.HoldStateError):
        ledger.void_hold(held.id, actor="office", reason="too late")
    assert_ok()


def test_void_releases_points(volunteer, provider):
    earn(volunteer, 50)
    held = ledger.hold(volunteer, 50, provider_id=provider, actor="kiosk", reason="repair")
    voided = ledger.void_hold(held.id, actor="kiosk", reason="changed mind")
    assert voided.status == "voided"
    assert ledger.balance(volunteer)[2:] == (50, 0, 50)
    with pytest.raises(errors.HoldStateError):
        ledger.post_hold(held.id, actor="provider")
    assert_ok()


def test_expired_hold_cannot_be_posted_and_times_out(volunteer, provider):
    earn(volunteer, 50)
    held = ledger.hold(
        volunteer,
        20,
        provider_id=provider,
        actor="kiosk",
        reason="meal",
        expires_at=datetime.now(UTC) + timedelta(milliseconds=300),
    )
    import time

    time.sleep(0.4)
    before = snapshot()
    with pytest.raises(errors.HoldExpiredError):
        ledger.post_hold(held.id, actor="provider")
    assert snapshot() == before
    assert ledger.time_out_holds() == 1
    assert ledger.load_hold(held.id).status == "timed_out"
    assert ledger.balance(volunteer)[2:] == (50, 0, 50)
    assert ledger.time_out_holds() == 0
    assert_ok()


def test_hold_in_the_past_is_refused(volunteer, provider):
    earn(volunteer, 5)
    with pytest.raises(errors.InvalidInputError):
        ledger.hold(
            volunteer,
            5,
            provider_id=provider,
            actor="k",
            reason="r",
            expires_at=NOW - timedelta(days=1),
        )


def test_unknown_hold_and_provider(volunteer):
    earn(volunteer, 5)
    with pytest.raises(errors.NotFoundError):
        ledger.post_hold(12345, actor="provider")
    with pytest.raises(errors.NotFoundError):
        ledger.hold(volunteer, 5, provider_id=777, actor="k", reason="r")


def test_transfer_keeps_expiry(volunteer, other_volunteer):
    soon = NOW + timedelta(days=10)
    earn(volunteer, 10, expires_at=soon)
    earn(volunteer, 10)
    entry = ledger.transfer(volunteer, other_volunteer, 15, actor="volunteer", reason="family")
    assert entry.kind == "transfer"
    received = db.session.execute(
        select(Lot.amount, Lot.expires_at)
        .where(Lot.account_id == ledger.balance(other_volunteer).account_id)
        .order_by(Lot.expires_at.is_(None), Lot.expires_at)
    ).all()
    assert [(lot.amount, lot.expires_at) for lot in received] == [(10, soon), (5, None)]
    assert ledger.balance(volunteer).balance == 5
    assert_ok()


def test_transfer_across_districts_goes_through_clearing(volunteer, far_volunteer):
    earn(volunteer, 10)
    first = ledger.transfer(volunteer, far_volunteer, 4, actor="v", reason="household in need")
    assert first.related_entry_id is not None
    second = ledger.load_entry(first.related_entry_id)
    assert first.district_id != second.district_id
    assert ledger.balance(far_volunteer).balance == 4
    assert_ok()
    ledger.reverse(first.id, actor="office", reason="sent by mistake")
    assert ledger.balance(far_volunteer).balance == 0
    assert ledger.balance(volunteer).balance == 10
    assert_ok()


def test_transfer_bad_input(volunteer, other_volunteer):
    earn(volunteer, 10)
    before = snapshot()
    with pytest.raises(errors.InvalidInputError):
        ledger.transfer(volunteer, volunteer, 1, actor="v", reason="self")
    with pytest.raises(errors.InsufficientPointsError):
        ledger.transfer(volunteer, other_volunteer, 11, actor="v", reason="too much")
    with pytest.raises(errors.NotFoundError):
        ledger.transfer(volunteer, 4242, 1, actor="v", reason="nobody")
    with pytest.raises(errors.InvalidAmountError):
        ledger.transfer(volunteer, other_volunteer, 0, actor="v", reason="nothing")
    assert snapshot() == before


def test_expire_posts_expire_entries_and_spares_held_points(volunteer, provider):
    past = NOW - timedelta(days=1)
    earn(volunteer, 30, expires_at=past)
    earn(volunteer, 5)
    ledger.hold(volunteer, 20, provider_id=provider, actor="kiosk", reason="haircut")
    entries = ledger.expire_lots(NOW)
    assert len(entries) == 1 and entries[0].kind == "expire"
    # 35 in balance, 20 held: only the 15 available may expire.
    assert ledger.balance(volunteer)[2:] == (20, 20, 0)
    assert ledger.expire_lots(NOW) == []
    assert_ok()


def test_reverse_undoes_an_earn_once(volunteer):
    entry = earn(volunteer, 10)
    reversal = ledger.reverse(entry.id, actor="office", reason="logged twice")
    assert reversal.kind == "reversal"
    assert ledger.balance(volunteer).balance == 0
    before = snapshot()
    with pytest.raises(errors.AlreadyReversedError):
        ledger.reverse(entry.id, actor="office", reason="again")
    with pytest.raises(errors.AlreadyReversedError):
        ledger.reverse(reversal.id, actor="office", reason="undo the undo")
    with pytest.raises(errors.NotFoundError):
        ledger.reverse(99999, actor="office", reason="nothing")
    assert snapshot() == before
    assert_ok()


def test_reverse_of_spent_points_is_refused(volunteer, provider):
    entry = earn(volunteer, 10)
    ledger.redeem(volunteer, 10, provider_id=provider, actor="kiosk", reason="haircut")
    before = snapshot()
    with pytest.raises(errors.InsufficientPointsError):
        ledger.reverse(entry.id, actor="office", reason="mistake")
    assert snapshot() == before


def test_reverse_of_redeem_restores_lots_with_their_expiry(volunteer, provider):
    soon = NOW + timedelta(days=5)
    earn(volunteer, 10, expires_at=soon)
    redeem = ledger.redeem(volunteer, 10, provider_id=provider, actor="kiosk", reason="haircut")
    ledger.reverse(redeem.id, actor="office", reason="service not delivered")
    lots = db.session.execute(select(Lot.remaining, Lot.expires_at).where(Lot.remaining > 0)).all()
    assert [(lot.remaining, lot.expires_at) for lot in lots] == [(10, soon)]
    assert_ok()


def test_idempotent_earn_replays_and_conflicts(volunteer):
    first = earn(volunteer, 10, idempotency_key="k-1")
    again = earn(volunteer, 10, idempotency_key="k-1")
    assert again.id == first.id and again.replayed and not first.replayed
    assert ledger.balance(volunteer).balance == 10
    before = snapshot()
    with pytest.raises(errors.IdempotencyConflictError):
        earn(volunteer, 11, idempotency_key="k-1")
    assert snapshot() == before
    assert_ok()


def test_idempotent_hold_replays(volunteer, provider):
    earn(volunteer, 10)
    first = ledger.hold(
        volunteer, 10, provider_id=provider, actor="k", reason="r", idempotency_key="h-1"
    )
    again = ledger.hold(
        volunteer, 10, provider_id=provider, actor="k", reason="r", idempotency_key="h-1"
    )
    assert again.id == first.id and again.replayed
    assert ledger.balance(volunteer).held == 10


def test_failed_call_does_not_burn_its_idempotency_key(volunteer, provider):
    with pytest.raises(errors.InsufficientPointsError):
        ledger.redeem(
            volunteer, 10, provider_id=provider, actor="k", reason="r", idempotency_key="r-1"
        )
    earn(volunteer, 10)
    entry = ledger.redeem(
        volunteer, 10, provider_id=provider, actor="k", reason="r", idempotency_key="r-1"
    )
    assert not entry.replayed


def test_service_minutes_only_grow_except_by_correction(volunteer):
    assert ledger.add_service_minutes(volunteer, 120, actor="office", reason="patrol") == 120
    assert (
        ledger.add_service_minutes(
            volunteer, 30, actor="office", reason="visit", service_record_id=7
        )
        == 150
    )
    with pytest.raises(errors.ConflictError):
        ledger.add_service_minutes(
            volunteer, 30, actor="office", reason="visit", service_record_id=7
        )
    for bad in (0, -5, 24 * 60 + 1, 1.5):
        with pytest.raises(errors.InvalidInputError):
            ledger.add_service_minutes(volunteer, bad, actor="office", reason="x")
    with pytest.raises(errors.InvalidInputError):
        ledger.correct_service_minutes(volunteer, -151, actor="office", reason="too much")
    assert ledger.correct_service_minutes(volunteer, -50, actor="office", reason="typo") == 100
    assert_ok()


def test_cross_district_posting_is_refused(volunteer, far_volunteer):
    account = ledger_accounts._volunteer_account(volunteer)
    far = ledger_accounts._volunteer_account(far_volunteer)
    with pytest.raises(errors.CrossDistrictError):
        ledger.atomic(
            lambda: ledger_posting._post(
                account.district_id, "transfer", [(account, -1), (far, 1)], actor="x", reason="y"
            )
        )
    assert snapshot()[0] == 0


def test_append_only_tables_refuse_update_and_delete(volunteer):
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    entry = earn(volunteer, 10)
    for statement in (
        f"UPDATE postings SET amount = amount + 1 WHERE entry_id = {entry.id}",
        f"DELETE FROM postings WHERE entry_id = {entry.id}",
        f"UPDATE entries SET reason = 'edited' WHERE id = {entry.id}",
        f"DELETE FROM entries WHERE id = {entry.id}",
    ):
        with pytest.raises(DatabaseError):
            db.session.execute(text(statement))
        db.session.rollback()
    assert_ok()


def test_unbalanced_entry_is_refused_by_postgresql(volunteer, backend):
    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    if backend != "postgresql":
        pytest.skip("the deferred zero-sum trigger exists on PostgreSQL only")
    entry = earn(volunteer, 10)
    with pytest.raises(DatabaseError, match="does not balance"):
        db.session.execute(
            text(
                "INSERT INTO postings (entry_id, district_id, account_id, amount) "
                "SELECT entry_id, district_id, account_id, 1 FROM postings "
                f"WHERE entry_id = {entry.id} LIMIT 1"
            )
        )
        db.session.commit()
    db.session.rollback()
    assert_ok()


def test_database_refuses_a_negative_balance(volunteer):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    earn(volunteer, 5)
    for statement in (
        f"UPDATE accounts SET balance = -1 WHERE volunteer_id = {volunteer}",
        f"UPDATE accounts SET held = 6 WHERE volunteer_id = {volunteer}",
        "UPDATE lots SET remaining = amount + 1",
    ):
        with pytest.raises(IntegrityError):
            db.session.execute(text(statement))
        db.session.rollback()
    assert_ok()


def test_a_rolled_back_unit_returns_its_result_and_leaves_nothing(volunteer):
    """A dry run writes as the real run would, reports it, then nothing of it stays: not
    its rows, nor its after_commit callbacks."""
    earn(volunteer, 5)
    before = snapshot()
    heard = []

    def work():
        entry = earn(volunteer, 7)
        ledger.after_commit(lambda: heard.append(entry.id))
        return entry, ledger.balance(volunteer).balance

    entry, balance = ledger.rolled_back(work)
    assert entry.id is not None and balance == 12
    assert snapshot() == before and heard == []
    assert ledger.balance(volunteer).balance == 5

    with pytest.raises(errors.InvalidAmountError):
        ledger.rolled_back(lambda: earn(volunteer, 0))
    with pytest.raises(RuntimeError, match="cannot join"):
        ledger.atomic(lambda: ledger.rolled_back(lambda: earn(volunteer, 1)))
    assert snapshot() == before
    assert_ok()
