"""/office/queue: the service records and gifts waiting for the office, decided one by
one or many at once.

Records are filtered by node, kind, volunteer, status and the day the service started
(in the office's time zone), newest or oldest first, a page at a time by id (keyset: as
fast on the thousandth page as on the first). Every decision goes through points.queue,
as `POST /api/v1/service-records/decide` does: each item in its own unit of work, so one
decided meanwhile by a colleague is reported and the rest are decided.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import g, redirect, request, session
from flask_babel import gettext as _
from sqlalchemy import select

from points import directory, queue, redemptions, roster, service
from points.errors import ForbiddenError, InvalidInputError
from points.extensions import db
from points.models import SERVICE_STATES, District, Volunteer
from points.plugins import activity_labels
from points.web.forms import detail_fields
from points.web.office import bp, local_day, node_in_reach, staff_page
from points.web.pages import field_errors, render_page

PAGE_SIZE = 50
# Where the outcome of the last decision waits for the page the browser is sent back to.
OUTCOME_KEY = "queue_outcome"
# At most this many items that could not be decided are kept to show (the session is a
# cookie).
SHOWN_FAILURES = 10


def _labels() -> dict[str, str]:
    return {
        "district": _("Node"),
        "kind": _("Kind"),
        "volunteer": _("Volunteer"),
        "since": _("From"),
        "until": _("To"),
        "reason": _("Reason"),
        "ids": _("Chosen"),
    }


def _whole_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < len(text) < 10 else None


class Filters:
    """The queue's filters as the address gives them; wrong ones become field errors."""

    def __init__(self, args, principal, zone: ZoneInfo):
        self.errors: dict[str, list[str]] = {}
        self.show = "gifts" if args.get("show") == "gifts" else "records"
        self.district = args.get("district") or ""
        self.district_id = principal.district_id
        if self.district:
            node = node_in_reach(self.district)
            if node is None:
                self.errors["district"] = [_("Choose a node in your reach.")]
            else:
                self.district_id = node.id
        kinds = activity_labels()
        self.kind = args.get("kind") if args.get("kind") in kinds else ""
        self.status = args.get("status") if args.get("status") in SERVICE_STATES else "pending"
        self.oldest = args.get("order") == "oldest"
        self.since_text, self.until_text = args.get("since", ""), args.get("until", "")
        self.since = local_day(self.since_text, zone) if self.since_text else None
        self.until = local_day(self.until_text, zone) if self.until_text else None
        if self.since_text and self.since is None:
            self.errors["since"] = [_("Enter a date.")]
        if self.until_text and self.until is None:
            self.errors["until"] = [_("Enter a date.")]
        if self.until is not None:
            self.until += timedelta(days=1)  # the whole last day
        self.volunteer = args.get("volunteer", "").strip()[:200]
        self.volunteer_id = _whole_id(args.get("volunteer_id", ""))
        self.volunteer_name = None
        if self.volunteer_id is None and self.volunteer:
            self._find_volunteer(principal)
        elif self.volunteer_id is not None:
            self.volunteer_name = db.session.scalar(
                select(Volunteer.name).where(Volunteer.id == self.volunteer_id)
            )
        self.after = _whole_id(args.get("after", ""))

    def _find_volunteer(self, principal) -> None:
        found = roster.search(principal, self.volunteer, limit=2)
        if not found:
            self.errors["volunteer"] = [_("No volunteer in your reach matches.")]
        elif len(found) > 1:
            self.errors["volunteer"] = [
                _("Several volunteers match: type a card code or a phone number.")
            ]
        else:
            self.volunteer_id, self.volunteer_name = found[0].id, found[0].name


