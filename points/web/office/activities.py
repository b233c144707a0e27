"""/office/activities: an office posts activities, and the organiser runs one on site.

The list and the form (post, edit, cancel) are for the office's desk; the organiser's
page (`/office/activities/<id>`) is built for a phone held at the door as much as for a
desk: who signed up, who is here, who left, no-shows; sign someone up by their card;
check a person in or out by card and PIN (the kiosk's check, counted and locked as any
PIN); the rotating QR code full screen; close; the attendance list as CSV or XLSX.
Everything goes through `points.activities`, as the API does.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import g, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from points import activities, auth, report_files
from points.errors import (
    AccountClosedError,
    ActivationRequiredError,
    CardLockedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    WrongPinError,
)
from points.extensions import db
from points.models import Volunteer
from points.plugins import activity_labels
from points.web.activity_messages import explain
from points.web.forms import activity_kinds_for_page, qr_svg
from points.web.office import bp, node_in_reach, staff_page
from points.web.pages import field_errors, render_page

# The form's fields in order, with the names the service's messages use.
TEXT_FIELDS = ("title_zh", "title_en", "place", "description_zh", "description_en")
TIME_FIELDS = ("starts_at", "ends_at", "signup_until")
NUMBER_FIELDS = ("places", "min_star_level")
# The QR page reloads itself this often: the code changes every 30 s and a scan is
# accepted for the current and the previous window, so a reload every 10 s is never late.
QR_REFRESH_SECONDS = 10


def _labels() -> dict[str, str]:
    return {
        "title_zh": _("Title (Chinese)"),
        "title_en": _("Title (English)"),
        "place": _("Venue"),
        "description_zh": _("Description (Chinese)"),
        "description_en": _("Description (English)"),
        "starts_at": _("Starts"),
        "ends_at": _("Ends"),
        "signup_until": _("Sign-up closes"),
        "kind": _("Kind of service"),
        "places": _("Places"),
        "min_star_level": _("Lowest star level"),
        "district": _("Node"),
        "reason": _("Reason"),
        "card_code": _("Card code"),
        "pin": _("PIN"),
        "form": _("Activity"),
    }


def _activity_in_reach(activity_id: int) -> activities.ActivityInfo:
    """The activity, or 404 when it is unknown or outside the staff member's reach."""
    found = activities.get_activity(activity_id)
    if node_in_reach(found.district_code) is None:
        raise NotFoundError(f"no activity {activity_id}")
    return found


def _local(text: str, zone: ZoneInfo) -> datetime | None:
    """A datetime-local field in the node's zone, or None when it is not a time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _form_values(zone: ZoneInfo) -> tuple[dict, dict[str, list[str]]]:
    """The posted form as the service's values, and the messages of what is unreadable."""
    form = request.form
    values: dict = {name: form.get(name, "").strip() for name in TEXT_FIELDS}
    values["kind"] = form.get("kind", "")
    errors: dict[str, list[str]] = {}
    for name in TIME_FIELDS:
        values[name] = _local(form.get(name, ""), zone)
        if values[name] is None:
            errors[name] = [_("Enter a date and time.")]
    for name in NUMBER_FIELDS:
        text = form.get(name, "").strip() or ("0" if name == "min_star_level" else "")
        try:
            values[name] = int(text)
        except ValueError:
            errors[name] = [_("Enter a whole number.")]
    return values, errors


def _form_page(node, form: dict, errors: dict, activity=None, status: int = 200):
    return render_page(
        "web/office/activities/form.html",
        status if status != 200 else (422 if errors else 200),
        node=node,
        activity=activity,
        form=form,
        errors=errors,
        labels=_labels(),
        kinds=_kinds(),
        nodes=_nodes(),
    )


def _kinds() -> list[tuple[str, tuple[str, str]]]:
    """The kinds the form offers: those whose records need no details beyond the
    activity itself (the API may give record details for the others), and not the
    once-a-day check-in."""
    labels = activity_labels()
    offered = []
    for name, kind in activity_kinds_for_page().items():
        if kind.once_per_day or kind.schema().validate({}):
            continue
        offered.append((name, labels.get(name, (name, name))))
    return offered


def _nodes():
    from points import directory

    return directory.tree(None if g.principal.role == "admin" else g.principal.path)


def _shown(activity: activities.ActivityInfo, zone: ZoneInfo) -> dict:
    """An activity as the form shows it: local times without seconds."""
    form = {name: getattr(activity, name) for name in TEXT_FIELDS + NUMBER_FIELDS}
    form["kind"] = activity.kind
    for name in TIME_FIELDS:
        form[name] = getattr(activity, name).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    return form


