"""Double points on Learn-from-Lei-Feng Day (学雷锋日, 5 March): a Steward Points plugin."""

from __future__ import annotations

import click
from marshmallow import Schema, ValidationError, fields, validate, validates

from points.plugins import Award, hookimpl

NAME = "leifeng"


class LeifengConfig(Schema):
    """`multiplier` x the base points on each of `days` (MM-DD, local time)."""

    multiplier = fields.Integer(strict=True, load_default=2, validate=validate.Range(min=2, max=10))
    days = fields.List(fields.String(), load_default=lambda: ["03-05"])

    @validates("days")
    def _days(self, value, **_kwargs):
        for day in value:
            month, _, dom = day.partition("-")
            if not (
                month.isdigit() and dom.isdigit() and 1 <= int(month) <= 12 and 1 <= int(dom) <= 31
            ):
                raise ValidationError(f"{day!r} is not a MM-DD day.")


@hookimpl
def register_config_schemas():
    return [(NAME, LeifengConfig)]


@hookimpl
def award_bonuses(record, awards, config):
    if record.local_start.strftime("%m-%d") not in config["days"]:
        return None
    base = sum(award.points for award in awards)
    extra = base * (config["multiplier"] - 1)
    if extra <= 0:
        return None
    times = config["multiplier"]
    return [
        Award(
            extra,
            "leifeng-day",
            f"学雷锋日 {times} 倍积分，加 {extra} 分",
            f"Learn-from-Lei-Feng Day: {times}x points, {extra} more",
        )
    ]


@hookimpl
def register_commands(cli):
    @cli.command("leifeng-days")
    def leifeng_days():
        """List the days that earn extra points (default configuration)."""
        config = LeifengConfig().load({})
        click.echo(f"{', '.join(config['days'])}: {config['multiplier']}x")
