"""/office/exports: a node's data as CSV or XLSX for the office's spreadsheets.

The form says what, of which node and when; the download is made by points.exports, as
`GET /api/v1/exports/{dataset}` makes it (streamed, in the node's time zone, headers in
both languages, audited).
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import g, request
from flask_babel import gettext as _

from points import directory, exports
from points.web.office import bp, local_day, node_in_reach, staff_page
from points.web.pages import render_page

# The datasets as the page names them.
TITLES = {
    "entries": ("积分分录", "points entries"),
    "records": ("服务记录", "service records"),
    "redemptions": ("兑换记录", "redemptions"),
    "volunteers": ("志愿者名册", "volunteers"),
    "audit": ("操作日志", "audit log"),
}


def _labels() -> dict[str, str]:
    return {
        "dataset": _("What"),
        "district": _("Node"),
        "since": _("From"),
        "until": _("To"),
        "format": _("File"),
    }


@bp.get("/exports", endpoint="exports")
@staff_page
def exports_page():
    """The export form; with `download=1` in the address, the file itself."""
    args = request.args
    errors: dict[str, list[str]] = {}
    if args.get("download"):
        dataset = args.get("dataset", "")
        if dataset not in exports.DATASETS:
            errors["dataset"] = [_("Choose what to export.")]
        file_format = args.get("format", "csv")
        if file_format not in exports.FORMATS:
            errors["format"] = [_("Choose CSV or XLSX.")]
        node = node_in_reach(args.get("district"))
        if node is None:
            errors["district"] = [_("Choose a node in your reach.")]
        zone = ZoneInfo(node.timezone if node else g.page_timezone)
        since = local_day(args.get("since", ""), zone) if args.get("since") else None
        until = local_day(args.get("until", ""), zone) if args.get("until") else None
        if args.get("since") and since is None:
            errors["since"] = [_("Enter a date.")]
        if args.get("until") and until is None:
            errors["until"] = [_("Enter a date.")]
        if since and until and until < since:
            errors["until"] = [_("The last day comes on or after the first.")]
        if not errors:
            export = exports.prepare(
                g.principal,
                dataset,
                district=node.id,
                since=since,
                until=until + timedelta(days=1) if until else None,
            )
            return exports.response(export, file_format)
    scope = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        "web/office/exports.html",
        422 if errors else 200,
        titles=TITLES,
        nodes=directory.tree(scope),
        errors=errors,
        labels=_labels(),
    )
