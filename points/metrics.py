"""Prometheus metrics at /metrics, summed over every gunicorn worker (multiprocess mode).

The metrics are process-wide, as Prometheus counts a process: under gunicorn each worker
writes its values to files in PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py sets one up and
drops a dead worker's live gauges), and a scrape of any worker reads them all. Without
that variable (one process: flask run, tests) they live in this process's memory.

/metrics is served only when configured: METRICS_TOKEN (a bearer token the scraper
sends) and/or METRICS_ALLOW (addresses or networks, "127.0.0.1,10.0.0.0/8"); when both
are set both must match. With neither it is a 404.
"""

from __future__ import annotations

import hmac
import ipaddress
import os

from flask import Blueprint, Flask, Response, abort, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.engine import Engine

from points.errors import AuthenticationError
from points.signals import entry_committed, pin_refused, rate_limited, redemption_changed

# Our own registry, not prometheus_client's global one: nothing else registers here.
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "points_http_requests",
    "HTTP requests answered, by route (the URL rule, not the path), method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "points_http_request_duration_seconds",
    "Time from a request's arrival in the app to its answer, by route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
ENTRIES = Counter(
    "points_ledger_entries",
    "Ledger entries committed, by kind (earn, redeem, transfer, expire, reversal, ...).",
    ["kind"],
    registry=REGISTRY,
)
REDEMPTIONS = Counter(
    "points_redemptions",
    "Redemptions that reached a status: held, fulfilled, cancelled, expired.",
    ["status"],
    registry=REGISTRY,
)
PINS_REFUSED = Counter(
    "points_pin_failures",
    "Card and PIN attempts refused at kiosks: wrong_pin, locked, unknown_card.",
    ["reason"],
    registry=REGISTRY,
)
REPLAYS = Counter(
    "points_idempotent_replays",
    "Writes answered from an earlier request with the same Idempotency-Key, by route.",
    ["route"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "points_rate_limited",
    "Requests refused for their token's rate limit (429), by role.",
    ["role"],
    registry=REGISTRY,
)
POOL_IN_USE = Gauge(
    "points_db_connections_in_use",
    "Database connections checked out of the pool now, summed over live workers.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
POOL_OPEN = Gauge(
    "points_db_connections_open",
    "Database connections open (in use or idle in the pool), summed over live workers.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

UNMATCHED = "<unmatched>"


def observe_request(route: str | None, method: str, status: str, seconds: float) -> None:
    """Count one answered request and its latency."""
    route = route or UNMATCHED
    REQUESTS.labels(route, method, status).inc()
    LATENCY.labels(route, method).observe(seconds)


def observe_replay(route: str | None) -> None:
    REPLAYS.labels(route or UNMATCHED).inc()


# Receivers are module functions connected once, strongly: the core's signals are sent
# after commit, and a metric must never fail what was already done.
def _entry(kind: str) -> None:
    ENTRIES.labels(kind).inc()


def _redemption(status: str, count: int = 1) -> None:
    REDEMPTIONS.labels(status).inc(count)


def _pin(reason: str) -> None:
    PINS_REFUSED.labels(reason).inc()


def _rate_limited(role: str) -> None:
    RATE_LIMITED.labels(role).inc()


entry_committed.connect(_entry, weak=False)
redemption_changed.connect(_redemption, weak=False)
pin_refused.connect(_pin, weak=False)
rate_limited.connect(_rate_limited, weak=False)


def watch_pool(engine: Engine) -> None:
    """Keep the pool gauges for `engine`: connections open, and checked out."""
    if engine.pool.__class__.__name__ == "NullPool" or getattr(engine, "_points_watched", False):
        return
    engine._points_watched = True
    event.listen(engine, "connect", lambda *_: POOL_OPEN.inc())
    event.listen(engine, "close", lambda *_: POOL_OPEN.dec())
    event.listen(engine, "close_detached", lambda *_: POOL_OPEN.dec())
    event.listen(engine, "checkout", lambda *_: POOL_IN_USE.inc())
    event.listen(engine, "checkin", lambda *_: POOL_IN_USE.dec())


def multiprocess_mode() -> bool:
    """True when the values are kept in files for every worker (PROMETHEUS_MULTIPROC_DIR)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition() -> bytes:
    """Return every metric in Prometheus' text format: of all workers in multiprocess mode."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def _networks(value: str | None) -> list:
    if not value:
        return []
    return [ipaddress.ip_network(part.strip(), strict=False) for part in str(value).split(",")]


def _check_access() -> None:
    """Abort unless the scraper presents METRICS_TOKEN and comes from METRICS_ALLOW (those
    configured); 404 when neither is configured or the address is not allowed."""
    token = current_app.config.get("METRICS_TOKEN")
    networks = current_app.extensions["points.metrics_networks"]
    if not token and not networks:
        abort(404)
    if networks:
        try:
            address = ipaddress.ip_address(request.remote_addr or "")
        except ValueError:
            abort(404)
        if not any(address in network for network in networks):
            abort(404)
    if token:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            secret.strip().encode(), str(token).encode()
        ):
            raise AuthenticationError("send Authorization: Bearer <metrics token>")


def _blueprint() -> Blueprint:
    page = Blueprint("metrics", __name__)

    @page.get("/metrics")
    def metrics() -> Response:
        """Every metric, for Prometheus."""
        _check_access()
        return Response(exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)

    return page


def register_metrics(app: Flask) -> None:
    """Serve /metrics (if configured) and keep the database pool's gauges."""
    app.config.setdefault("METRICS_TOKEN", None)
    app.config.setdefault("METRICS_ALLOW", None)
    # Parsed once: a bad network is an error at start-up, not at the first scrape.
    app.extensions["points.metrics_networks"] = _networks(app.config["METRICS_ALLOW"])
    app.register_blueprint(_blueprint())
    from points.extensions import db

    with app.app_context():
        watch_pool(db.engine)
