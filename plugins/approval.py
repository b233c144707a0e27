"""Built-in `approval`: approve some records at once, queue the rest for the office.

A record is approved at once when its kind is in `auto_kinds`, or when its points add
up to at most `auto_approve_up_to`; otherwise it waits for the office. Volunteers may
report the kinds in `volunteer_kinds` themselves.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from points.plugins import Decision, hookimpl

NAME = "approval"


class ApprovalConfig(Schema):
    auto_kinds = fields.List(
        fields.String(validate=validate.Length(min=1, max=32)),
        load_default=lambda: ["checkin", "log"],
    )
    auto_approve_up_to = fields.Integer(
        strict=True, load_default=10, allow_none=True, validate=validate.Range(min=0)
    )
    # Kinds a volunteer may report themselves (on /me or with their own token); the
    # office records the rest (a patrol, a visit), or a kiosk (a check-in).
    volunteer_kinds = fields.List(
        fields.String(validate=validate.Length(min=1, max=32)),
        load_default=lambda: ["fix", "report", "log"],
    )


@hookimpl
def register_config_schemas():
    return [(NAME, ApprovalConfig)]


@hookimpl
def review_record(record, awards, config):
    total = sum(award.points for award in awards)
    if record.kind in config["auto_kinds"]:
        return Decision.allow(
            f"自动批准：{record.kind} 无需审核", f"approved at once: {record.kind}"
        )
    threshold = config["auto_approve_up_to"]
    if threshold is not None and total <= threshold:
        return Decision.allow(
            f"自动批准：{total} 分不超过 {threshold} 分",
            f"approved at once: {total} points, at most {threshold}",
        )
    limit = "—" if threshold is None else threshold
    return Decision.deny(
        f"待街道审核：{total} 分超过自动批准上限 {limit} 分",
        f"waits for the office: {total} points, above the {limit} approved at once",
    )
