"""/me: a volunteer's own pages on their phone: points, history, records, vouchers."""

from __future__ import annotations

import contextlib
import re
from datetime import datetime
from functools import wraps
from zoneinfo import ZoneInfo

from flask import g, redirect, request, session, url_for
from flask_babel import gettext as _

from points import auth, honours, redemptions, service, volunteers
from points.errors import (
    AccountClosedError,
    ActivationRequiredError,
    AuthenticationError,
    CardLockedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RefusedError,
    WrongPinError,
)
from points.plugins import activity_labels
from points.web.forms import (
    PLUGIN_NAMES,
    activity_kinds_for_page,
    detail_fields,
    qr_svg,
)
from points.web.i18n import pick, when
from points.web.pages import (
    field_errors,
    form_key,
    new_form_key,
    page_blueprint,
    render_page,
    session_principal,
)

bp = page_blueprint("me", __name__, "/me")

# The home page lists the points that expire within this many days.
EXPIRING_DAYS = 30
# Lines per page of history, records and vouchers: short pages read well on a phone.
PAGE_SIZE = 20

# The session cookie keeps the volunteer's page token under this key.
TOKEN = "volunteer_token"
# A card and its one-time activation code, right, from sign-in: kept only until the
# first PIN is chosen on the next page, which uses the code once more.
ACTIVATION = "volunteer_activation"


def signed_in(view):
    """Let a signed-in volunteer in (g.principal, g.profile); send anyone else to sign in."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        principal = session_principal(TOKEN, ("volunteer",))
        if principal is None:
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
            except ActivationRequiredError:
                session[ACTIVATION] = [card, pin]
                return redirect(url_for("web_me.choose_pin", next=request.args.get("next")))
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
                # The CSRF token of the old session, if this request already made one.
                g.pop("csrf_token", None)
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


@bp.route("/choose-pin", methods=["GET", "POST"])
def choose_pin():
    """After a right activation code at sign-in: the first PIN, twice; then signed in."""
    from points.web import safe_next

    pending = session.get(ACTIVATION)
    if not pending:
        return redirect(url_for("web_me.sign_in"))
    card, code = pending
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
                secret, _holder = auth.activate_volunteer_session(card, code, new)
            except InvalidInputError as error:
                if not isinstance(error, WrongPinError):
                    errors = field_errors(error)
                else:
                    # Used meanwhile, or a new code issued: sign in again.
                    session.pop(ACTIVATION, None)
                    return redirect(url_for("web_me.sign_in", card=card))
            except (CardLockedError, AccountClosedError):
                session.pop(ACTIVATION, None)
                return redirect(url_for("web_me.sign_in", card=card))
            else:
                # A new session from scratch, as at sign-in.
                session.clear()
                g.pop("csrf_token", None)
                session[TOKEN] = secret
                session.permanent = True
                return redirect(
                    safe_next(request.args.get("next"), url_for("web_me.home", activated=1))
                )
    return render_page("web/me/choose_pin.html", 422 if errors else 200, errors=errors)


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
    g.pop("csrf_token", None)
    return redirect(url_for("web_me.sign_in"))


@bp.get("/")
@signed_in
def home():
    """Available points large, then held, balance, hours, stars, what expires soon."""
    return render_page(
        "web/me/home.html",
        summary=volunteers.summary(g.principal.volunteer_id, expiring_days=EXPIRING_DAYS),
        honours=honours.of_volunteer(g.principal.volunteer_id),
        activated=request.args.get("activated") == "1",
    )


@bp.get("/history")
@signed_in
def history():
    """Every line of the volunteer's points, newest first, saying why; by month."""
    month = request.args.get("month") or None
    before = _cursor(request.args.get("before"))
    errors: dict[str, list[str]] = {}
    if month is not None and not re.fullmatch(r"(19|[2-9]\d)\d{2}-(0[1-9]|1[0-2])", month):
        errors["month"] = [_("Choose a month, like 2026-11.")]
        lines, next_id = [], None
    else:
        lines, next_id = volunteers.entries(
            g.principal.volunteer_id, before=before, limit=PAGE_SIZE, month=month
        )
    return render_page(
        "web/me/history.html",
        422 if errors else 200,
        lines=lines,
        next_id=next_id,
        month=month or "",
        errors=errors,
        plugin_names=PLUGIN_NAMES,
        honours=honours.of_volunteer(g.principal.volunteer_id),
    )


