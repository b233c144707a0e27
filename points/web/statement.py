"""A volunteer's monthly statement as a page: shared by /me/statement and the console's
volunteer page (points.statements reads it)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from flask_babel import gettext as _

from points import rankings, statements, volunteers
from points.policy import district_info

MONTH = re.compile(r"(19|[2-9]\d)\d{2}-(0[1-9]|1[0-2])")


def monthly(volunteer_id: int, month: str | None, timezone: str, district: str) -> dict:
    """The template context of a month's statement, with the volunteer's place in their
    node that month by hours and by points; `errors` when the month is not one."""
    month = month or datetime.now(ZoneInfo(timezone)).strftime("%Y-%m")
    if not MONTH.fullmatch(month):
        return {
            "month": month,
            "statement": None,
            "places": None,
            "errors": {"month": [_("Choose a month, like 2026-11.")]},
        }
    start, end = volunteers.month_range(month, timezone)
    places = {by: rankings.rank_of(volunteer_id, district, by, start, end) for by in rankings.BY}
    return {
        "month": month,
        "statement": statements.statement(volunteer_id, start, end),
        "places": places,
        "node_name": district_info(district).name,
        "errors": {},
    }