@bp.get("/activities", endpoint="activities")
@staff_page
def activities_list():
    """The activities of a node and below: upcoming first, then past and cancelled."""
    node = node_in_reach(request.args.get("district")) or node_in_reach(None)
    status = request.args.get("status")
    if status not in ("open", "closed", "cancelled"):
        status = None
    found = activities.activities_of_node(node.id, status=status, limit=200)
    now = datetime.now(ZoneInfo(node.timezone))
    return render_page(
        "web/office/activities/list.html",
        node=node,
        status=status,
        upcoming=[item for item in found if item.ends_at >= now],
        past=sorted((item for item in found if item.ends_at < now), key=lambda a: a.starts_at)[
            ::-1
        ],
        nodes=_nodes(),
        kinds=dict(_kinds()),
    )


@bp.route("/activities/new", methods=["GET", "POST"], endpoint="activities_new")
@staff_page(change=True)
def activities_new():
    """Post an activity: titles in both languages, place, times, kind, places, who may
    sign up (the node and below, a lowest star level) and the sign-up deadline."""
    node = node_in_reach(request.values.get("district"))
    if request.method == "GET" or node is None:
        errors = (
            {} if request.method == "GET" else {"district": [_("Choose a node in your reach.")]}
        )
        return _form_page(node or node_in_reach(None), dict(request.form), errors)
    zone = ZoneInfo(node.timezone)
    values, errors = _form_values(zone)
    if not errors:
        try:
            found = activities.post_activity(node.id, **values, actor=g.principal.actor)
        except InvalidInputError as error:
            errors = field_errors(error) or {"form": [explain(error)]}
        else:
            return redirect(url_for("web_office.activities_show", activity_id=found.id))
    return _form_page(node, dict(request.form), errors)


@bp.route(
    "/activities/<int(min=1, max=2147483647):activity_id>/edit",
    methods=["GET", "POST"],
    endpoint="activities_edit",
)
@staff_page(change=True)
def activities_edit(activity_id: int):
    """Change an open activity; a form read before someone else's change saves nothing."""
    activity = _activity_in_reach(activity_id)
    node = node_in_reach(activity.district_code)
    zone = ZoneInfo(node.timezone)
    if request.method == "GET":
        form = _shown(activity, zone) | {"version": activity.version}
        return _form_page(node, form, {}, activity)
    values, errors = _form_values(zone)
    if not errors:
        # Only what the form changed is sent: a field fixed once someone checked in is
        # refused only when it really changes.
        changes = {
            name: value for name, value in values.items() if value != getattr(activity, name)
        }
        try:
            version = int(request.form.get("version", ""))
        except ValueError:
            version = -1
        try:
            activities.edit_activity(
                activity_id, changes=changes, expected_version=version, actor=g.principal.actor
            )
        except (InvalidInputError, ConflictError) as error:
            fresh = activities.get_activity(activity_id)
            if fresh.version != version:
                # Changed by someone else since this form was read: show it as it is now.
                stale = _(
                    "Someone changed this activity after you opened it. Nothing was saved; "
                    "here it is as it is now."
                )
                form = _shown(fresh, zone) | {"version": fresh.version}
                return _form_page(node, form, {"form": [stale]}, fresh, 409)
            errors = field_errors(error) or {"form": [explain(error)]}
        else:
            return redirect(url_for("web_office.activities_show", activity_id=activity_id))
    return _form_page(node, dict(request.form), errors, activity)


def _show(activity_id: int, errors: dict | None = None, message: str | None = None, status=200):
    activity = _activity_in_reach(activity_id)
    rows = activities.attendance(activity_id)
    counts = {state: 0 for state in ("signed", "here", "left", "no_show", "withdrawn")}
    for row in rows:
        counts[row.state] += 1
    return render_page(
        "web/office/activities/show.html",
        422 if errors else status,
        activity=activity,
        rows=rows,
        counts=counts,
        errors=errors or {},
        message=message,
        labels=_labels(),
        kinds=dict(_kinds()),
    )


@bp.get("/activities/<int(min=1, max=2147483647):activity_id>", endpoint="activities_show")
@staff_page
def activities_show(activity_id: int):
    """The organiser's page: attendance, sign-up and card check-in, QR code, close."""
    if request.args.get("format") in report_files.MIMETYPES:
        _activity_in_reach(activity_id)
        return report_files.attachment(
            activities.attendance_tables(activity_id),
            request.args["format"],
            f"attendance-{activity_id}",
        )
    return _show(activity_id, message=request.args.get("done"))


