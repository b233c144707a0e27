"""/office/providers/<code>/statement: what the office owes a provider for a month's
fulfilled vouchers at a node (points.settlements), as a page, CSV or XLSX, and the
button that settles it."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import directory, reports, settlements
from points.errors import ConflictError
from points.report_files import MIMETYPES, attachment
from points.web.office import bp, node_in_reach, staff_page
from points.web.pages import render_page
from points.web.statement import MONTH


def _masked() -> bool:
    """Auditors see voucher codes in part, as in exports."""
    return g.principal.role == "auditor"


def _asked(args):
    """The node and month a request asks about, and the errors of what it asks."""
    errors: dict[str, list[str]] = {}
    node = node_in_reach(args.get("district"))
    if node is None:
        node, errors["district"] = node_in_reach(None), [_("Choose a node in your reach.")]
    month = args.get("month") or datetime.now(ZoneInfo(node.timezone)).strftime("%Y-%m")
    if not MONTH.fullmatch(month):
        errors["month"] = [_("Choose a month, like 2026-11.")]
    return node, month, errors


def _page(code: str, node, month: str, errors, status: int = 200, settled=None):
    provider = directory.provider_by_code(code)
    found = None
    if not errors:
        start, end = reports.month_bounds(month, node.timezone)
        found = settlements.statement(code, node.id, start, end, masked=_masked())
    scope = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        "web/office/providers/statement.html",
        status,
        provider=provider,
        node=node,
        month=month,
        statement=found,
        settled=settled,
        money=settlements.money,
        nodes=directory.tree(scope),
        errors=errors,
        labels={"district": _("Node"), "month": _("Month"), "settle": _("Settle")},
    )


@bp.get("/providers/<string(maxlength=64):code>/statement", endpoint="providers_statement")
@staff_page
def providers_statement(code: str):
    """The month's vouchers of the provider at the node, totals, money, settlements."""
    node, month, errors = _asked(request.args)
    file_format = request.args.get("format")
    if not errors and file_format in MIMETYPES:
        start, end = reports.month_bounds(month, node.timezone)
        found = settlements.statement(code, node.id, start, end, masked=_masked())
        tables = settlements.tables(found, ZoneInfo(node.timezone))
        return attachment(tables, file_format, f"settlement-{code}-{node.code}-{month}")
    return _page(code, node, month, errors, 422 if errors else 200, request.args.get("settled"))


@bp.post("/providers/<string(maxlength=64):code>/settle", endpoint="providers_settle")
@staff_page(change=True)
def providers_settle(code: str):
    """Settle the month's fulfilled, unpaid vouchers; back to the statement."""
    node, month, errors = _asked(request.form)
    if errors:
        return _page(code, node, month, errors, 422)
    start, end = reports.month_bounds(month, node.timezone)
    try:
        made, _created = settlements.settle(code, node.id, start, end)
    except ConflictError:
        return _page(
            code,
            node,
            month,
            {"settle": [_("No fulfilled voucher is left to settle this month.")]},
            409,
        )
    return redirect(
        url_for(
            "web_office.providers_statement",
            code=code,
            district=node.code,
            month=month,
            settled=made.id,
        )
    )
