"""/provider: a service provider checks a voucher and marks it delivered, no account."""

from __future__ import annotations

from functools import wraps

from flask import g, make_response, request
from flask_babel import gettext as _

from points import auth, providers, redemptions
from points.errors import AuthenticationError, ConflictError, NotFoundError
from points.web.pages import form_key, new_form_key, page_blueprint, render_page

bp = page_blueprint("provider", __name__, "/provider")

# The cookie that keeps a provider's link token on their phone: HttpOnly, SameSite=Strict,
# only sent to /provider, for a year (an office revokes the token to end it sooner).
COOKIE = "points_provider"
COOKIE_DAYS = 365


def _principal(secret: str | None) -> auth.Principal | None:
    """The provider a link token names, or None when it is not a valid provider link."""
    if not secret:
        return None
    try:
        principal = auth.authenticate_token(secret)
    except AuthenticationError:
        return None
    return principal if principal.role == "provider" else None


def linked(view):
    """Let in a phone that holds a valid provider link (g.principal, g.provider)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        principal = _principal(request.cookies.get(COOKIE))
        if principal is None:
            return render_page("web/provider/no_link.html", 403)
        g.principal = principal
        g.provider = providers.provider_of(principal)
        if g.provider["status"] != "active":
            return render_page("web/provider/no_link.html", 403)
        g.page_timezone = g.provider["timezone"]
        return view(*args, **kwargs)

    return wrapper


@bp.get("/link/<string(maxlength=200):token>")
def link(token: str):
    """Keep the link's token in a cookie, then open the page without it in the address."""
    principal = _principal(token)
    if principal is None:
        return render_page("web/provider/no_link.html", 403)
    # A page that refreshes itself, not an HTTP redirect: a link opened from a chat app is
    # a cross-site navigation, and browsers do not send a SameSite=Strict cookie on a
    # redirect that continues one. The refresh starts from this site, so they do.
    response = make_response(render_page("web/provider/linked.html"))
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_DAYS * 24 * 3600,
        path="/provider",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


@bp.get("/")
@linked
def home():
    """Type or scan a voucher code."""
    return render_page("web/provider/home.html", code="", errors={})


@bp.get("/voucher")
@linked
def voucher():
    """The voucher with this code: item, points, state, the volunteer's name masked."""
    code = providers.normalise_voucher_code(request.args.get("code"))
    if not code or len(code) > 64:
        errors = {"code": [_("Enter the code on the voucher.")]}
        return render_page("web/provider/home.html", 422, code=code, errors=errors)
    try:
        found = providers.voucher_view(providers.voucher_in_reach(g.principal, code))
    except NotFoundError:
        errors = {"code": [_("No voucher of yours has this code. Check the code and try again.")]}
        return render_page("web/provider/home.html", 404, code=code, errors=errors)
    return render_page("web/provider/voucher.html", line=found, form_key=new_form_key())


@bp.post("/voucher/<string(maxlength=64):code>/fulfil")
@linked
def fulfil(code: str):
    """Mark the voucher delivered, once: a double tap or a retry shows the same answer."""
    key = form_key()
    redemption_id = providers.voucher_in_reach(g.principal, providers.normalise_voucher_code(code))
    try:
        done = redemptions.fulfil_redemption(
            redemption_id,
            actor=g.principal.actor,
            idempotency_key=f"provider:{g.principal.token_id}:{key}",
        )
    except ConflictError:
        # Delivered before (another form, another phone), cancelled or lapsed: say which.
        line = providers.voucher_view(redemption_id)
        return render_page("web/provider/voucher.html", 409, line=line, refused=True)
    line = providers.voucher_view(done.id)
    return render_page("web/provider/voucher.html", line=line, delivered=True)
