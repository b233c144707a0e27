"""Service records: submission, bad input, approval through the ledger, rejection, verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select

from points import errors, ledger
from points.extensions import db
from points.models import Entry, ServiceMinutes, ServiceRecord, Volunteer
from points.plugins import plugin_manager, registered
from points.policy import set_policy
from points.service import (
    approve,
    get_record,
    mark_verified,
    record_service,
    records_of_node,
    reject,
)
from points.verify import verify
from tests.plugins import raising

NOW = datetime.now(UTC)


def submit(volunteer, kind="patrol", minutes=120, details=None, started_at=None, **kwargs):
    return record_service(
        volunteer,
        kind,
        started_at or NOW - timedelta(hours=5),
        minutes,
        details,
        actor="office:test",
        **kwargs,
    )


def configure(district, plugin, config, **kwargs):
    kwargs.setdefault("effective_from", NOW - timedelta(days=400))
    return set_policy(district, plugin, config, author="office:test", **kwargs)


def snapshot():
    return (
        db.session.scalar(select(func.count(Entry.id))),
        db.session.scalar(select(func.count(ServiceRecord.id))),
        db.session.scalar(select(func.count(ServiceMinutes.id))),
        db.session.scalar(select(func.sum(Volunteer.service_minutes))),
    )


def assert_ok():
    ledger.seal()
    report = verify()
    assert report.ok, report.problems


def test_patrol_auto_approved_posts_one_entry_with_provenance(volunteer):
    record = submit(volunteer, minutes=120)
    assert record.status == "approved" and record.points == 10
    (award,) = record.awards
    assert award["reason_zh"] == "巡查 2 小时 × 5 分 = 10 分"
    assert award["reason_en"] == "patrol 2 h × 5 points = 10 points"
    entry = db.session.get(Entry, record.entry_ids[0])
    assert (entry.kind, entry.plugin, entry.rule, entry.service_record_id) == (
        "earn",
        "steward",
        "patrol-hours",
        record.id,
    )
    assert "巡查 2 小时" in entry.reason and "patrol 2 h" in entry.reason
    assert ledger.balance(volunteer).balance == 10
    assert db.session.get(Volunteer, volunteer).service_minutes == 120
    assert_ok()


def test_entry_records_the_config_version(volunteer):
    version = configure("longtan", "steward", {"patrol": {"points_per_hour": 3}})
    record = submit(volunteer, minutes=180)
    entry = db.session.get(Entry, record.entry_ids[0])
    assert (record.points, entry.config_version) == (9, version.id)


def test_queued_record_waits_then_approval_posts_and_counts_minutes_once(volunteer):
    record = submit(volunteer, minutes=240)
    assert record.status == "pending" and record.points == 0
    assert "waits for the office" in record.queue_reason
    assert ledger.balance(volunteer).balance == 0
    assert [r.id for r in records_of_node("longtan", status="pending")] == [record.id]
    approved = approve(record.id, "office:wang")
    assert approved.status == "approved" and approved.points == 20
    assert ledger.balance(volunteer).balance == 20
    before = snapshot()
    with pytest.raises(errors.ConflictError):
        approve(record.id, "office:wang")
    with pytest.raises(errors.ConflictError):
        reject(record.id, "office:wang", "changed my mind")
    assert snapshot() == before
    assert db.session.get(Volunteer, volunteer).service_minutes == 240
    assert records_of_node("longtan", status="pending") == []
    assert_ok()


def test_rejection_records_the_reason_and_posts_nothing(volunteer):
    record = submit(volunteer, minutes=300)
    with pytest.raises(errors.InvalidInputError):
        reject(record.id, "office:wang", " ")
    rejected = reject(record.id, "office:wang", "no one saw the patrol")
    assert rejected.status == "rejected" and rejected.decision_reason == "no one saw the patrol"
    assert ledger.balance(volunteer).balance == 0
    assert db.session.get(Volunteer, volunteer).service_minutes == 0
    with pytest.raises(errors.ConflictError):
        approve(record.id, "office:wang")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"minutes": 0}, "minutes"),
        ({"minutes": -30}, "minutes"),
        ({"minutes": 24 * 60 + 1}, "minutes"),
        ({"minutes": 1.5}, "minutes"),
        ({"minutes": None}, "minutes"),
        ({"started_at": NOW + timedelta(hours=2)}, "started_at"),
        ({"started_at": datetime(2026, 1, 1, 8)}, "started_at"),
        ({"kind": "sleeping"}, "kind"),
        ({"kind": "visit", "details": {}}, "details.households"),
        ({"kind": "visit", "details": {"households": "3"}}, "details.households"),
        ({"details": {"route": "x", "mood": "good"}}, "details.mood"),
        ({"details": ["route"]}, "details"),
    ],
    ids=lambda v: str(v)[:40],
)
def test_bad_records_are_refused_naming_the_field_and_store_nothing(volunteer, changes, field):
    arguments = {"kind": "patrol", "minutes": 60, "details": None, "started_at": None} | changes
    before = snapshot()
    with pytest.raises(errors.InvalidInputError) as raised:
        submit(volunteer, **arguments)
    assert field in raised.value.errors, raised.value.errors
    assert snapshot() == before


def test_unknown_volunteer(tree):
    with pytest.raises(errors.NotFoundError):
        submit(4242)


def test_duplicate_checkin_is_refused(volunteer):
    morning = NOW.replace(hour=0, minute=0) + timedelta(hours=-16)  # 08:00 Beijing yesterday
    first = submit(volunteer, "checkin", None, {"kiosk": "k1"}, started_at=morning)
    assert first.status == "approved"
    before = snapshot()
    with pytest.raises(errors.ConflictError) as raised:
        submit(volunteer, "checkin", None, {}, started_at=morning + timedelta(hours=3))
    assert "started_at" in raised.value.errors
    assert snapshot() == before


def test_a_raising_plugin_rolls_back_and_is_named(volunteer):
    record = submit(volunteer, minutes=240)
    before = snapshot()
    with registered(plugin_manager(), raising, "raising"):
        with pytest.raises(errors.PluginError) as raised:
            approve(record.id, "office:wang")
        assert raised.value.plugin == "raising" and "raising" in raised.value.detail
        assert raised.value.status == 500
        with pytest.raises(errors.PluginError):
            submit(volunteer, minutes=60)
    assert snapshot() == before
    assert get_record(record.id).status == "pending"
    assert ledger.balance(volunteer).balance == 0
    assert approve(record.id, "office:wang").points == 20
    assert_ok()


def test_report_verified_bonus_posted_once(volunteer):
    record = submit(volunteer, "report", None, {"problem": "broken lamp"})
    assert record.status == "approved" and record.points == 2
    verified = mark_verified(record.id, "office:wang")
    assert verified.points == 7 and verified.verified
    assert [a["rule"] for a in verified.awards] == ["report", "report-verified"]
    with pytest.raises(errors.ConflictError):
        mark_verified(record.id, "office:wang")
    assert ledger.balance(volunteer).balance == 7
    assert_ok()


def test_idempotent_submission_replays(volunteer):
    first = submit(volunteer, minutes=60, idempotency_key="svc-1")
    again = submit(volunteer, minutes=60, idempotency_key="svc-1")
    assert again.id == first.id and again.replayed
    with pytest.raises(errors.IdempotencyConflictError):
        submit(volunteer, minutes=90, idempotency_key="svc-1")
    assert ledger.balance(volunteer).balance == 5


def test_a_refused_record_leaves_its_idempotency_key_unused(volunteer):
    with pytest.raises(errors.InvalidInputError):
        submit(volunteer, minutes=0, idempotency_key="svc-2")
    assert not submit(volunteer, minutes=60, idempotency_key="svc-2").replayed


def test_a_keyed_record_is_read_checked_and_written_in_one_transaction(app, volunteer):
    """The locked path (SQLite's; PostgreSQL's with an idempotency key, or inside a
    caller's unit of work). PostgreSQL's one-call path: tests/test_record_one_call.py."""
    submit(volunteer)
    transactions = []
    listeners = {
        name: lambda *_args, name=name: transactions.append(name)
        for name in ("begin", "commit", "rollback")
    }
    for name, listener in listeners.items():
        event.listen(db.engine, name, listener)
    try:
        with app.app_context():
            record = submit(volunteer, started_at=NOW - timedelta(days=1), idempotency_key="k")
            db.session.remove()
    finally:
        for name, listener in listeners.items():
            event.remove(db.engine, name, listener)
    assert record.status == "approved"
    assert transactions == ["begin", "commit"]


def test_a_review_reason_queues_a_record_the_policy_would_approve(volunteer):
    reason = ("未签退，按计划时长", "no check-out: scheduled minutes")
    record = submit(volunteer, minutes=60, review_reason=reason, idempotency_key="r-1")
    assert record.status == "pending" and record.points == 0
    assert record.queue_reason == "未签退，按计划时长 / no check-out: scheduled minutes"
    # Its awards were evaluated, for the office to approve.
    assert sum(a["points"] for a in record.awards) == 5
    assert ledger.balance(volunteer).balance == 0
    again = submit(volunteer, minutes=60, review_reason=reason, idempotency_key="r-1")
    assert again.id == record.id and again.replayed
    assert approve(record.id, "office:test").points == 5
    with pytest.raises(errors.InvalidInputError) as caught:
        submit(volunteer, minutes=60, review_reason=("只有中文",))
    assert "review_reason" in caught.value.errors