@bp.get("/activities/<int(min=1, max=2147483647):activity_id>/qr", endpoint="activities_qr")
@staff_page(change=True)
def activities_qr(activity_id: int):
    """The code to scan, full screen, reloading itself before it lapses."""
    activity = _activity_in_reach(activity_id)
    url = request.host_url.rstrip("/") + activities.scan_url(activity_id)
    return render_page(
        "web/office/activities/qr.html",
        activity=activity,
        scan_url=url,
        qr_code=qr_svg(url, scale=8),
        refresh=QR_REFRESH_SECONDS,
    )


def _volunteer_by_card(code: str) -> int | None:
    row = db.session.execute(
        select(Volunteer.id).where(Volunteer.card_code == code.strip().upper())
    ).scalar_one_or_none()
    return row


@bp.post(
    "/activities/<int(min=1, max=2147483647):activity_id>/signup", endpoint="activities_signup"
)
@staff_page(change=True)
def activities_signup(activity_id: int):
    """Sign someone up by their card code (people without a phone)."""
    _activity_in_reach(activity_id)
    volunteer_id = _volunteer_by_card(request.form.get("card_code", ""))
    if volunteer_id is None:
        return _show(activity_id, {"card_code": [_("No volunteer has this card.")]})
    try:
        auth.reach_volunteer(g.principal, volunteer_id)
        activities.sign_up(activity_id, volunteer_id, actor=g.principal.actor)
    except NotFoundError:
        return _show(activity_id, {"card_code": [_("No volunteer has this card.")]})
    except (InvalidInputError, ConflictError) as error:
        return _show(activity_id, {"card_code": [explain(error)]})
    return redirect(url_for("web_office.activities_show", activity_id=activity_id, done="signed"))


@bp.post("/activities/<int(min=1, max=2147483647):activity_id>/card", endpoint="activities_card")
@staff_page(change=True)
def activities_card(activity_id: int):
    """Check a person in by card and PIN, or out when they are already in."""
    _activity_in_reach(activity_id)
    form = request.form
    try:
        holder = auth.verify_card(g.principal, form.get("card_code", ""), form.get("pin", ""))
    except WrongPinError:
        return _show(activity_id, {"pin": [_("The card or the PIN is wrong.")]})
    except CardLockedError:
        return _show(
            activity_id,
            {"pin": [_("This card is locked after too many wrong PINs. Try again later.")]},
        )
    except (AccountClosedError, ActivationRequiredError):
        return _show(activity_id, {"card_code": [_("This card cannot be used here.")]})
    signup = next(
        (
            row.signup
            for row in activities.attendance(activity_id)
            if row.volunteer_id == holder.volunteer_id
        ),
        None,
    )
    going_out = signup is not None and signup.checked_in_at is not None
    step = activities.check_out if going_out else activities.check_in
    try:
        step(activity_id, holder.volunteer_id, actor=g.principal.actor, via="card")
    except (InvalidInputError, ConflictError) as error:
        return _show(activity_id, {"card_code": [explain(error)]})
    done = "out" if going_out else "in"
    return redirect(url_for("web_office.activities_show", activity_id=activity_id, done=done))


@bp.post(
    "/activities/<int(min=1, max=2147483647):activity_id>/cancel", endpoint="activities_cancel"
)
@staff_page(change=True)
def activities_cancel(activity_id: int):
    """Cancel with a reason the signed-up read on their page."""
    _activity_in_reach(activity_id)
    try:
        activities.cancel_activity(
            activity_id, reason=request.form.get("reason", ""), actor=g.principal.actor
        )
    except (InvalidInputError, ConflictError) as error:
        return _show(activity_id, field_errors(error) or {"reason": [explain(error)]})
    return redirect(url_for("web_office.activities_show", activity_id=activity_id))


@bp.post("/activities/<int(min=1, max=2147483647):activity_id>/close", endpoint="activities_close")
@staff_page(change=True)
def activities_close(activity_id: int):
    """Close: those who never checked out get the scheduled minutes, for review."""
    _activity_in_reach(activity_id)
    try:
        activities.close_activity(activity_id, actor=g.principal.actor)
    except (InvalidInputError, ConflictError) as error:
        return _show(activity_id, {"form": [explain(error)]})
    return redirect(url_for("web_office.activities_show", activity_id=activity_id, done="closed"))
