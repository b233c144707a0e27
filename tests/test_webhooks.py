"""Webhooks: the outbox the triggers fill in the event's transaction, and the worker
that signs, sends, retries, fails and replays, against a real local HTTP receiver."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from points import honours, ledger, redemptions, service, webhooks
from points.errors import ConflictError, InvalidInputError
from points.extensions import db
from points.ledger import fused
from points.models import AuditEvent, Honour, WebhookAttempt, WebhookDelivery
from points.verify import verify as verify_ledger
from points.webhooks.sending import post
from tests.webhook_receiver import Receiver, verify


@pytest.fixture
def receiver(app):
    app.config["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    app.config["WEBHOOKS_TIMEOUT_SECONDS"] = 0.5
    with Receiver(slow_seconds=1.5) as running:
        yield running


def _deliveries(**where) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).order_by(WebhookDelivery.id)
    for name, value in where.items():
        query = query.where(getattr(WebhookDelivery, name) == value)
    rows = list(db.session.scalars(query))
    db.session.rollback()
    return rows


def _due_now() -> None:
    """Move every pending delivery's next try to now (as the clock would)."""
    db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == "pending")
        .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    db.session.commit()


def test_webhooks_an_earn_is_delivered_signed_once(world, receiver):
    endpoint, secret = webhooks.create_endpoint("longtan", receiver.url, ["entry.posted"])
    entry = ledger.earn(world.volunteers["self"], 7, actor="office:test", reason="巡查")
    queued = _deliveries(event_id=f"entry:{entry.id}")
    assert [(d.endpoint_id, d.event, d.subject_id, d.status) for d in queued] == [
        (endpoint.id, "entry.posted", entry.id, "pending")
    ]

    outcomes = webhooks.deliver()
    assert outcomes["delivered"] >= 1
    sent = [r for r in receiver.received if r.event_id == f"entry:{entry.id}"]
    assert len(sent) == 1
    assert verify(secret, sent[0])
    assert not verify("another secret", sent[0])
    assert sent[0].headers["Points-Event"] == "entry.posted"
    body = sent[0].json
    assert body["id"] == f"entry:{entry.id}" and body["event"] == "entry.posted"
    assert body["data"]["id"] == entry.id and body["data"]["kind"] == "earn"
    assert body["data"]["district"] == "xizhaosi"
    assert {p["points"] for p in body["data"]["postings"]} == {7, -7}
    assert webhooks.secret_of(endpoint.id) == secret

    # Nothing is due any more: a second pass sends nothing.
    before = len(receiver.received)
    assert webhooks.deliver().total() == 0
    assert len(receiver.received) == before
    (done,) = _deliveries(event_id=f"entry:{entry.id}")
    assert done.status == "delivered" and done.attempts == 1 and done.last_status == 200


def test_webhooks_an_endpoint_hears_its_node_and_below_only(world, receiver):
    webhooks.create_endpoint("zuoanmen", receiver.url, ["entry.posted"])
    above, _ = webhooks.create_endpoint("beijing", receiver.url, ["entry.posted"])
    entry = ledger.earn(world.volunteers["self"], 3, actor="office:test", reason="巡查")
    assert [d.endpoint_id for d in _deliveries(event_id=f"entry:{entry.id}")] == [above.id]


def test_webhooks_a_rolled_back_unit_queues_nothing(world, receiver):
    webhooks.create_endpoint("longtan", receiver.url, ["entry.posted"])
    before = len(_deliveries())

    def work():
        ledger.earn(world.volunteers["self"], 5, actor="office:test", reason="巡查")
        raise RuntimeError("the unit fails after the earn")

    with pytest.raises(RuntimeError):
        ledger.atomic(work)
    assert len(_deliveries()) == before
    webhooks.deliver()
    entry = ledger.earn(world.volunteers["self"], 6, actor="office:test", reason="巡查")
    webhooks.deliver()
    assert [r.event_id for r in receiver.received][-1] == f"entry:{entry.id}"
    assert all(r.json["data"]["postings"][0]["points"] != 5 for r in receiver.received)


