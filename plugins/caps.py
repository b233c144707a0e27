"""Built-in `caps`: at most so many points a day, week and month, per kind and overall.

Days, weeks (Monday first) and months are those of the district's time zone. A cap of
0 stops a kind from earning; no cap (null) means unlimited.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from marshmallow import Schema, fields, validate

from points.plugins import Limit, hookimpl

NAME = "caps"
PERIODS = (("month", "每月", "monthly"), ("week", "每周", "weekly"), ("day", "每日", "daily"))


def _cap() -> fields.Integer:
    return fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=0)
    )


class CapSchema(Schema):
    day = _cap()
    week = _cap()
    month = _cap()


class CapsConfig(Schema):
    """`overall` caps all kinds together; `per_kind` maps a kind to its own caps."""

    overall = fields.Nested(
        CapSchema, load_default=lambda: {"day": 100, "week": None, "month": None}
    )
    per_kind = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=32)),
        values=fields.Nested(CapSchema),
        load_default=lambda: {"log": {"day": 1, "week": None, "month": None}},
    )


@hookimpl
def register_config_schemas():
    return [(NAME, CapsConfig)]


def period_bounds(local: datetime, period: str) -> tuple[datetime, datetime]:
    """Return the start and end of the local day, week or month around `local`."""
    zone = local.tzinfo
    day = local.date()
    if period == "day":
        start = day
        end = day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return datetime.combine(start, time(0), zone), datetime.combine(end, time(0), zone)


@hookimpl
def limit_awards(record, config, history):
    local = record.local_start
    scopes = [(None, config["overall"], "合计", "all kinds")]
    if record.kind in config["per_kind"]:
        scopes.append((record.kind, config["per_kind"][record.kind], record.kind, record.kind))
    capped = {
        period
        for _, caps, _, _ in scopes
        for period, _, _ in PERIODS
        if caps.get(period) is not None
    }
    if capped:
        # Read the history once, over every capped period (a week may start in the
        # month before, or end in the month after), and filter after.
        bounds = [period_bounds(local, period) for period in capped]
        history.records(since=min(b[0] for b in bounds), until=max(b[1] for b in bounds))
    limits = []
    for kind, caps, label_zh, label_en in scopes:
        for period, period_zh, period_en in PERIODS:
            cap = caps.get(period)
            if cap is None:
                continue
            start, end = period_bounds(local, period)
            used = history.awarded(start, end, kind=kind)
            left = max(cap - used, 0)
            limits.append(
                Limit(
                    left,
                    f"{label_zh}{period_zh}上限 {cap} 分，已得 {used} 分",
                    f"{period_en} cap of {cap} points for {label_en}, {used} already earned",
                )
            )
    return limits
