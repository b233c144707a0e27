"""/kiosk/activities: check in to an activity (or out of it) at the community's kiosk,
for volunteers without a phone: pick the activity under way, then card and PIN (the
PIN is counted and locked as at any kiosk, so a card without its holder does not check
in). The kiosk shows the masked name and the answer, and keeps nobody signed in."""

from __future__ import annotations

from datetime import timedelta

from flask import g, request
from flask_babel import gettext as _

from points import activities, auth, volunteers
from points.errors import (
    AccountClosedError,
    ActivationRequiredError,
    CardLockedError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    WrongPinError,
)
from points.models import utcnow
from points.policy import district_info
from points.web.activity_messages import explain
from points.web.kiosk import bp, idle_seconds, paired
from points.web.pages import render_page


def _under_way() -> list[activities.ActivityInfo]:
    """The kiosk's node's open activities whose check-in or check-out is possible now."""
    now = utcnow()
    found = activities.activities_of_node(
        g.kiosk.district_id,
        status="open",
        since=now - activities.CHECK_OUT_LATE - timedelta(days=1),
        limit=200,
    )
    return [
        item
        for item in found
        if item.starts_at - activities.CHECK_IN_EARLY
        <= now
        <= item.ends_at + activities.CHECK_OUT_LATE
    ]


def _activity_here(activity_id: int) -> activities.ActivityInfo:
    """The activity, when it is of this kiosk's node or below; else NotFoundError."""
    found = activities.get_activity(activity_id)
    if not g.kiosk.covers(district_info(found.district_code).path):
        raise NotFoundError(f"no activity {activity_id}")
    return found


@bp.get("/activities", endpoint="activities")
@paired
def activities_page():
    """The activities under way here, as large buttons."""
    return render_page("web/kiosk/activities.html", items=_under_way())


@bp.route(
    "/activities/<int(min=1, max=2147483647):activity_id>",
    methods=["GET", "POST"],
    endpoint="activity_card",
)
@paired
def activity_card(activity_id: int):
    """Card and PIN; checks in, or out when the volunteer is in already."""
    activity = _activity_here(activity_id)
    g.idle = idle_seconds()
    errors: dict[str, list[str]] = {}
    code = request.form.get("card_code", "").strip()
    if request.method == "POST":
        try:
            holder = auth.verify_card(g.kiosk, code, request.form.get("pin", "").strip())
        except CardLockedError:
            errors["pin"] = [_("Too many wrong PINs. The card is locked.")]
        except WrongPinError as error:
            left = error.tries_left
            errors["pin"] = [
                _("Wrong PIN. %(left)s more tries before the card locks.", left=left)
                if left is not None
                else _("Wrong PIN.")
            ]
        except (AccountClosedError, ActivationRequiredError):
            errors["pin"] = [_("This card is not active. Please ask your office.")]
        else:
            return _check(activity, holder)
    return render_page(
        "web/kiosk/activity_card.html",
        422 if errors else 200,
        activity=activity,
        code=code,
        errors=errors,
    )


def _check(activity: activities.ActivityInfo, holder: auth.CardHolder):
    signup = next(
        (
            row.signup
            for row in activities.attendance(activity.id)
            if row.volunteer_id == holder.volunteer_id
        ),
        None,
    )
    going_out = signup is not None and signup.checked_in_at is not None
    step = activities.check_out if going_out else activities.check_in
    name = volunteers.mask_name(holder.name)
    try:
        done = step(activity.id, holder.volunteer_id, actor=g.kiosk.actor, via="card")
    except (NotFoundError, InvalidInputError, ConflictError) as error:
        problem = (
            _("You have not signed up for this activity.")
            if isinstance(error, NotFoundError)
            else explain(error)
        )
        return render_page(
            "web/kiosk/activity_done.html", 409, activity=activity, name=name, problem=problem
        )
    return render_page(
        "web/kiosk/activity_done.html",
        activity=activity,
        name=name,
        direction="out" if going_out else "in",
        signup=done,
        problem=None,
    )
