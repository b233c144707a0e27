"""Webhooks out (docs/webhooks.md): endpoints registered at a node hear its events.

`endpoints` registers, disables and reads endpoints and their delivery log, and replays
deliveries; `delivery` is the worker that sends what the database triggers queued
(migration 0017); `sending` signs a body and posts it only to addresses it may reach.
"""

from points.webhooks.delivery import (
    MAX_ATTEMPTS,
    claim,
    deliver,
    deliver_forever,
    payload,
    record,
    retry_delay,
    send,
)
from points.webhooks.endpoints import (
    AttemptView,
    DeliveryView,
    EndpointView,
    check_url,
    create_endpoint,
    deliveries,
    delivery_endpoint,
    disable_endpoint,
    endpoint_path,
    endpoints_of_node,
    get_delivery,
    get_endpoint,
    replay,
    secret_of,
)
from points.webhooks.sending import secret_for, signature

__all__ = [
    "MAX_ATTEMPTS",
    "AttemptView",
    "DeliveryView",
    "EndpointView",
    "check_url",
    "claim",
    "create_endpoint",
    "deliver",
    "deliver_forever",
    "deliveries",
    "delivery_endpoint",
    "disable_endpoint",
    "endpoint_path",
    "endpoints_of_node",
    "get_delivery",
    "get_endpoint",
    "payload",
    "record",
    "replay",
    "retry_delay",
    "secret_for",
    "secret_of",
    "send",
    "signature",
]
