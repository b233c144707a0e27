"""/office/volunteers: find, register, edit, suspend; PINs, activation codes, cards,
corrections.

Every change calls the service function the API calls (points.roster, points.directory,
points.corrections); a secret a change makes (a new PIN, a new card code, an activation
code) is shown once, on the page that answers the form, and never kept.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import corrections, directory, roster, volunteers
from points.auth import reach_volunteer, require_scope
from points.cards import card_sheet
from points.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from points.plugins import activity_labels
from points.web.cards import public_url, render_sheet
from points.web.forms import PLUGIN_NAMES
from points.web.office import bp, staff_page
from points.web.pages import field_errors, render_page

PAGE_SIZE = 50
HISTORY_SIZE = 20


def _labels() -> dict[str, str]:
    return {
        "name": _("Name"),
        "phone": _("Phone"),
        "district": _("Node"),
        "pin": _("PIN"),
        "reason": _("Reason"),
        "status": _("Status"),
    }


def _nodes():
    return directory.tree(None if g.principal.role == "admin" else g.principal.path)


@bp.get("/volunteers", endpoint="volunteers")
@staff_page
def volunteers_list():
    """Search by name (its start), card code or phone; filter by node and status."""
    q = request.args.get("q", "").strip()[:200]
    district = request.args.get("district") or None
    status = request.args.get("status") or None
    if status not in (None, *roster.STATES):
        status = None
    after = None
    if request.args.get("after_name") is not None and request.args.get("after_id", "").isdigit():
        after = (request.args["after_name"], int(request.args["after_id"]))
    errors: dict[str, list[str]] = {}
    try:
        rows = roster.search(
            g.principal, q, district=district, status=status, after=after, limit=PAGE_SIZE + 1
        )
    except (NotFoundError, ForbiddenError):
        rows, errors = [], {"district": [_("Choose a node in your reach.")]}
    page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    return render_page(
        "web/office/volunteers/list.html",
        422 if errors else 200,
        rows=page,
        more=more,
        q=q,
        district=district or "",
        status_filter=status or "",
        nodes=_nodes(),
        errors=errors,
        labels=_labels(),
    )


@bp.route("/volunteers/new", methods=["GET", "POST"])
@staff_page(change=True)
def volunteers_new():
    """Register a volunteer; the PIN is typed with them, or drawn and shown once."""
    form = request.form
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        name = form.get("name", "")
        phone = form.get("phone", "").strip() or None
        district = form.get("district", "")
        drawn = not form.get("pin", "").strip()
        pin = roster.new_pin("") if drawn else form.get("pin", "").strip()
        try:
            node = directory.district_by_code(district) if district else None
            if node is None:
                raise InvalidInputError("no node", errors={"district": [_("Choose a node.")]})
            require_scope(g.principal, node.path)
            volunteer = directory.register_volunteer(name, district, pin, phone=phone)
        except (InvalidInputError, NotFoundError, ConflictError) as error:
            errors = field_errors(error) or {"form": [error.detail]}
        except ForbiddenError:
            errors = {"district": [_("Choose a node in your reach.")]}
        else:
            return render_page(
                "web/office/volunteers/secret.html",
                volunteer=volunteers.profile(volunteer.id),
                pin=pin if drawn else None,
                card_code=volunteer.card_code,
                what="registered",
            )
    return render_page(
        "web/office/volunteers/new.html",
        422 if errors else 200,
        errors=errors,
        form=form,
        nodes=_nodes(),
        labels=_labels(),
    )


@bp.get("/volunteers/<int:volunteer_id>/statement")
@staff_page
def volunteers_statement(volunteer_id: int):
    """A volunteer's statement for a month, to print and hand over."""
    from points.web.statement import monthly

    reach_volunteer(g.principal, volunteer_id)
    profile = volunteers.profile(volunteer_id)
    context = monthly(
        volunteer_id, request.args.get("month"), profile.timezone, profile.district_code
    )
    return render_page(
        "web/office/volunteers/statement.html",
        422 if context["errors"] else 200,
        profile=profile,
        **context,
    )


@bp.get("/volunteers/<int:volunteer_id>")
@staff_page
def volunteers_show(volunteer_id: int):
    """A volunteer's page: points, hours, star, then history, records or vouchers."""
    reach_volunteer(g.principal, volunteer_id)
    profile = volunteers.profile(volunteer_id)
    tab = request.args.get("tab", "history")
    if tab not in ("history", "records", "vouchers"):
        tab = "history"
    before = request.args.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 19 else None
    if tab == "history":
        lines, next_id = volunteers.entries(volunteer_id, before=before_id, limit=HISTORY_SIZE)
    elif tab == "records":
        lines, next_id = volunteers.records(volunteer_id, before=before_id, limit=HISTORY_SIZE)
    else:
        lines, next_id = volunteers.vouchers(volunteer_id, before=before_id, limit=HISTORY_SIZE)
    row = roster.search(g.principal, profile.card_code, limit=1)
    return render_page(
        "web/office/volunteers/show.html",
        profile=profile,
        row=row[0] if row else None,
        summary=volunteers.summary(volunteer_id, expiring_days=30),
        tab=tab,
        lines=lines,
        next_id=next_id,
        plugin_names=PLUGIN_NAMES,
        kinds=activity_labels(),
        notice=request.args.get("done"),
    )


