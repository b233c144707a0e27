"""/me/activities: a volunteer's activities on their phone: the open ones of their node
to sign up for (and withdraw from before the deadline), the ones they signed up for with
their check-in state and record, a cancellation and its reason; and the page the
organiser's QR code opens (`/me/activities/<id>/scan?c=...`), which checks them in on
the first scan and out on the second."""

from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import activities
from points.errors import ConflictError, InvalidInputError, NotFoundError
from points.models import utcnow
from points.plugins import activity_labels
from points.web.activity_messages import explain
from points.web.pages import render_page
from points.web.volunteer import bp, signed_in


def _list(error: str | None = None, status: int = 200):
    return render_page(
        "web/me/activities.html",
        422 if error else status,
        items=activities.activities_for_volunteer(g.principal.volunteer_id),
        kinds=activity_labels(),
        error=error,
        done=request.args.get("done"),
        now=utcnow(),
    )


@bp.get("/activities", endpoint="activities")
@signed_in
def activities_page():
    """The volunteer's activities, soonest first."""
    return _list()


@bp.post(
    "/activities/<int(min=1, max=2147483647):activity_id>/signup", endpoint="activities_signup"
)
@signed_in
def activities_signup(activity_id: int):
    try:
        activities.sign_up(activity_id, g.principal.volunteer_id, actor=g.principal.actor)
    except NotFoundError:
        return _list(_("This activity is not open to you."))
    except (InvalidInputError, ConflictError) as error:
        return _list(explain(error))
    return redirect(url_for("web_me.activities", done="signed"))


@bp.post(
    "/activities/<int(min=1, max=2147483647):activity_id>/withdraw", endpoint="activities_withdraw"
)
@signed_in
def activities_withdraw(activity_id: int):
    try:
        activities.withdraw(activity_id, g.principal.volunteer_id, actor=g.principal.actor)
    except NotFoundError:
        return _list(_("This activity is not open to you."))
    except (InvalidInputError, ConflictError) as error:
        return _list(explain(error))
    return redirect(url_for("web_me.activities", done="withdrawn"))


@bp.route(
    "/activities/<int(min=1, max=2147483647):activity_id>/scan",
    methods=["GET", "POST"],
    endpoint="activities_scan",
)
@signed_in
def activities_scan(activity_id: int):
    """The QR code's page. A GET shows one large button (a phone's camera or a link
    preview may open the URL without the volunteer meaning to check in); the POST checks
    in, or out when they are in already."""
    code = request.values.get("c", "")
    try:
        activity = activities.get_activity(activity_id)
    except NotFoundError:
        return render_page(
            "web/me/activity_scan.html",
            404,
            activity=None,
            error=_("This code is not an activity's."),
        )
    error = None
    if request.method == "POST":
        try:
            direction, signup = activities.scan(
                activity_id, g.principal.volunteer_id, code, actor=g.principal.actor
            )
        except NotFoundError:
            error = _("You have not signed up for this activity.")
        except (InvalidInputError, ConflictError) as failure:
            error = explain(failure)
        else:
            return render_page(
                "web/me/activity_scan.html",
                activity=activity,
                direction=direction,
                signup=signup,
                kinds=activity_labels(),
            )
    elif not activities.check_qr(activity_id, code):
        error = _("This code has expired. Scan the code on the organiser's screen again.")
    return render_page(
        "web/me/activity_scan.html",
        422 if error else 200,
        activity=activity,
        code=code,
        error=error,
        direction=None,
    )
