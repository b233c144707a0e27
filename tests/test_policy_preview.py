"""Preview: a draft re-run over past records writes nothing, and matches what activation awards."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from points import errors, ledger
from points.extensions import db
from points.models import Base
from points.policy import set_policy
from points.service import approve, preview_policy, record_service, records_of_node

BEIJING = ZoneInfo("Asia/Shanghai")
TODAY = datetime.now(BEIJING).date()
START = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=BEIJING) - timedelta(days=10)
END = START + timedelta(days=7)
DRAFT = {"patrol": {"points_per_hour": 8}, "visit": {"points_per_household": 3}}


def everything():
    return {
        table.name: db.session.scalar(select(func.count()).select_from(table))
        for table in Base.metadata.sorted_tables
    }


@pytest.fixture
def period(tree, volunteer, other_volunteer, far_volunteer):
    """A week of queued service by three volunteers, with caps that bind."""
    long_ago = START - timedelta(days=400)
    set_policy(
        "longtan",
        "approval",
        {"auto_kinds": [], "auto_approve_up_to": None},
        author="o",
        effective_from=long_ago,
    )
    set_policy("longtan", "caps", {"overall": {"day": 14}}, author="o", effective_from=long_ago)
    # Approved before the period: it counts in the history, not in the preview.
    before = record_service(volunteer, "patrol", START - timedelta(hours=3), 60, actor="o")
    approve(before.id, "o")
    plan = [
        (volunteer, "patrol", 0, 9, 120, None),
        (volunteer, "visit", 0, 14, 60, {"households": 3}),
        (volunteer, "patrol", 1, 9, 180, None),
        (volunteer, "checkin", 2, 7, None, {}),
        (other_volunteer, "patrol", 0, 10, 90, None),
        (other_volunteer, "fix", 3, 10, 20, {"description": "路牌"}),
        (far_volunteer, "visit", 4, 9, 45, {"households": 5}),
        (far_volunteer, "patrol", 4, 15, 240, None),
    ]
    for who, kind, day, hour, minutes, details in plan:
        started = START + timedelta(days=day, hours=hour)
        record = record_service(who, kind, started, minutes, details, actor="o")
        assert record.status == "pending"
    # Outside the period: not previewed.
    record_service(volunteer, "patrol", END + timedelta(hours=1), 60, actor="o")
    return {"volunteer": volunteer, "other": other_volunteer, "far": far_volunteer}


def test_preview_writes_nothing_and_matches_activation(period):
    before = everything()
    preview = preview_policy("longtan", "steward", DRAFT, start=START, end=END)
    assert everything() == before
    assert preview.records == 8 and len(preview.rows) == 3
    assert preview.draft_total > preview.current_total
    assert preview.actual_total == 0
    # Activate the draft from the period's start, then approve the same records in order.
    set_policy("longtan", "steward", DRAFT, author="office:wang", effective_from=START)
    queued = sorted(
        records_of_node("longtan", status="pending", since=START, until=END, limit=500),
        key=lambda r: (r.started_at, r.id),
    )
    for record in queued:
        approve(record.id, "office:wang")
    earned = {row.volunteer_id: row.draft for row in preview.rows}
    for volunteer_id, points in earned.items():
        real = ledger.balance(volunteer_id).balance
        if volunteer_id == period["volunteer"]:
            real -= 5  # the patrol approved before the period
        assert real == points, (volunteer_id, real, points)


def test_preview_current_matches_what_the_current_policy_awards(period):
    preview = preview_policy("longtan", "steward", {}, start=START, end=END)
    assert preview.draft_total == preview.current_total
    caps = next(row for row in preview.rows if row.volunteer_id == period["far"])
    assert caps.current == 14  # visit 10 + patrol 20, capped at 14 a day


def test_preview_refuses_a_bad_draft(period):
    before = everything()
    with pytest.raises(errors.InvalidInputError) as raised:
        preview_policy(
            "longtan", "steward", {"patrol": {"points_per_hour": -1}}, start=START, end=END
        )
    assert "config.patrol.points_per_hour" in raised.value.errors
    with pytest.raises(errors.InvalidInputError):
        preview_policy("longtan", "steward", DRAFT, start=END, end=START)
    with pytest.raises(errors.InvalidInputError):
        preview_policy("longtan", "steward", DRAFT, start=datetime(2026, 1, 1), end=END)
    assert everything() == before


def test_preview_of_disabling_a_plugin(period):
    preview = preview_policy("longtan", "caps", {}, enabled=False, start=START, end=END)
    assert preview.draft_total >= preview.current_total
    assert all(row.draft >= row.current for row in preview.rows)