def test_webhooks_retries_back_off_then_fail_then_replay_keeps_the_id(world, receiver):
    endpoint, secret = webhooks.create_endpoint("xizhaosi", receiver.url, ["entry.posted"])
    receiver.otherwise = "fail"
    entry = ledger.earn(world.volunteers["self"], 2, actor="office:test", reason="巡查")
    event_id = f"entry:{entry.id}"
    delays = []
    for attempt in range(1, webhooks.MAX_ATTEMPTS + 1):
        started = datetime.now(UTC)
        assert webhooks.deliver() == {"retry" if attempt < webhooks.MAX_ATTEMPTS else "failed": 1}
        (row,) = _deliveries(event_id=event_id)
        assert row.attempts == attempt and row.last_status == 500
        if attempt < webhooks.MAX_ATTEMPTS:
            delays.append(row.next_attempt_at - started)
            assert webhooks.deliver().total() == 0  # not due yet
            _due_now()
    assert row.status == "failed"
    # 1, 2, 4 ... minutes, at most 12 hours, spanning more than a day in all.
    assert [round(d / timedelta(minutes=1)) for d in delays[:4]] == [1, 2, 4, 8]
    assert max(delays) <= timedelta(hours=12, seconds=5)
    assert sum(delays, timedelta()) > timedelta(days=1)
    tries = db.session.scalar(
        select(func.count()).select_from(WebhookAttempt).where(WebhookAttempt.delivery_id == row.id)
    )
    assert tries == webhooks.MAX_ATTEMPTS
    log, _ = webhooks.deliveries(endpoint.id, status="failed")
    assert [d.event_id for d in log] == [event_id]
    assert len(log[0].log) == webhooks.MAX_ATTEMPTS and log[0].log[-1].status_code == 500

    receiver.otherwise = "ok"
    replayed = webhooks.replay(row.id)
    assert replayed.status == "pending" and replayed.attempts == 0
    with pytest.raises(ConflictError):
        webhooks.replay(row.id)  # still pending
    assert webhooks.deliver() == {"delivered": 1}
    sent = [r for r in receiver.received if r.event_id == event_id]
    assert len(sent) == webhooks.MAX_ATTEMPTS + 1
    assert len({r.json["id"] for r in sent}) == 1  # one id: the receiver deduplicates
    assert verify(secret, sent[-1])
    audited = db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.action.like("webhook.%"))
    ).all()
    assert sorted(audited) == ["webhook.create", "webhook.replay"]


def test_webhooks_a_timeout_and_a_refused_connection_are_failures(world, receiver):
    webhooks.create_endpoint("xizhaosi", receiver.url, ["entry.posted"])
    receiver.answers.append("slow")
    entry = ledger.earn(world.volunteers["self"], 2, actor="office:test", reason="巡查")
    assert webhooks.deliver() == {"retry": 1}
    (row,) = _deliveries(event_id=f"entry:{entry.id}")
    assert row.last_status is None and "timed out" in row.last_error

    answer = post("http://127.0.0.1:9/", b"{}", {}, timeout=0.5, allowed=("127.0.0.0/8",))
    assert not answer.ok and answer.status_code is None and "Connection" in answer.error


