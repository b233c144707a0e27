"""Webhooks through the console: add one (the secret shown once), read the delivery log,
send a failed delivery again, disable; auditors read only; other nodes see nothing."""

from __future__ import annotations

import re

from flask import Flask, g
from sqlalchemy import select, update

from points import ledger, webhooks
from points.extensions import db
from points.models import WebhookDelivery, WebhookEndpoint
from tests.office_fixtures import post, sign_in

pytest_plugins = ("tests.office_fixtures",)


def _new_client(app: Flask):
    g.pop("csrf_token", None)  # another browser: not the last one's CSRF token
    return app.test_client()


def test_a_webhook_from_the_form_to_a_replayed_delivery(app, office, accounts):
    page = office.get("/office/webhooks")
    assert page.status_code == 200 and 'action="/office/webhooks"' in page.text
    assert 'href="/office/webhooks"' in page.text  # in the console's menu

    refused = post(
        office,
        "/office/webhooks",
        {"url": "ftp://receiver.example/", "district": "xizhaosi", "events": ["entry.posted"]},
        page="/office/webhooks",
    )
    assert refused.status_code == 422 and "error-summary" in refused.text
    assert 'href="#url"' in refused.text and "ftp://receiver.example/" in refused.text
    none_chosen = post(
        office,
        "/office/webhooks",
        {"url": "https://receiver.example/hook", "district": "xizhaosi"},
        page="/office/webhooks",
    )
    assert none_chosen.status_code == 422 and 'href="#events"' in none_chosen.text
    outside = post(
        office,
        "/office/webhooks",
        {"url": "https://r.example/", "district": "zuoanmen", "events": ["entry.posted"]},
        page="/office/webhooks",
    )
    assert outside.status_code == 422 and 'href="#district"' in outside.text

    made = post(
        office,
        "/office/webhooks",
        {
            "url": "https://receiver.example/hook",
            "district": "xizhaosi",
            "events": ["entry.posted", "redemption.held"],
        },
        page="/office/webhooks",
    )
    assert made.status_code == 200
    endpoint = db.session.scalar(select(WebhookEndpoint))
    secret = re.search(r"data-secret>([0-9a-f]{64})<", made.text).group(1)
    assert secret == webhooks.secret_of(endpoint.id)
    listed = office.get("/office/webhooks")
    assert "https://receiver.example/hook" in listed.text and secret not in listed.text

    entry = ledger.earn(accounts.volunteers["self"], 4, actor="office:test", reason="巡查")
    log = office.get(f"/office/webhooks/{endpoint.id}")
    assert f"entry:{entry.id}" in log.text and "/replay" not in log.text
    db.session.execute(
        update(WebhookDelivery).values(status="failed", attempts=12, last_status=503)
    )
    db.session.commit()
    failed = office.get(f"/office/webhooks/{endpoint.id}?status=failed")
    assert "HTTP 503" in failed.text
    (delivery,) = db.session.scalars(select(WebhookDelivery)).all()
    sent = post(
        office,
        f"/office/webhooks/deliveries/{delivery.id}/replay",
        page=f"/office/webhooks/{endpoint.id}",
    )
    assert sent.status_code == 302 and "done=replayed" in sent.headers["Location"]
    db.session.expire_all()
    assert db.session.get(WebhookDelivery, delivery.id).status == "pending"

    off = post(
        office, f"/office/webhooks/{endpoint.id}/disable", page=f"/office/webhooks/{endpoint.id}"
    )
    assert off.status_code == 302
    db.session.expire_all()
    assert db.session.get(WebhookEndpoint, endpoint.id).status == "disabled"
    assert "/disable" not in office.get(f"/office/webhooks/{endpoint.id}").text


def test_webhook_pages_for_auditors_and_other_nodes(app, client, accounts):
    made, _secret = webhooks.create_endpoint(
        "xizhaosi", "https://receiver.example/hook", ["entry.posted"]
    )
    assert sign_in(client, "shenji").status_code == 302
    page = client.get("/office/webhooks")
    assert "https://receiver.example/hook" in page.text
    assert 'action="/office/webhooks"' not in page.text  # no form for an auditor
    assert client.get(f"/office/webhooks/{made.id}").status_code == 200
    refused = post(
        client,
        "/office/webhooks",
        {"url": "https://r.example/", "district": "xizhaosi", "events": ["entry.posted"]},
        page="/office/webhooks",
    )
    assert refused.status_code == 403
    assert post(client, f"/office/webhooks/{made.id}/disable").status_code == 403

    other = _new_client(app)
    assert sign_in(other, "zuoanmen").status_code == 302
    assert "https://receiver.example/hook" not in other.get("/office/webhooks").text
    assert other.get(f"/office/webhooks/{made.id}").status_code == 404
    assert post(other, f"/office/webhooks/{made.id}/disable").status_code == 404
