"""/office/cards: an office prints its volunteers' cards (interim sign-in with a token).

Staff accounts come with issue 14. Until then this one office page takes an office or
admin bearer token once, on a small sign-in form, and keeps it in the signed, HttpOnly
session cookie; the token's own scope decides which nodes' cards it may print.
"""

from __future__ import annotations

from functools import wraps
from pathlib import Path

from flask import current_app, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from points import auth, cards
from points.errors import AuthenticationError, ForbiddenError, NotFoundError
from points.extensions import db
from points.models import District
from points.web.pages import page_blueprint, render_page, session_principal

bp = page_blueprint("cards", __name__, "/office/cards")

# The session keeps the office's token under this key (interim, until issue 14).
TOKEN = "office_token"
STAFF_ROLES = ("office", "admin")

CARDS_CSS = Path(__file__).resolve().parent.parent / "static" / "web" / "cards.css"


def render_sheet(sheet: cards.CardSheet, *, standalone: bool = False) -> str:
    """Render a sheet of cards as an A4 page. Needs a request context (its language).

    `standalone` puts the print styles into the page itself, for a file opened from disk
    (`points cards print`); served pages link the stylesheet (the CSP allows no inline
    style).
    """
    inline_css = CARDS_CSS.read_text(encoding="utf-8") if standalone else None
    return render_template("web/cards.html", sheet=sheet, inline_css=inline_css)


def public_url() -> str:
    """The address people reach this service at: PUBLIC_URL, else this request's."""
    return (current_app.config.get("PUBLIC_URL") or request.url_root).rstrip("/")


def staff(view):
    """Let in a browser whose session holds a valid office or admin token."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        principal = session_principal(TOKEN, STAFF_ROLES)
        if principal is None:
            return redirect(url_for("web_cards.sign_in", next=request.full_path.rstrip("?")))
        g.principal = principal
        return view(*args, **kwargs)

    return wrapper


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Paste an office token once; it is kept in this browser's session."""
    from points.web import safe_next

    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        secret = request.form.get("token", "").strip()
        principal = None
        if not secret:
            errors["token"] = [_("Paste the office token.")]
        else:
            try:
                principal = auth.authenticate_token(secret)
            except AuthenticationError:
                principal = None
            if principal is None or principal.role not in STAFF_ROLES:
                errors["token"] = [_("This is not a valid office token.")]
        if not errors:
            # A new session from scratch: nothing from before sign-in carries over.
            session.clear()
            g.pop("csrf_token", None)
            session[TOKEN] = secret
            return redirect(safe_next(request.args.get("next"), url_for("web_cards.home")))
    return render_page("web/cards/sign_in.html", 422 if errors else 200, errors=errors)


@bp.post("/sign-out")
def sign_out():
    """Forget the office token in this browser (the token itself stays valid)."""
    session.pop(TOKEN, None)
    g.pop("csrf_token", None)
    return redirect(url_for("web_cards.sign_in"))


@bp.get("")
@staff
def home():
    """With ?district=CODE the A4 sheet of that node's cards; else a choice of nodes."""
    code = (request.args.get("district") or "").strip()
    if code:
        try:
            sheet = cards.card_sheet(code, public_url(), g.principal)
        except (NotFoundError, ForbiddenError):
            return _choose(code, {"district": [_("Choose a node in your reach.")]})
        return render_sheet(sheet)
    return _choose("", {})


def _choose(code: str, errors: dict[str, list[str]]):
    nodes = db.session.execute(
        select(District.code, District.name)
        .where(District.path.startswith(g.principal.path, autoescape=True))
        .order_by(District.path)
    ).all()
    return render_page(
        "web/cards/choose.html", 422 if errors else 200, nodes=nodes, code=code, errors=errors
    )
