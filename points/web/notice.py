"""/honours: the public notice board (公示). No sign-in: anyone reads an honour list on
notice and lodges an objection (points.honours). Names are masked (王*英); no phone, no
card, no objection text is ever shown here.
"""

from __future__ import annotations

from datetime import timedelta

from flask import g, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from points import honours
from points.errors import ConflictError, InvalidInputError, RateLimitedError
from points.extensions import db
from points.models import District, Honour, utcnow
from points.policy import district_info
from points.web.pages import page_blueprint, render_page

bp = page_blueprint("notice", __name__, "/honours")

# Finalised lists stay on the board this long after their decision.
SHOWN_AFTER = timedelta(days=30)


@bp.get("/", endpoint="home")
def home():
    """The lists on notice now, and those finalised in the last 30 days."""
    now = utcnow()
    rows = db.session.execute(
        select(Honour, District.name)
        .join(District, District.id == Honour.district_id)
        .where(
            (Honour.status == "notice")
            | ((Honour.status == "final") & (Honour.decided_at >= now - SHOWN_AFTER))
        )
        .order_by(Honour.id.desc())
        .limit(100)
    ).all()
    return render_page("web/notice/home.html", rows=rows, now=now)


@bp.route("/<string(maxlength=32):code>", methods=["GET", "POST"], endpoint="notice")
def notice(code: str):
    """One list: who is on it, until when objections are open, and the objection form."""
    found = honours.public(code)
    g.page_timezone = district_info(found.district).timezone
    errors: dict[str, list[str]] = {}
    text = ""
    status = 200
    if request.method == "POST":
        text = request.form.get("text", "")
        try:
            honours.lodge_objection(code, text, request.remote_addr)
        except RateLimitedError:
            status, errors["text"] = (
                429,
                [_("Too many objections from here in the last hour. Please try again later.")],
            )
        except ConflictError:
            status, errors["text"] = 409, [_("The notice period is over.")]
        except InvalidInputError:
            status, errors["text"] = (
                422,
                [_("Write your objection, at most %(n)s characters.", n=honours.OBJECTION_MAX)],
            )
        else:
            return redirect(url_for("web_notice.notice", code=code, sent=1))
    return render_page(
        "web/notice/notice.html",
        status,
        honour=found,
        last_day=found.period_end - timedelta(microseconds=1),
        errors=errors,
        text=text,
        sent=request.args.get("sent") == "1" and not errors,
        longest=honours.OBJECTION_MAX,
    )
