"""/me: a volunteer's own pages on their phone: points, history, records, vouchers."""

from __future__ import annotations

from functools import wraps

from flask import g, redirect, request, session, url_for
from flask_babel import gettext as _

from points import auth, service, volunteers
from points.errors import (
    AccountClosedError,
    AuthenticationError,
    CardLockedError,
    InvalidInputError,
    WrongPinError,
)
from points.web.pages import field_errors, page_blueprint, render_page

bp = page_blueprint("me", __name__, "/me")

# The home page lists the points that expire within this many days.
EXPIRING_DAYS = 30

# The session cookie keeps the volunteer's page token under this key.
TOKEN = "volunteer_token"


def signed_in(view):
    """Let a signed-in volunteer in (g.principal, g.profile); send anyone else to sign in."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        secret = session.get(TOKEN)
        principal = None
        if secret:
            try:
                principal = auth.authenticate_token(secret)
            except AuthenticationError:
                session.pop(TOKEN, None)
        if principal is None or principal.role != "volunteer":
            return redirect(url_for("web_me.sign_in", next=request.full_path.rstrip("?")))
        g.principal = principal
        g.profile = volunteers.profile(principal.volunteer_id)
        g.page_timezone = g.profile.timezone
        return view(*args, **kwargs)

    return wrapper


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Card code (prefilled from the card's QR code) and PIN."""
    from points.web import safe_next

    card = (request.values.get("card") or request.form.get("card_code") or "").strip()
    errors: dict[str, list[str]] = {}
    locked = None
    if request.method == "POST":
        pin = request.form.get("pin", "").strip()
        if not card:
            errors["card_code"] = [_("Enter the code printed on your card.")]
        if not pin:
            errors["pin"] = [_("Enter your 6-digit PIN.")]
        if not errors:
            try:
                secret, _holder = auth.open_volunteer_session(card, pin)
            except CardLockedError as error:
                locked = error.until
                errors["pin"] = [_("Too many wrong PINs. The card is locked.")]
            except WrongPinError as error:
                errors.update(_sign_in_errors(error))
            except AccountClosedError:
                errors["card_code"] = [_("This card is not active. Please ask your office.")]
            else:
                # A new session from scratch: nothing from before sign-in carries over.
                session.clear()
                session[TOKEN] = secret
                session.permanent = True
                return redirect(safe_next(request.args.get("next"), url_for("web_me.home")))
    return render_page(
        "web/me/sign_in.html",
        422 if errors else 200,
        card=card,
        errors=errors,
        locked_until=locked,
    )


def _sign_in_errors(error: WrongPinError) -> dict[str, list[str]]:
    messages = error.errors or {}
    if "card_code" in messages:
        return {"card_code": [_("We do not know this card. Check the code on your card.")]}
    left = error.tries_left
    if left is not None:
        return {"pin": [_("Wrong PIN. %(left)s more tries before the card locks.", left=left)]}
    return {"pin": [_("Wrong PIN.")]}


@bp.post("/sign-out")
def sign_out():
    """End this page session (the token is revoked, the cookie emptied)."""
    secret = session.get(TOKEN)
    if secret:
        try:
            principal = auth.authenticate_token(secret)
        except AuthenticationError:
            principal = None
        if principal is not None and principal.role == "volunteer":
            from points.directory import revoke_token

            revoke_token(principal.token_id)
    session.clear()
    return redirect(url_for("web_me.sign_in"))


@bp.get("/")
@signed_in
def home():
    """Available points large, then held, balance, hours, stars, what expires soon."""
    volunteer_id = g.principal.volunteer_id
    return render_page(
        "web/me/home.html",
        points=volunteers.balance(volunteer_id),
        stars=volunteers.star_progress(volunteer_id),
        expiring=[
            {"points": amount, "expires_at": at}
            for amount, at in service.expiring_soon(volunteer_id, days=EXPIRING_DAYS)
        ],
    )


def invalid(error: InvalidInputError) -> dict[str, list[str]]:
    return field_errors(error)
