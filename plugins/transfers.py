"""Built-in `transfers`: who may give points to whom, how many, and with whose approval.

Relations: `family`, `household_in_need` (the receiver must be listed in
`households_in_need`) and `other`. Each has `allowed`, `office_approval`, `max_points`
per gift and `max_per_month` given by one volunteer (null: no limit).
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from points.fields import StrictBoolean
from points.plugins import Decision, hookimpl

NAME = "transfers"
RELATIONS = {
    "family": ("家人", "family"),
    "household_in_need": ("困难家庭", "a household in need"),
    "other": ("他人", "others"),
}


class RelationSchema(Schema):
    allowed = StrictBoolean(load_default=False)
    office_approval = StrictBoolean(load_default=True)
    max_points = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1)
    )
    max_per_month = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(min=1)
    )


def _relation(**defaults) -> fields.Nested:
    return fields.Nested(RelationSchema, load_default=lambda: RelationSchema().load(defaults))


class TransfersConfig(Schema):
    family = _relation(allowed=True, office_approval=False, max_points=200, max_per_month=500)
    household_in_need = _relation(
        allowed=True, office_approval=True, max_points=500, max_per_month=1000
    )
    other = _relation(allowed=False)
    households_in_need = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1)), load_default=list
    )


@hookimpl
def register_config_schemas():
    return [(NAME, TransfersConfig)]


@hookimpl
def check_transfer(giver, receiver, points, relation, config, usage):
    if relation not in RELATIONS:
        return Decision.deny(f"未知的关系：{relation}", f"unknown relation {relation!r}")
    rules = config[relation]
    label_zh, label_en = RELATIONS[relation]
    if not rules["allowed"]:
        return Decision.deny(
            f"不允许赠送积分给{label_zh}", f"points may not be given to {label_en}"
        )
    if relation == "household_in_need" and receiver.id not in config["households_in_need"]:
        return Decision.deny(
            "受赠人不在困难家庭名单中", "the receiver is not a listed household in need"
        )
    if rules["max_points"] is not None and points > rules["max_points"]:
        return Decision.deny(
            f"单次最多赠送 {rules['max_points']} 分",
            f"at most {rules['max_points']} points per gift",
        )
    if rules["max_per_month"] is not None:
        given = usage.given_this_month(giver.id)
        if given + points > rules["max_per_month"]:
            return Decision.deny(
                f"每月最多赠送 {rules['max_per_month']} 分，本月已赠 {given} 分",
                f"at most {rules['max_per_month']} points a month, {given} given this month",
            )
    if rules["office_approval"]:
        return Decision.allow(
            f"赠送给{label_zh}需街道审核",
            f"gifts to {label_en} need the office's approval",
            needs_approval=True,
        )
    return Decision.allow(f"可以赠送给{label_zh}", f"points may be given to {label_en}")