@bp.get("/statement")
@signed_in
def statement():
    """A month's statement: the balance at its start, every line, the balance at its end;
    printable."""
    from points.web.statement import monthly

    context = monthly(
        g.principal.volunteer_id,
        request.args.get("month"),
        g.profile.timezone,
        g.profile.district_code,
    )
    return render_page("web/me/statement.html", 422 if context["errors"] else 200, **context)


def _cursor(value: str | None) -> int | None:
    """A page cursor from the address bar: a positive id, or None (a bad one is ignored)."""
    if value and value.isdigit() and 0 < int(value) < 2**63:
        return int(value)
    return None


@bp.get("/records")
@signed_in
def records():
    """The volunteer's service records: waiting, approved, or rejected with the reason."""
    lines, next_id = volunteers.records(
        g.principal.volunteer_id, before=_cursor(request.args.get("before")), limit=PAGE_SIZE
    )
    return render_page("web/me/records.html", lines=lines, next_id=next_id, kinds=activity_labels())


@bp.get("/catalog")
@signed_in
def catalog():
    """What the volunteer can get: affordable and eligible first, the rest with reasons."""
    items, names = volunteers.offers(g.profile.district_code, g.principal.volunteer_id)
    points = volunteers.balance(g.principal.volunteer_id)
    return render_page("web/me/catalog.html", items=items, providers=names, points=points)


@bp.get("/vouchers")
@signed_in
def vouchers():
    """Held vouchers first (code, where, when it lapses), then the used and lapsed ones."""
    lines, next_id = volunteers.vouchers(
        g.principal.volunteer_id, before=_cursor(request.args.get("before")), limit=PAGE_SIZE
    )
    return render_page("web/me/vouchers.html", lines=lines, next_id=next_id)


@bp.get("/vouchers/<int(min=1, max=2147483647):redemption_id>")
@signed_in
def voucher(redemption_id: int):
    """One voucher, large, with its QR code to show the provider."""
    line = volunteers.voucher(g.principal.volunteer_id, redemption_id)
    return render_page("web/me/voucher.html", line=line, qr_code=qr_svg(line["voucher_code"]))


@bp.post("/vouchers/<int(min=1, max=2147483647):redemption_id>/cancel")
@signed_in
def cancel_voucher(redemption_id: int):
    """Cancel a held voucher: its points are free again."""
    line = volunteers.voucher(g.principal.volunteer_id, redemption_id)
    if line["status"] == "held":
        # Fulfilled or lapsed meanwhile: the voucher page then shows what it is now.
        with contextlib.suppress(ConflictError):
            redemptions.cancel_redemption(
                redemption_id,
                actor=g.principal.actor,
                reason="志愿者本人取消 / cancelled by the volunteer",
            )
    return redirect(url_for("web_me.voucher", redemption_id=redemption_id))


# -- report service ----------------------------------------------------------------------


@bp.route("/report", methods=["GET", "POST"])
@signed_in
def report():
    """Report service the node lets volunteers submit: first the kind, then its form."""
    allowed = volunteers.volunteer_kinds(g.profile.district_code)
    kinds = activity_labels()
    kind = request.values.get("kind")
    if kind not in allowed:
        return render_page("web/me/report_kind.html", allowed=allowed, kinds=kinds)
    fields_ = detail_fields(kind)
    values = {name: request.form.get(f"details.{name}", "") for name, *_ in fields_}
    errors: dict[str, list[str]] = {}
    result = None
    if request.method == "POST":
        key = form_key()
        try:
            started_at = _local_time(request.form.get("started_at", ""))
            minutes = _minutes(request.form.get("minutes", ""), required=False)
            details = {
                name: _typed(value, kind_)
                for (name, kind_, *_), value in zip(fields_, values.values(), strict=True)
                if value.strip()
            }
            result = service.record_service(
                g.principal.volunteer_id,
                kind,
                started_at,
                minutes,
                details,
                actor=g.principal.actor,
                idempotency_key=f"me:{g.principal.volunteer_id}:{key}",
            )
        except (InvalidInputError, ConflictError) as error:
            errors = field_errors(error) or {"form": [error.detail]}
    if result is not None:
        return render_page("web/me/report_done.html", result=result, kinds=kinds)
    return render_page(
        "web/me/report.html",
        422 if errors else 200,
        kind=kind,
        kinds=kinds,
        fields=fields_,
        values=values,
        started_at=request.form.get("started_at") or _now_local(),
        minutes=request.form.get("minutes", ""),
        minutes_rule=activity_kinds_for_page()[kind].minutes,
        errors=errors,
        form_key=request.form.get("form_key") or new_form_key(),
    )


