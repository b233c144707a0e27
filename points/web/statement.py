"""A volunteer's monthly statement as a page: shared by /me/statement and the console's
volunteer page (points.statements reads it)."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from flask_babel import gettext as _

from points import statements, volunteers

MONTH = re.compile(r"(19|[2-9]\d)\d{2}-(0[1-9]|1[0-2])")


def monthly(volunteer_id: int, month: str | None, timezone: str) -> dict:
    """The template context of a month's statement; `errors` when the month is not one."""
    month = month or datetime.now(ZoneInfo(timezone)).strftime("%Y-%m")
    if not MONTH.fullmatch(month):
        return {
            "month": month,
            "statement": None,
            "errors": {"month": [_("Choose a month, like 2026-11.")]},
        }
    start, end = volunteers.month_range(month, timezone)
    return {
        "month": month,
        "statement": statements.statement(volunteer_id, start, end),
        "errors": {},
    }
