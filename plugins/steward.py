"""Built-in `steward`: points for the six steps of the alley steward method.

每日巡 patrol (per hour), 经常访 visit (per household), 随手做 fix, 实时报 report (a bonus
when the office marks it verified), 及时记 log, 按时刷 check-in (on time, with a streak
bonus every `streak_days` days in a row).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields, validate, validates

from points.plugins import ActivityKind, Award, hookimpl, rate

NAME = "steward"


def _text(label: tuple[str, str], required: bool = True, max_length: int = 1000) -> fields.String:
    # The labels name the field on forms built from this schema (the volunteer's page).
    metadata = {"label_zh": label[0], "label_en": label[1]}
    if required:
        return fields.String(
            required=True, validate=validate.Length(min=1, max=max_length), metadata=metadata
        )
    return fields.String(
        load_default=None, validate=validate.Length(max=max_length), metadata=metadata
    )


class PatrolDetails(Schema):
    route = _text(("巡查路线", "route"), required=False, max_length=500)


class VisitDetails(Schema):
    households = fields.Integer(
        strict=True,
        required=True,
        validate=validate.Range(min=1, max=500),
        metadata={"label_zh": "走访户数", "label_en": "households visited"},
    )
    notes = _text(("情况记录", "notes"), required=False)


class FixDetails(Schema):
    description = _text(("做了什么", "what you fixed"))
    photo_ref = _text(("照片编号", "photo reference"), required=False, max_length=200)


class ReportDetails(Schema):
    problem = _text(("发现的问题", "the problem"))
    location = _text(("地点", "where"), required=False, max_length=200)


class LogDetails(Schema):
    entry = _text(("日志内容", "diary entry"), max_length=5000)


class CheckinDetails(Schema):
    kiosk = _text(("打卡点", "duty point"), required=False, max_length=64)


KINDS = [
    ActivityKind("patrol", PatrolDetails, "每日巡", "patrol"),
    ActivityKind("visit", VisitDetails, "经常访", "visit"),
    ActivityKind("fix", FixDetails, "随手做", "fix"),
    ActivityKind("report", ReportDetails, "实时报", "report", minutes="optional"),
    ActivityKind("log", LogDetails, "及时记", "log", minutes="optional"),
    ActivityKind(
        "checkin", CheckinDetails, "按时刷", "check-in", minutes="optional", once_per_day=True
    ),
]


def _points(default: int) -> fields.Integer:
    return fields.Integer(
        strict=True, load_default=default, validate=validate.Range(min=0, max=10_000)
    )


class PatrolConfig(Schema):
    points_per_hour = _points(5)


class VisitConfig(Schema):
    points_per_household = _points(2)


class FixConfig(Schema):
    points = _points(3)


class ReportConfig(Schema):
    points = _points(2)
    verified_bonus = _points(5)


class LogConfig(Schema):
    points = _points(1)


class CheckinConfig(Schema):
    points = _points(1)
    duty_time = fields.String(load_default="08:00")
    grace_minutes = fields.Integer(
        strict=True, load_default=10, validate=validate.Range(min=0, max=720)
    )
    streak_days = fields.Integer(
        strict=True, load_default=7, validate=validate.Range(min=2, max=366)
    )
    streak_bonus = _points(5)

    @validates("duty_time")
    def _duty_time(self, value: str, **_kwargs) -> None:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValidationError("A local time such as 08:00.") from None


def _nested(schema: type[Schema]) -> fields.Nested:
    return fields.Nested(schema, load_default=lambda: schema().load({}))


class StewardConfig(Schema):
    """Points per step; 0 turns a step off."""

    patrol = _nested(PatrolConfig)
    visit = _nested(VisitConfig)
    fix = _nested(FixConfig)
    report = _nested(ReportConfig)
    log = _nested(LogConfig)
    checkin = _nested(CheckinConfig)


@hookimpl
def register_activity_kinds():
    return KINDS


@hookimpl
def register_config_schemas():
    return [(NAME, StewardConfig)]


def hours_text(minutes: int) -> str:
    """Return minutes as hours for people: 120 -> "2", 90 -> "1.5", 100 -> "1.67"."""
    hours = (Decimal(minutes) / 60).quantize(Decimal("0.01"))
    return format(hours.normalize(), "f")


@hookimpl
def award_points(record, config, history):
    kind = record.kind
    if kind == "patrol":
        per_hour = config["patrol"]["points_per_hour"]
        points = rate(Decimal(record.minutes) / 60 * per_hour)
        hours = hours_text(record.minutes)
        return [
            Award(
                points,
                "patrol-hours",
                f"巡查 {hours} 小时 × {per_hour} 分 = {points} 分",
                f"patrol {hours} h × {per_hour} points = {points} points",
            )
        ]
    if kind == "visit":
        each = config["visit"]["points_per_household"]
        households = record.details["households"]
        points = households * each
        return [
            Award(
                points,
                "visit-households",
                f"走访 {households} 户 × {each} 分 = {points} 分",
                f"visited {households} households × {each} points = {points} points",
            )
        ]
    if kind == "fix":
        points = config["fix"]["points"]
        return [Award(points, "fix", f"随手做 {points} 分", f"on-the-spot fix: {points} points")]
    if kind == "report":
        points = config["report"]["points"]
        awards = [
            Award(points, "report", f"实时报 {points} 分", f"problem reported: {points} points")
        ]
        if record.verified:
            bonus = config["report"]["verified_bonus"]
            awards.append(
                Award(
                    bonus,
                    "report-verified",
                    f"上报问题经核实，奖励 {bonus} 分",
                    f"report verified by the office: bonus {bonus} points",
                )
            )
        return awards
    if kind == "log":
        points = config["log"]["points"]
        return [Award(points, "log", f"及时记 {points} 分", f"diary entry: {points} points")]
    if kind == "checkin":
        return _checkin(record, config["checkin"], history)
    return None


def _on_time(local: datetime, settings) -> bool:
    duty = time.fromisoformat(settings["duty_time"])
    deadline = datetime.combine(local.date(), duty, local.tzinfo) + timedelta(
        minutes=settings["grace_minutes"]
    )
    return local <= deadline


def _checkin(record, settings, history) -> list[Award]:
    local = record.local_start
    if not _on_time(local, settings):
        return [
            Award(
                0,
                "checkin-late",
                f"{local:%H:%M} 打卡，晚于 {settings['duty_time']}，不计分",
                f"checked in at {local:%H:%M}, after {settings['duty_time']}: no points",
            )
        ]
    points = settings["points"]
    awards = [
        Award(
            points, "checkin-on-time", f"按时打卡 {points} 分", f"on-time check-in: {points} points"
        )
    ]
    # A bonus every `days` on-time days in a row: the previous days - 1 days were all on
    # time and none of them already took a streak bonus.
    days = settings["streak_days"]
    today = local.date()
    zone = local.tzinfo
    since = datetime.combine(today - timedelta(days=days - 1), time(0), zone)
    on_time_days = set()
    bonus_taken = False
    for past in history.records("checkin", since=since):
        past_local = past.started_at.astimezone(zone)
        if past_local.date() < today and _on_time(past_local, settings):
            on_time_days.add(past_local.date())
            bonus_taken = bonus_taken or "checkin-streak" in past.rules
    if not bonus_taken and all(today - timedelta(days=n) in on_time_days for n in range(1, days)):
        bonus = settings["streak_bonus"]
        awards.append(
            Award(
                bonus,
                "checkin-streak",
                f"连续 {days} 天按时打卡，奖励 {bonus} 分",
                f"{days} days of on-time check-ins in a row: bonus {bonus} points",
            )
        )
    return awards