def _local_time(value: str) -> datetime:
    """A datetime-local value in the volunteer's time zone. Raises InvalidInputError."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(
            "bad time", errors={"started_at": [_("Enter the date and time you started.")]}
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(g.profile.timezone))
    return moment


def _now_local() -> str:
    return datetime.now(ZoneInfo(g.profile.timezone)).strftime("%Y-%m-%dT%H:%M")


def _minutes(value: str, *, required: bool) -> int | None:
    value = value.strip()
    if not value:
        if required:
            raise InvalidInputError("minutes", errors={"minutes": [_("Enter the minutes.")]})
        return None
    if not value.isdigit() or not 0 < int(value) <= 24 * 60:
        raise InvalidInputError(
            "minutes", errors={"minutes": [_("Enter whole minutes, from 1 to 1440.")]}
        )
    return int(value)


def _typed(value: str, kind: str):
    """A form's text as the details schema wants it (a number field as an int)."""
    value = value.strip()
    if kind == "number":
        return int(value) if value.lstrip("-").isdigit() else value
    return value


# -- gift points -------------------------------------------------------------------------


@bp.route("/gift", methods=["GET", "POST"])
@signed_in
def gift():
    """Give points to family or a household in need, under the transfers policy."""
    errors: dict[str, list[str]] = {}
    result = None
    form = {
        "card_code": request.form.get("card_code", "").strip(),
        "points": request.form.get("points", "").strip(),
        "relation": request.form.get("relation", "family"),
        "memo": request.form.get("memo", "").strip(),
    }
    if request.method == "POST":
        key = form_key()
        try:
            receiver = volunteers.by_card(form["card_code"])
            if not form["points"].isdigit() or int(form["points"]) < 1:
                raise InvalidInputError(
                    "points", errors={"points": [_("Enter a whole number of points.")]}
                )
            result = redemptions.give_points(
                g.principal.volunteer_id,
                receiver,
                int(form["points"]),
                form["relation"],
                actor=g.principal.actor,
                reason=form["memo"] or "赠送积分 / a gift of points",
                idempotency_key=f"me:{g.principal.volunteer_id}:{key}",
            )
        except RefusedError as error:
            errors = {"form": [pick(r["zh"], r["en"]) for r in error.reasons or []]}
        except (InvalidInputError, ConflictError, NotFoundError) as error:
            errors = field_errors(error) or {"form": [error.detail]}
    if result is not None:
        return render_page("web/me/gift_done.html", result=result)
    return render_page(
        "web/me/gift.html",
        422 if errors else 200,
        form=form,
        errors=errors,
        points=volunteers.balance(g.principal.volunteer_id),
        form_key=request.form.get("form_key") or new_form_key(),
    )


# -- more: PIN, sign out -----------------------------------------------------------------


@bp.get("/more")
@signed_in
def more():
    """The rest: report service, gift points, change PIN, language, sign out."""
    return render_page(
        "web/me/more.html", can_report=bool(volunteers.volunteer_kinds(g.profile.district_code))
    )


@bp.route("/pin", methods=["GET", "POST"])
@signed_in
def change_pin():
    """Change the PIN: the old one, then the new one twice."""
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        old = request.form.get("old_pin", "").strip()
        new = request.form.get("new_pin", "").strip()
        again = request.form.get("new_pin_again", "").strip()
        if new != again:
            errors["new_pin_again"] = [_("The two new PINs are not the same.")]
        else:
            try:
                auth.change_pin(g.principal.volunteer_id, old, new)
            except CardLockedError as error:
                errors["old_pin"] = [
                    _(
                        "Too many wrong PINs. The card is locked until %(time)s.",
                        time=when(error.until, "short"),
                    )
                ]
            except WrongPinError:
                errors["old_pin"] = [_("This is not your current PIN.")]
            except InvalidInputError as error:
                errors = field_errors(error)
            else:
                # Other phones signed in with the old PIN are signed out.
                auth.end_volunteer_sessions(g.principal.volunteer_id, keep=g.principal.token_id)
                return render_page("web/me/pin_done.html")
    return render_page("web/me/pin.html", 422 if errors else 200, errors=errors)
