"""Honours with a public notice: proposed from a ranking (ties at the cut included), on
notice for the policy's days, objections rate-limited and answered, finalised only after
the notice and every answer; the public page shows masked names and nothing personal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from points import errors, honours, ledger
from points.extensions import db
from points.models import AuditEvent, Honour
from points.policy import set_policy


def _serve(volunteer: int, minutes: int) -> None:
    ledger.add_service_minutes(volunteer, minutes, actor="t", reason="patrol")


def _period():
    now = datetime.now(UTC)
    return now - timedelta(days=1), now + timedelta(hours=1)


def _end_notice(honour_id: int) -> None:
    db.session.execute(
        update(Honour)
        .where(Honour.id == honour_id)
        .values(notice_until=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()


def test_a_list_from_a_ranking_on_notice_then_finalised(volunteer, other_volunteer, far_volunteer):
    _serve(volunteer, 300)
    _serve(other_volunteer, 120)
    _serve(far_volunteer, 120)  # tied with other_volunteer at place 2
    start, end = _period()
    found = honours.propose("longtan", "十佳小巷管家 2026", "hours", start, end, 2)
    assert [(m.place, m.volunteer_id) for m in found.members] == [
        (1, volunteer),
        (2, other_volunteer),
        (2, far_volunteer),
    ]
    assert found.members[0].masked_name == "王*英"
    assert found.status == "notice" and found.on_notice
    assert found.notice_until - found.created_at == timedelta(days=7)
    with pytest.raises(errors.ConflictError):
        honours.finalise(found.id)  # the notice is not over
    objection = honours.lodge_objection(found.public_code, "她上个月没有巡查。", "10.0.0.1")
    _end_notice(found.id)
    with pytest.raises(errors.ConflictError):
        honours.lodge_objection(found.public_code, "too late", "10.0.0.2")
    with pytest.raises(errors.ConflictError):
        honours.finalise(found.id)  # an objection waits for its answer
    honours.answer(objection, "已核实巡查记录，维持提名。")
    final = honours.finalise(found.id)
    assert final.status == "final" and final.decided_at is not None
    assert [h["title"] for h in honours.of_volunteer(volunteer)] == ["十佳小巷管家 2026"]
    actions = db.session.scalars(
        select(AuditEvent.action).where(
            AuditEvent.target_type == "honour", AuditEvent.target_id == str(found.id)
        )
    ).all()
    assert actions == ["honour.propose", "honour.object", "honour.answer", "honour.finalise"]
    # The public objection's audit row names no address.
    row = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "honour.object"))
    assert row.actor == "public" and "10.0.0.1" not in str(row.__dict__)


def test_notice_days_come_from_policy_and_withdrawal_hides_the_notice(volunteer):
    set_policy("longtan", "stars", {"notice_days": 3}, author="t")
    _serve(volunteer, 60)
    start, end = _period()
    found = honours.propose("xizhaosi", "好邻居", "hours", start, end, 10)
    assert found.notice_until - found.created_at == timedelta(days=3)
    with pytest.raises(errors.InvalidInputError):
        honours.withdraw(found.id, " ")
    honours.withdraw(found.id, "统计口径有误")
    with pytest.raises(errors.NotFoundError):
        honours.public(found.public_code)
    with pytest.raises(errors.ConflictError):
        honours.finalise(found.id)


def test_objections_are_rate_limited_per_place(volunteer):
    _serve(volunteer, 60)
    start, end = _period()
    code = honours.propose("longtan", "荣誉榜", "hours", start, end, 5).public_code
    for n in range(honours.OBJECTIONS_PER_HOUR):
        honours.lodge_objection(code, f"objection {n}", "10.9.9.9")
    with pytest.raises(errors.RateLimitedError):
        honours.lodge_objection(code, "one more", "10.9.9.9")
    honours.lodge_objection(code, "from elsewhere", "10.9.9.8")
    with pytest.raises(errors.InvalidInputError):
        honours.lodge_objection(code, "x" * (honours.OBJECTION_MAX + 1), "10.9.9.7")
    with pytest.raises(errors.NotFoundError):
        honours.lodge_objection("nope", "text", "10.9.9.7")


def test_nobody_ranked_is_refused(tree):
    start, end = _period()
    with pytest.raises(errors.InvalidInputError):
        honours.propose("longtan", "空榜", "hours", start, end, 10)
    with pytest.raises(errors.InvalidInputError):
        honours.propose("longtan", "", "hours", start, end, 10)


pytest_plugins = ("tests.api_fixtures",)


def test_the_api_from_proposal_to_the_public_notice(api, world):
    office = world.tokens["office_above"]
    self_ = world.volunteers["self"]
    _serve(self_, 90)
    start, end = _period()
    answer = api.post(
        "honours",
        office,
        {
            "district": "longtan",
            "title": "十佳小巷管家 2026",
            "since": start.isoformat(),
            "until": end.isoformat(),
            "size": 10,
        },
    )
    assert answer.status_code == 201, answer.get_json()
    honour = answer.get_json()
    assert honour["members"][0]["name"] == "王秀英"
    code = honour["public_code"]
    # The public notice: no token, a masked name, nothing personal.
    notice = api.get(f"notices/{code}")
    assert notice.status_code == 200
    body = notice.get_json()
    assert body["members"][0]["name"] == "王*英" and body["open_for_objections"]
    text = notice.get_data(as_text=True)
    assert "王秀英" not in text and "13900000001" not in text
    assert "card" not in text and "volunteer_id" not in text
    for n in range(honours.OBJECTIONS_PER_HOUR):
        assert (
            api.post(f"notices/{code}/objections", None, {"text": f"疑问 {n}"}).status_code == 201
        )
    refused = api.post(f"notices/{code}/objections", None, {"text": "再一条"})
    assert refused.status_code == 429 and refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1
    assert api.post(f"notices/{code}/objections", None, {"text": ""}).status_code == 422
    assert api.get("notices/not-a-code").status_code == 404
    listed = api.get("honours?district=longtan", office).get_json()["items"]
    assert listed[0]["unanswered"] == honours.OBJECTIONS_PER_HOUR
    read = api.get(f"honours/{honour['id']}", office).get_json()
    assert api.post(f"honours/{honour['id']}/finalise", office).status_code == 409
    for objection in read["objections"]:
        done = api.post(
            f"honours/objections/{objection['id']}/answer", office, {"answer": "已核实"}
        )
        assert done.status_code == 200
    _end_notice(honour["id"])
    assert api.post(f"notices/{code}/objections", None, {"text": "晚了"}).status_code == 409
    final = api.post(f"honours/{honour['id']}/finalise", office)
    assert final.status_code == 200 and final.get_json()["status"] == "final"
    assert api.get(f"notices/{code}").get_json()["status"] == "final"
    bad = api.post(
        "honours",
        office,
        {"district": "longtan", "title": "x", "since": end.isoformat(), "until": start.isoformat()},
    )
    assert bad.status_code == 422 and "until" in bad.get_json()["errors"]
