"""Schemas, fields and helpers shared by the API's resources."""

from __future__ import annotations

import base64
import binascii
import json as jsonlib
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import Response, json
from marshmallow import Schema, ValidationError, fields, validate

from points.auth import require
from points.errors import InvalidInputError
from points.models import MAX_POINTS
from points.volunteers import mask_name, mask_phone  # noqa: F401 (re-exported)

# Path converters: ids within the columns' range, so a huge id is a 404, not an overflow.
VOLUNTEER_ID = "int(min=1, max=2147483647)"
ENTRY_ID = "int(min=1, max=9223372036854775807)"
ROW_ID = "int(min=1, max=2147483647)"

MAX_INT_ID = 2**31 - 1


def Id(**kwargs: Any) -> fields.Integer:
    """An integer id field: strict (no strings), 1 to 2^31 - 1."""
    return fields.Integer(strict=True, validate=validate.Range(1, MAX_INT_ID), **kwargs)


def Points(**kwargs: Any) -> fields.Integer:
    """A whole number of points from 1 to 2^53."""
    return fields.Integer(strict=True, validate=validate.Range(1, MAX_POINTS), **kwargs)


# Times the database can store on every backend, whatever their UTC offset.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def check_storable(moment: datetime) -> datetime:
    """Return `moment` if it lies in 1900..9998 once in UTC; raise ValidationError."""
    try:
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise ValidationError("Must be between the years 1900 and 9998.")
    return moment


def in_utc(value: datetime) -> datetime:
    """Return `value` in UTC; a naive time is taken as UTC already (as stored)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UtcDateTime(fields.DateTime):
    """A time answered in UTC (`+00:00`), whatever offset it was given or read in."""

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return super()._serialize(in_utc(value), attr, obj, **kwargs)


class Moment(fields.AwareDateTime):
    """A time with a UTC offset that the database can store; answered in UTC."""

    def _deserialize(self, value, attr, data, **kwargs):
        return check_storable(super()._deserialize(value, attr, data, **kwargs))

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return super()._serialize(in_utc(value), attr, obj, **kwargs)


class ProblemSchema(Schema):
    """An RFC 9457 problem: what went wrong, and per field where input was invalid."""

    type = fields.String(required=True, metadata={"description": "A URI naming the problem."})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Messages per invalid field (a list, or nested per key)."},
    )
    request_id = fields.String(
        metadata={"description": "The request's id, as in its X-Request-Id response header."}
    )
    reasons = fields.List(
        fields.Dict(),
        metadata={"description": "A policy's refusal: each refusing plugin, zh and en."},
    )


def decode_cursor(cursor: str) -> int:
    """Return the row id a `next_cursor` names. Raises InvalidInputError."""
    try:
        value = jsonlib.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63:
            return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    raise InvalidInputError("invalid cursor", errors={"cursor": ["Use next_cursor as given."]})


def encode_cursor(row_id: int) -> str:
    """Return an opaque `next_cursor` for paging on after the row `row_id`."""
    return base64.urlsafe_b64encode(jsonlib.dumps(row_id).encode()).decode().rstrip("=")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return a JSON response with an already serialised body."""
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        mimetype="application/json",
        headers=headers,
    )


def allow(
    *roles: str, replay: bool = False, admin: bool = True, who: str | None = None
) -> Callable:
    """Let only these roles (and admin) in, before the body is parsed: 401 comes before 422.

    The view reads the principal with `current_principal()`. `who` describes the roles in
    the OpenAPI document when the role names alone do not say it (self, in scope).
    """

    def decorator(func: Callable) -> Callable:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            require(*roles, replay=replay, admin=admin)
            return func(*args, **kwargs)

        wrapper._apidoc = deepcopy(getattr(func, "_apidoc", {}))
        manual = wrapper._apidoc.setdefault("manual_doc", {})
        everyone = ("admin", *roles) if admin else roles
        manual["description"] = "Who: " + (who or ", ".join(everyone)) + "."
        return wrapper

    return decorator


class DecideSchema(Schema):
    """Many items decided at once (points.queue): each in its own unit of work."""

    ids = fields.List(
        Id(),
        required=True,
        validate=validate.Length(1, 200),
        metadata={"description": "The items, at most 200."},
    )
    decision = fields.String(required=True)
    reason = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 500),
        metadata={"description": "Required to reject."},
    )


class OutcomeSchema(Schema):
    id = fields.Integer(required=True)
    ok = fields.Boolean(required=True)
    status = fields.String(
        required=True, allow_none=True, metadata={"description": "The item's status after."}
    )
    points = fields.Integer(required=True, allow_none=True)
    problem = fields.Integer(
        required=True,
        allow_none=True,
        metadata={"description": "When not ok: the HTTP status one item alone would get."},
    )
    detail = fields.String(required=True, allow_none=True)


class OutcomesSchema(Schema):
    results = fields.List(fields.Nested(OutcomeSchema), required=True)
