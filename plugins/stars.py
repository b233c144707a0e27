"""Built-in `stars`: star levels (星级) from service hours, which only grow, and how long
an honour list stays on public notice (公示) before the office may finalise it.

Level n is reached at `levels_hours[n-1]` hours: by default 100, 300, 600, 1000, 1500.
"""

from __future__ import annotations

from itertools import pairwise

from marshmallow import Schema, ValidationError, fields, validate, validates

from points.plugins import hookimpl

NAME = "stars"


class StarsConfig(Schema):
    levels_hours = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=1_000_000)),
        load_default=lambda: [100, 300, 600, 1000, 1500],
        validate=validate.Length(min=1, max=20),
    )

    notice_days = fields.Integer(
        strict=True,
        load_default=7,
        validate=validate.Range(min=1, max=60),
        metadata={"description": "Days an honour list stays on public notice (公示)."},
    )

    @validates("levels_hours")
    def _ascending(self, value: list[int], **_kwargs) -> None:
        if any(b <= a for a, b in pairwise(value)):
            raise ValidationError("Hours must go strictly up, level by level.")


@hookimpl
def register_config_schemas():
    return [(NAME, StarsConfig)]


@hookimpl
def star_level_for(minutes, config):
    return sum(1 for hours in config["levels_hours"] if minutes >= hours * 60)
