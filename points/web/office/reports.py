"""/office/reports: a node's month (or any period) in figures and charts.

The figures come from points.reports, as `GET /api/v1/reports` gives them; the charts
are drawn on the server as SVG from the same numbers as the table beside them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import g, request, url_for
from flask_babel import gettext as _

from points import directory, report_files, reports
from points.plugins import activity_labels
from points.web.office import bp, node_in_reach, staff_page
from points.web.pages import render_page
from points.web.statement import MONTH

MONTHS_CHARTED = 12
# The series of the 12-month charts: (key, label).
SERIES = ("issued", "redeemed", "expired", "outstanding", "service_hours")


def series_labels() -> dict[str, str]:
    return {
        "issued": _("Issued"),
        "redeemed": _("Redeemed"),
        "expired": _("Expired"),
        "outstanding": _("Outstanding at the month's end"),
        "service_hours": _("Service hours"),
    }


@bp.get("/reports", endpoint="reports")
@staff_page
def reports_page():
    """The report of a month (default this one) or between two days, and 12 months."""
    args = request.args
    errors: dict[str, list[str]] = {}
    node = node_in_reach(args.get("district"))
    if node is None:
        node, errors["district"] = node_in_reach(None), [_("Choose a node in your reach.")]
    zone = ZoneInfo(node.timezone)
    month = args.get("month") or datetime.now(zone).strftime("%Y-%m")
    since_text, until_text = args.get("since", ""), args.get("until", "")
    if since_text or until_text:
        try:
            first, last = date.fromisoformat(since_text), date.fromisoformat(until_text)
            if last < first:
                errors["until"] = [_("The last day comes on or after the first.")]
            start = datetime.combine(first, time(), zone)
            end = datetime.combine(last + timedelta(days=1), time(), zone)
        except ValueError:
            errors["since"] = [_("Enter both dates.")]
    elif not MONTH.fullmatch(month):
        errors["month"] = [_("Choose a month, like 2026-11.")]
    else:
        start, end = reports.month_bounds(month, node.timezone)
    found, months = None, []
    if not errors:
        found = reports.report(node.id, start, end)
        # The charts end with the month shown (with the current one for a custom period).
        charted = month if MONTH.fullmatch(month) else datetime.now(zone).strftime("%Y-%m")
        months = reports.monthly(node.id, MONTHS_CHARTED, charted)
    scope = None if g.principal.role == "admin" else g.principal.path
    if found is not None and args.get("format") in report_files.MIMETYPES:
        return report_files.download(found, args["format"])
    return render_page(
        "web/office/reports.html",
        422 if errors else 200,
        node=node,
        report=found,
        last_day=found.end - timedelta(days=1) if found else None,
        months=months,
        month=month,
        series=series_labels(),
        kinds=activity_labels(),
        nodes=directory.tree(scope),
        errors=errors,
        download_url=lambda file_format: url_for(
            "web_office.reports", **{**request.args.to_dict(), "format": file_format}
        ),
        labels={"district": _("Node"), "month": _("Month"), "since": _("From"), "until": _("To")},
    )
