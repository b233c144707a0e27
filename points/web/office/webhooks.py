"""/office/webhooks: webhook endpoints of the node and below (points.webhooks): add one
(its signing secret shown once), read its delivery log, disable it, replay a delivery
that failed."""

from __future__ import annotations

import contextlib

from flask import g, redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from points import directory, webhooks
from points.errors import ConflictError, InvalidInputError, NotFoundError
from points.models import WEBHOOK_DELIVERY_STATES, WEBHOOK_EVENTS
from points.web.office import bp, node_in_reach, staff_page
from points.web.pages import field_errors, render_page

EVENT_LABELS = {
    "entry.posted": lazy_gettext("Points moved (any ledger entry)"),
    "record.approved": lazy_gettext("Service record approved"),
    "record.rejected": lazy_gettext("Service record rejected"),
    "redemption.held": lazy_gettext("Voucher issued"),
    "redemption.fulfilled": lazy_gettext("Voucher used"),
    "redemption.cancelled": lazy_gettext("Voucher cancelled"),
    "redemption.expired": lazy_gettext("Voucher expired"),
    "honour.finalised": lazy_gettext("Honour list finalised"),
}
STATUS_LABELS = {
    "pending": lazy_gettext("Waiting"),
    "delivered": lazy_gettext("Received"),
    "failed": lazy_gettext("Failed"),
    "active": lazy_gettext("Active"),
    "disabled": lazy_gettext("Disabled"),
}


def _labels() -> dict[str, str]:
    return {"url": _("Address (URL)"), "district": _("Node"), "events": _("Events")}


def _list(status: int = 200, form=None, errors=None):
    scope = None if g.principal.role == "admin" else g.principal.path
    return render_page(
        "web/office/webhooks/list.html",
        status,
        rows=webhooks.endpoints_of_node(g.principal.district_id),
        nodes=directory.tree(scope),
        events=[(event, str(EVENT_LABELS[event])) for event in WEBHOOK_EVENTS],
        event_labels=EVENT_LABELS,
        status_labels=STATUS_LABELS,
        labels=_labels(),
        form=form,
        chosen=form.getlist("events") if form is not None else [],
        errors=errors or {},
    )


def _endpoint_in_reach(endpoint_id: int) -> webhooks.EndpointView:
    found = webhooks.get_endpoint(endpoint_id)
    if node_in_reach(found.district) is None:
        raise NotFoundError(f"no webhook {endpoint_id}")
    return found


@bp.get("/webhooks", endpoint="webhooks")
@staff_page
def webhooks_list():
    """The webhook endpoints of the node and below, and the form to add one."""
    return _list()


@bp.post("/webhooks", endpoint="webhooks_create")
@staff_page(change=True)
def webhooks_create():
    """Register an endpoint; its signing secret is shown on the next page only."""
    form = request.form
    node = node_in_reach(form.get("district"))
    if node is None:
        return _list(422, form, {"district": [_("Choose a node in your reach.")]})
    events = form.getlist("events")
    if not events:
        return _list(422, form, {"events": [_("Choose at least one event.")]})
    try:
        made, secret = webhooks.create_endpoint(node.id, form.get("url", ""), events)
    except InvalidInputError as error:
        errors = field_errors(error)
        if "url" in errors:
            errors["url"] = [_("Give an http:// or https:// address this server may call.")]
        return _list(422, form, errors)
    return render_page("web/office/webhooks/secret.html", endpoint=made, secret=secret)


@bp.get("/webhooks/<int:endpoint_id>", endpoint="webhooks_show")
@staff_page
def webhooks_show(endpoint_id: int):
    """One endpoint: its events, and its delivery log with every try."""
    found = _endpoint_in_reach(endpoint_id)
    status = request.args.get("status")
    if status not in WEBHOOK_DELIVERY_STATES:
        status = None
    before = request.args.get("before", type=int)
    items, last = webhooks.deliveries(found.id, status, before if before and before > 0 else None)
    return render_page(
        "web/office/webhooks/show.html",
        endpoint=found,
        deliveries=items,
        next_before=last,
        shown=status,
        event_labels=EVENT_LABELS,
        status_labels=STATUS_LABELS,
        notice=request.args.get("done"),
        errors={},
    )


@bp.post("/webhooks/<int:endpoint_id>/disable", endpoint="webhooks_disable")
@staff_page(change=True)
def webhooks_disable(endpoint_id: int):
    """Disable the endpoint: nothing more is queued or sent to it."""
    _endpoint_in_reach(endpoint_id)
    with contextlib.suppress(ConflictError):  # disabled already: the page shows it so
        webhooks.disable_endpoint(endpoint_id)
    return redirect(url_for("web_office.webhooks_show", endpoint_id=endpoint_id, done="disabled"))


@bp.post("/webhooks/deliveries/<int:delivery_id>/replay", endpoint="webhooks_replay")
@staff_page(change=True)
def webhooks_replay(delivery_id: int):
    """Send a failed delivery again, with the same event id."""
    endpoint_id = webhooks.delivery_endpoint(delivery_id)
    _endpoint_in_reach(endpoint_id)
    try:
        webhooks.replay(delivery_id)
    except ConflictError:
        done = "not-replayed"
    else:
        done = "replayed"
    return redirect(url_for("web_office.webhooks_show", endpoint_id=endpoint_id, done=done))
