"""/office/rankings: a node's volunteers by service hours or points earned, this month,
last month, this year or between two days; ties share a rank (points.rankings)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import g, request
from flask_babel import gettext as _

from points import directory, rankings
from points.web.office import bp, node_in_reach, staff_page
from points.web.pages import render_page

SHOWN = 100
PERIODS = ("month", "last_month", "year", "days")


def _period(args, zone: ZoneInfo) -> tuple[date, date, dict[str, list[str]]]:
    """The first and the day after the last day of the chosen period."""
    today = datetime.now(zone).date()
    period = args.get("period", "month")
    first_of_month = today.replace(day=1)
    if period == "last_month":
        end = first_of_month
        return (end - timedelta(days=1)).replace(day=1), end, {}
    if period == "year":
        return today.replace(month=1, day=1), today.replace(year=today.year + 1, month=1, day=1), {}
    if period == "days":
        errors = {}
        try:
            start = date.fromisoformat(args.get("since", ""))
        except ValueError:
            errors["since"] = [_("Enter a date.")]
        try:
            last = date.fromisoformat(args.get("until", ""))
        except ValueError:
            errors["until"] = [_("Enter a date.")]
        if errors:
            return first_of_month, today + timedelta(days=1), errors
        if last < start:
            return start, start, {"until": [_("The last day comes on or after the first.")]}
        return start, last + timedelta(days=1), {}
    next_month = (first_of_month + timedelta(days=32)).replace(day=1)
    return first_of_month, next_month, {}


@bp.get("/rankings", endpoint="rankings")
@staff_page
def rankings_page(proposal_errors: dict | None = None, status: int = 200):
    """The ranking of the chosen node, period and measure, and the form that proposes an
    honour list from it (posted to honours_propose, which comes back here on an error)."""
    args = request.args if request.method == "GET" else request.form
    errors: dict[str, list[str]] = {}
    node = node_in_reach(args.get("district"))
    if node is None:
        node, errors = node_in_reach(None), {"district": [_("Choose a node in your reach.")]}
    zone = ZoneInfo(node.timezone)
    start, end, period_errors = _period(args, zone)
    errors.update(period_errors)
    by = args.get("by") if args.get("by") in rankings.BY else "hours"
    rows = []
    if not errors:
        rows = rankings.rank(
            node.id,
            by,
            datetime.combine(start, time(), zone),
            datetime.combine(end, time(), zone),
            limit=SHOWN,
        )
    scope = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        "web/office/rankings.html",
        422 if errors else status,
        node=node,
        rows=rows,
        by=by,
        period=args.get("period", "month") if args.get("period") in PERIODS else "month",
        start=start,
        last=end - timedelta(days=1),
        nodes=directory.tree(scope),
        errors=errors,
        labels={"district": _("Node"), "since": _("From"), "until": _("To")},
        shown=SHOWN,
        proposal_errors=proposal_errors or {},
        proposal=args,
        honour_labels={"title": _("Title"), "size": _("Places on the list")},
    )
