"""Pieces pages build forms and lines from: activity kinds, their details, QR codes."""

from __future__ import annotations

import io
import re
from typing import NamedTuple

import segno
from markupsafe import Markup
from marshmallow import fields, validate

from points.plugins import ActivityKind, activity_kinds, plugin_manager

# The human names of the built-in plugins and of the office's own entries, for history
# lines ("why"); a plugin not listed is shown by its registered name.
PLUGIN_NAMES = {
    "steward": ("小巷管家六步工作法", "the alley steward's six steps"),
    "caps": ("积分上限", "caps"),
    "approval": ("审核规则", "approval"),
    "expiry": ("积分有效期", "expiry"),
    "catalog": ("兑换目录", "the catalog"),
    "stars": ("星级", "star levels"),
    "transfers": ("积分赠送", "gifts"),
    "budget": ("积分预算", "budgets"),
    "office": ("街道办", "the street office"),
}


class DetailField(NamedTuple):
    """One field of an activity kind's details, as a form shows it."""

    name: str
    kind: str  # "text", "textarea" or "number"
    required: bool
    label_zh: str
    label_en: str
    max_length: int | None


def activity_kinds_for_page() -> dict[str, ActivityKind]:
    """Every activity kind the plugins register, by name."""
    return activity_kinds(plugin_manager())


def detail_fields(kind: str) -> list[DetailField]:
    """The fields of a kind's details schema, in order, as form fields.

    A field's label comes from its metadata (`label_zh`, `label_en`), else its name.
    """
    schema = activity_kinds_for_page()[kind].schema()
    found = []
    for name, field in schema.fields.items():
        if field.dump_only:
            continue
        longest = next(
            (v.max for v in field.validators if isinstance(v, validate.Length) and v.max), None
        )
        if isinstance(field, fields.Integer):
            shape = "number"
        elif longest is None or longest > 500:
            shape = "textarea"
        else:
            shape = "text"
        label_zh = field.metadata.get("label_zh", name)
        label_en = field.metadata.get("label_en", name.replace("_", " "))
        found.append(DetailField(name, shape, field.required, label_zh, label_en, longest))
    return found


def qr_svg(text: str, *, scale: int = 4) -> Markup:
    """An inline SVG QR code of `text` (no style attributes: the CSP allows none)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(
        out, kind="svg", scale=scale, xmldecl=False, svgns=True, nl=False, border=2
    )
    svg = out.getvalue().decode()
    # A viewBox instead of a fixed size: the page's CSS scales the code to its box.
    svg = re.sub(r'width="(\d+)" height="(\d+)"', r'viewBox="0 0 \1 \2"', svg, count=1)
    return Markup(svg)
