"""What every page shares: rendering, form errors, idempotency keys, error pages."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Blueprint, current_app, render_template, request, session
from flask_babel import gettext as _
from flask_babel import refresh
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from points.auth import Principal, authenticate_token
from points.errors import AuthenticationError, InvalidInputError, PointsError
from points.extensions import db

# A form's idempotency key: made when the form was shown, sent back hidden.
FORM_KEY = re.compile(r"^[0-9a-f]{32}$")


def new_form_key() -> str:
    """A fresh key for a form that moves points: a double tap or a retry posts once."""
    return uuid.uuid4().hex


def form_key(field: str = "form_key") -> str:
    """Return the posted form's idempotency key, or raise FormError when it is missing."""
    key = request.form.get(field, "")
    if not FORM_KEY.match(key):
        raise FormError(_("The form has expired. Please try again."))
    return key


class FormError(PointsError):
    """Raised when a posted form cannot be used as it is (missing key, bad field)."""

    status = 400
    title = "Bad form"
    slug = "bad-form"


def field_errors(error: PointsError) -> dict[str, list[str]]:
    """Return an error's messages per field, flattened to text (nested keys joined by '.')."""
    found: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list | tuple):
            for inner in value:
                if isinstance(inner, dict):
                    walk(prefix, inner)
                else:
                    found.setdefault(prefix or "form", []).append(str(inner))
        elif value is not None:
            found.setdefault(prefix or "form", []).append(str(value))

    walk("", error.errors or {})
    # Messages of the core and of marshmallow are English; the catalogue translates the
    # ones people meet on forms, and leaves any other as it is.
    return {name: [_(message) for message in messages] for name, messages in found.items()}


def render_page(template: str, status: int = 200, **context: Any):
    """Render a page template; `status` lets a form come back with its errors as 422."""
    return render_template(template, **context), status


def session_principal(key: str, roles: tuple[str, ...]) -> Principal | None:
    """Return who the token kept in the session under `key` is, if one of `roles`.

    A token that no longer authenticates (revoked, expired) is dropped from the session.
    """
    secret = session.get(key)
    if not secret:
        return None
    try:
        principal = authenticate_token(secret)
    except AuthenticationError:
        session.pop(key, None)
        return None
    return principal if principal.role in roles else None


def page_blueprint(name: str, import_name: str, url_prefix: str) -> Blueprint:
    """Return a blueprint of pages: its forms checked for CSRF, its errors shown as pages.

    Page blueprints are named `web_<audience>`; their templates live in web/<audience>/.
    """
    blueprint = Blueprint(f"web_{name}", import_name, url_prefix=url_prefix)
    blueprint.before_request(forget_cached_locale)
    blueprint.before_request(protect_forms)
    page_error_handlers(blueprint)
    return blueprint


def forget_cached_locale() -> None:
    """Choose the language afresh for this request.

    Flask-Babel keeps the locale on the app context, which outlives a request where one
    was pushed around several (a CLI command, a test client).
    """
    refresh()


def protect_forms() -> None:
    """Refuse a form post without the session's CSRF token (400, as a page), and any
    request whose query or form holds text no database stores (NUL, a lone surrogate:
    422, as a page), as the API's body check does for JSON."""
    from points.api.body import UNSTORABLE, unstorable

    values = [*request.args.values()]
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        from points.web import csrf

        csrf.protect()
        values += request.form.values()
    if any(unstorable(value) for value in values):
        raise InvalidInputError(
            _("Some of the text holds characters that cannot be saved. Please type it again."),
            errors={"form": UNSTORABLE},
        )


def page_error_handlers(blueprint: Blueprint) -> None:
    """Answer errors in a page blueprint with a page, never JSON and never a bare 500."""
    audience = blueprint.name.removeprefix("web_")

    def show(status: int, title: str, detail: str):
        db.session.rollback()
        page = render_template(
            "web/error.html",
            audience=audience,
            home_endpoint=f"{blueprint.name}.home",
            status=status,
            title=title,
            detail=detail,
        )
        return page, status

    @blueprint.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return show(400, _("The page has expired"), _("Please go back and try again."))

    @blueprint.errorhandler(PointsError)
    def points_error(error: PointsError):
        if error.status == 404:
            return show(404, _("Not found"), _("There is nothing here."))
        return show(error.status, _("This did not work"), error.detail)

    @blueprint.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if status == 404:
            return show(404, _("Not found"), _("There is nothing here."))
        if status == 405:
            return show(405, _("Not found"), _("There is nothing here."))
        return show(status, _("This did not work"), _("Please go back and try again."))

    @blueprint.errorhandler(OperationalError)
    def database_unavailable(error: OperationalError):
        current_app.logger.warning("database unavailable on page %s", request.path)
        response = show(
            503, _("Please try again in a moment"), _("The service is busy. Nothing was lost.")
        )
        return response[0], 503, {"Retry-After": "5"}

    @blueprint.errorhandler(Exception)
    def unexpected(error: Exception):
        current_app.logger.exception("unhandled error on page %s", request.path)
        return show(500, _("Something went wrong"), _("The error was logged. Please try again."))
