"""Policy drafts over the API: saved and checked like a version, previewed against past
records, activated now (the next record is capped) or from a date, refused when someone
stored a newer version meanwhile, discarded; every step audited; siblings kept out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from points import service
from points.extensions import db
from points.models import AuditEvent, PolicyDraft
from points.policy import plugin_config, set_policy

DRAFT = "districts/xizhaosi/policy/caps/draft"
CAPPED = {"overall": {"day": 3, "week": None, "month": None}}


def _audit(action: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


def _patrol(world, hours_ago: float, minutes: int = 60):
    return service.record_service(
        world.volunteers["self"],
        "patrol",
        datetime.fromisoformat(world.started(hours_ago)),
        minutes,
        actor="office:test",
    )


def test_a_saved_draft_changes_nothing_until_it_is_activated(api, world):
    office = world.tokens["office_in"]
    before = dict(plugin_config("caps", "xizhaosi"))
    saved = api.put(DRAFT, office, {"config": CAPPED, "comment": "每天最多 3 分"})
    assert saved.status_code == 200, saved.get_json()
    body = saved.get_json()
    assert body["config"] == CAPPED and body["comment"] == "每天最多 3 分"
    assert body["base_version"] == 0 and body["author"]
    assert api.get(DRAFT, world.tokens["auditor_in"]).get_json()["config"] == CAPPED
    assert dict(plugin_config("caps", "xizhaosi")) == before
    assert _audit("policy.draft_save") == 1


def test_a_bad_draft_gets_field_errors_and_is_not_kept(api, world):
    office = world.tokens["office_in"]
    for body, field in (
        ({"config": {"overall": {"day": -1}}}, "config.overall.day"),
        ({"config": {"overall": {"hour": 5}}}, "config.overall.hour"),
        ({"config": {}, "locked": ["nothing.here"]}, "locked"),
        ({"config": [1]}, "config"),
    ):
        response = api.put(DRAFT, office, body)
        assert response.status_code == 422, body
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert field in response.get_json()["errors"], (body, response.get_json())
    assert db.session.scalar(select(func.count()).select_from(PolicyDraft)) == 0
    assert api.get(DRAFT, office).status_code == 404


def test_a_key_locked_above_cannot_be_drafted_below(api, world):
    set_policy("longtan", "caps", CAPPED, author="office:street", locked=["overall"])
    response = api.put(DRAFT, world.tokens["office_in"], {"config": {"overall": {"day": 50}}})
    assert response.status_code == 422
    assert "config.overall.day" in response.get_json()["errors"]


def test_preview_then_activate_now_caps_the_next_record(api, world):
    office = world.tokens["office_in"]
    past = _patrol(world, 30)  # 60 minutes: 5 points under today's caps
    if past.status == "pending":
        service.approve(past.id, actor="office:test")
    assert api.put(DRAFT, office, {"config": CAPPED}).status_code == 200
    since = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    until = datetime.now(UTC).isoformat()
    preview = api.post(DRAFT + "/preview", office, {"since": since, "until": until})
    assert preview.status_code == 200, preview.get_json()
    shown = preview.get_json()
    assert shown["records"] >= 1 and shown["draft_total"] < shown["current_total"]
    assert shown["difference"] == shown["draft_total"] - shown["current_total"]

    activated = api.post(DRAFT + "/activate", office, {})
    assert activated.status_code == 200, activated.get_json()
    assert activated.get_json()["config"] == CAPPED and activated.get_json()["version"] == 1
    assert api.get(DRAFT, office).status_code == 404  # the draft became the version
    assert _audit("policy.version") >= 1

    record = _patrol(world, 0)  # started after the activation: the new version applies
    if record.status == "pending":
        record = service.approve(record.id, actor="office:test")
    assert record.points == 3, record.awards


def test_activation_from_a_date_leaves_today_as_it_was(api, world):
    office = world.tokens["office_in"]
    api.put(DRAFT, office, {"config": CAPPED})
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    activated = api.post(DRAFT + "/activate", office, {"effective_from": tomorrow})
    assert activated.status_code == 200, activated.get_json()
    assert activated.get_json()["effective_from"].startswith(
        (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    )  # local midnight in Beijing is the evening before in UTC
    assert plugin_config("caps", "xizhaosi")["overall"]["day"] != 3
    yesterday = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    api.put(DRAFT, office, {"config": CAPPED})
    refused = api.post(DRAFT + "/activate", office, {"effective_from": yesterday})
    assert refused.status_code == 422 and "effective_from" in refused.get_json()["errors"]


def test_activation_after_a_newer_version_is_refused_and_keeps_the_draft(api, world):
    office = world.tokens["office_in"]
    api.put(DRAFT, office, {"config": CAPPED})
    set_policy("xizhaosi", "caps", {"overall": {"day": 80}}, author="office:colleague")
    refused = api.post(DRAFT + "/activate", office, {})
    assert refused.status_code == 412
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert api.get(DRAFT, office).status_code == 200
    assert plugin_config("caps", "xizhaosi")["overall"]["day"] == 80


def test_discard_removes_the_draft_and_is_audited(api, world):
    office = world.tokens["office_in"]
    api.put(DRAFT, office, {"config": CAPPED})
    assert api.delete(DRAFT, office).status_code == 204
    assert api.get(DRAFT, office).status_code == 404
    assert api.delete(DRAFT, office).status_code == 404
    assert api.post(DRAFT + "/activate", office, {}).status_code == 404
    assert _audit("policy.draft_discard") == 1


def test_siblings_and_auditors_cannot_touch_the_draft(api, world):
    api.put(DRAFT, world.tokens["office_in"], {"config": CAPPED})
    assert api.get(DRAFT, world.tokens["office_out"]).status_code == 403
    assert api.put(DRAFT, world.tokens["office_out"], {"config": {}}).status_code == 403
    assert api.put(DRAFT, world.tokens["auditor_in"], {"config": {}}).status_code == 403
    assert api.post(DRAFT + "/activate", world.tokens["auditor_in"], {}).status_code == 403
    assert api.get(DRAFT, world.tokens["office_in"]).get_json()["config"] == CAPPED
