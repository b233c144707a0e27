"""Pages for people: register_web attaches the blueprints, Babel, CSRF and the CSP."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from flask import Blueprint, Flask, redirect, request, url_for
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

from points.web.i18n import (
    DEFAULT_LANGUAGE,
    DOMAINS,
    LANGUAGE_COOKIE,
    LANGUAGES,
    install_filters,
    select_locale,
    select_timezone,
)

csrf = CSRFProtect()
babel = Babel()

# Nothing loads from another origin: kiosks sit on closed networks. Inline SVG (QR codes)
# is markup, not a resource, so it needs no exception here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def register_web(app: Flask) -> None:
    """Attach the pages (/me, /kiosk, /provider, /office) with their sessions, CSRF and
    languages."""
    from points.web import (  # noqa: F401
        kiosk,
        kiosk_activities,
        notice,
        office,
        provider,
        volunteer,
        volunteer_activities,
    )

    # Forms are checked by hand in each page blueprint (protect_forms), never in the API,
    # whose clients send bearer tokens and no cookies.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # A form shown in the morning still posts in the afternoon: the token lives as long as
    # the session, which sign-out ends.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    # A kiosk signs its person out after this long without a touch (a countdown first).
    app.config.setdefault("KIOSK_PAGE_IDLE_SECONDS", 60)
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    # Flask-Babel pairs domains with directories by position: one folder, named per domain.
    catalogues = os.path.join(os.path.dirname(os.path.dirname(__file__)), "translations")
    app.config.setdefault("BABEL_DOMAIN", ";".join(DOMAINS))
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", ";".join([catalogues] * len(DOMAINS)))
    csrf.init_app(app)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=select_timezone)
    install_filters(app)

    for blueprint in (volunteer.bp, kiosk.bp, provider.bp, office.bp, notice.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(_common())
    app.after_request(_page_headers)


def is_page() -> bool:
    """True when this request is for a page (a web blueprint), not for the API."""
    blueprint = request.blueprint or ""
    return blueprint.startswith("web_")


def _page_headers(response):
    if is_page() or request.endpoint in ("web_common.home", "web_common.language"):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        # Pages show balances and vouchers: never kept by a shared browser's cache.
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
    return response


def safe_next(target: str | None, default: str) -> str:
    """Return `target` if it is a path on this site, else `default` (no open redirects)."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    return target


def _common() -> Blueprint:
    bp = Blueprint("web_common", __name__)

    @bp.get("/")
    def home():
        """The front door: a volunteer's phone lands on its own page."""
        return redirect(url_for("web_me.home"))

    @bp.get('/language/<any("zh-CN", "en"):code>')
    def language(code: str):
        """Switch the page language and remember it; back to where the person was."""
        response = redirect(safe_next(request.args.get("next"), url_for("web_me.home")))
        response.set_cookie(
            LANGUAGE_COOKIE,
            LANGUAGES[code],
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
        )
        return response

    return bp
