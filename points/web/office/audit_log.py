"""/office/audit: the audit log of the node and below, newest first, with filters."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import g, request
from flask_babel import gettext as _

from points import audit, directory
from points.errors import ForbiddenError, NotFoundError
from points.web.office import bp, local_day, staff_page
from points.web.pages import render_page

PAGE_SIZE = 50
# The groups of actions people filter by (the part before the dot).
GROUPS = (
    "staff",
    "volunteer",
    "provider",
    "token",
    "kiosk",
    "policy",
    "record",
    "gift",
    "entry",
    "district",
)


@bp.get("/audit", endpoint="audit")
@staff_page
def audit_list():
    """Who changed what, where and when."""
    args = request.args
    zone = ZoneInfo(g.page_timezone)
    errors: dict[str, list[str]] = {}
    since = local_day(args.get("since", ""), zone) if args.get("since") else None
    until = local_day(args.get("until", ""), zone) if args.get("until") else None
    if args.get("since") and since is None:
        errors["since"] = [_("Enter a date.")]
    if args.get("until") and until is None:
        errors["until"] = [_("Enter a date.")]
    path = None
    if args.get("district"):
        try:
            path = directory.district_by_code(args["district"]).path
        except NotFoundError:
            errors["district"] = [_("Choose a node in your reach.")]
    before = args.get("before", "")
    group = args.get("action", "")
    rows: list = []
    if not errors:
        try:
            rows = audit.events(
                g.principal,
                audit.Filters(
                    district_path=path,
                    action=group if group in GROUPS else None,
                    actor=args.get("actor") or None,
                    target_type=args.get("target_type") or None,
                    target_id=args.get("target_id") or None,
                    since=since,
                    until=until + timedelta(days=1) if until else None,
                ),
                before=int(before) if before.isdigit() and len(before) < 19 else None,
                limit=PAGE_SIZE + 1,
            )
        except ForbiddenError:
            errors["district"] = [_("Choose a node in your reach.")]
    page, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    codes = directory.codes_of({row.district_id for row in page if row.district_id})
    scope = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        "web/office/audit/list.html",
        422 if errors else 200,
        rows=page,
        more=more,
        codes=codes,
        groups=GROUPS,
        nodes=directory.tree(scope),
        errors=errors,
        labels={"since": _("From"), "until": _("To"), "district": _("Node")},
    )
