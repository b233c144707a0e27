"""Catalog, redemptions (hold, fulfil, cancel) and gifts under the built-in plugins."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from points import errors, ledger
from points.extensions import db
from points.models import Hold, Redemption, TransferRequest
from points.policy import district_info, set_policy
from points.redemptions import (
    approve_transfer,
    cancel_redemption,
    catalog_for,
    check_transfer,
    create_redemption,
    fulfil_redemption,
    get_redemption,
    give_points,
    reject_transfer,
)
from points.verify import verify

NOW = datetime.now(UTC)
HAIRCUT = {
    "names": {"zh-CN": "理发", "en": "haircut"},
    "cost": 30,
    "provider": "barber-wang",
    "stock_per_month": 2,
    "per_person": {"limit": 1, "period": "quarter"},
}


def configure(district, plugin, config, **kwargs):
    return set_policy(district, plugin, config, author="office:test", **kwargs)


@pytest.fixture
def catalog(provider, volunteer, other_volunteer, far_volunteer):
    configure(
        "longtan",
        "catalog",
        {
            "items": {
                "haircut": HAIRCUT,
                "meal": {
                    "names": {"zh-CN": "送餐", "en": "meal delivery"},
                    "cost": 10,
                    "provider": "barber-wang",
                    "min_star": 1,
                },
            }
        },
    )
    for who in (volunteer, other_volunteer, far_volunteer):
        ledger.earn(who, 100, actor="office:test", reason="seed")
    return provider


def assert_ok():
    ledger.seal()
    report = verify()
    assert report.ok, report.problems


def test_catalog_lists_items_with_eligibility_and_reasons(catalog, volunteer):
    entries = {entry.item.sku: entry for entry in catalog_for("xizhaosi", volunteer)}
    assert entries["haircut"].eligible and entries["haircut"].affordable
    # Configured at the street: the stock is shared by every community below it.
    assert entries["haircut"].item.pool_district_id == district_info("longtan").id
    assert entries["haircut"].item.plugin == "catalog"
    assert not entries["meal"].eligible
    assert "1 星" in entries["meal"].reasons[0]["zh"] or "stars" in entries["meal"].reasons[0]["en"]
    assert [e.item.sku for e in catalog_for("dongcheng")] == []


def test_redemption_holds_then_fulfils(catalog, volunteer):
    redemption = create_redemption(volunteer, "haircut", actor="kiosk:1")
    assert redemption.status == "held" and len(redemption.voucher_code) == 10
    assert ledger.balance(volunteer)[2:] == (100, 30, 70)
    done = fulfil_redemption(voucher_code=redemption.voucher_code, actor="provider:wang")
    assert done.status == "fulfilled" and done.entry_id
    assert ledger.balance(volunteer)[2:] == (70, 0, 70)
    with pytest.raises(errors.ConflictError):
        fulfil_redemption(redemption.id, actor="provider:wang")
    with pytest.raises(errors.ConflictError):
        cancel_redemption(redemption.id, actor="office", reason="late")
    assert_ok()


def test_cancel_releases_the_points_and_the_stock(
    catalog, volunteer, other_volunteer, far_volunteer
):
    first = create_redemption(volunteer, "haircut", actor="kiosk:1")
    create_redemption(other_volunteer, "haircut", actor="kiosk:1")
    with pytest.raises(errors.RefusedError) as raised:
        create_redemption(far_volunteer, "haircut", actor="kiosk:1")
    assert "this month" in raised.value.reasons[0]["en"]
    cancelled = cancel_redemption(first.id, actor="kiosk:1", reason="changed mind")
    assert cancelled.status == "cancelled"
    assert ledger.balance(volunteer)[2:] == (100, 0, 100)
    # The pool is the street (longtan): a volunteer of the other community may take it.
    assert create_redemption(far_volunteer, "haircut", actor="kiosk:2").status == "held"
    assert_ok()


def test_per_person_limit_and_dates(catalog, volunteer):
    create_redemption(volunteer, "haircut", actor="kiosk:1")
    with pytest.raises(errors.RefusedError) as raised:
        create_redemption(volunteer, "haircut", actor="kiosk:1")
    assert "a quarter" in raised.value.reasons[0]["en"]
    configure(
        "xizhaosi",
        "catalog",
        {"items": {"haircut": {"active_until": str(date.today() - timedelta(days=3))}}},
    )
    with pytest.raises(errors.RefusedError) as raised:
        create_redemption(volunteer, "haircut", actor="kiosk:1")
    assert "closed" in raised.value.reasons[0]["en"]


def test_refused_or_failed_redemption_changes_nothing(catalog, volunteer):
    before = (
        db.session.scalar(select(func.count(Hold.id))),
        db.session.scalar(select(func.count(Redemption.id))),
    )
    with pytest.raises(errors.RefusedError):
        create_redemption(volunteer, "meal", actor="kiosk:1")
    with pytest.raises(errors.NotFoundError):
        create_redemption(volunteer, "yacht", actor="kiosk:1")
    configure("xizhaosi", "catalog", {"items": {"haircut": {"cost": 500}}})
    with pytest.raises(errors.InsufficientPointsError):
        create_redemption(volunteer, "haircut", actor="kiosk:1")
    after = (
        db.session.scalar(select(func.count(Hold.id))),
        db.session.scalar(select(func.count(Redemption.id))),
    )
    assert before == after


def test_idempotent_redemption(catalog, volunteer):
    first = create_redemption(volunteer, "haircut", actor="kiosk:1", idempotency_key="r-1")
    again = create_redemption(volunteer, "haircut", actor="kiosk:1", idempotency_key="r-1")
    assert again.id == first.id and again.replayed
    assert get_redemption(first.id).voucher_code == first.voucher_code


def test_family_gift_posts_at_once(catalog, volunteer, other_volunteer):
    result = give_points(volunteer, other_volunteer, 50, "family", actor="v", reason="给妈妈")
    assert result.status == "posted" and result.entry_id
    assert ledger.balance(other_volunteer).balance == 150
    with pytest.raises(errors.RefusedError) as raised:
        give_points(volunteer, other_volunteer, 201, "family", actor="v", reason="too much")
    assert "per gift" in raised.value.reasons[0]["en"]
    with pytest.raises(errors.RefusedError):
        give_points(volunteer, other_volunteer, 5, "other", actor="v", reason="friend")
    assert_ok()


def test_household_in_need_waits_for_the_office(catalog, volunteer, far_volunteer):
    assert not check_transfer(volunteer, far_volunteer, 20, "household_in_need").allowed
    configure("beijing", "transfers", {"households_in_need": [far_volunteer]})
    decision = check_transfer(volunteer, far_volunteer, 20, "household_in_need")
    assert decision.allowed and decision.needs_approval
    pending = give_points(
        volunteer, far_volunteer, 20, "household_in_need", actor="v", reason="帮扶"
    )
    assert pending.status == "pending" and ledger.balance(far_volunteer).balance == 100
    approved = approve_transfer(pending.request_id, "office:wang")
    assert approved.status == "posted" and ledger.balance(far_volunteer).balance == 120
    with pytest.raises(errors.ConflictError):
        approve_transfer(pending.request_id, "office:wang")
    second = give_points(volunteer, far_volunteer, 5, "household_in_need", actor="v", reason="帮扶")
    assert reject_transfer(second.request_id, "office:wang", "duplicate").status == "rejected"
    assert db.session.get(TransferRequest, second.request_id).decision_reason == "duplicate"
    assert_ok()


def test_monthly_gift_limit_counts_pending_requests(catalog, volunteer, other_volunteer):
    configure(
        "longtan",
        "transfers",
        {"family": {"allowed": True, "office_approval": True, "max_per_month": 60}},
    )
    give_points(volunteer, other_volunteer, 40, "family", actor="v", reason="a")
    with pytest.raises(errors.RefusedError) as raised:
        give_points(volunteer, other_volunteer, 30, "family", actor="v", reason="b")
    assert "40 given" in raised.value.reasons[0]["en"]


def test_a_voucher_not_used_in_time_expires_and_frees_the_points(catalog, volunteer):
    from sqlalchemy import update

    from points.redemptions import expire_redemptions

    redemption = create_redemption(volunteer, "haircut", actor="kiosk:1")
    db.session.execute(
        update(Hold).where(Hold.id == redemption.hold_id).values(expires_at=NOW - timedelta(1))
    )
    db.session.commit()
    with pytest.raises(errors.ConflictError, match="expired"):
        fulfil_redemption(voucher_code=redemption.voucher_code, actor="provider:wang")
    assert get_redemption(redemption.id).status == "expired"
    assert ledger.balance(volunteer)[2:] == (100, 0, 100)
    with pytest.raises(errors.ConflictError):
        cancel_redemption(redemption.id, actor="office", reason="late")
    assert expire_redemptions() == (0, 0)
    assert_ok()


def test_time_out_command_expires_overdue_redemptions(catalog, volunteer, runner):
    from sqlalchemy import update

    redemption = create_redemption(volunteer, "haircut", actor="kiosk:1")
    db.session.execute(
        update(Hold).where(Hold.id == redemption.hold_id).values(expires_at=NOW - timedelta(1))
    )
    db.session.commit()
    result = runner.invoke(args=["ledger", "time-out-holds"])
    assert "timed out 1 holds; 1 redemptions expired" in result.output
    assert get_redemption(redemption.id).status == "expired"


def test_an_expired_voucher_inside_a_callers_unit_is_a_409_not_a_crash(catalog, volunteer):
    from sqlalchemy import update

    redemption = create_redemption(volunteer, "haircut", actor="kiosk:1")
    db.session.execute(
        update(Hold).where(Hold.id == redemption.hold_id).values(expires_at=NOW - timedelta(1))
    )
    db.session.commit()
    with pytest.raises(errors.ConflictError, match="expired"):
        ledger.atomic(lambda: fulfil_redemption(redemption.id, actor="provider:wang"))
    # Rolled back with the caller's unit: recorded by the next time-out run.
    assert get_redemption(redemption.id).status == "held"
    assert ledger.balance(volunteer).held == 30
