"""The built-in plugins' rules, through the service layer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from points import ledger
from points.extensions import db
from points.models import Lot
from points.policy import set_policy
from points.service import approve, expiring_soon, record_service, star_level

NOW = datetime.now(UTC)
BEIJING = ZoneInfo("Asia/Shanghai")


def configure(district, plugin, config, **kwargs):
    kwargs.setdefault("effective_from", NOW - timedelta(days=400))
    return set_policy(district, plugin, config, author="office:test", **kwargs)


def local(days_ago: int, hour: int, minute: int = 0) -> datetime:
    day = datetime.now(BEIJING).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BEIJING)


def submit(volunteer, kind, started_at, minutes=None, details=None):
    record = record_service(volunteer, kind, started_at, minutes, details, actor="office:test")
    if record.status == "pending":
        record = approve(record.id, "office:test")
    return record


@pytest.mark.parametrize(
    ("kind", "minutes", "details", "points", "rule"),
    [
        ("patrol", 90, {"route": "胡同"}, 8, "patrol-hours"),  # 1.5 h x 5 = 7.5, half up
        ("visit", 30, {"households": 3}, 6, "visit-households"),
        ("fix", 10, {"description": "扶正路牌"}, 3, "fix"),
        ("report", None, {"problem": "井盖缺失"}, 2, "report"),
        ("log", None, {"entry": "今日巡查无异常"}, 1, "log"),
    ],
)
def test_steward_steps(volunteer, kind, minutes, details, points, rule):
    record = submit(volunteer, kind, local(1, 9), minutes, details)
    assert [(a["rule"], a["points"]) for a in record.awards] == [(rule, points)]


def test_checkin_on_time_late_and_streak(volunteer):
    for days_ago in range(7, 1, -1):
        assert submit(volunteer, "checkin", local(days_ago, 7, 55)).points == 1
    late = submit(volunteer, "checkin", local(1, 9, 30))
    assert late.points == 0 and late.awards[0]["rule"] == "checkin-late"


def test_checkin_streak_bonus_on_the_seventh_day(volunteer):
    for days_ago in range(14, 1, -1):
        submit(volunteer, "checkin", local(days_ago, 8, 5))
    seventh = submit(volunteer, "checkin", local(1, 8, 0))
    # Days 14..8 ago made the first streak; 7..1 make the second.
    assert [a["rule"] for a in seventh.awards] == ["checkin-on-time", "checkin-streak"]
    assert seventh.points == 6


def test_caps_daily_overall_and_per_kind_in_local_time(volunteer):
    configure("longtan", "caps", {"overall": {"day": 12}, "per_kind": {"fix": {"day": 5}}})
    configure("longtan", "approval", {"auto_approve_up_to": 100})
    assert submit(volunteer, "fix", local(2, 9), 10, {"description": "a"}).points == 3
    capped = submit(volunteer, "fix", local(2, 10), 10, {"description": "b"})
    assert capped.points == 2 and capped.awards[0]["clip"]["plugin"] == "caps"
    assert "5" in capped.awards[0]["clip"]["reason_zh"]
    patrol = submit(volunteer, "patrol", local(2, 11), 120)
    assert patrol.points == 7  # 12 a day overall, 5 earned already
    # 00:30 Beijing the next day is a new local day, though still the same UTC day.
    assert submit(volunteer, "patrol", local(1, 0, 30), 60).points == 5
    entry_reasons = [a["clip"] for a in patrol.awards]
    assert entry_reasons[0]["reason_en"].startswith("daily cap of 12")


def test_expiry_end_of_next_year_and_months(volunteer):
    submit(volunteer, "patrol", local(1, 9), 60)
    expires = db.session.scalar(select(Lot.expires_at))
    earned = datetime.now(BEIJING)
    assert expires == datetime(earned.year + 2, 1, 1, tzinfo=BEIJING)
    configure("xizhaosi", "expiry", {"rule": "months", "months": 1, "soon_days": 40})
    submit(volunteer, "patrol", local(1, 11), 60)
    soon = expiring_soon(volunteer)
    assert [points for points, _ in soon] == [5]
    assert timedelta(days=27) < soon[0][1] - NOW < timedelta(days=32)


def test_stars_from_hours(app, tree):
    assert [star_level(h * 60) for h in (0, 99, 100, 299, 300, 1500, 5000)] == [0, 0, 1, 1, 2, 5, 5]
    configure("longtan", "stars", {"levels_hours": [10, 20]})
    assert star_level(20 * 60, "xizhaosi") == 2
    assert star_level(20 * 60, "dongcheng") == 0


def test_approval_auto_kinds_and_threshold(volunteer):
    configure("longtan", "approval", {"auto_kinds": ["visit"], "auto_approve_up_to": 0})
    visit = record_service(volunteer, "visit", local(1, 9), 60, {"households": 9}, actor="o")
    assert visit.status == "approved"
    log = record_service(volunteer, "log", local(1, 9), None, {"entry": "x"}, actor="o")
    assert log.status == "pending"


def test_minutes_and_balance_after_approvals(volunteer):
    submit(volunteer, "patrol", local(2, 9), 600)
    assert ledger.balance(volunteer).balance == 50