@bp.route("/volunteers/<int:volunteer_id>/edit", methods=["GET", "POST"])
@staff_page(change=True)
def volunteers_edit(volunteer_id: int):
    """Change the name or phone number."""
    reach_volunteer(g.principal, volunteer_id)
    profile = volunteers.profile(volunteer_id)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        phone = request.form.get("phone", "").strip()
        try:
            roster.update_volunteer(
                g.principal,
                volunteer_id,
                name=request.form.get("name", ""),
                phone=phone or None,
                clear_phone=not phone,
            )
        except InvalidInputError as error:
            errors = field_errors(error)
        else:
            return redirect(
                url_for("web_office.volunteers_show", volunteer_id=volunteer_id, done="edited")
            )
    return render_page(
        "web/office/volunteers/edit.html",
        422 if errors else 200,
        profile=profile,
        form=request.form
        if request.method == "POST"
        else {"name": profile.name, "phone": profile.phone or ""},
        errors=errors,
        labels=_labels(),
    )


@bp.post("/volunteers/<int:volunteer_id>/status")
@staff_page(change=True)
def volunteers_status(volunteer_id: int):
    """Suspend (the card and sessions stop) or reactivate."""
    status = request.form.get("status", "")
    try:
        roster.set_status(g.principal, volunteer_id, status, request.form.get("reason", ""))
    except InvalidInputError as error:
        raise InvalidInputError(_("This status cannot be set."), errors=error.errors) from None
    done = "suspended" if status == "suspended" else "reactivated"
    return redirect(url_for("web_office.volunteers_show", volunteer_id=volunteer_id, done=done))


@bp.post("/volunteers/<int:volunteer_id>/pin-reset")
@staff_page(change=True)
def volunteers_pin_reset(volunteer_id: int):
    """Draw a new PIN and show it once, to hand over; the card unlocks."""
    pin = roster.reset_pin(g.principal, volunteer_id)
    return render_page(
        "web/office/volunteers/secret.html",
        volunteer=volunteers.profile(volunteer_id),
        pin=pin,
        card_code=None,
        what="pin",
    )


@bp.post("/volunteers/<int:volunteer_id>/activation")
@staff_page(change=True)
def volunteers_activation(volunteer_id: int):
    """Issue a one-time activation code (the PIN and any older code stop) and show it
    once, on the volunteer's card sheet with its slip, ready to print."""
    code = roster.issue_activation(g.principal, volunteer_id)
    profile = volunteers.profile(volunteer_id)
    sheet = card_sheet(
        profile.district_code, public_url(), g.principal, activation_codes={volunteer_id: code}
    )
    return render_sheet(sheet, issued_for=volunteer_id)


@bp.post("/volunteers/<int:volunteer_id>/unlock")
@staff_page(change=True)
def volunteers_unlock(volunteer_id: int):
    """Unlock a card locked by wrong PINs."""
    roster.unlock_card(g.principal, volunteer_id)
    return redirect(
        url_for("web_office.volunteers_show", volunteer_id=volunteer_id, done="unlocked")
    )


@bp.post("/volunteers/<int:volunteer_id>/reissue-card")
@staff_page(change=True)
def volunteers_reissue(volunteer_id: int):
    """A new card code at once (the old card stops); print the new card."""
    code = roster.reissue_card(g.principal, volunteer_id)
    return render_page(
        "web/office/volunteers/secret.html",
        volunteer=volunteers.profile(volunteer_id),
        pin=None,
        card_code=code,
        what="card",
    )


@bp.get("/volunteers/<int:volunteer_id>/card")
@staff_page
def volunteers_card(volunteer_id: int):
    """The volunteer's card alone, on an A4 sheet, to print."""
    _, _path = reach_volunteer(g.principal, volunteer_id)
    profile = volunteers.profile(volunteer_id)
    sheet = card_sheet(profile.district_code, public_url(), g.principal, volunteer_id=volunteer_id)
    return render_sheet(sheet)


@bp.route("/volunteers/<int:volunteer_id>/entries/<int:entry_id>/reverse", methods=["GET", "POST"])
@staff_page(change=True)
def volunteers_reverse(volunteer_id: int, entry_id: int):
    """Correct a line of the volunteer's history: post its reversal, with a reason."""
    reach_volunteer(g.principal, volunteer_id)
    corrections.check_reach(g.principal, entry_id)
    errors: dict[str, list[str]] = {}
    reason = request.form.get("reason", "").strip()
    if request.method == "POST":
        if not reason:
            errors = {"reason": [_("Say why this line is corrected.")]}
        else:
            try:
                corrections.reverse_entry(g.principal, entry_id, reason[:500])
            except ConflictError as error:
                errors = {"form": [error.detail]}
            else:
                return redirect(
                    url_for(
                        "web_office.volunteers_show", volunteer_id=volunteer_id, done="reversed"
                    )
                )
    line = next(
        (line for line in volunteers.entries(volunteer_id, limit=200)[0] if line["id"] == entry_id),
        None,
    )
    return render_page(
        "web/office/volunteers/reverse.html",
        422 if errors else 200,
        profile=volunteers.profile(volunteer_id),
        line=line,
        entry_id=entry_id,
        reason=reason,
        errors=errors,
        labels=_labels(),
    )


@bp.get("/cards")
@staff_page
def volunteers_cards():
    """With ?district=CODE the A4 sheet of that node's cards; else a choice of nodes."""
    code = (request.args.get("district") or "").strip()
    errors: dict[str, list[str]] = {}
    if code:
        try:
            return render_sheet(card_sheet(code, public_url(), g.principal))
        except (NotFoundError, ForbiddenError):
            errors = {"district": [_("Choose a node in your reach.")]}
    return render_page(
        "web/office/volunteers/cards.html",
        422 if errors else 200,
        nodes=_nodes(),
        code=code,
        errors=errors,
        labels=_labels(),
    )
