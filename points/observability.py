"""What an operator sees: request ids, one JSON log line per request, metrics, rate limits.

Every request gets an id: the caller's `X-Request-Id` when it is sane (1 to 128 of
`A-Z a-z 0-9 . _ : -`), else a new one. It is answered in the `X-Request-Id` header and
in every problem+json body (`request_id`), and logged with the request.

The log line (logger `points.requests`, JSON, to stderr unless REQUEST_LOG is false)
names the route by its URL rule, never the raw path, and carries no header but the
request id, no query and no body: so no PIN, phone number, token or card code.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, request

from points.errors import REQUEST_ID_KEY
from points.metrics import observe_replay, observe_request, register_metrics
from points.ratelimit import register_rate_limits

REQUEST_ID_HEADER = "X-Request-Id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REPLAYED_HEADER = "idempotent-replayed"
ROUTE_KEY = "points.route"
CONVERTER_ARGUMENTS = re.compile(r"<(\w+)\([^)]*\):")

log = logging.getLogger("points.requests")


class _Stderr(logging.StreamHandler):
    """A handler writing to whatever sys.stderr is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


def request_id_for(environ: dict) -> str:
    """Return the request's id, taking a sane X-Request-Id or making one (kept in environ)."""
    found = environ.get(REQUEST_ID_KEY)
    if found is None:
        given = environ.get("HTTP_X_REQUEST_ID", "")
        found = given if SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        environ[REQUEST_ID_KEY] = found
    return found


class RequestObserver:
    """WSGI middleware around the Flask app: request id, metrics and the log line.

    Outside Flask's handlers, so it sees every answer, errors included, and the whole
    time the app took.
    """

    def __init__(self, wsgi_app, log_requests: bool):
        self.wsgi_app = wsgi_app
        self.log_requests = log_requests

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        request_id = request_id_for(environ)
        answer = {"status": "500", "replayed": False}

        def start(status: str, headers: list, exc_info=None):
            answer["status"] = status[:3]
            answer["replayed"] = any(
                name.lower() == REPLAYED_HEADER and value == "true" for name, value in headers
            )
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, start)
        finally:
            self._record(environ, request_id, answer, time.perf_counter() - started)

    def _record(self, environ, request_id: str, answer: dict, seconds: float) -> None:
        route = environ.get(ROUTE_KEY)
        method = environ.get("REQUEST_METHOD", "")
        observe_request(route, method, answer["status"], seconds)
        if answer["replayed"]:
            observe_replay(route)
        if not self.log_requests:
            return
        principal = environ.get("points.principal")
        fields = {
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": int(answer["status"]),
            "latency_ms": round(seconds * 1000, 2),
            "token_id": getattr(principal, "token_id", None),
            "role": getattr(principal, "role", None),
            "district_id": getattr(principal, "district_id", None),
        }
        if answer["replayed"]:
            fields["replayed"] = True
        log.info("request", extra={"fields": fields})


def _configure_request_log() -> None:
    """Send `points.requests` to stderr as JSON, once per process (apps are made often)."""
    if not any(isinstance(handler, _Stderr) for handler in log.handlers):
        handler = _Stderr()
        handler.setFormatter(JsonFormatter())
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def register_observability(app: Flask) -> None:
    """Request ids, JSON request logs, metrics at /metrics, and shared rate limits."""
    app.config.setdefault("REQUEST_LOG", True)
    log_requests = bool(app.config["REQUEST_LOG"])
    if log_requests:
        _configure_request_log()
    register_metrics(app)
    register_rate_limits(app)
    app.teardown_request(_note_route)
    app.wsgi_app = RequestObserver(app.wsgi_app, log_requests)


def _note_route(_error: BaseException | None) -> None:
    # Flask drops the request object from the environ when the request ends; its URL
    # rule is kept for the middleware (None when no route matched).
    rule = request.url_rule
    request.environ[ROUTE_KEY] = route_name(rule.rule) if rule is not None else None


@functools.cache
def route_name(rule: str) -> str:
    """Return a URL rule without its converters' arguments: <int:volunteer_id>."""
    return CONVERTER_ARGUMENTS.sub(r"<\1:", rule)
