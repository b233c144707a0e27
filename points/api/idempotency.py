"""Idempotency-Key on writes that move points: a retry replays the first answer."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request
from sqlalchemy import select

from points import ledger
from points.api.common import json_response
from points.auth import Principal
from points.errors import AuthenticationError, IdempotencyConflictError, InvalidInputError
from points.extensions import db
from points.models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")

PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "description": (
        "A key the client chooses per operation (a UUID, say). The same key with the same "
        f"body replays the first response, with `{REPLAYED}: true`, and writes nothing; "
        "with another body it is a 409. Required for kiosks."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"^[!-~]+$"},
}
REPLAY_HEADER_DOC = {
    REPLAYED: {
        "description": "`true` when this is the stored answer to an earlier request.",
        # OpenAPI 3.0 requires a schema (or content) in every header object.
        "schema": {"type": "string", "enum": ["true"]},
    }
}


def keyed_secret(value: str) -> str:
    """Return an HMAC of a secret (a PIN) for a request fingerprint: never the bare value.

    A plain hash of a six-digit PIN would be reversed in a moment.
    """
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _key(principal: Principal) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        if principal.at_kiosk:
            raise InvalidInputError(
                f"kiosks must send an {HEADER} header with every write",
                errors={HEADER: ["Required for kiosks."]},
            )
        return None
    if not KEY_PATTERN.match(key):
        raise InvalidInputError(
            f"invalid {HEADER}", errors={HEADER: ["1 to 200 visible ASCII characters."]}
        )
    return key


def _scope(principal: Principal) -> str:
    return f"api:{principal.owner_id}"


def _fingerprint(principal: Principal, operation: str, arguments: dict[str, Any]) -> str:
    return ledger.request_hash(
        operation, {"arguments": arguments, "volunteer": principal.volunteer_id}
    )


def _stored(principal: Principal, key: str, fingerprint: str) -> dict | None:
    row = db.session.execute(
        select(IdempotencyKey.request_hash, IdempotencyKey.result).where(
            IdempotencyKey.scope == _scope(principal), IdempotencyKey.key == key
        )
    ).one_or_none()
    if row is None or row.result is None:
        return None
    if row.request_hash != fingerprint:
        raise IdempotencyConflictError(
            f"{HEADER} {key!r} was already used with a different request"
        )
    return row.result


def _replay(result: dict) -> Response:
    return json_response(result["body"], result["status"], {REPLAYED: "true"})


def replayed(principal: Principal, operation: str, arguments: dict[str, Any]) -> Response | None:
    """Return the stored answer if this request repeats an earlier one, without writing.

    Lets a caller skip costly checks (a PIN) on a retry. Raises IdempotencyConflictError,
    InvalidInputError (bad or missing key), AuthenticationError (an ended session that
    is not replaying).
    """
    key = _key(principal)
    stored = None
    if key is not None:
        stored = _stored(principal, key, _fingerprint(principal, operation, arguments))
    if stored is None:
        if principal.replay_only:
            raise AuthenticationError("this kiosk session has ended")
        return None
    return _replay(stored)


def idempotent(
    principal: Principal,
    operation: str,
    arguments: dict[str, Any],
    work: Callable[[], dict],
    *,
    status: int = 201,
    one_write: bool = False,
) -> Response:
    """Run `work` once per Idempotency-Key and return its JSON answer, stored for retries.

    `work` returns the serialised body; it runs in one unit of work with the key's claim,
    so either both commit or neither. Without a key it runs in a unit of its own, unless
    `one_write` says it makes a single call that is all or nothing by itself (a service
    record: on PostgreSQL it then writes in one call, outside any unit). Raises what
    `replayed` raises, and what `work` raises.
    """
    early = replayed(principal, operation, arguments)
    if early is not None:
        return early
    key = _key(principal)
    if key is None:
        return json_response(work() if one_write else ledger.atomic(work), status)
    scope = _scope(principal)
    fingerprint = _fingerprint(principal, operation, arguments)

    def unit() -> tuple[dict, bool]:
        stored = ledger.claim_idempotency_key(scope, key, fingerprint)
        if stored is not None:
            return stored, True
        result = {"status": status, "body": work()}
        ledger.record_result(scope, key, result)
        return result, False

    result, was_replayed = ledger.atomic(unit)
    if was_replayed:
        return _replay(result)
    return json_response(result["body"], result["status"])
