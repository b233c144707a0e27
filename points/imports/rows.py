"""One row of an import file as our fields: checked, typed, and its volunteer found.

A problem is raised as RowProblem with a one-line reason; the importer writes it with
the row's line and nothing of the row is posted.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from points.extensions import db
from points.models import District, Volunteer
from points.plugins import activity_kinds, plugin_manager

# A date alone is service during that day: noon local time, so that no reading of it
# in another zone moves it to another day.
DAY_TIME = time(12, 0)
MAX_REFERENCE = 64


class RowProblem(Exception):
    """Why a row cannot be imported (one line, shown with the row's line number)."""


@dataclass(frozen=True)
class Volunteers:
    """The node's volunteers by card code, paper reference and phone (a phone shared by
    volunteers of two nodes below finds none)."""

    by_card: dict[str, int]
    by_reference: dict[str, int]
    by_phone: dict[str, int | None]

    @classmethod
    def of_node(cls, path: str) -> Volunteers:
        rows = db.session.execute(
            select(Volunteer.id, Volunteer.card_code, Volunteer.external_id, Volunteer.phone)
            .join(District, District.id == Volunteer.district_id)
            .where(District.path.startswith(path, autoescape=True))
        )
        by_card, by_reference, by_phone = {}, {}, {}
        for volunteer_id, card, reference, phone in rows:
            by_card[card.upper()] = volunteer_id
            if reference:
                # A reference is unique in a node, not below it.
                by_reference[reference] = None if reference in by_reference else volunteer_id
            if phone:
                by_phone[_digits(phone)] = None if _digits(phone) in by_phone else volunteer_id
        return cls(by_card, by_reference, by_phone)

    def find(self, text: str) -> int:
        """The volunteer a row names by card code, paper reference or phone."""
        if not text:
            raise RowProblem(
                "缺少志愿者：请填卡号、纸质编号或电话 / "
                "No volunteer: give a card code, a paper reference or a phone."
            )
        found = self.by_card.get(text.upper())
        if found is None and text in self.by_reference:
            found = self.by_reference[text]
            if found is None:
                raise RowProblem(
                    f"纸质编号 {text} 对应两个社区的志愿者 / "
                    f"Paper reference {text} names volunteers of two nodes."
                )
        if found is None and _digits(text) in self.by_phone:
            found = self.by_phone[_digits(text)]
            if found is None:
                raise RowProblem(
                    f"电话 {text} 在两个社区登记过，请用卡号 / "
                    f"Phone {text} is registered in two nodes: use the card code."
                )
        if found is None:
            raise RowProblem(f"本节点没有志愿者 {text} / No volunteer {text} in this node.")
        return found


def _digits(phone: str) -> str:
    return re.sub(r"[^0-9]", "", phone)


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d")
_TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%dT%H:%M:%S")
_CHINESE_DATE = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$")


def parse_date(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    """A service date (or date and time) in the node's zone, as an aware datetime; never
    in the future."""
    if not text:
        raise RowProblem("缺少日期 / No date.")
    moment = None
    if len(text) == 10 and text[4] == "-":
        # The common case first: 2025-03-14, an ISO date, fast to read.
        with suppress(ValueError):
            moment = datetime.combine(date.fromisoformat(text), DAY_TIME)
    elif len(text) > 10 and text[4] == "-":
        # 2025-03-14 08:30, 2025-03-14T08:30:00+08:00
        with suppress(ValueError):
            moment = datetime.fromisoformat(text)
    match = None if moment is not None else _CHINESE_DATE.match(text)
    if match:
        text = f"{match[1]}-{int(match[2]):02d}-{int(match[3]):02d}"
    for pattern in _DATE_FORMATS if moment is None else ():
        try:
            moment = datetime.combine(datetime.strptime(text, pattern).date(), DAY_TIME)
            break
        except ValueError:
            continue
    if moment is None:
        for pattern in _TIME_FORMATS:
            try:
                moment = datetime.strptime(text, pattern)
                break
            except ValueError:
                continue
    if moment is None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise RowProblem(
                f"日期 {text!r} 无法识别，请写成 2025-03-14 / "
                f"Date {text!r} is not a date like 2025-03-14."
            ) from None
    moment = moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    if moment.year < 2000:
        raise RowProblem(f"日期 {text} 早于 2000 年 / Date {text} is before 2000.")
    if moment > now + timedelta(minutes=5):
        if moment.date() == now.astimezone(zone).date():
            return now  # today's service, dated noon, before noon
        raise RowProblem(f"日期 {text} 在将来 / Date {text} is in the future.")
    return moment


def parse_whole(text: str, name: str, *, low: int, high: int, required: bool) -> int | None:
    if not text:
        if required:
            raise RowProblem(f"缺少 {name} / No {name}.")
        return None
    try:
        value = float(text) if "." in text else int(text)
    except ValueError:
        raise RowProblem(
            f"{name} {text!r} 不是整数 / {name.capitalize()} {text!r} is not a whole number."
        ) from None
    if isinstance(value, float):
        if not value.is_integer():
            raise RowProblem(
                f"{name} {text} 不是整数 / {name.capitalize()} {text} is not a whole number."
            )
        value = int(value)
    if not low <= value <= high:
        raise RowProblem(
            f"{name} {value} 应在 {low} 到 {high} 之间 / "
            f"{name.capitalize()} {value} is not from {low} to {high}."
        )
    return value


def kind_names() -> dict[str, str]:
    """Every name a kind is known by (its name, Chinese and English labels) -> the kind."""
    names: dict[str, str] = {}
    for name, spec in activity_kinds(plugin_manager()).items():
        for alias in (name, spec.label_zh, spec.label_en):
            names.setdefault(alias, name)
            names.setdefault(alias.lower(), name)
    return names


def parse_reference(text: str) -> str | None:
    if not text:
        return None
    if len(text) > MAX_REFERENCE:
        raise RowProblem(
            f"编号超过 {MAX_REFERENCE} 个字符 / "
            f"Reference is longer than {MAX_REFERENCE} characters."
        )
    return text


def detail_types() -> dict[str, dict[str, type]]:
    """Per kind, its detail fields that are numbers or yes/no (a file holds only text)."""
    from marshmallow import fields as marshmallow_fields

    types: dict[str, dict[str, type]] = {}
    for name, spec in activity_kinds(plugin_manager()).items():
        found = {}
        for field_name, field in spec.schema().fields.items():
            if isinstance(field, marshmallow_fields.Integer):
                found[field_name] = int
            elif isinstance(field, marshmallow_fields.Number):
                found[field_name] = float
            elif isinstance(field, marshmallow_fields.Boolean):
                found[field_name] = bool
        types[name] = found
    return types


_YES = {"1", "true", "yes", "y", "是", "有", "√"}
_NO = {"0", "false", "no", "n", "否", "无", "×"}


def typed_details(details: dict[str, str], types: dict[str, type]) -> dict:
    """The row's detail texts, numbers and yes/no as such."""
    typed: dict = {}
    for name, text in details.items():
        wanted = types.get(name)
        if wanted is int:
            typed[name] = parse_whole(text, name, low=-(2**31), high=2**31 - 1, required=True)
        elif wanted is float:
            try:
                typed[name] = float(text)
            except ValueError:
                raise RowProblem(
                    f"{name}：{text!r} 不是数字 / {name}: {text!r} is not a number."
                ) from None
        elif wanted is bool:
            if text.lower() not in _YES | _NO:
                raise RowProblem(
                    f"{name}：{text!r} 不是“是/否” / {name}: {text!r} is not yes or no."
                )
            typed[name] = text.lower() in _YES
        else:
            typed[name] = text
    return typed
