"""The one place an API request's JSON body is read: strictly, bounded, and only once.

Every request under /api/v1 with a body has it parsed here before its view runs, whether
the view takes a body or not, so a body that is not JSON is refused before anything is
done. Views read the parsed value through `BodyParser` (webargs, used by flask-smorest),
which never parses again.

What is refused, and how:
- not sent as `application/json` (UTF-8): 415;
- not valid JSON (syntax, bad UTF-8, `NaN`/`Infinity`, a raw NUL), or empty where the
  operation needs a body: 400;
- valid JSON the API will not handle: nested deeper than MAX_DEPTH, a number longer than
  MAX_NUMBER_CHARS characters or not finite once read (`1e400`), text no database stores
  (an escaped NUL, a lone UTF-16 surrogate): 422 on `body`.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

from flask import g, request
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import RAISE, Schema
from webargs import core
from webargs.flaskparser import FlaskParser

from points.errors import InvalidInputError, InvalidJsonError, UnsupportedMediaTypeError

PREFIX = "/api/v1"
# No request of this API nests deeper than a plugin's config (about 6 levels).
MAX_DEPTH = 32
# Points fit in 16 digits and ids in 19; a longer number is an error, and parsing a
# very long one costs time that grows with the square of its length.
MAX_NUMBER_CHARS = 40
UNSTORABLE = ["Text may not contain NUL (0x00) or lone surrogates (U+D800-DFFF)."]


class _RefusedNumber(ValueError):
    """Raised inside the JSON parser for a number the API does not read."""


def _constant(name: str) -> Any:
    # NaN, Infinity and -Infinity are JavaScript, not JSON (RFC 8259).
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _RefusedNumber(f"A number may have at most {MAX_NUMBER_CHARS} characters.")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _RefusedNumber(f"A number may have at most {MAX_NUMBER_CHARS} characters.")
    value = float(text)
    if not math.isfinite(value):
        raise _RefusedNumber("A number must be finite (this one overflows).")
    return value


def unstorable(text: str) -> bool:
    """True for text no database stores as given: NUL, or a lone UTF-16 surrogate."""
    return "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text)


def _refusal(value: Any) -> str | None:
    """Why a parsed body is refused (too deep, unstorable text), or None; never recursive."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"Nested deeper than {MAX_DEPTH} levels."
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
        elif isinstance(item, str) and unstorable(item):
            return UNSTORABLE[0]
    return None


def parse_body(raw: bytes) -> Any:
    """Return the value of a JSON body, checked as the module docstring says.

    Raises InvalidJsonError (400) and InvalidInputError (422, on `body`).
    """
    if b"\x00" in raw:
        raise InvalidInputError(
            "text the database cannot store in the body", errors={"body": UNSTORABLE}
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJsonError("The body is not valid UTF-8.") from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_integer, parse_float=_float)
    except _RefusedNumber as error:
        raise InvalidInputError(
            "a number the API does not read", errors={"body": [str(error)]}
        ) from None
    except RecursionError:
        raise InvalidInputError(
            "the body is nested too deeply",
            errors={"body": [f"Nested deeper than {MAX_DEPTH} levels."]},
        ) from None
    except ValueError:
        raise InvalidJsonError("The body is not valid JSON.") from None
    why = _refusal(value)
    if why == UNSTORABLE[0]:
        raise InvalidInputError(
            "text the database cannot store in the body", errors={"body": UNSTORABLE}
        )
    if why is not None:
        raise InvalidInputError("the body is nested too deeply", errors={"body": [why]})
    return value


def _check_text() -> None:
    where = None
    if unstorable(request.path):
        where = "path"
    elif b"%00" in request.query_string or any(
        unstorable(v) for values in request.args.listvalues() for v in values
    ):
        where = "query"
    if where is not None:
        raise InvalidInputError(
            f"text the database cannot store in the {where}", errors={where: UNSTORABLE}
        )


# Operations whose body is a file, not JSON: endpoint -> (methods, media types, bytes).
_RAW_BODIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {}


def raw_body(
    endpoint: str, *, methods: tuple[str, ...], mimetypes: tuple[str, ...], max_bytes: int
) -> None:
    """Let `endpoint` take a body of these media types, up to `max_bytes`, read by its
    view (an import's file); every other operation keeps JSON and the app's limit."""
    _RAW_BODIES[endpoint] = (methods, mimetypes, max_bytes)


def _raw_body() -> bool:
    """For an operation taking a file: check its media type and raise its size limit
    (before anything reads the body); True when the body is left to the view."""
    found = _RAW_BODIES.get(request.endpoint or "")
    if found is None or request.method not in found[0]:
        return False
    _methods, mimetypes, max_bytes = found
    request.max_content_length = max_bytes
    if request.content_length and request.mimetype not in mimetypes:
        raise UnsupportedMediaTypeError(
            f"send the file as the body, with Content-Type one of {', '.join(mimetypes)}, "
            f"not {request.content_type!r}"
        )
    g.points_body = core.missing
    return True


def read_body() -> None:
    """Before every API request: refuse unstorable text in the path and query, and a
    body that is not acceptable JSON (415, 400, 422); keep the parsed body for the view.

    PostgreSQL cannot store NUL in text, and no database encodes a lone UTF-16 surrogate
    (JSON allows "\\ud800"): refused here, both are a 422 on every database instead of an
    error deep in a query. A body sent as form or plain text would be silently ignored by
    the JSON parser: it is a 415 instead.
    """
    if not request.path.startswith(PREFIX + "/"):
        return
    _check_text()
    if _raw_body():
        return
    raw = request.get_data(cache=True)
    if not raw:
        g.points_body = core.missing
        return
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype not in JSON_TYPES or charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaTypeError(
            "send the body as JSON with Content-Type: application/json (UTF-8), "
            f"not {request.content_type!r}"
        )
    g.points_body = parse_body(raw)


# A PATCH may say what its body is (a JSON merge patch); it is JSON all the same.
JSON_TYPES = ("application/json", "application/merge-patch+json")


def _needs_body(schema: Schema) -> bool:
    return any(field.required for field in schema.fields.values())


class BodyParser(FlaskParser):
    """webargs' parser reading the body `read_body` parsed, never the raw bytes again.

    A query parameter no operation declares is a 422, as an unknown body field is: a
    misspelt filter (`?stauts=held`) must not answer as if no filter were given."""

    DEFAULT_UNKNOWN_BY_LOCATION: ClassVar[dict[str, str | None]] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": RAISE,
    }

    def load_json(self, req, schema: Schema) -> Any:
        body = g.get("points_body", core.missing)
        if body is core.missing and req.mimetype in JSON_TYPES and _needs_body(schema):
            raise InvalidJsonError("The body is empty; this operation needs a JSON object.")
        return body


class Blueprint(SmorestBlueprint):
    """flask-smorest's Blueprint reading bodies with BodyParser."""

    ARGUMENTS_PARSER = BodyParser()
