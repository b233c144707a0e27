"""The webhook worker: claim the deliveries that are due, build each payload from its
subject as it is now, sign it, send it, and record the try (retry, delivered, failed)."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import insert, select, update

from points import ledger
from points.extensions import db
from points.models import (
    Account,
    Entry,
    Honour,
    HonourMember,
    Posting,
    Provider,
    Redemption,
    ServiceRecord,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)
from points.policy import district_info
from points.webhooks.endpoints import allowed_networks
from points.webhooks.sending import Answer, post, secret_for, signature

# Tries of one delivery before it is `failed`: the delays between them double from a
# minute and stop growing at 12 hours, so the last try comes about 29 hours after the
# first (retry_delay), more than a day for a receiver to come back.
MAX_ATTEMPTS = 12
FIRST_DELAY = timedelta(minutes=1)
LONGEST_DELAY = timedelta(hours=12)
# Deliveries claimed by one transaction of the worker.
BATCH = 10


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed try before the next."""
    return min(FIRST_DELAY * 2 ** (attempts - 1), LONGEST_DELAY)


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds until its lease ends: who to send what to."""

    id: int
    endpoint_id: int
    url: str
    salt: str
    event: str
    event_id: str
    subject_id: int
    created_at: datetime
    attempts: int  # counting this try


def _timeout() -> float:
    return float(current_app.config.get("WEBHOOKS_TIMEOUT_SECONDS", 10))


def _lease() -> timedelta:
    # Longer than a batch takes to send, so no other worker takes a claim back in time.
    return timedelta(seconds=60 + 2 * BATCH * _timeout())


def claim(limit: int = BATCH) -> list[Claim]:
    """Claim up to `limit` due deliveries of active endpoints, oldest due first: each
    try is counted and the delivery is leased to this worker. On PostgreSQL claimed rows
    are skipped by other workers (FOR UPDATE SKIP LOCKED); SQLite writers take turns."""

    def work() -> list[Claim]:
        now = utcnow()
        query = (
            select(
                WebhookDelivery.id,
                WebhookDelivery.endpoint_id,
                WebhookEndpoint.url,
                WebhookEndpoint.salt,
                WebhookDelivery.event,
                WebhookDelivery.event_id,
                WebhookDelivery.subject_id,
                WebhookDelivery.created_at,
                WebhookDelivery.attempts,
            )
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(
                WebhookDelivery.status == "pending",
                WebhookDelivery.next_attempt_at <= now,
                WebhookEndpoint.status == "active",
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=WebhookDelivery)
        rows = db.session.execute(query).all()
        if rows:
            db.session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_([row.id for row in rows]))
                .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=now + _lease())
            )
        return [Claim(*row[:-1], row.attempts + 1) for row in rows]

    return ledger.atomic(work)


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _entry(subject_id: int) -> dict | None:
    entry = db.session.get(Entry, subject_id)
    if entry is None:
        return None
    postings = db.session.execute(
        select(Posting.amount, Account.kind, Account.volunteer_id, Provider.code)
        .join(Account, Account.id == Posting.account_id)
        .outerjoin(Provider, Provider.id == Account.provider_id)
        .where(Posting.entry_id == entry.id)
        .order_by(Posting.id)
    )
    return {
        "id": entry.id,
        "kind": entry.kind,
        "district": district_info(entry.district_id).code,
        "effective_at": _time(entry.effective_at),
        "created_at": _time(entry.created_at),
        "reason": entry.reason,
        "plugin": entry.plugin,
        "rule": entry.rule,
        "service_record_id": entry.service_record_id,
        "reverses_id": entry.reverses_id,
        "postings": [
            {"account": kind, "volunteer_id": volunteer, "provider": provider, "points": amount}
            for amount, kind, volunteer, provider in postings
        ],
    }


def _record(subject_id: int) -> dict | None:
    record = db.session.get(ServiceRecord, subject_id)
    if record is None:
        return None
    return {
        "id": record.id,
        "volunteer_id": record.volunteer_id,
        "district": district_info(record.district_id).code,
        "kind": record.kind,
        "started_at": _time(record.started_at),
        "minutes": record.minutes,
        "status": record.status,
        "points": record.points,
        "decided_at": _time(record.decided_at),
        "decision_reason": record.decision_reason,
    }


def _redemption(subject_id: int) -> dict | None:
    found = db.session.execute(
        select(Redemption, Provider.code)
        .join(Provider, Provider.id == Redemption.provider_id)
        .where(Redemption.id == subject_id)
    ).one_or_none()
    if found is None:
        return None
    redemption, provider = found
    # Never the voucher code: whoever holds it can have the service.
    return {
        "id": redemption.id,
        "volunteer_id": redemption.volunteer_id,
        "district": district_info(redemption.district_id).code,
        "sku": redemption.sku,
        "provider": provider,
        "points": redemption.points,
        "status": redemption.status,
        "created_at": _time(redemption.created_at),
        "resolved_at": _time(redemption.resolved_at),
        "entry_id": redemption.entry_id,
    }


def _honour(subject_id: int) -> dict | None:
    honour = db.session.get(Honour, subject_id)
    if honour is None:
        return None
    members = db.session.execute(
        select(HonourMember.place, HonourMember.volunteer_id, HonourMember.value)
        .where(HonourMember.honour_id == honour.id)
        .order_by(HonourMember.place, HonourMember.volunteer_id)
    )
    return {
        "id": honour.id,
        "district": district_info(honour.district_id).code,
        "title": honour.title,
        "ranked_by": honour.ranked_by,
        "period_start": _time(honour.period_start),
        "period_end": _time(honour.period_end),
        "status": honour.status,
        "decided_at": _time(honour.decided_at),
        "members": [
            {"place": place, "volunteer_id": volunteer, "value": value}
            for place, volunteer, value in members
        ],
    }


SUBJECTS = {"entry": _entry, "record": _record, "redemption": _redemption, "honour": _honour}


def payload(event: str, event_id: str, subject_id: int, created_at: datetime) -> dict:
    """The JSON a receiver gets: the event, its stable id, when it happened, and its
    subject (`data`) as it stands when sent (a redemption held then may be fulfilled
    by now: `event` says what happened, `data.status` what is so now)."""
    return {
        "id": event_id,
        "event": event,
        "created_at": _time(created_at),
        "data": SUBJECTS[event.split(".", 1)[0]](subject_id),
    }


def body_of(claimed: Claim) -> bytes:
    """The request body of a claimed delivery, built from its subject now."""
    built = payload(claimed.event, claimed.event_id, claimed.subject_id, claimed.created_at)
    return json.dumps(built, ensure_ascii=False, separators=(",", ":")).encode()


def send(claimed: Claim) -> Answer:
    """Sign and POST one claimed delivery; the database is not held meanwhile."""
    body = body_of(claimed)
    db.session.rollback()  # no transaction stays open across the network
    secret = secret_for(current_app.config["SECRET_KEY"], claimed.salt)
    headers = {
        "Points-Event": claimed.event,
        "Points-Event-Id": claimed.event_id,
        "Points-Signature": signature(secret, body, int(time.time())),
    }
    return post(claimed.url, body, headers, timeout=_timeout(), allowed=allowed_networks())


def record(claimed: Claim, answer: Answer) -> str:
    """Write the try in the log and what follows from it: `delivered`, `retry` (due
    again after retry_delay) or `failed` (the last try); `lost` when the claim is no
    longer this worker's (replayed meanwhile, or its lease ended and it was claimed
    again): the try is logged and the row left alone."""

    def work() -> str:
        now = utcnow()
        db.session.execute(
            insert(WebhookAttempt).values(
                delivery_id=claimed.id,
                attempted_at=now,
                status_code=answer.status_code,
                error=answer.error,
                milliseconds=answer.milliseconds,
            )
        )
        values = {"last_status": answer.status_code, "last_error": answer.error}
        if answer.ok:
            outcome = "delivered"
            values.update(status="delivered", delivered_at=now)
        elif claimed.attempts >= MAX_ATTEMPTS:
            outcome = "failed"
            values.update(status="failed")
        else:
            outcome = "retry"
            values.update(next_attempt_at=now + retry_delay(claimed.attempts))
        changed = db.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == claimed.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == claimed.attempts,
            )
            .values(**values)
        ).rowcount
        return outcome if changed else "lost"

    return ledger.atomic(work)


def deliver(limit: int | None = None) -> Counter:
    """One pass: send every delivery that is due (at most `limit`), a batch at a time;
    return how many were delivered, will be retried, failed, or were lost."""
    outcomes: Counter = Counter()
    while limit is None or outcomes.total() < limit:
        batch = BATCH if limit is None else min(BATCH, limit - outcomes.total())
        claims = claim(batch)
        for claimed in claims:
            outcomes[record(claimed, send(claimed))] += 1
        if len(claims) < batch:
            break
    return outcomes


def deliver_forever(interval: float, stop=lambda: False) -> None:
    """Deliver what is due, then wait `interval` seconds when nothing was, until `stop()`."""
    while not stop():
        if not deliver() and not stop():
            time.sleep(interval)
