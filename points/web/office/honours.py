"""/office/honours: honour lists (points.honours). Proposed from the rankings page, each
has its public notice (/honours/<code>), its objections to answer, and the decision:
finalise once the notice is over and every objection is answered, or withdraw."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import g, redirect, request, url_for
from flask_babel import gettext as _

from points import honours, rankings
from points.errors import ConflictError, InvalidInputError, NotFoundError
from points.web.office import bp, node_in_reach, staff_page
from points.web.office.rankings import _period
from points.web.pages import field_errors, render_page


def _honour_in_reach(honour_id: int) -> honours.HonourView:
    found = honours.get(honour_id)
    if node_in_reach(found.district) is None:
        raise NotFoundError(f"no honour {honour_id}")
    return found


@bp.get("/honours", endpoint="honours")
@staff_page
def honours_list():
    """The honour lists of the staff member's node and below, newest first."""
    return render_page(
        "web/office/honours/list.html", items=honours.of_node(g.principal.district_id)
    )


@bp.post("/honours", endpoint="honours_propose")
@staff_page(change=True)
def honours_propose():
    """Propose a list from the ranking the rankings page shows (its node, measure and
    period), with a title and a size."""
    form = request.form
    node = node_in_reach(form.get("district"))
    errors: dict[str, list[str]] = {}
    if node is None:
        errors["district"] = [_("Choose a node in your reach.")]
    else:
        zone = ZoneInfo(node.timezone)
        start, end, errors = _period(form, zone)
        by = form.get("by") if form.get("by") in rankings.BY else "hours"
        try:
            size = int(form.get("size", ""))
        except ValueError:
            size = 0
        if not errors:
            try:
                found = honours.propose(
                    node.id,
                    form.get("title", ""),
                    by,
                    datetime.combine(start, time(), zone),
                    datetime.combine(end, time(), zone),
                    size,
                )
            except InvalidInputError as error:
                errors = field_errors(error)
            else:
                return redirect(url_for("web_office.honours_show", honour_id=found.id))
    # Back to the ranking, with what was typed and what was wrong.
    from points.web.office.rankings import rankings_page

    return rankings_page(proposal_errors=errors, status=422)


@bp.get("/honours/<int:honour_id>", endpoint="honours_show")
@staff_page
def honours_show(honour_id: int):
    """One list: members with full names, the public notice, objections, the decision."""
    return _show(_honour_in_reach(honour_id))


def _show(found: honours.HonourView, status: int = 200, errors=None, form=None):
    return render_page(
        "web/office/honours/show.html",
        status,
        honour=found,
        last_day=found.period_end - timedelta(microseconds=1),
        public_url=url_for("web_notice.notice", code=found.public_code, _external=True),
        errors=errors or {},
        form=form or {},
    )


@bp.post("/honours/<int:honour_id>/objections/<int:objection_id>", endpoint="honours_answer")
@staff_page(change=True)
def honours_answer(honour_id: int, objection_id: int):
    """Answer one objection."""
    found = _honour_in_reach(honour_id)
    if honours.objection_honour(objection_id) != found.id:
        raise NotFoundError(f"no objection {objection_id} on honour {honour_id}")
    try:
        honours.answer(objection_id, request.form.get(f"answer-{objection_id}", ""))
    except InvalidInputError:
        return _show(found, 422, {f"answer-{objection_id}": [_("Write an answer.")]})
    except ConflictError:
        return _show(found, 409, {f"answer-{objection_id}": [_("The list is already decided.")]})
    return redirect(
        url_for("web_office.honours_show", honour_id=honour_id) + f"#objection-{objection_id}"
    )


@bp.post("/honours/<int:honour_id>/decision", endpoint="honours_decide")
@staff_page(change=True)
def honours_decide(honour_id: int):
    """Finalise, or withdraw with a reason."""
    found = _honour_in_reach(honour_id)
    try:
        if request.form.get("decision") == "finalise":
            honours.finalise(honour_id)
        else:
            honours.withdraw(honour_id, request.form.get("reason", ""))
    except InvalidInputError:
        return _show(found, 422, {"reason": [_("Say why the list is withdrawn.")]}, request.form)
    except ConflictError:
        if found.status != "notice":
            why = _("The list is already decided.")
        elif found.on_notice:
            why = _("The notice period is not over yet.")
        else:
            why = _("Answer every objection first.")
        return _show(found, 409, {"decision": [why]}, request.form)
    return redirect(url_for("web_office.honours_show", honour_id=honour_id))
