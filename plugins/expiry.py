"""Built-in `expiry`: when earned points expire, and what counts as "expiring soon".

`rule` is "months" (`months` after earning), "end_of_next_year" (31 December of the
year after earning, local time) or "never".
"""

from __future__ import annotations

import calendar
from datetime import datetime, time
from zoneinfo import ZoneInfo

from marshmallow import Schema, fields, validate

from points.plugins import hookimpl

NAME = "expiry"


class ExpiryConfig(Schema):
    rule = fields.String(
        load_default="end_of_next_year",
        validate=validate.OneOf(["months", "end_of_next_year", "never"]),
    )
    months = fields.Integer(strict=True, load_default=12, validate=validate.Range(min=1, max=600))
    soon_days = fields.Integer(
        strict=True, load_default=30, validate=validate.Range(min=0, max=3660)
    )


@hookimpl
def register_config_schemas():
    return [(NAME, ExpiryConfig)]


def add_months(moment: datetime, months: int) -> datetime:
    """Return `moment` plus whole months, on the last day of a shorter month if need be."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@hookimpl
def expiry_for(lot, config):
    local = lot.earned_at.astimezone(ZoneInfo(lot.timezone))
    if config["rule"] == "never":
        return None
    if config["rule"] == "months":
        return add_months(local, config["months"])
    return datetime.combine(
        local.date().replace(year=local.year + 2, month=1, day=1), time(0), local.tzinfo
    )
