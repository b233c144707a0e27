"""Webhook endpoints as offices manage them: register (the secret shown once), disable,
read, the delivery log, and replaying a delivery. Every change is audited."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select, update

from points import audit, ledger
from points.errors import ConflictError, InvalidInputError, NotFoundError
from points.extensions import db
from points.models import (
    WEBHOOK_DELIVERY_STATES,
    WEBHOOK_EVENTS,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookSubscription,
    utcnow,
)
from points.policy import district_info
from points.webhooks.sending import refused_address, secret_for

URL_MAX = 2000
PAGE_MAX = 200


@dataclass(frozen=True)
class EndpointView:
    id: int
    district: str
    district_name: str
    url: str
    events: list[str]
    status: str
    created_by: str
    created_at: datetime
    disabled_by: str | None
    disabled_at: datetime | None
    pending: int = 0
    failed: int = 0


@dataclass(frozen=True)
class AttemptView:
    attempted_at: datetime
    status_code: int | None
    error: str | None
    milliseconds: int


@dataclass(frozen=True)
class DeliveryView:
    id: int
    endpoint_id: int
    event: str
    event_id: str
    subject_id: int
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[AttemptView] = field(default_factory=list)


def allowed_networks() -> tuple[str, ...]:
    """The inner networks webhooks may call (`WEBHOOKS_ALLOWED_NETWORKS`): a list, or
    CIDRs separated by commas."""
    value = current_app.config.get("WEBHOOKS_ALLOWED_NETWORKS") or ()
    if isinstance(value, str):
        value = value.split(",")
    return tuple(network.strip() for network in value if network.strip())


def check_url(url) -> str:
    """Return the URL if a webhook may be sent to it. Raises InvalidInputError (on `url`)."""

    def refuse(why: str):
        return InvalidInputError(f"url: {why}", errors={"url": [why]})

    if not isinstance(url, str) or not url.strip():
        raise refuse("Required.")
    url = url.strip()
    if len(url) > URL_MAX:
        raise refuse(f"At most {URL_MAX} characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise refuse("Not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refuse("Use an http:// or https:// address.")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise refuse("No user, password or #fragment in the address: requests are signed.")
    if not url.isascii() or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise refuse("Percent-encode spaces and non-ASCII characters (punycode for names).")
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    inner = host == "localhost" or host.endswith(".localhost")
    if (literal is not None and refused_address(str(literal), allowed_networks())) or (
        inner and refused_address("127.0.0.1", allowed_networks())
    ):
        raise refuse("This server may not call an inner address (WEBHOOKS_ALLOWED_NETWORKS).")
    return url


def _events(events) -> list[str]:
    if (
        not isinstance(events, list | tuple)
        or not events
        or any(not isinstance(e, str) or e not in WEBHOOK_EVENTS for e in events)
    ):
        raise InvalidInputError(
            "events: choose from the known events",
            errors={"events": [f"One or more of: {', '.join(WEBHOOK_EVENTS)}."]},
        )
    return [e for e in WEBHOOK_EVENTS if e in set(events)]


def secret_of(endpoint_id: int) -> str:
    """The endpoint's signing secret (derived again from its salt). Raises NotFoundError."""
    return secret_for(current_app.config["SECRET_KEY"], _row(endpoint_id).salt)


def create_endpoint(district: int | str, url: str, events: list[str]) -> tuple[EndpointView, str]:
    """Register an endpoint at the node for the events; return it and its signing secret
    (shown this once). Raises InvalidInputError, NotFoundError."""
    node = district_info(district)
    url = check_url(url)
    chosen = _events(events)
    salt = secrets.token_hex(16)

    def work() -> int:
        row = WebhookEndpoint(
            district_id=node.id,
            district_path=node.path,
            url=url,
            salt=salt,
            status="active",
            created_by=audit.current_actor().actor,
            created_at=utcnow(),
        )
        db.session.add(row)
        db.session.flush()
        db.session.add_all(WebhookSubscription(endpoint_id=row.id, event=e) for e in chosen)
        audit.record(
            "webhook.create",
            district_id=node.id,
            target=("webhook", row.id),
            after={"url": url, "events": chosen},
        )
        return row.id

    endpoint_id = ledger.atomic(work)
    return get_endpoint(endpoint_id), secret_for(current_app.config["SECRET_KEY"], salt)


def disable_endpoint(endpoint_id: int) -> EndpointView:
    """Stop queueing and sending to the endpoint; its log stays. Raises NotFoundError,
    ConflictError (disabled already)."""

    def work() -> None:
        row = _row(endpoint_id, lock=True)
        if row.status != "active":
            raise ConflictError("the webhook is disabled already")
        row.status = "disabled"
        row.disabled_by = audit.current_actor().actor
        row.disabled_at = utcnow()
        audit.record(
            "webhook.disable",
            district_id=row.district_id,
            target=("webhook", row.id),
            before={"status": "active"},
            after={"status": "disabled"},
        )

    ledger.atomic(work)
    return get_endpoint(endpoint_id)


def _row(endpoint_id: int, *, lock: bool = False) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    row = db.session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFoundError(f"no webhook {endpoint_id}")
    return row


