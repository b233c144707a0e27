"""Activities: posting and editing, sign-up without over-booking, the rotating QR code,
check-in and check-out making records through the service layer, closing, the hooks."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from points import activities, ledger
from points.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import ActivitySignup, AuditEvent, ServiceRecord, Volunteer
from points.plugins import hookimpl, plugin_manager, registered
from points.service import get_record
from tests.plugins import activity_hooks

NOW = datetime.now(UTC).replace(microsecond=0)


def post(district="xizhaosi", **changes):
    """A two-hour patrol that started three hours ago (records must not be in the
    future, so on-site steps run with `now` inside it)."""
    values = {
        "title_zh": "清理楼道",
        "title_en": "Stairwell clean-up",
        "place": "3号楼",
        "starts_at": NOW - timedelta(hours=3),
        "ends_at": NOW - timedelta(hours=1),
        "kind": "patrol",
        "places": 10,
        "signup_until": NOW - timedelta(hours=3),
        "actor": "office:test",
    }
    values.update(changes)
    return activities.post_activity(district, **values)


def early(info):
    """A moment when sign-up is still open."""
    return info.starts_at - timedelta(days=1)


def actions():
    db.session.rollback()
    return [a for (a,) in db.session.execute(select(AuditEvent.action).order_by(AuditEvent.id))]


def test_post_get_and_list(tree):
    info = post(description_zh="带手套", places=3)
    assert info.status == "open" and info.version == 1 and info.signed_count == 0
    assert info.district_code == "xizhaosi" and info.description_zh == "带手套"
    assert info.scheduled_minutes == 120 and info.record_details == {"route": None}
    assert activities.get_activity(info.id) == info
    other = post("zuoanmen", starts_at=NOW - timedelta(hours=2))
    assert [a.id for a in activities.activities_of_node("longtan")] == [info.id, other.id]
    assert [a.id for a in activities.activities_of_node("xizhaosi")] == [info.id]
    assert activities.activities_of_node("longtan", status="cancelled") == []
    page = activities.activities_of_node("longtan", limit=1)
    assert [a.id for a in page] == [info.id]
    after = activities.activities_of_node("longtan", after_id=info.id)
    assert [a.id for a in after] == [other.id]
    assert "activity.post" in actions()
    with pytest.raises(NotFoundError):
        activities.get_activity(info.id + 100)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"title_zh": " "}, "title_zh"),
        ({"places": 0}, "places"),
        ({"places": True}, "places"),
        ({"ends_at": NOW - timedelta(hours=4)}, "ends_at"),
        ({"ends_at": NOW + timedelta(hours=30)}, "ends_at"),
        ({"starts_at": datetime(2026, 1, 1)}, "starts_at"),  # naive
        ({"signup_until": NOW}, "signup_until"),  # after the end
        ({"kind": "nope"}, "kind"),
        ({"kind": "checkin"}, "kind"),  # once a day: not an activity's kind
        ({"kind": "fix"}, "record_details.description"),  # its schema needs details
        ({"kind": "visit", "record_details": {"households": 0}}, "record_details.households"),
        ({"extra": {"anything": 1}}, "extra.anything"),
        ({"min_star_level": -1}, "min_star_level"),
    ],
)
def test_post_refuses_bad_fields(tree, changes, field):
    with pytest.raises(InvalidInputError) as caught:
        post(**changes)
    assert field in caught.value.errors


def test_a_kind_with_required_details_takes_them_from_the_activity(tree, volunteer):
    info = post(kind="fix", record_details={"description": "扫楼道"}, places=2)
    activities.sign_up(info.id, volunteer, actor="office:test", now=early(info))
    activities.check_in(info.id, volunteer, actor="office:test", via="office", now=info.starts_at)
    done = activities.check_out(
        info.id,
        volunteer,
        actor="office:test",
        via="office",
        now=info.starts_at + timedelta(minutes=40),
    )
    record = get_record(done.service_record_id)
    assert record.kind == "fix" and record.details["description"] == "扫楼道"
    assert record.minutes == 40


def test_edit_bumps_the_version_and_refuses_a_stale_one(tree, volunteer, other_volunteer):
    info = post(places=3)
    edited = activities.edit_activity(
        info.id, changes={"title_en": "Clean-up", "places": 5}, expected_version=1, actor="o:1"
    )
    assert edited.version == 2 and edited.places == 5 and edited.title_en == "Clean-up"
    with pytest.raises(ConflictError) as caught:
        activities.edit_activity(
            info.id, changes={"place": "4号楼"}, expected_version=1, actor="o:1"
        )
    assert "version" in caught.value.errors
    for who in (volunteer, other_volunteer):
        activities.sign_up(info.id, who, actor="office:test", now=early(info))
    with pytest.raises(InvalidInputError) as caught:
        activities.edit_activity(info.id, changes={"places": 1}, expected_version=None, actor="o")
    assert "places" in caught.value.errors
    with pytest.raises(InvalidInputError) as caught:
        activities.edit_activity(
            info.id, changes={"status": "closed"}, expected_version=None, actor="o"
        )
    assert "status" in caught.value.errors
    activities.check_in(info.id, volunteer, actor="o", via="office", now=info.starts_at)
    with pytest.raises(ConflictError):
        activities.edit_activity(
            info.id,
            changes={"ends_at": info.ends_at - timedelta(minutes=30)},
            expected_version=None,
            actor="o",
        )
    again = activities.edit_activity(
        info.id, changes={"place": "4号楼"}, expected_version=None, actor="o"
    )
    assert again.place == "4号楼" and again.version == 3
    assert actions().count("activity.edit") == 2


def test_sign_up_rules(tree, volunteer, other_volunteer, far_volunteer):
    info = post(places=1)
    with pytest.raises(ConflictError):  # after the deadline
        activities.sign_up(
            info.id, volunteer, actor="v", now=info.signup_until + timedelta(seconds=1)
        )
    signed = activities.sign_up(info.id, volunteer, actor="volunteer:1", now=early(info))
    assert signed.status == "signed" and signed.signed_by == "volunteer:1"
    # Twice is once.
    assert (
        activities.sign_up(info.id, volunteer, actor="v", now=early(info)).signed_at
        == signed.signed_at
    )
    with pytest.raises(ConflictError) as caught:  # full
        activities.sign_up(info.id, other_volunteer, actor="v", now=early(info))
    assert "places" in caught.value.errors
    with pytest.raises(ForbiddenError):  # not under the activity's node
        activities.sign_up(info.id, far_volunteer, actor="v", now=early(info))
    # Withdrawing frees the place; signing up again is allowed while places remain.
    gone = activities.withdraw(info.id, volunteer, actor="v", now=early(info))
    assert gone.status == "withdrawn" and gone.withdrawn_at is not None
    assert activities.get_activity(info.id).signed_count == 0
    activities.sign_up(info.id, other_volunteer, actor="v", now=early(info))
    with pytest.raises(ConflictError):
        activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    activities.withdraw(info.id, other_volunteer, actor="v", now=early(info))
    back = activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    assert back.status == "signed" and back.withdrawn_at is None
    with pytest.raises(ConflictError):  # withdraw after the deadline
        activities.withdraw(info.id, volunteer, actor="v", now=info.signup_until + timedelta(1))
    with pytest.raises(ConflictError):  # not signed up
        activities.withdraw(info.id, other_volunteer, actor="v", now=early(info))
    assert actions().count("activity.signup") == 3


def test_star_level_and_inactive_volunteers(tree, volunteer, other_volunteer):
    info = post(min_star_level=1)
    with pytest.raises(ConflictError) as caught:
        activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    assert "min_star_level" in caught.value.errors
    # 100 hours of service make a star (the stars plugin's defaults give one at 50 h).
    ledger.atomic(lambda: db.session.get(Volunteer, volunteer).__setattr__("service_minutes", 6000))
    activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    open_ = post()
    ledger.atomic(
        lambda: db.session.get(Volunteer, other_volunteer).__setattr__("status", "suspended")
    )
    with pytest.raises(ConflictError):
        activities.sign_up(open_.id, other_volunteer, actor="v", now=early(open_))


def test_withdraw_is_refused_after_check_in(tree, volunteer):
    info = post(signup_until=NOW - timedelta(hours=2))
    activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    activities.check_in(info.id, volunteer, actor="o", via="office", now=info.starts_at)
    with pytest.raises(ConflictError):
        activities.withdraw(
            info.id, volunteer, actor="v", now=info.starts_at + timedelta(minutes=1)
        )


def test_thirty_sign_ups_for_ten_places_give_exactly_ten(app, tree):
    from points.directory import register_volunteer

    info = post(places=10)
    people = [
        register_volunteer(f"志愿者{i}", "xizhaosi", "204857", phone=f"1390000{i:04d}").id
        for i in range(30)
    ]
    db.session.remove()
    outcomes: list[str] = []
    barrier = threading.Barrier(len(people))

    def one(volunteer_id: int) -> None:
        with app.app_context():
            try:
                barrier.wait()
                activities.sign_up(info.id, volunteer_id, actor="v", now=early(info))
                outcomes.append("signed")
            except ConflictError:
                outcomes.append("full")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=one, args=(v,)) for v in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes).count("signed") == 10 and len(outcomes) == 30
    db.session.rollback()
    assert (
        db.session.scalar(
            select(func.count()).where(
                ActivitySignup.activity_id == info.id, ActivitySignup.status == "signed"
            )
        )
        == 10
    )
    assert activities.get_activity(info.id).signed_count == 10


def test_the_qr_code_rotates_and_two_windows_ago_is_refused(tree):
    info = post()
    at = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)
    code = activities.qr_code(info.id, now=at)
    assert (
        len(code) == activities.QR_CODE_LENGTH and code.replace("-", "").replace("_", "").isalnum()
    )
    assert activities.check_qr(info.id, code, now=at)
    assert activities.check_qr(info.id, code, now=at + timedelta(seconds=30))  # previous window
    assert not activities.check_qr(info.id, code, now=at + timedelta(seconds=60))  # two ago
    assert not activities.check_qr(info.id, code, now=at - timedelta(seconds=30))  # not yet
    assert activities.qr_code(info.id, now=at + timedelta(seconds=30)) != code
    assert not activities.check_qr(info.id, "x" * activities.QR_CODE_LENGTH, now=at)
    assert activities.scan_url(info.id, now=at) == f"/me/activities/{info.id}/scan?c={code}"
    # A cancel draws a new salt: the old code dies, and a cancelled activity has none.
    activities.cancel_activity(info.id, reason="下雨", actor="o")
    assert not activities.check_qr(info.id, code, now=at)
    with pytest.raises(ConflictError):
        activities.qr_code(info.id, now=at)


def test_scan_checks_in_then_out_and_the_record_follows_the_rules(tree, volunteer):
    info = post()
    activities.sign_up(info.id, volunteer, actor="volunteer:1", now=early(info))
    arrive = info.starts_at - timedelta(minutes=10)
    way, signup = activities.scan(
        info.id, volunteer, activities.qr_code(info.id, now=arrive), actor="volunteer:1", now=arrive
    )
    assert way == "in" and signup.checked_in_at == arrive and signup.checked_in_via == "qr"
    leave = info.starts_at + timedelta(minutes=90)
    old = activities.qr_code(info.id, now=leave - timedelta(seconds=65))
    with pytest.raises(ConflictError) as caught:
        activities.scan(info.id, volunteer, old, actor="volunteer:1", now=leave)
    assert "code" in caught.value.errors
    way, signup = activities.scan(
        info.id, volunteer, activities.qr_code(info.id, now=leave), actor="volunteer:1", now=leave
    )
    # Counted from the start (not the early arrival): 90 minutes of the 120 scheduled.
    assert way == "out" and signup.minutes == 90 and signup.checked_out_via == "qr"
    record = get_record(signup.service_record_id)
    assert record.kind == "patrol" and record.minutes == 90 and record.started_at == arrive
    # steward: 5 points an hour × 1.5 h = 7.5, rounded; approval: up to 10 at once.
    assert record.status == "approved" and record.points == 8
    assert ledger.balance(volunteer).balance == 8
    # A retried check-out (by scan or by the office) posts once.
    again = activities.check_out(info.id, volunteer, actor="o", via="office", now=leave)
    assert again.service_record_id == record.id
    db.session.rollback()
    assert db.session.scalar(select(func.count(ServiceRecord.id))) == 1
    assert ledger.balance(volunteer).balance == 8
    assert actions().count("activity.checkout") == 1


def test_minutes_are_capped_at_the_activity_s_length(tree, volunteer):
    info = post()
    activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    activities.check_in(info.id, volunteer, actor="o", via="card", now=info.starts_at)
    done = activities.check_out(
        info.id, volunteer, actor="o", via="card", now=info.ends_at + timedelta(minutes=50)
    )
    assert done.minutes == 120
    assert get_record(done.service_record_id).points == 10


def test_on_site_windows(tree, volunteer, other_volunteer):
    info = post()
    activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    with pytest.raises(ConflictError):  # too early
        activities.check_in(
            info.id, volunteer, actor="o", via="office", now=info.starts_at - timedelta(minutes=31)
        )
    with pytest.raises(ConflictError):  # too late
        activities.check_in(
            info.id, volunteer, actor="o", via="office", now=info.ends_at + timedelta(seconds=1)
        )
    with pytest.raises(ConflictError):  # never signed up
        activities.check_in(info.id, other_volunteer, actor="o", via="office", now=info.starts_at)
    with pytest.raises(ConflictError):  # out before in
        activities.check_out(info.id, volunteer, actor="o", via="office", now=info.starts_at)
    with pytest.raises(InvalidInputError):
        activities.check_in(info.id, volunteer, actor="o", via="pigeon", now=info.starts_at)
    activities.check_in(info.id, volunteer, actor="o", via="office", now=info.starts_at)
    with pytest.raises(ConflictError):  # under a minute
        activities.check_out(
            info.id, volunteer, actor="o", via="office", now=info.starts_at + timedelta(seconds=30)
        )
    with pytest.raises(ConflictError):  # the check-out window closed
        activities.check_out(
            info.id,
            volunteer,
            actor="o",
            via="office",
            now=info.ends_at + timedelta(hours=2, seconds=1),
        )


def test_close_queues_a_record_for_who_never_checked_out(tree, volunteer, other_volunteer):
    from points.directory import register_volunteer

    third = register_volunteer("赵敏", "xizhaosi", "204857", phone="13900000003").id
    activity_hooks.closed.clear()
    with registered(plugin_manager(), activity_hooks, "activity_hooks"):
        info = post(extra={"contact_phone": "010-1234"})
        assert info.extra == {"contact_phone": "010-1234"}
        for who in (volunteer, other_volunteer, third):
            activities.sign_up(info.id, who, actor="v", now=early(info))
        activities.check_in(info.id, volunteer, actor="o", via="office", now=info.starts_at)
        activities.check_in(info.id, other_volunteer, actor="o", via="office", now=info.starts_at)
        activities.check_out(info.id, other_volunteer, actor="o", via="office", now=info.ends_at)
        with pytest.raises(ConflictError):  # not started yet: cancel instead
            activities.close_activity(info.id, actor="o", now=info.starts_at - timedelta(minutes=1))
        result = activities.close_activity(
            info.id, actor="o", now=info.ends_at + timedelta(hours=3)
        )
    assert result.records_made == 1 and result.no_shows == 1 and result.refused == ()
    assert result.activity.status == "closed" and result.activity.closed_at is not None
    rows = {row.volunteer_id: row for row in activities.attendance(info.id)}
    assert rows[volunteer].state == "here" and rows[volunteer].record_status == "pending"
    assert (
        rows[other_volunteer].state == "left" and rows[other_volunteer].record_status == "approved"
    )
    assert rows[third].state == "no_show" and rows[third].record_status is None
    pending = get_record(rows[volunteer].signup.service_record_id)
    # 120 minutes = 10 points would be approved at once; the missing check-out queues it.
    assert pending.status == "pending" and pending.minutes == 120
    assert pending.queue_reason == "未签退，按计划时长 / no check-out: scheduled minutes"
    assert ledger.balance(volunteer).balance == 0
    assert activity_hooks.closed == [(info.id, tuple(sorted((volunteer, other_volunteer))))]
    assert (
        rows[volunteer].card_code_masked.endswith(
            db.session.get(Volunteer, volunteer).card_code[-4:]
        )
        and "*" in rows[volunteer].card_code_masked
    )
    with pytest.raises(ConflictError):
        activities.close_activity(info.id, actor="o")
    with pytest.raises(ConflictError):
        activities.edit_activity(info.id, changes={"place": "x"}, expected_version=None, actor="o")
    with pytest.raises(ConflictError):
        activities.check_in(info.id, third, actor="o", via="office", now=info.starts_at)
    assert {"activity.close", "activity.no_checkout"} <= set(actions())
    export = list(activities.attendance_rows_for_export(info.id))
    assert len(export) == 3 and "姓名 / Name" in export[0]
    (table,) = activities.attendance_tables(info.id)
    assert len(table.rows) == 3


def test_close_due_closes_what_ended_past_the_grace(tree, volunteer):
    ended = post()  # ended an hour ago: not yet due
    older = post(
        starts_at=NOW - timedelta(hours=6),
        ends_at=NOW - timedelta(hours=4),
        signup_until=NOW - timedelta(hours=7),
    )
    activities.sign_up(older.id, volunteer, actor="v", now=early(older))
    activities.check_in(older.id, volunteer, actor="o", via="office", now=older.starts_at)
    assert activities.close_due() == 1
    assert activities.get_activity(older.id).status == "closed"
    assert activities.get_activity(ended.id).status == "open"
    assert activities.close_due(now=NOW + timedelta(hours=2)) == 1
    assert activities.close_due(now=NOW + timedelta(hours=2)) == 0


def test_cancel_shows_to_the_signed_up(tree, volunteer, other_volunteer):
    upcoming = post(
        starts_at=NOW + timedelta(days=2),
        ends_at=NOW + timedelta(days=2, hours=2),
        signup_until=NOW + timedelta(days=1),
    )
    later = post(
        starts_at=NOW + timedelta(days=3),
        ends_at=NOW + timedelta(days=3, hours=2),
        signup_until=NOW + timedelta(days=1),
        title_zh="走访",
    )
    street = post(
        "longtan",
        starts_at=NOW + timedelta(days=4),
        ends_at=NOW + timedelta(days=4, hours=1),
        signup_until=NOW + timedelta(days=1),
    )
    post(
        "zuoanmen",
        starts_at=NOW + timedelta(days=2),
        ends_at=NOW + timedelta(days=2, hours=1),
        signup_until=NOW + timedelta(days=1),
    )
    activities.sign_up(upcoming.id, volunteer, actor="v")
    cancelled = activities.cancel_activity(upcoming.id, reason="下雨改期", actor="o")
    assert cancelled.status == "cancelled" and cancelled.cancelled_reason == "下雨改期"
    mine = activities.activities_for_volunteer(volunteer)
    assert [(a.id, s is not None) for a, s in mine] == [
        (upcoming.id, True),
        (later.id, False),
        (street.id, False),
    ]
    assert mine[0][0].status == "cancelled"
    theirs = activities.activities_for_volunteer(other_volunteer)
    assert [a.id for a, _ in theirs] == [later.id, street.id]
    with pytest.raises(ConflictError):
        activities.sign_up(upcoming.id, other_volunteer, actor="v")
    with pytest.raises(ConflictError):
        activities.cancel_activity(upcoming.id, reason="again", actor="o")
    with pytest.raises(InvalidInputError):
        activities.cancel_activity(later.id, reason=" ", actor="o")
    assert "activity.cancel" in actions()


def test_cancel_is_refused_once_someone_checked_in(tree, volunteer):
    info = post()
    activities.sign_up(info.id, volunteer, actor="v", now=early(info))
    activities.check_in(info.id, volunteer, actor="o", via="office", now=info.starts_at)
    with pytest.raises(ConflictError):
        activities.cancel_activity(info.id, reason="x", actor="o")


def test_hook_activity_fields(tree):
    """A plugin's fields are checked on post and edit and kept in `extra`."""
    with registered(plugin_manager(), activity_hooks, "activity_hooks"):
        assert set(activities.extra_fields("xizhaosi")) == {"contact_phone"}
        with pytest.raises(InvalidInputError) as caught:
            post(extra={"contact_phone": "1" * 40})
        assert "extra.contact_phone" in caught.value.errors
        info = post(extra={"contact_phone": "010"})
        edited = activities.edit_activity(
            info.id, changes={"extra": {"contact_phone": "020"}}, expected_version=1, actor="o"
        )
        assert edited.extra == {"contact_phone": "020"}
    assert activities.extra_fields("xizhaosi") == {}


