"""/office: the street office's console. Staff sign in with a username and a password.

One blueprint, one module a screen (PAGES.md): this module holds the sign-in, the
password change and the Today page, and the decorator every console page uses;
`queue`, `volunteers`, `providers`, `catalog`, `policy`, `reports`, `rankings`, `tokens`,
`staff_pages`, `audit_log`, `exports` and `imports` add their screens to the same blueprint.
Auditors see every page of their reach without its change controls, and any change they
post is refused (403).
"""

from __future__ import annotations

from datetime import datetime, time
from functools import wraps
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import current_app, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from points import staff
from points.errors import (
    AccountLockedError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    WrongPasswordError,
)
from points.extensions import db
from points.models import District
from points.web.pages import field_errors, page_blueprint, render_page, session_principal

bp = page_blueprint("office", __name__, "/office")

# The session keeps the staff member's console token under this key.
SESSION_KEY = "staff_token"
STAFF_ROLES = ("admin", "office", "auditor")
CHANGERS = ("admin", "office")


def current_staff():
    """The staff session of this browser, or None (a pasted API token is not one)."""
    principal = session_principal(SESSION_KEY, STAFF_ROLES)
    return principal if principal is not None and principal.staff_id is not None else None


def staff_page(view=None, *, change: bool = False):
    """Let in a signed-in staff member; `change=True` refuses auditors (403).

    Sets g.principal (the session as a Principal), g.staff (the account) and the page's
    time zone (the staff member's node's). A password handed over by a reset must be
    changed before anything else.
    """

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = current_staff()
            if principal is None:
                target = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("web_office.sign_in", next=target))
            g.principal = principal
            g.staff = staff.staff_info(principal.staff_id)
            g.page_timezone = db.session.get(District, principal.district_id).timezone
            if g.staff.must_change_password and request.endpoint != "web_office.password":
                return redirect(url_for("web_office.password"))
            if change and principal.role not in CHANGERS:
                raise ForbiddenError(_("Auditors read everything in reach and change nothing."))
            return view(*args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


# The console's menu: (endpoint, label), in order. A screen's endpoints all start with its
# menu endpoint ("volunteers", "volunteers_show", ...), which marks the menu item current.
NAV = (
    ("web_office.home", lazy_gettext("Today")),
    ("web_office.queue", lazy_gettext("Queue")),
    ("web_office.activities", lazy_gettext("Activities")),
    ("web_office.volunteers", lazy_gettext("Volunteers")),
    ("web_office.providers", lazy_gettext("Providers")),
    ("web_office.catalog", lazy_gettext("Catalog")),
    ("web_office.policy", lazy_gettext("Policy")),
    ("web_office.reports", lazy_gettext("Reports")),
    ("web_office.rankings", lazy_gettext("Rankings")),
    ("web_office.honours", lazy_gettext("Honours")),
    ("web_office.tokens", lazy_gettext("Tokens and kiosks")),
    ("web_office.staff", lazy_gettext("Staff")),
    ("web_office.audit", lazy_gettext("Audit log")),
    ("web_office.exports", lazy_gettext("Exports")),
    ("web_office.imports", lazy_gettext("Imports")),
    ("web_office.webhooks", lazy_gettext("Webhooks")),
)
ROLE_NAMES = {
    "admin": lazy_gettext("administrator"),
    "office": lazy_gettext("office"),
    "auditor": lazy_gettext("auditor"),
}


@bp.app_template_global()
def office_nav() -> list[tuple[str, str]]:
    """The menu items whose screens exist (a screen may come with a later module)."""
    views = current_app.view_functions
    return [(endpoint, str(label)) for endpoint, label in NAV if endpoint in views]


@bp.app_template_global()
def role_name(role: str) -> str:
    return str(ROLE_NAMES.get(role, role))


@bp.app_template_global()
def can_change() -> bool:
    """True when the signed-in staff member may change things (not an auditor)."""
    principal = g.get("principal")
    return principal is not None and principal.role in CHANGERS


@bp.app_template_global()
def page_url(**changes) -> str:
    """This page's address with some query arguments changed (None drops one)."""
    arguments = {key: value for key, value in request.args.items() if key not in changes}
    arguments.update({key: value for key, value in changes.items() if value is not None})
    return request.path + ("?" + urlencode(arguments) if arguments else "")


def node_in_reach(code: str | None):
    """The node a page asks about (`code`, default the staff member's own) as a
    DistrictInfo, or None when there is no such node or it lies outside their reach."""
    from points.policy import district_info

    try:
        node = district_info(code or g.principal.district_id)
    except NotFoundError:
        return None
    return node if g.principal.covers(node.path) else None


def local_day(text: str, zone) -> datetime | None:
    """A form's date ("2026-11-03") as the start of that day in `zone`, or None."""
    try:
        return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time(), zone)
    except ValueError:
        return None


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in():
    """Username and password; five wrong passwords lock the account for 15 minutes."""
    from points.web import safe_next

    errors: dict[str, list[str]] = {}
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "")
        try:
            signed = staff.sign_in(username, request.form.get("password", ""))
        except (WrongPasswordError, AccountLockedError) as error:
            errors = field_errors(error)
        else:
            # A new session from scratch: nothing from before sign-in carries over.
            session.clear()
            g.pop("csrf_token", None)
            session[SESSION_KEY] = signed.token
            if signed.staff.must_change_password:
                return redirect(url_for("web_office.password"))
            return redirect(safe_next(request.args.get("next"), url_for("web_office.home")))
    return render_page(
        "web/office/sign_in.html", 422 if errors else 200, errors=errors, username=username
    )


@bp.post("/sign-out")
def sign_out():
    """End this console session (the token is revoked, not just forgotten)."""
    principal = current_staff()
    if principal is not None:
        staff.sign_out(principal)
    session.pop(SESSION_KEY, None)
    g.pop("csrf_token", None)
    return redirect(url_for("web_office.sign_in"))


@bp.route("/password", methods=["GET", "POST"])
@staff_page
def password():
    """Change one's own password; the other sessions of the account end."""
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            errors = {"confirm_password": [_("The two new passwords differ.")]}
        else:
            try:
                staff.change_password(g.principal, request.form.get("old_password", ""), new)
            except (InvalidInputError, AccountLockedError) as error:
                errors = field_errors(error)
            else:
                return redirect(url_for("web_office.home", changed="password"))
    return render_page("web/office/password.html", 422 if errors else 200, errors=errors)


@bp.get("")
@staff_page
def home():
    """Today: what waits for a decision, vouchers about to lapse, locked cards, and the
    node's last 12 months and this month's points by activity as charts."""
    from points import office
    from points import reports as figures
    from points.plugins import activity_labels
    from points.web.office.reports import MONTHS_CHARTED, series_labels

    node = node_in_reach(None)
    month = datetime.now(ZoneInfo(node.timezone)).strftime("%Y-%m")
    this_month = figures.report(node.id, *figures.month_bounds(month, node.timezone))
    return render_page(
        "web/office/today.html",
        today=office.today(g.principal),
        node=node,
        months=figures.monthly(node.id, MONTHS_CHARTED, month),
        by_kind=sorted(this_month.issued_by_kind.items(), key=lambda item: -item[1]),
        kinds=activity_labels(),
        series=series_labels(),
    )


# The screens: each module adds its routes to `bp`.
from points.web.office import (  # noqa: E402, F401
    activities,
    audit_log,
    catalog,
    exports,
    honours,
    imports,
    policy,
    providers,
    queue,
    rankings,
    reports,
    settlements,
    staff_pages,
    tokens,
    volunteers,
    webhooks,
)
