"""The webhooks API: the secret once, field errors, the delivery log, replays."""

from __future__ import annotations

from sqlalchemy import update

from points import ledger, webhooks
from points.extensions import db
from points.models import WebhookDelivery


def test_api_webhook_secret_is_answered_once_and_signs(api, world):
    office = world.tokens["office_above"]
    made = api.post(
        "webhooks",
        office,
        {"url": "https://receiver.example/hook", "events": ["record.approved", "entry.posted"]},
    )
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert body["district"] == "longtan"  # the token's node by default
    assert body["events"] == ["entry.posted", "record.approved"]
    assert body["secret"] == webhooks.secret_of(body["id"])
    read = api.get(f"webhooks/{body['id']}", office).get_json()
    assert "secret" not in read and read["status"] == "active"
    listed = api.get("webhooks", world.tokens["auditor_in"]).get_json()["items"]
    assert listed == []  # registered at longtan: above the auditor's node
    listed = api.get("webhooks?district=longtan", office).get_json()["items"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert all("secret" not in item for item in listed)


def test_api_webhook_bad_input_is_a_problem_with_field_errors(api, world):
    office = world.tokens["office_in"]
    for payload, field in [
        ({"url": "ftp://receiver.example/", "events": ["entry.posted"]}, "url"),
        ({"url": "http://10.0.0.5/hook", "events": ["entry.posted"]}, "url"),
        ({"url": "https://receiver.example/", "events": ["entry.moved"]}, "events"),
        ({"url": "https://receiver.example/", "events": []}, "events"),
        ({"events": ["entry.posted"]}, "url"),
    ]:
        response = api.post("webhooks", office, payload)
        assert response.status_code == 422, payload
        assert response.content_type == "application/problem+json"
        assert field in response.get_json()["errors"], response.get_json()
    outside = api.post(
        "webhooks",
        office,
        {"district": "zuoanmen", "url": "https://r.example/", "events": ["entry.posted"]},
    )
    assert outside.status_code == 403


def test_api_webhook_deliveries_page_and_replay(api, world):
    office = world.tokens["office_in"]
    endpoint = api.post(
        "webhooks", office, {"url": "https://receiver.example/", "events": ["entry.posted"]}
    ).get_json()["id"]
    entries = [
        ledger.earn(world.volunteers["self"], n, actor="office:test", reason="巡查").id
        for n in (1, 2, 3)
    ]
    first = api.get(f"webhooks/{endpoint}/deliveries?limit=2", office).get_json()
    assert [d["event_id"] for d in first["items"]] == [f"entry:{e}" for e in entries[:0:-1]]
    rest = api.get(
        f"webhooks/{endpoint}/deliveries?limit=2&cursor={first['next_cursor']}", office
    ).get_json()
    assert [d["event_id"] for d in rest["items"]] == [f"entry:{entries[0]}"]
    assert rest["next_cursor"] is None
    pending = first["items"][0]
    assert pending["status"] == "pending" and pending["log"] == []
    assert api.post(f"webhooks/deliveries/{pending['id']}/replay", office).status_code == 409

    db.session.execute(
        update(WebhookDelivery).where(WebhookDelivery.id == pending["id"]).values(status="failed")
    )
    db.session.commit()
    failed = api.get(f"webhooks/{endpoint}/deliveries?status=failed", office).get_json()
    assert [d["id"] for d in failed["items"]] == [pending["id"]]
    replayed = api.post(f"webhooks/deliveries/{pending['id']}/replay", office)
    assert replayed.status_code == 200
    assert replayed.get_json()["status"] == "pending"
    assert replayed.get_json()["event_id"] == pending["event_id"]

    assert api.post(f"webhooks/{endpoint}/disable", office).get_json()["status"] == "disabled"
    again = api.post(f"webhooks/{endpoint}/disable", office)
    assert again.status_code == 409 and again.content_type == "application/problem+json"
    assert api.get("webhooks/99999", office).status_code == 404
    assert api.post("webhooks/deliveries/99999/replay", office).status_code == 404