def test_the_migration_goes_down_and_up(scratch_url):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from points.app import create_app
    from tests.conftest import _config

    app = create_app(_config(scratch_url))
    with app.app_context():
        upgrade()
        assert {"activities", "activity_signups"} <= set(inspect(db.engine).get_table_names())
        downgrade(revision="0017")
        db.engine.dispose()
        assert "activities" not in inspect(db.engine).get_table_names()
        upgrade()
        assert {"activities", "activity_signups"} <= set(inspect(db.engine).get_table_names())
        db.session.remove()
        db.engine.dispose()


class _Failing:
    """A plugin whose attendance_closed fails."""

    @staticmethod
    @hookimpl
    def attendance_closed(activity, attended):
        raise RuntimeError("boom")


def test_hook_attendance_closed(tree, volunteer, other_volunteer, caplog):
    """Told after the close commits, with who checked in; a failing plugin is logged and
    the close stands."""
    activity_hooks.closed.clear()
    pm = plugin_manager()
    with registered(pm, activity_hooks, "activity_hooks"), registered(pm, _Failing(), "failing"):
        info = post()
        for who in (volunteer, other_volunteer):
            activities.sign_up(info.id, who, actor="v", now=early(info))
        activities.check_in(info.id, other_volunteer, actor="o", via="office", now=info.starts_at)
        result = activities.close_activity(info.id, actor="o", now=info.ends_at)
    assert result.activity.status == "closed" and result.no_shows == 1
    assert activity_hooks.closed == [(info.id, (other_volunteer,))]
    assert "attendance_closed failed" in caplog.text
    db.session.rollback()
    assert activities.get_activity(info.id).status == "closed"
