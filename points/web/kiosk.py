"""/kiosk: the touch screen of a service station: pair once, then card, PIN, redeem, print."""

from __future__ import annotations

import time
from datetime import datetime
from functools import wraps
from zoneinfo import ZoneInfo

from flask import current_app, g, make_response, redirect, request, session, url_for
from flask_babel import gettext as _

from points import auth, kiosks, redemptions, volunteers
from points.errors import (
    AccountClosedError,
    ActivationRequiredError,
    AuthenticationError,
    CardLockedError,
    ConflictError,
    InsufficientPointsError,
    InvalidInputError,
    NotFoundError,
    RefusedError,
    WrongPinError,
)
from points.web.forms import qr_svg
from points.web.i18n import pick
from points.web.pages import field_errors, form_key, new_form_key, page_blueprint, render_page

bp = page_blueprint("kiosk", __name__, "/kiosk")

# The device's secret, set once at pairing: long-lived, HttpOnly, SameSite=Strict, only
# sent to /kiosk pages.
DEVICE_COOKIE = "points_kiosk"
DEVICE_COOKIE_DAYS = 5 * 365

# What the Flask session holds for the person at the screen.
CARD = "kiosk_card"  # the card typed or scanned, waiting for its PIN
TOKEN = "kiosk_token"  # the volunteer's kiosk session (points.auth.open_kiosk_session)
SEEN = "kiosk_seen"  # when the person last did something (epoch seconds)
CONFIRM = "kiosk_confirm"  # the item on the confirm page and its idempotency key
VOUCHER = "kiosk_voucher"  # the voucher just issued: (volunteer id, redemption id)
# The card's one-time activation code, right, typed on the PIN screen: kept only until
# the PIN is chosen (or the person goes), as the choose-PIN screen uses it once more.
ACTIVATION = "kiosk_activation"

# The countdown posts the sign-out a moment after it ends; the server allows for that
# before it treats the person as gone.
IDLE_SLACK_SECONDS = 15
# The last touch is kept to this many seconds.
SEEN_STEP_SECONDS = 5


def idle_seconds() -> int:
    return int(current_app.config["KIOSK_PAGE_IDLE_SECONDS"])


def paired(view):
    """Let a paired kiosk in (g.kiosk, g.place); any other device sees the pairing form."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        g.kiosk = kiosks.device(request.cookies.get(DEVICE_COOKIE))
        if g.kiosk is None:
            _forget_person()
            return render_page("web/kiosk/pair.html", code="", errors={}, unpaired=True)
        g.place = kiosks.place(g.kiosk.token_id)
        g.page_timezone = g.place.timezone
        return view(*args, **kwargs)

    return wrapper


def with_volunteer(view):
    """Let in the volunteer signed in at this kiosk (g.visitor, g.display_name); send
    anyone else, or someone idle too long, back to the start."""

    @wraps(view)
    @paired
    def wrapper(*args, **kwargs):
        principal = _visitor()
        if principal is None or principal.replay_only:
            _sign_out(principal)
            return redirect(url_for("web_kiosk.home"))
        now = int(time.time())
        seen = session.get(SEEN, 0)
        if now - seen > idle_seconds() + IDLE_SLACK_SECONDS:
            _sign_out(principal)
            return redirect(url_for("web_kiosk.home", idle=1))
        if now - seen >= SEEN_STEP_SECONDS:
            # Not on every request: a changed session is a new signed cookie to send.
            session[SEEN] = now
        g.visitor = principal
        g.display_name = volunteers.mask_name(volunteers.profile(principal.volunteer_id).name)
        g.idle = idle_seconds()
        return view(*args, **kwargs)

    return wrapper


def _visitor() -> auth.Principal | None:
    """The kiosk session in the Flask session, if it is this kiosk's and still known."""
    secret = session.get(TOKEN)
    if not secret:
        return None
    try:
        principal = auth.authenticate_token(secret)
    except AuthenticationError:
        session.pop(TOKEN, None)
        return None
    if principal.role != "session" or principal.kiosk_id != g.kiosk.token_id:
        session.pop(TOKEN, None)
        return None
    return principal


def _sign_out(principal: auth.Principal | None) -> None:
    if principal is not None and not principal.replay_only:
        auth.end_kiosk_session(principal)
    _forget_person()