def test_webhooks_every_event_is_queued_on_every_write_path(world, receiver, backend, monkeypatch):
    webhooks.create_endpoint("longtan", receiver.url, list(webhooks.endpoints.WEBHOOK_EVENTS))
    me = world.volunteers["self"]
    started = datetime.now(UTC) - timedelta(hours=3)
    one_calls = []
    record_in_one_call = fused.record
    monkeypatch.setattr(
        fused, "record", lambda *a, **k: one_calls.append(1) or record_in_one_call(*a, **k)
    )
    # Auto-approved: on PostgreSQL without a key, the one-call path (points_record), which
    # runs no Python between its statements.
    quick = service.record_service(me, "patrol", started, 30, actor="office:test")
    assert quick.status == "approved"
    assert one_calls == ([1] if backend == "postgresql" else [])
    slow = service.record_service(me, "patrol", started - timedelta(hours=5), 300, actor="o")
    assert slow.status == "pending"
    service.approve(slow.id, "office:test")
    refused = service.record_service(me, "patrol", started - timedelta(hours=10), 300, actor="o")
    service.reject(refused.id, "office:test", "重复")
    held = redemptions.create_redemption(me, "haircut", actor="office:test")
    redemptions.fulfil_redemption(held.id, actor="provider:test")
    cancelled = redemptions.create_redemption(me, "haircut", actor="office:test")
    redemptions.cancel_redemption(cancelled.id, actor="office:test", reason="不要了")
    lapsing = redemptions.create_redemption(me, "haircut", actor="office:test")
    redemptions.expire_redemptions(datetime.now(UTC) + timedelta(days=30))
    ledger.add_service_minutes(me, 60, actor="office:test", reason="r")
    now = datetime.now(UTC)
    honour = honours.propose("xizhaosi", "好邻居", "hours", now - timedelta(days=1), now, 3)
    db.session.execute(update(Honour).where(Honour.id == honour.id).values(notice_until=now))
    db.session.commit()
    honours.finalise(honour.id)

    queued = {d.event_id: d.event for d in _deliveries()}
    expected = {
        f"record:{quick.id}:approved": "record.approved",
        f"record:{slow.id}:approved": "record.approved",
        f"record:{refused.id}:rejected": "record.rejected",
        f"redemption:{held.id}:held": "redemption.held",
        f"redemption:{held.id}:fulfilled": "redemption.fulfilled",
        f"redemption:{cancelled.id}:cancelled": "redemption.cancelled",
        f"redemption:{lapsing.id}:expired": "redemption.expired",
        f"honour:{honour.id}:finalised": "honour.finalised",
    }
    assert expected.items() <= queued.items()
    earns = db.session.execute(
        text("SELECT id FROM entries WHERE service_record_id = :r"), {"r": quick.id}
    ).scalars()
    assert all(queued[f"entry:{e}"] == "entry.posted" for e in earns)
    db.session.rollback()

    webhooks.deliver()
    by_id = {r.event_id: r.json for r in receiver.received}
    assert by_id[f"record:{quick.id}:approved"]["data"]["status"] == "approved"
    assert by_id[f"redemption:{held.id}:held"]["data"]["sku"] == "haircut"
    assert "voucher_code" not in by_id[f"redemption:{held.id}:held"]["data"]
    assert by_id[f"honour:{honour.id}:finalised"]["data"]["members"][0]["volunteer_id"] == me
    assert set(expected) <= set(by_id)
    report = verify_ledger()
    assert report.ok, report.problems


def test_webhooks_a_disabled_endpoint_hears_and_sends_nothing(world, receiver):
    endpoint, _ = webhooks.create_endpoint("longtan", receiver.url, ["entry.posted"])
    ledger.earn(world.volunteers["self"], 1, actor="office:test", reason="巡查")
    assert webhooks.disable_endpoint(endpoint.id).status == "disabled"
    with pytest.raises(ConflictError):
        webhooks.disable_endpoint(endpoint.id)
    queued = len(_deliveries())
    ledger.earn(world.volunteers["self"], 1, actor="office:test", reason="巡查")
    assert len(_deliveries()) == queued
    assert webhooks.deliver().total() == 0 and receiver.received == []


def test_webhooks_two_workers_send_each_delivery_once(app, world, receiver):
    webhooks.create_endpoint("longtan", receiver.url, ["entry.posted"])
    for points in range(1, 31):
        ledger.earn(world.volunteers["self"], points, actor="office:test", reason="巡查")
    queued = len(_deliveries())
    results = []

    def worker():
        with app.app_context():
            results.append(webhooks.deliver())
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = [r.event_id for r in receiver.received]
    assert len(sent) == len(set(sent)) == queued
    assert sum(r["delivered"] for r in results) == queued
    assert all(d.status == "delivered" and d.attempts == 1 for d in _deliveries())


