"""The approval queue over the API: records listed by date and oldest first, decided many
at once (each in its own unit, so one that cannot be decided leaves the others decided),
reports marked verified, and gifts decided the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sqlalchemy import func, select

from points import ledger, service
from points.extensions import db
from points.models import AuditEvent
from tests.test_api_matrix import _pending_gift
from tests.test_api_service_records_list import _record


def _audit(action: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


def test_bulk_approval_decides_each_and_reports_the_one_it_could_not(api, world):
    first, second, done = (_record(world, "self", 30 + 6 * n) for n in range(3))
    service.reject(done, actor="office:test", reason="记重了")
    before = ledger.balance(world.volunteers["self"]).balance
    approvals = _audit("record.approve")

    response = api.post(
        "service-records/decide",
        world.tokens["office_in"],
        {"ids": [first, done, second, first], "decision": "approve"},
    )

    assert response.status_code == 200, response.get_json()
    results = response.get_json()["results"]
    assert [(r["id"], r["ok"], r["status"], r["problem"]) for r in results] == [
        (first, True, "approved", None),
        (done, False, None, 409),
        (second, True, "approved", None),
    ]  # the repeated id is decided once
    assert "rejected" in results[1]["detail"]
    earned = sum(r["points"] for r in results if r["ok"])
    assert earned > 0
    assert ledger.balance(world.volunteers["self"]).balance == before + earned
    assert _audit("record.approve") == approvals + 2


def test_bulk_rejection_needs_a_reason_and_changes_nothing_without_one(api, world):
    record = _record(world, "self", 30)
    for body in (
        {"ids": [record], "decision": "reject"},
        {"ids": [record], "decision": "reject", "reason": "   "},
    ):
        response = api.post("service-records/decide", world.tokens["office_in"], body)
        assert response.status_code == 422, body
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert "reason" in response.get_json()["errors"]
    assert service.get_record(record).status == "pending"

    done = api.post(
        "service-records/decide",
        world.tokens["office_in"],
        {"ids": [record], "decision": "reject", "reason": "没有巡查记录"},
    )
    assert done.get_json()["results"][0]["status"] == "rejected"
    assert service.get_record(record).decision_reason == "没有巡查记录"


def test_bad_bulk_bodies_get_field_messages(api, world):
    office = world.tokens["office_in"]
    for body, field in (
        ({"ids": [], "decision": "approve"}, "ids"),
        ({"ids": ["1"], "decision": "approve"}, "ids"),
        ({"ids": list(range(1, 202)), "decision": "approve"}, "ids"),
        ({"ids": [1], "decision": "maybe"}, "decision"),
        ({"decision": "approve"}, "ids"),
    ):
        response = api.post("service-records/decide", office, body)
        assert response.status_code == 422, body
        assert field in response.get_json()["errors"], (body, response.get_json())


def test_one_record_out_of_reach_refuses_the_whole_decision(api, world):
    mine = _record(world, "self", 30)
    far = _record(world, "far", 36)  # zuoanmen, the sibling community
    response = api.post(
        "service-records/decide",
        world.tokens["office_in"],
        {"ids": [mine, far], "decision": "approve"},
    )
    assert response.status_code == 403
    assert service.get_record(mine).status == "pending"
    assert service.get_record(far).status == "pending"
    unknown = api.post(
        "service-records/decide",
        world.tokens["office_in"],
        {"ids": [mine, 2_000_000_000], "decision": "approve"},
    ).get_json()["results"]
    assert [(r["ok"], r["problem"]) for r in unknown] == [(True, None), (False, 404)]


def test_verifying_an_approved_report_posts_its_bonus_once(api, world):
    report = service.record_service(
        world.volunteers["self"],
        "report",
        datetime.fromisoformat(world.started(3)),
        None,
        {"problem": "路灯不亮"},
        actor="office:test",
    )
    assert report.status == "approved"
    office = world.tokens["office_in"]
    verified = api.post(f"service-records/{report.id}/verify", office)
    assert verified.status_code == 200, verified.get_json()
    body = verified.get_json()
    assert body["verified"] is True and body["points"] > report.points
    again = api.post(f"service-records/{report.id}/verify", office)
    assert again.status_code == 409
    assert again.headers["Content-Type"].startswith("application/problem+json")
    assert service.get_record(report.id).points == body["points"]
    assert (
        api.post(f"service-records/{report.id}/verify", world.tokens["office_out"]).status_code
        == 403
    )


def test_records_by_date_and_oldest_first(api, world):
    made = [_record(world, "self", 30 + 6 * n) for n in range(4)]  # newest first in time
    office = world.tokens["office_in"]
    oldest = api.get("service-records?status=pending&order=oldest&limit=3", office).get_json()
    assert [r["id"] for r in oldest["items"]] == made[:3]
    rest = api.get(
        f"service-records?status=pending&order=oldest&limit=3&cursor={oldest['next_cursor']}",
        office,
    ).get_json()
    assert [r["id"] for r in rest["items"]] == made[3:] and rest["next_cursor"] is None

    started = [service.get_record(i).started_at.replace(tzinfo=UTC) for i in made]
    since = quote((started[2] - timedelta(minutes=1)).isoformat())
    until = quote((started[0] - timedelta(minutes=1)).isoformat())
    window = api.get(f"service-records?since={since}&until={until}", office)
    assert [r["id"] for r in window.get_json()["items"]] == [made[2], made[1]]  # newest in
    naive = api.get("service-records?since=2026-01-01T00:00:00", office)
    assert naive.status_code == 422 and "since" in naive.get_json()["errors"]


def test_gifts_are_decided_in_bulk_the_same_way(api, world):
    gifts = [_pending_gift(world), _pending_gift(world)]
    office = world.tokens["office_in"]
    refused = api.post("transfers/requests/decide", office, {"ids": gifts, "decision": "reject"})
    assert refused.status_code == 422 and "reason" in refused.get_json()["errors"]
    peer = ledger.balance(world.volunteers["peer"]).balance
    done = api.post("transfers/requests/decide", office, {"ids": gifts, "decision": "approve"})
    assert [r["status"] for r in done.get_json()["results"]] == ["approved", "approved"]
    assert ledger.balance(world.volunteers["peer"]).balance == peer + 2
    again = api.post("transfers/requests/decide", office, {"ids": gifts[:1], "decision": "approve"})
    assert again.get_json()["results"][0]["problem"] == 409