def _forget_person() -> None:
    for key in (CARD, TOKEN, SEEN, CONFIRM, VOUCHER, ACTIVATION):
        session.pop(key, None)


# -- pairing -----------------------------------------------------------------------------


@bp.route("/pair", methods=["GET", "POST"])
def pair():
    """Pair this screen with the one-time code the office was given."""
    code = request.form.get("code", "").strip()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            done = kiosks.pair(code)
        except InvalidInputError as error:
            errors = field_errors(error)
        else:
            _forget_person()
            response = make_response(redirect(url_for("web_kiosk.home", paired=1)))
            response.set_cookie(
                DEVICE_COOKIE,
                done.secret,
                max_age=DEVICE_COOKIE_DAYS * 24 * 3600,
                path=bp.url_prefix,
                httponly=True,
                samesite="Strict",
                secure=request.is_secure,
            )
            return response
    device = kiosks.device(request.cookies.get(DEVICE_COOKIE))
    return render_page(
        "web/kiosk/pair.html",
        422 if errors else 200,
        code=code,
        errors=errors,
        unpaired=device is None,
    )


# -- the attract screen, card and PIN ----------------------------------------------------


@bp.get("/")
@paired
def home():
    """The attract screen: redeem points, or check in."""
    # Whoever was here before is gone: a new person starts from nothing.
    _sign_out(_visitor())
    return render_page(
        "web/kiosk/home.html",
        idle=request.args.get("idle") == "1",
        just_paired=request.args.get("paired") == "1",
    )


@bp.route("/card", methods=["GET", "POST"])
@paired
def card():
    """The card: a scanner types its code and Enter, or the on-screen keys do."""
    code = request.form.get("card_code", "").strip()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            kiosks.card_in_reach(g.kiosk, code)
        except NotFoundError:
            errors["card_code"] = [_("We do not know this card. Check the code on your card.")]
        else:
            _forget_person()
            session[CARD] = code.upper()
            session[SEEN] = int(time.time())
            return redirect(url_for("web_kiosk.pin"))
    return render_page(
        "web/kiosk/card.html",
        422 if errors else 200,
        code=code,
        errors=errors,
        action=url_for("web_kiosk.card"),
        heading=_("Scan or type your card"),
    )


@bp.route("/pin", methods=["GET", "POST"])
@paired
def pin():
    """The PIN, on the on-screen pad: opens the volunteer's session at this kiosk."""
    card_code = session.get(CARD)
    if not card_code:
        return redirect(url_for("web_kiosk.card"))
    if time.time() - session.get(SEEN, 0) > idle_seconds() + IDLE_SLACK_SECONDS:
        _forget_person()
        return redirect(url_for("web_kiosk.home", idle=1))
    session[SEEN] = int(time.time())
    errors: dict[str, list[str]] = {}
    locked = None
    if request.method == "POST":
        typed = request.form.get("pin", "").strip()
        if not typed:
            errors["pin"] = [_("Enter your 6-digit PIN.")]
        else:
            try:
                opened = auth.open_kiosk_session(g.kiosk, card_code, typed)
            except ActivationRequiredError:
                session[ACTIVATION] = typed
                return redirect(url_for("web_kiosk.choose_pin"))
            except CardLockedError as error:
                locked = error.until
                errors["pin"] = [_("Too many wrong PINs. The card is locked.")]
            except WrongPinError as error:
                left = error.tries_left
                errors["pin"] = [
                    _("Wrong PIN. %(left)s more tries before the card locks.", left=left)
                    if left is not None
                    else _("Wrong PIN.")
                ]
            except AccountClosedError:
                errors["pin"] = [_("This card is not active. Please ask your office.")]
            else:
                session.pop(CARD, None)
                session[TOKEN] = opened.token
                session[SEEN] = int(time.time())
                return redirect(url_for("web_kiosk.catalog"))
    g.idle = idle_seconds()
    return render_page(
        "web/kiosk/pin.html", 422 if errors else 200, errors=errors, locked_until=locked
    )