def _names(model, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(db.session.execute(select(model.id, model.name).where(model.id.in_(ids))).all())


def _detail_lines(rows) -> dict[int, list[tuple[tuple[str, str], object]]]:
    """Each record's details as (label in both languages, value), empty values left out."""
    fields: dict[str, dict] = {}
    lines = {}
    for row in rows:
        if row.kind not in fields:
            try:
                fields[row.kind] = {
                    f.name: (f.label_zh, f.label_en) for f in detail_fields(row.kind)
                }
            except KeyError:  # a kind whose plugin is gone: its raw names
                fields[row.kind] = {}
        labels = fields[row.kind]
        lines[row.id] = [
            (labels.get(name, (name, name)), value)
            for name, value in (row.details or {}).items()
            if value not in (None, "")
        ]
    return lines


def _records(filters: Filters) -> tuple[list, bool]:
    found = service.records_of_node(
        filters.district_id,
        status=filters.status,
        kind=filters.kind or None,
        volunteer_id=filters.volunteer_id,
        since=filters.since,
        until=filters.until,
        oldest_first=filters.oldest,
        after_id=filters.after,
        limit=PAGE_SIZE + 1,
    )
    return found[:PAGE_SIZE], len(found) > PAGE_SIZE


def _gifts(filters: Filters) -> tuple[list, bool]:
    found = redemptions.list_transfer_requests(
        filters.district_id, status="pending", before_id=filters.after, limit=PAGE_SIZE + 1
    )
    return found[:PAGE_SIZE], len(found) > PAGE_SIZE


def _page(status: int = 200, errors: dict | None = None, reason: str = ""):
    filters = Filters(request.args, g.principal, ZoneInfo(g.page_timezone))
    rows, more = [], False
    if not filters.errors:
        rows, more = _records(filters) if filters.show == "records" else _gifts(filters)
    if filters.show == "records":
        people = {row.volunteer_id for row in rows}
    else:
        people = {row.from_volunteer_id for row in rows} | {row.to_volunteer_id for row in rows}
    scope = None if g.principal.role == "admin" else g.principal.path
    all_errors = {**filters.errors, **(errors or {})}
    return render_page(
        "web/office/queue.html",
        422 if filters.errors else status,
        filters=filters,
        rows=rows,
        more=more,
        people=_names(Volunteer, people),
        places=_names(District, {row.district_id for row in rows}),
        details=_detail_lines(rows) if filters.show == "records" else {},
        kinds=activity_labels(),
        nodes=directory.tree(scope),
        outcome=session.pop(OUTCOME_KEY, None) if not errors else None,
        errors=all_errors,
        reason=reason,
        labels=_labels(),
    )


@bp.get("/queue", endpoint="queue")
@staff_page
def queue_list():
    """The records (or, with ?show=gifts, the gifts) waiting for a decision."""
    return _page()


@bp.post("/queue")
@staff_page(change=True)
def queue_decide():
    """Decide the chosen items, or the one whose own button was pressed."""
    form = request.form
    reason = form.get("reason", "").strip()[:500]
    if form.get("row"):  # a row's own button: "approve:17"
        decision, _sep, one = form["row"].partition(":")
        ids = [_whole_id(one)]
    else:
        decision = form.get("decision", "")
        ids = [_whole_id(value) for value in form.getlist("ids")]
    gifts = request.args.get("show") == "gifts"
    decide = queue.decide_gifts if gifts else queue.decide_records
    try:
        if None in ids:
            raise InvalidInputError("bad id", errors={"ids": ["?"]})
        outcomes = decide(g.principal, ids, decision, reason or None)
    except InvalidInputError as error:
        return _page(422, errors=_decision_errors(field_errors(error)), reason=reason)
    except ForbiddenError:
        return _page(403, errors={"ids": [_("Some chosen items are outside your reach.")]})
    failed = [outcome for outcome in outcomes if not outcome.ok]
    session[OUTCOME_KEY] = {
        "decision": decision,
        "done": len(outcomes) - len(failed),
        "failed": len(failed),
        "problems": [(o.id, _problem(o.problem)) for o in failed[:SHOWN_FAILURES]],
    }
    return redirect(request.full_path.rstrip("?"))


def _decision_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """The service's field errors in the page's words."""
    shown = {}
    if "ids" in errors:
        shown["ids"] = [_("Choose at least one, and at most %(most)s.", most=queue.MOST)]
    if "reason" in errors:
        shown["reason"] = [_("Write why: the volunteer reads the reason.")]
    if "decision" in errors:
        shown["decision"] = [_("Choose approve, reject or mark verified.")]
    return shown


def _problem(status: int | None) -> str:
    if status == 409:
        return _("decided already, or it cannot be decided now")
    if status == 404:
        return _("no longer exists")
    return _("could not be decided")
