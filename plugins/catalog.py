"""Built-in `catalog`: redemption items from configuration, and who may redeem them.

Each item: names in zh-CN and en, cost in points, provider code, stock per month (for
the node that configured the item and everything below it), a per-person limit per
month, quarter or year, a minimum star level, active dates (local, inclusive), and the
price the office pays the provider per voucher, in fen (0.01 yuan), for settlement.
"""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from points.plugins import CatalogItem, Decision, hookimpl

NAME = "catalog"
SKU = validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,63}$", error="Lower-case letters, digits and '-'.")
NAME_LENGTH = validate.Length(min=1, max=200, error="Must not be empty; at most 200 characters.")
AT_LEAST_ONE = validate.Range(min=1, error="Must be a whole number, 1 or more.")
PERIOD_NAMES = {
    "month": ("每月", "a month"),
    "quarter": ("每季度", "a quarter"),
    "year": ("每年", "a year"),
}


class NamesSchema(Schema):
    zh = fields.String(data_key="zh-CN", required=True, validate=NAME_LENGTH)
    en = fields.String(required=True, validate=NAME_LENGTH)


class PerPersonSchema(Schema):
    limit = fields.Integer(strict=True, required=True, validate=AT_LEAST_ONE)
    period = fields.String(load_default="month", validate=validate.OneOf(list(PERIOD_NAMES)))


class ItemSchema(Schema):
    names = fields.Nested(NamesSchema, required=True)
    cost = fields.Integer(
        strict=True,
        required=True,
        validate=validate.Range(min=1, max=2**53, error="Must be a whole number, 1 or more."),
    )
    provider = fields.String(required=True, validate=validate.Length(min=1, max=64))
    stock_per_month = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, error="Must be 0 or more."),
    )
    per_person = fields.Nested(PerPersonSchema, load_default=None, allow_none=True)
    min_star = fields.Integer(
        strict=True,
        load_default=0,
        validate=validate.Range(min=0, max=20, error="Must be from 0 to 20."),
    )
    active_from = fields.Date(load_default=None, allow_none=True)
    active_until = fields.Date(load_default=None, allow_none=True)
    unit_price_fen = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=10**9, error="Must be 0 or more."),
        metadata={"description": "What the office pays the provider a voucher, in fen."},
    )

    @validates_schema
    def _dates(self, data, **_kwargs) -> None:
        start, end = data.get("active_from"), data.get("active_until")
        if start and end and end < start:
            raise ValidationError("Must not be before the first day (active_from).", "active_until")


class CatalogConfig(Schema):
    """`items` maps a SKU to its item; a child node may override one field of one item."""

    items = fields.Dict(
        keys=fields.String(validate=SKU), values=fields.Nested(ItemSchema), load_default=dict
    )


@hookimpl
def register_config_schemas():
    return [(NAME, CatalogConfig)]


@hookimpl
def register_catalog_items(district, config):
    items = []
    for sku, item in sorted(config["items"].items()):
        per_person = item["per_person"] or {}
        items.append(
            CatalogItem(
                sku=sku,
                name_zh=item["names"]["zh"],
                name_en=item["names"]["en"],
                cost=item["cost"],
                provider=item["provider"],
                pool_district_id=config.origin(f"items.{sku}") or district.id,
                stock_per_month=item["stock_per_month"],
                per_person_limit=per_person.get("limit"),
                per_person_period=per_person.get("period", "month"),
                min_star=item["min_star"],
                active_from=item["active_from"],
                active_until=item["active_until"],
                unit_price_fen=item["unit_price_fen"],
            )
        )
    return items


@hookimpl
def check_redemption(volunteer, item, usage):
    today = usage.today
    if item.active_from and today < item.active_from:
        return Decision.deny(
            f"{item.name_zh} 自 {item.active_from} 起可兑换",
            f"{item.name_en} opens on {item.active_from}",
        )
    if item.active_until and today > item.active_until:
        return Decision.deny(
            f"{item.name_zh} 已于 {item.active_until} 截止",
            f"{item.name_en} closed on {item.active_until}",
        )
    if volunteer.star_level < item.min_star:
        return Decision.deny(
            f"需 {item.min_star} 星及以上，当前 {volunteer.star_level} 星",
            f"needs {item.min_star} star{'s' if item.min_star != 1 else ''} or more, "
            f"you have {volunteer.star_level}",
        )
    if item.stock_per_month is not None:
        used = usage.item_count(item, "month")
        if used >= item.stock_per_month:
            return Decision.deny(
                f"{item.name_zh} 本月 {item.stock_per_month} 份已兑完",
                f"all {item.stock_per_month} of {item.name_en} this month are taken",
            )
    if item.per_person_limit is not None:
        used = usage.person_count(item, volunteer.id, item.per_person_period)
        if used >= item.per_person_limit:
            period_zh, period_en = PERIOD_NAMES[item.per_person_period]
            return Decision.deny(
                f"{item.name_zh} {period_zh}限兑 {item.per_person_limit} 次，已兑 {used} 次",
                f"{item.name_en}: {item.per_person_limit} per person {period_en}, {used} used",
            )
    return None