@bp.route("/choose-pin", methods=["GET", "POST"])
@paired
def choose_pin():
    """After a right activation code: the volunteer's first PIN, twice, on the pad; then
    they are signed in."""
    card_code, code = session.get(CARD), session.get(ACTIVATION)
    if not card_code or not code:
        return redirect(url_for("web_kiosk.card"))
    if time.time() - session.get(SEEN, 0) > idle_seconds() + IDLE_SLACK_SECONDS:
        _forget_person()
        return redirect(url_for("web_kiosk.home", idle=1))
    session[SEEN] = int(time.time())
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        new = request.form.get("new_pin", "").strip()
        again = request.form.get("new_pin_again", "").strip()
        if not new:
            errors["new_pin"] = [_("Choose a 6-digit PIN.")]
        elif new != again:
            errors["new_pin_again"] = [_("The two new PINs are not the same.")]
        else:
            try:
                opened = auth.activate_at_kiosk(g.kiosk, card_code, code, new)
            except InvalidInputError as error:
                if not isinstance(error, WrongPinError):
                    errors = field_errors(error)
                else:
                    # Used meanwhile, or a new code issued: start again from the PIN.
                    session.pop(ACTIVATION, None)
                    return redirect(url_for("web_kiosk.pin"))
            except (CardLockedError, AccountClosedError):
                session.pop(ACTIVATION, None)
                return redirect(url_for("web_kiosk.pin"))
            else:
                session.pop(ACTIVATION, None)
                session.pop(CARD, None)
                session[TOKEN] = opened.token
                session[SEEN] = int(time.time())
                return redirect(url_for("web_kiosk.catalog", activated=1))
    g.idle = idle_seconds()
    return render_page("web/kiosk/choose_pin.html", 422 if errors else 200, errors=errors)


@bp.post("/sign-out")
@paired
def sign_out():
    """The person is done (or the countdown ended): back to the attract screen."""
    _sign_out(_visitor())
    idle = request.form.get("reason") == "idle"
    return redirect(url_for("web_kiosk.home", idle=1) if idle else url_for("web_kiosk.home"))


@bp.get("/still-here")
@paired
def still_here():
    """The countdown's "continue": the person is still at the screen."""
    if session.get(TOKEN) or session.get(CARD) or session.get(VOUCHER):
        session[SEEN] = int(time.time())
    return "", 204


# -- the catalog, confirm, redeem, voucher -----------------------------------------------


@bp.get("/catalog")
@with_volunteer
def catalog():
    """The volunteer's points and the catalog: what they can get, and why not the rest."""
    district = g.visitor.district_id
    items, names = volunteers.offers(district, g.visitor.volunteer_id)
    points = volunteers.balance(g.visitor.volunteer_id)
    return render_page(
        "web/kiosk/catalog.html",
        items=items,
        providers=names,
        points=points,
        activated=request.args.get("activated") == "1",
    )


@bp.get("/confirm")
@with_volunteer
def confirm():
    """One item, its cost and what is left after: the "redeem" button."""
    item = _item(request.args.get("sku", ""))
    # The key is made when this page is first shown and kept for this item: a reload of
    # the page shows the same key, so a redemption it led to is never made twice.
    remembered = session.get(CONFIRM) or {}
    if remembered.get("sku") != item["sku"]:
        remembered = {"sku": item["sku"], "key": new_form_key()}
        session[CONFIRM] = remembered
    return _confirm_page(item, {}, remembered["key"])


def _item(sku: str) -> dict:
    for item in volunteers.catalog(g.visitor.district_id, g.visitor.volunteer_id):
        if item["sku"] == sku:
            return item
    raise NotFoundError(f"no item {sku!r}")


def _confirm_page(item: dict, errors: dict[str, list[str]], key: str):
    points = volunteers.balance(g.visitor.volunteer_id)
    provider = volunteers.provider_names([item["provider"]]).get(item["provider"], "")
    return render_page(
        "web/kiosk/confirm.html",
        422 if errors else 200,
        item=item,
        provider=provider,
        points=points,
        errors=errors,
        form_key=key,
    )


