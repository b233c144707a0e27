"""Errors of the API as RFC 9457 problem+json, including those flask-smorest raises."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, json, request
from werkzeug.exceptions import HTTPException

from points.errors import (
    PROBLEM_BASE,
    AuthenticationError,
    CardLockedError,
    PluginError,
    PointsError,
    RateLimitedError,
    RefusedError,
    problem,
    problem_from,
)
from points.extensions import db

PROBLEM_JSON = "application/problem+json"


def http_problem(error: HTTPException) -> Response:
    """Return the problem+json form of a werkzeug HTTP error (routing, flask-smorest)."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = _flatten(data.get("errors") or data.get("messages"))
    if status == 422:
        response = problem(
            422,
            "Invalid input",
            "Some fields are invalid; see errors.",
            type=PROBLEM_BASE + "invalid-input",
            errors=errors,
        )
    elif status == 400 and errors:
        response = problem(
            400, "Bad request", "The body is not valid JSON.", type=PROBLEM_BASE + "bad-request"
        )
    else:
        response = problem(status, error.name, error.description)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    for name, value in (data.get("headers") or {}).items():
        response.headers[name] = value
    return response


def _flatten(messages: Any) -> dict[str, Any] | None:
    """Turn webargs' {location: {field: [...]}} into {field: [...]}."""
    if not messages:
        return None
    if not isinstance(messages, dict):
        return {"body": messages}
    errors: dict[str, Any] = {}
    for location, fields in messages.items():
        if isinstance(fields, dict):
            for name, value in fields.items():
                errors["body" if name == "_schema" else name] = value
        else:
            errors["body" if location in ("json", "_schema") else location] = fields
    return errors


def _with_headers(error: PointsError) -> Response:
    db.session.rollback()
    response = problem_from(error)
    if isinstance(error, AuthenticationError):
        response.headers["WWW-Authenticate"] = 'Bearer realm="steward-points"'
    if isinstance(error, RateLimitedError | CardLockedError):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _refused(error: RefusedError) -> Response:
    """A plugin refused: the problem also lists each refusal, zh-CN and en (`reasons`)."""
    db.session.rollback()
    response = problem_from(error)
    body = json.loads(response.get_data())
    body["reasons"] = [
        {"plugin": r.get("plugin"), "zh": r.get("zh"), "en": r.get("en")} for r in error.reasons
    ]
    response.set_data(json.dumps(body, ensure_ascii=False))
    return response


def _plugin_failed(error: PluginError) -> Response:
    """A plugin bug: logged with its trace; the client learns nothing internal."""
    db.session.rollback()
    current_app.logger.error(
        "plugin %r failed in %s on %s %s",
        error.plugin,
        error.hook,
        request.method,
        request.path,
        exc_info=error.__cause__ or error,
    )
    return problem(
        500,
        error.title,
        "A plugin failed; nothing was written. The error was logged.",
        type=error.type,
    )


def register_problem_handlers(app: Flask) -> None:
    """Answer errors that carry more than problem_from gives: headers (401, 423, 429),
    a refusal's reasons, a plugin failure without its internals."""
    for cls in (AuthenticationError, CardLockedError, RateLimitedError):
        app.register_error_handler(cls, _with_headers)
    app.register_error_handler(RefusedError, _refused)
    app.register_error_handler(PluginError, _plugin_failed)
