"""Exception classes of Steward Points and their RFC 9457 problem+json form."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response, has_request_context, json, request

PROBLEM_BASE = "https://steward-points.example/problems/"

# Where a request's id is kept in its WSGI environ (points.observability sets it).
REQUEST_ID_KEY = "points.request_id"


class PointsError(Exception):
    """Raised when a request cannot be carried out; the base of every error we report."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(self, detail: str, *, errors: dict[str, Any] | None = None):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class InvalidInputError(PointsError):
    """Raised when input is malformed; `errors` maps each field to its messages."""

    status = 422
    title = "Invalid input"
    slug = "invalid-input"


class InvalidAmountError(InvalidInputError):
    """Raised when points are not a whole number from 1 to 2^53."""

    title = "Invalid amount of points"
    slug = "invalid-amount"


class NotFoundError(PointsError):
    """Raised when a named thing (district, volunteer, account, entry, hold) does not exist."""

    status = 404
    title = "Not found"
    slug = "not-found"


class ConflictError(PointsError):
    """Raised when a request is valid but the current state refuses it."""

    status = 409
    title = "Conflict"
    slug = "conflict"


class PreconditionFailedError(PointsError):
    """Raised when If-Match names a version that is no longer the newest (someone else
    changed it since it was read)."""

    status = 412
    title = "Changed since read"
    slug = "precondition-failed"


class AccountClosedError(ConflictError):
    """Raised when points would move in or out of a closed account or inactive volunteer."""

    title = "Account closed"
    slug = "account-closed"


class CrossDistrictError(InvalidInputError):
    """Raised when one entry would post to accounts of different district nodes."""

    title = "Accounts in different districts"
    slug = "cross-district"


class InsufficientPointsError(ConflictError):
    """Raised when a debit or hold exceeds the points available (balance minus holds)."""

    title = "Not enough points"
    slug = "insufficient-points"


class HoldStateError(ConflictError):
    """Raised when a hold is posted, voided or timed out after it was already resolved."""

    title = "Hold already resolved"
    slug = "hold-state"


class HoldExpiredError(HoldStateError):
    """Raised when a hold is posted after its expiry time."""

    title = "Hold expired"
    slug = "hold-expired"


class AlreadyReversedError(ConflictError):
    """Raised when an entry that was already reversed (or is itself a reversal) is reversed."""

    title = "Entry already reversed"
    slug = "already-reversed"


class IdempotencyConflictError(ConflictError):
    """Raised when an idempotency key is reused with a different request."""

    title = "Idempotency key reused"
    slug = "idempotency-conflict"


def problem(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type: str = "about:blank",
    errors: dict[str, Any] | None = None,
) -> Response:
    """Return an RFC 9457 application/problem+json response, with the request's id."""
    body: dict[str, Any] = {"type": type, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    if has_request_context():
        request_id = request.environ.get(REQUEST_ID_KEY)
        if request_id is not None:
            body["request_id"] = request_id
    return Response(
        json.dumps(body, ensure_ascii=False),
        status=status,
        mimetype="application/problem+json",
    )


def problem_from(error: PointsError) -> Response:
    """Return the problem+json response describing `error`."""
    return problem(error.status, error.title, error.detail, type=error.type, errors=error.errors)


class AuthenticationError(PointsError):
    """Raised when a request carries no bearer token, or one unknown, expired or revoked."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class ForbiddenError(PointsError):
    """Raised when a token's role or district node does not reach what a request asks for."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class WrongPinError(InvalidInputError):
    """Raised when a card code is unknown or the PIN given with it is wrong."""

    title = "Wrong card or PIN"
    slug = "wrong-pin"

    def __init__(
        self, detail: str, *, errors: dict[str, Any] | None = None, tries_left: int | None = None
    ):
        super().__init__(detail, errors=errors)
        # For a wrong PIN: how many more tries before the card locks (None: unknown card).
        self.tries_left = tries_left


class ActivationRequiredError(ConflictError):
    """Raised when a card's one-time activation code was given where a PIN is asked for:
    the code is right, and the volunteer must now choose a PIN (points.activation)."""

    title = "Activation required"
    slug = "activation-required"

    def __init__(self, detail: str, *, errors: dict[str, Any] | None = None, volunteer_id: int):
        super().__init__(detail, errors=errors)
        self.volunteer_id = volunteer_id


class WrongPasswordError(InvalidInputError):
    """Raised when a staff username is unknown or the password given with it is wrong."""

    title = "Wrong username or password"
    slug = "wrong-password"


class CardLockedError(PointsError):
    """Raised when a card is used while locked after too many wrong PINs."""

    status = 423
    title = "Card locked"
    slug = "card-locked"

    def __init__(
        self,
        detail: str,
        *,
        retry_after: int,
        errors: dict[str, Any] | None = None,
        until: datetime | None = None,
    ):
        super().__init__(detail, errors=errors)
        self.retry_after = retry_after
        # When the card unlocks, for a screen to say so.
        self.until = until


class AccountLockedError(CardLockedError):
    """Raised when a staff account is used while locked after too many wrong passwords."""

    title = "Account locked"
    slug = "account-locked"


class RateLimitedError(PointsError):
    """Raised when one token sends more requests than its limit allows."""

    status = 429
    title = "Too many requests"
    slug = "rate-limited"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


class PluginError(PointsError):
    """Raised when a plugin fails inside a hook; the unit of work it ran in is rolled back.

    A plugin bug, not bad input: status 500, and the detail names the plugin and hook.
    """

    status = 500
    title = "Plugin failed"
    slug = "plugin-failed"

    def __init__(self, detail: str, *, plugin: str, hook: str):
        super().__init__(detail)
        self.plugin = plugin
        self.hook = hook


class RefusedError(ConflictError):
    """Raised when a plugin's policy refuses a redemption, transfer or service record;
    `reasons` lists each refusing plugin's reason in Chinese and English."""

    title = "Refused by policy"
    slug = "refused"

    def __init__(self, detail: str, *, reasons: list[dict[str, str]], errors=None):
        super().__init__(detail, errors=errors)
        self.reasons = reasons


class UnsupportedMediaTypeError(PointsError):
    """Raised when a request body is not sent as JSON."""

    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class InvalidJsonError(PointsError):
    """Raised when a request body is not valid JSON, or is empty where one is needed."""

    status = 400
    title = "Invalid JSON"
    slug = "invalid-json"