@bp.post("/redeem")
@paired
def redeem():
    """Redeem the confirmed item once: a double tap, a reload or a retry shows the same
    voucher. The person is signed out; the voucher stays on screen to print."""
    key = form_key()
    sku = request.form.get("sku", "")
    principal = _visitor()
    if principal is None:
        return redirect(url_for("web_kiosk.home"))
    idempotency_key = f"kiosk:{g.kiosk.token_id}:{key}"
    if principal.replay_only and kiosks.stored_result("redemptions", idempotency_key) is None:
        # An ended session may only replay a redemption it made (its first answer was
        # lost on the way): anything else starts again.
        _forget_person()
        return redirect(url_for("web_kiosk.home"))
    g.visitor = principal
    g.display_name = volunteers.mask_name(volunteers.profile(principal.volunteer_id).name)
    g.idle = idle_seconds()
    try:
        done = redemptions.create_redemption(
            principal.volunteer_id,
            sku,
            actor=principal.actor,
            idempotency_key=idempotency_key,
        )
    except (RefusedError, InsufficientPointsError, ConflictError, InvalidInputError) as error:
        if principal.replay_only:
            return redirect(url_for("web_kiosk.home"))
        reasons = [pick(r["zh"], r["en"]) for r in getattr(error, "reasons", None) or []]
        if isinstance(error, InsufficientPointsError):
            reasons = [_("Not enough points for this.")]
        item = _item(sku)
        return _confirm_page(item, {"form": reasons or [_("This did not work.")]}, key)
    auth.end_kiosk_session(principal)
    _forget_person()
    session[VOUCHER] = [principal.volunteer_id, done.id]
    session[SEEN] = int(time.time())
    return redirect(url_for("web_kiosk.voucher"))


@bp.get("/voucher")
@paired
def voucher():
    """The voucher just issued, large, with its QR code and a print button."""
    shown = session.get(VOUCHER)
    if not shown:
        return redirect(url_for("web_kiosk.home"))
    if time.time() - session.get(SEEN, 0) > idle_seconds() + IDLE_SLACK_SECONDS:
        _forget_person()
        return redirect(url_for("web_kiosk.home", idle=1))
    line = kiosks.printed_voucher(*shown)
    g.idle = idle_seconds()
    return render_page(
        "web/kiosk/voucher.html",
        line=line,
        qr_code=qr_svg(line["voucher_code"]),
        printed_at=datetime.now(ZoneInfo(g.place.timezone)),
    )


# -- check-in (按时刷) -------------------------------------------------------------------


@bp.route("/checkin", methods=["GET", "POST"])
@paired
def checkin():
    """Check-in: the steward swipes the card, then confirms."""
    code = request.form.get("card_code", "").strip()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        try:
            found = kiosks.card_in_reach(g.kiosk, code)
        except NotFoundError:
            errors["card_code"] = [_("We do not know this card. Check the code on your card.")]
        else:
            g.idle = idle_seconds()
            _forget_person()
            session[SEEN] = int(time.time())
            return render_page(
                "web/kiosk/checkin_confirm.html",
                card_code=code.upper(),
                display_name=volunteers.mask_name(found.name),
                form_key=new_form_key(),
                now=datetime.now(ZoneInfo(g.place.timezone)),
            )
    return render_page(
        "web/kiosk/card.html",
        422 if errors else 200,
        code=code,
        errors=errors,
        action=url_for("web_kiosk.checkin"),
        heading=_("Check in: scan or type your card"),
        checkin=True,
    )


@bp.post("/checkin/confirm")
@paired
def checkin_confirm():
    """Record the check-in as the API would (points.service.record_service); show the
    policy's answer."""
    key = form_key()
    try:
        found = kiosks.card_in_reach(g.kiosk, request.form.get("card_code", ""))
    except NotFoundError:
        return redirect(url_for("web_kiosk.checkin"))
    g.idle = idle_seconds()
    session[SEEN] = int(time.time())
    name = volunteers.mask_name(found.name)
    try:
        result = kiosks.check_in(g.kiosk, found.volunteer_id, key)
    except AccountClosedError:
        return render_page(
            "web/kiosk/checkin_done.html",
            409,
            result=None,
            display_name=name,
            problem=_("This card is not active. Please ask your office."),
        )
    except ConflictError:
        return render_page(
            "web/kiosk/checkin_done.html",
            409,
            result=None,
            display_name=name,
            problem=_("Already checked in today."),
        )
    return render_page("web/kiosk/checkin_done.html", result=result, display_name=name)