def _counts(endpoint_ids: list[int]) -> dict[tuple[int, str], int]:
    if not endpoint_ids:
        return {}
    rows = db.session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
        .where(
            WebhookDelivery.endpoint_id.in_(endpoint_ids),
            WebhookDelivery.status.in_(("pending", "failed")),
        )
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
    )
    return {(endpoint, status): n for endpoint, status, n in rows}


def _views(rows: list[WebhookEndpoint]) -> list[EndpointView]:
    ids = [row.id for row in rows]
    events: dict[int, list[str]] = {i: [] for i in ids}
    if ids:
        for endpoint, event in db.session.execute(
            select(WebhookSubscription.endpoint_id, WebhookSubscription.event).where(
                WebhookSubscription.endpoint_id.in_(ids)
            )
        ):
            events[endpoint].append(event)
    counts = _counts(ids)
    views = []
    for row in rows:
        node = district_info(row.district_id)
        views.append(
            EndpointView(
                row.id,
                node.code,
                node.name,
                row.url,
                [e for e in WEBHOOK_EVENTS if e in events[row.id]],
                row.status,
                row.created_by,
                row.created_at,
                row.disabled_by,
                row.disabled_at,
                counts.get((row.id, "pending"), 0),
                counts.get((row.id, "failed"), 0),
            )
        )
    return views


def get_endpoint(endpoint_id: int) -> EndpointView:
    """The endpoint with its events and how many deliveries wait or failed. Raises
    NotFoundError."""
    return _views([_row(endpoint_id)])[0]


def endpoint_path(endpoint_id: int) -> str:
    """The path of the endpoint's node, for checking reach. Raises NotFoundError."""
    return _row(endpoint_id).district_path


def endpoints_of_node(district: int | str) -> list[EndpointView]:
    """The endpoints registered at the node and below, active first, newest first."""
    node = district_info(district)
    rows = db.session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.district_path.startswith(node.path, autoescape=True))
        .order_by(WebhookEndpoint.status, WebhookEndpoint.id.desc())
        .limit(500)
    ).all()
    return _views(list(rows))


def _delivery_views(rows: list[WebhookDelivery]) -> list[DeliveryView]:
    logs: dict[int, list[AttemptView]] = {row.id: [] for row in rows}
    if rows:
        for attempt in db.session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(logs)))
            .order_by(WebhookAttempt.id)
        ):
            logs[attempt.delivery_id].append(
                AttemptView(
                    attempt.attempted_at, attempt.status_code, attempt.error, attempt.milliseconds
                )
            )
    return [
        DeliveryView(
            row.id,
            row.endpoint_id,
            row.event,
            row.event_id,
            row.subject_id,
            row.status,
            row.attempts,
            row.next_attempt_at if row.status == "pending" else None,
            row.last_status,
            row.last_error,
            row.created_at,
            row.delivered_at,
            logs[row.id],
        )
        for row in rows
    ]


def deliveries(
    endpoint_id: int, status: str | None = None, before: int | None = None, limit: int = 50
) -> tuple[list[DeliveryView], int | None]:
    """The endpoint's deliveries, newest first, each with its tries; and the id to page
    on from (None at the end). Raises NotFoundError, InvalidInputError."""
    _row(endpoint_id)
    if status is not None and status not in WEBHOOK_DELIVERY_STATES:
        raise InvalidInputError("unknown status", errors={"status": ["Unknown status."]})
    limit = max(1, min(limit, PAGE_MAX))
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    rows = list(db.session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return _delivery_views(rows), (rows[-1].id if more else None)


def delivery_endpoint(delivery_id: int) -> int:
    """The endpoint a delivery belongs to. Raises NotFoundError."""
    found = db.session.scalar(
        select(WebhookDelivery.endpoint_id).where(WebhookDelivery.id == delivery_id)
    )
    if found is None:
        raise NotFoundError(f"no delivery {delivery_id}")
    return found


def get_delivery(delivery_id: int) -> DeliveryView:
    """One delivery with its tries. Raises NotFoundError."""
    row = db.session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFoundError(f"no delivery {delivery_id}")
    return _delivery_views([row])[0]


def replay(delivery_id: int) -> DeliveryView:
    """Send a delivered or failed delivery again, with the same event id, on a fresh
    retry schedule. Raises NotFoundError, ConflictError (still pending, or the endpoint
    is disabled)."""

    def work() -> None:
        row = db.session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
        )
        if row is None:
            raise NotFoundError(f"no delivery {delivery_id}")
        endpoint = _row(row.endpoint_id)
        if endpoint.status != "active":
            raise ConflictError("the webhook is disabled: enable a new one instead")
        if row.status == "pending":
            raise ConflictError("the delivery is still being tried")
        before = row.status
        db.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id)
            .values(status="pending", attempts=0, next_attempt_at=utcnow(), delivered_at=None)
        )
        audit.record(
            "webhook.replay",
            district_id=endpoint.district_id,
            target=("webhook_delivery", row.id),
            before={"status": before},
            after={"status": "pending", "event_id": row.event_id},
        )

    ledger.atomic(work)
    db.session.expire_all()
    return get_delivery(delivery_id)
