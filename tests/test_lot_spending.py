"""Debits that name their lot (migration 0008): a volunteer's debit that one lot covers
names that lot on its posting and writes no lot use; one that spans lots names none and
has a lot use per lot. Both paths (one call and step by step), both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import func, select, text

from points import ledger
from points.app import create_app
from points.extensions import db
from points.models import Lot, LotUse, Posting
from points.verify import verify
from tests.conftest import _config, seed_scratch_ledger
from tests.test_verify import checks_failing, tamper

SOON = datetime(2030, 1, 1, tzinfo=UTC)
LATER = SOON + timedelta(days=30)


def postings_of(entry_id: int) -> list[tuple]:
    """(amount, whether it names a lot, that lot's expiry) of an entry's postings."""
    rows = db.session.execute(
        select(Posting.amount, Posting.lot_id.is_not(None), Lot.expires_at)
        .outerjoin(Lot, Lot.id == Posting.lot_id)
        .where(Posting.entry_id == entry_id)
        .order_by(Posting.id)
    ).all()
    return [tuple(row) for row in rows]


def uses_of(entry_id: int) -> list[tuple[int, datetime | None]]:
    rows = db.session.execute(
        select(LotUse.amount, Lot.expires_at)
        .join(Lot, Lot.id == LotUse.lot_id)
        .where(LotUse.entry_id == entry_id)
        .order_by(LotUse.id)
    ).all()
    return [tuple(row) for row in rows]


def remaining() -> dict:
    rows = db.session.execute(
        select(Lot.expires_at, func.sum(Lot.remaining)).group_by(Lot.expires_at)
    )
    return dict(rows.all())


def test_a_redemption_one_lot_covers_names_it(app, volunteer, provider):
    ledger.earn(volunteer, 10, actor="office", reason="巡查", expires_at=LATER)
    ledger.earn(volunteer, 5, actor="office", reason="巡查", expires_at=SOON)
    redeemed = ledger.redeem(volunteer, 4, provider_id=provider, actor="kiosk", reason="理发")
    # The debit names the soonest-expiring lot; the provider's credit names none.
    assert postings_of(redeemed.id) == [(-4, True, SOON), (4, False, None)]
    assert uses_of(redeemed.id) == []
    assert remaining() == {SOON: 1, LATER: 10}
    assert verify().ok


def test_a_debit_across_lots_has_lot_uses_and_names_none(app, volunteer, provider):
    ledger.earn(volunteer, 10, actor="office", reason="巡查", expires_at=LATER)
    ledger.earn(volunteer, 5, actor="office", reason="巡查", expires_at=SOON)
    redeemed = ledger.redeem(volunteer, 7, provider_id=provider, actor="kiosk", reason="理发")
    assert postings_of(redeemed.id) == [(-7, False, None), (7, False, None)]
    assert uses_of(redeemed.id) == [(5, SOON), (2, LATER)]
    assert remaining() == {SOON: 0, LATER: 8}
    assert verify().ok


def test_a_transfer_names_its_lot_and_the_points_keep_their_expiry(app, volunteer, other_volunteer):
    ledger.earn(volunteer, 10, actor="office", reason="巡查", expires_at=SOON)
    moved = ledger.transfer(volunteer, other_volunteer, 3, actor="v", reason="family")
    assert postings_of(moved.id) == [(-3, True, SOON), (3, False, None)]
    received = db.session.scalar(
        select(Lot.expires_at).where(
            Lot.entry_id == moved.id, Lot.account_id == ledger.balance(other_volunteer).account_id
        )
    )
    assert received == SOON
    assert verify().ok


def test_points_moved_across_districts_keep_the_expiry_of_the_lot_they_left(
    app, volunteer, far_volunteer
):
    ledger.earn(volunteer, 10, actor="office", reason="巡查", expires_at=SOON)
    moved = ledger.transfer(volunteer, far_volunteer, 3, actor="v", reason="family")
    assert postings_of(moved.id) == [(-3, True, SOON), (3, False, None)]
    far_account = ledger.balance(far_volunteer).account_id
    received = db.session.execute(
        select(Lot.amount, Lot.expires_at).where(Lot.account_id == far_account)
    ).all()
    assert [tuple(lot) for lot in received] == [(3, SOON)]
    assert verify().ok


def test_a_reversed_redemption_gives_back_the_named_lot_with_its_expiry(app, volunteer, provider):
    ledger.earn(volunteer, 10, actor="office", reason="巡查", expires_at=SOON)
    redeemed = ledger.redeem(volunteer, 4, provider_id=provider, actor="kiosk", reason="理发")
    ledger.reverse(redeemed.id, actor="office", reason="机器故障")
    assert ledger.balance(volunteer).balance == 10
    assert remaining() == {SOON: 10}
    assert verify().ok


def test_a_hold_posted_later_names_its_lot(app, volunteer, provider):
    ledger.earn(volunteer, 10, actor="office", reason="巡查", expires_at=SOON)
    held = ledger.hold(volunteer, 6, provider_id=provider, actor="kiosk", reason="修理")
    posted = ledger.post_hold(held.id, actor="kiosk", reason="修理")
    assert postings_of(posted.id) == [(-6, True, SOON), (6, False, None)]
    assert verify().ok


@pytest.fixture
def named(app, volunteer, other_volunteer, provider):
    """A redemption whose debit names its lot, and a lot of another volunteer."""
    ledger.earn(volunteer, 10, actor="office", reason="巡查")
    ledger.earn(other_volunteer, 10, actor="office", reason="巡查")
    redeemed = ledger.redeem(volunteer, 4, provider_id=provider, actor="kiosk", reason="理发")
    ledger.seal()
    other_account = ledger.balance(other_volunteer).account_id
    return {
        "entry": redeemed.id,
        "other_lot": db.session.scalar(select(Lot.id).where(Lot.account_id == other_account)),
    }


def test_verify_catches_a_posting_naming_another_accounts_lot(named):
    tamper(
        f"UPDATE postings SET lot_id = {named['other_lot']} "
        f"WHERE entry_id = {named['entry']} AND amount < 0"
    )
    assert checks_failing() == {"lots"}


def test_verify_catches_two_postings_that_swapped_their_lots(
    app, volunteer, other_volunteer, provider
):
    # Each lot is still spent by as much as it lost: only whose lot it is shows.
    ledger.earn(volunteer, 10, actor="office", reason="巡查")
    ledger.earn(other_volunteer, 10, actor="office", reason="巡查")
    mine = ledger.redeem(volunteer, 4, provider_id=provider, actor="kiosk", reason="理发")
    theirs = ledger.redeem(other_volunteer, 4, provider_id=provider, actor="kiosk", reason="理发")
    lots = {
        entry: db.session.scalar(select(Posting.lot_id).where(Posting.entry_id == entry))
        for entry in (mine.id, theirs.id)
    }
    ledger.seal()
    assert verify().ok
    for entry, other in ((mine.id, theirs.id), (theirs.id, mine.id)):
        tamper(
            f"UPDATE postings SET lot_id = {lots[other]} WHERE entry_id = {entry} AND amount < 0"
        )
    assert checks_failing() == {"lots"}
    problem = next(p for p in verify().problems if p.check == "lots")
    assert "did not spend" in problem.message


def test_verify_catches_a_named_lot_left_unspent(named):
    # The posting no longer names its lot: the lot's remaining is short of its uses.
    tamper(f"UPDATE postings SET lot_id = NULL WHERE entry_id = {named['entry']}")
    assert checks_failing() == {"lots"}


def test_verify_catches_a_credit_naming_a_lot(named):
    lot = db.session.scalar(select(Posting.lot_id).where(Posting.entry_id == named["entry"]))
    tamper(f"UPDATE postings SET lot_id = {lot} WHERE entry_id = {named['entry']} AND amount > 0")
    assert "lots" in checks_failing()


def test_the_migration_turns_named_lots_into_lot_uses_and_back(scratch_url):
    app = create_app(_config(scratch_url))
    with app.app_context():
        upgrade()
        volunteer, barber = seed_scratch_ledger()
        first = ledger.redeem(volunteer, 4, provider_id=barber, actor="kiosk", reason="理发")
        assert uses_of(first.id) == [] and postings_of(first.id)[0] == (-4, True, None)
        db.session.remove()

        downgrade(revision="0007")
        # What the posting said is now a lot use: every lot is its amount less its uses
        # (checked in SQL: this code needs the column that 0008 adds).
        amounts = db.session.execute(
            text("SELECT amount FROM lot_uses WHERE entry_id = :e"), {"e": first.id}
        ).scalars()
        assert list(amounts) == [4]
        short = db.session.scalar(
            text(
                "SELECT count(*) FROM lots l WHERE l.remaining <> l.amount - COALESCE("
                "(SELECT sum(u.amount) FROM lot_uses u WHERE u.lot_id = l.id), 0)"
            )
        )
        assert short == 0
        if db.engine.dialect.name == "postgresql":
            # 0004's points_redeem is back, with the generic plan 0006 gave it.
            source, settings = db.session.execute(
                text("SELECT prosrc, proconfig FROM pg_proc WHERE proname = 'points_redeem'")
            ).one()
            assert "amount, lot_id" not in source and "INSERT INTO lot_uses" in source
            assert settings == ["plan_cache_mode=force_generic_plan"]
        db.session.remove()

        upgrade()
        second = ledger.redeem(volunteer, 2, provider_id=barber, actor="kiosk", reason="理发")
        ledger.seal()
        report = verify()
        assert report.ok, report.problems
        assert uses_of(first.id) == [(4, None)]
        assert uses_of(second.id) == [] and postings_of(second.id)[0] == (-2, True, None)
        assert ledger.balance(volunteer).balance == 4
        db.session.remove()
        db.engine.dispose()
