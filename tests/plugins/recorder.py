"""A plugin that implements every hook minimally and records what it was called with."""

from datetime import timedelta

import click
from marshmallow import Schema, fields, validate

from points.fields import StrictBoolean
from points.plugins import ActivityKind, Award, CatalogItem, Decision, Limit, hookimpl

NAME = "recorder"
calls: list[tuple[str, dict]] = []


class PlantingDetails(Schema):
    trees = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))


class RecorderConfig(Schema):
    bonus = fields.Integer(strict=True, load_default=0, validate=validate.Range(min=0))
    ceiling = fields.Integer(strict=True, load_default=None, allow_none=True)
    deny_redemption = StrictBoolean(load_default=False)
    deny_transfer = StrictBoolean(load_default=False)
    expiry_days = fields.Integer(strict=True, load_default=None, allow_none=True)
    stars = fields.Integer(strict=True, load_default=None, allow_none=True)


@hookimpl
def register_activity_kinds():
    return [ActivityKind("planting", PlantingDetails, "植树", "tree planting")]


@hookimpl
def register_config_schemas():
    return [(NAME, RecorderConfig)]


@hookimpl
def register_catalog_items(district, config):
    calls.append(("register_catalog_items", {"district": district.code}))
    return [CatalogItem("recorder-mug", "杯子", "mug", 7, "barber-wang", district.id)]


@hookimpl
def register_commands(cli):
    @cli.command("recorder-hello")
    def hello():
        """Say hello from a plugin command."""
        click.echo("hello from recorder")


@hookimpl
def award_points(record, config):
    calls.append(("award_points", {"kind": record.kind}))
    if record.kind == "planting":
        trees = record.details["trees"]
        return [Award(trees, "trees", f"植树 {trees} 棵", f"{trees} trees planted")]
    return None


@hookimpl
def award_bonuses(awards, config):
    calls.append(("award_bonuses", {"awards": len(awards)}))
    if config["bonus"]:
        return [Award(config["bonus"], "bonus", "额外奖励", "extra bonus")]
    return None


@hookimpl
def limit_awards(awards, config):
    calls.append(("limit_awards", {"awards": len(awards)}))
    if config["ceiling"] is not None:
        return [Limit(config["ceiling"], "测试上限", "test ceiling")]
    return None


@hookimpl
def review_record(record, awards, config):
    calls.append(("review_record", {"kind": record.kind}))
    if record.kind == "planting":
        return Decision.allow("植树自动批准", "planting approved at once")
    return None


@hookimpl
def expiry_for(lot, config):
    calls.append(("expiry_for", {"points": lot.points}))
    if config["expiry_days"] is not None:
        return lot.earned_at + timedelta(days=config["expiry_days"])
    return None


@hookimpl
def star_level_for(minutes, config):
    calls.append(("star_level_for", {"minutes": minutes}))
    return config["stars"]


@hookimpl
def check_redemption(volunteer, item, config):
    calls.append(("check_redemption", {"sku": item.sku}))
    if config["deny_redemption"]:
        return Decision.deny("测试拒绝", "refused by the recorder")
    return None


@hookimpl
def check_transfer(giver, receiver, points, relation, config):
    calls.append(("check_transfer", {"points": points, "relation": relation}))
    if config["deny_transfer"]:
        return Decision.deny("测试拒绝赠送", "gift refused by the recorder")
    return None


@hookimpl
def entry_posted(entry):
    calls.append(("entry_posted", {"entry_id": entry.id, "kind": entry.kind}))