def test_webhooks_claims_skip_rows_another_worker_holds(app, world, receiver, backend):
    if backend != "postgresql":
        pytest.skip("SQLite writers take turns: there is nothing to skip")
    webhooks.create_endpoint("longtan", receiver.url, ["entry.posted"])
    ledger.earn(world.volunteers["self"], 1, actor="office:test", reason="巡查")
    ids = [d.id for d in _deliveries()]
    with db.engine.connect() as other, other.begin():
        other.execute(
            text("SELECT 1 FROM webhook_deliveries WHERE id = :i FOR UPDATE"), {"i": ids[0]}
        )
        claimed = [c.id for c in webhooks.claim(100)]
    assert ids[0] not in claimed and set(claimed) == set(ids[1:])


def test_webhooks_refuse_urls_they_may_not_call(world, app):
    for url, field_message in [
        ("ftp://example.org/hook", "http"),
        ("javascript:alert(1)", "http"),
        ("http://user:pw@example.org/", "password"),
        ("http://127.0.0.1:8000/hook", "inner"),
        ("http://169.254.169.254/latest/meta-data", "inner"),
        ("http://[::1]/", "inner"),
        ("http://localhost/", "inner"),
        ("https://example.org/" + "a" * 2000, "2000"),
        ("https://example.org/积分", "Percent-encode"),
    ]:
        with pytest.raises(InvalidInputError) as refused:
            webhooks.create_endpoint("longtan", url, ["entry.posted"])
        assert field_message in refused.value.errors["url"][0], url
    with pytest.raises(InvalidInputError) as refused:
        webhooks.create_endpoint("longtan", "https://example.org/", ["entry.moved"])
    assert "events" in refused.value.errors
    # A name that resolves to an inner address is refused when sending, too.
    answer = post("http://localhost:9/", b"{}", {}, timeout=0.5, allowed=())
    assert answer.status_code is None and "not allowed" in answer.error
    # A URL http.client cannot send is a failed try, not a crash of the worker.
    answer = post("http://127.0.0.1:9/a b", b"{}", {}, timeout=0.5, allowed=("127.0.0.0/8",))
    assert answer.status_code is None and answer.error


def test_webhooks_deliver_command_says_what_it_did(world, receiver, runner):
    webhooks.create_endpoint("longtan", receiver.url, ["entry.posted"])
    ledger.earn(world.volunteers["self"], 1, actor="office:test", reason="巡查")
    result = runner.invoke(args=["webhooks", "deliver"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("delivered 1,")  # the world's earns came before it
    assert runner.invoke(args=["webhooks", "deliver"]).output.startswith("delivered 0,")


def test_webhooks_retry_schedule_spans_more_than_a_day():
    delays = [webhooks.retry_delay(n) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert delays[0] == timedelta(minutes=1) and delays[1] == timedelta(minutes=2)
    assert max(delays) == timedelta(hours=12)
    assert timedelta(days=1) < sum(delays, timedelta()) < timedelta(days=2)


def test_webhooks_deliver_forever_waits_only_when_nothing_was_due(world, receiver, monkeypatch):
    from points.webhooks import delivery

    webhooks.create_endpoint("longtan", receiver.url, ["entry.posted"])
    ledger.earn(world.volunteers["self"], 1, actor="office:test", reason="巡查")
    passes, sleeps = [], []
    one_pass = delivery.deliver
    monkeypatch.setattr(delivery, "deliver", lambda: passes.append(one_pass()) or passes[-1])
    monkeypatch.setattr(delivery.time, "sleep", sleeps.append)
    webhooks.deliver_forever(2.5, stop=lambda: len(passes) >= 3)
    assert [p["delivered"] for p in passes] == [1, 0, 0]
    assert sleeps == [2.5]  # after the second pass; the third ends the loop
    assert len(receiver.received) == 1
