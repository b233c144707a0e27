"""A realistic demo: Longtan street in Dongcheng, Beijing, with five weeks of service."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from points import directory, ledger
from points.errors import ConflictError, InsufficientPointsError
from points.extensions import db
from points.models import District

TREE = [
    ("beijing", "北京市", "city", None),
    ("dongcheng", "东城区", "district", "beijing"),
    ("longtan", "龙潭街道", "street", "dongcheng"),
    ("xizhaosi", "夕照寺社区", "community", "longtan"),
    ("zuoanmen", "左安门社区", "community", "longtan"),
]
PROVIDERS = [
    ("barber-wang", "王师傅便民理发", "longtan"),
    ("repair-li", "李记家电维修", "longtan"),
    ("canteen-longtan", "龙潭社区老年餐桌", "longtan"),
    ("clean-home", "安家家政保洁", "longtan"),
]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何林高罗"
GIVEN = [
    "秀英",
    "桂兰",
    "建国",
    "淑珍",
    "志强",
    "玉兰",
    "德明",
    "凤琴",
    "国华",
    "丽华",
    "文斌",
    "春梅",
    "海燕",
    "宝山",
    "翠花",
    "振华",
    "金凤",
    "永福",
    "慧敏",
    "长顺",
]
# (rule, zh-CN reason template, points per unit, unit minutes)
ACTIVITIES = [
    ("patrol", "每日巡 巡查 {h} 小时 × 5 分 = {p} 分 / patrol {h} h × 5 = {p}", 5, 60),
    ("visit", "经常访 走访 {n} 户 × 2 分 = {p} 分 / visited {n} households × 2 = {p}", 2, 20),
    ("fix", "随手做 清理楼道杂物 = {p} 分 / small fix = {p}", 3, 30),
    ("report", "实时报 上报井盖松动 = {p} 分 / reported a problem = {p}", 4, 15),
]


def load_demo(*, seed: int = 2017, echo: Callable[[str], None] = print) -> dict:
    """Fill an empty database with the demo and print how to use it; return its tokens.

    Raises ConflictError when the database already has districts.
    """
    if db.session.scalar(select(func.count(District.id))):
        raise ConflictError("the database is not empty; the demo loads only into a new one")
    rng = random.Random(seed)
    zone = ZoneInfo("Asia/Shanghai")
    now = datetime.now(UTC)

    for code, name, level, parent in TREE:
        directory.create_district(code, name, level, parent=parent, timezone="Asia/Shanghai")
    providers = {
        code: directory.create_provider(code, name, district).id
        for code, name, district in PROVIDERS
    }

    volunteers = []
    for number in range(20):
        community = "xizhaosi" if number % 2 == 0 else "zuoanmen"
        pin = f"{rng.randrange(10**6):06d}"
        volunteer = directory.register_volunteer(
            SURNAMES[number] + GIVEN[number],
            community,
            pin,
            phone=f"139{rng.randrange(10**8):08d}",
            card_code="".join(rng.choice(directory.CARD_ALPHABET) for _ in range(10)),
        )
        volunteers.append((volunteer.id, volunteer.name, volunteer.card_code, pin, community))

    # Five weeks of service, in the stewards' local days.
    start = (now.astimezone(zone) - timedelta(days=35)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    earned = 0
    for volunteer_id, *_ in volunteers:
        diligence = rng.uniform(0.3, 0.9)
        for day in range(35):
            if rng.random() > diligence:
                continue
            rule, template, rate, unit = rng.choice(ACTIVITIES)
            count = rng.randint(1, 3)
            points = rate * count
            minutes = unit * count
            moment = start + timedelta(days=day, hours=rng.randint(0, 9))
            ledger.earn(
                volunteer_id,
                points,
                actor="office:longtan",
                reason=template.format(h=count, n=count, p=points),
                effective_at=moment,
                expires_at=moment + timedelta(days=365),
                plugin="steward",
                rule=rule,
                config_version=1,
            )
            ledger.add_service_minutes(
                volunteer_id, minutes, actor="office:longtan", reason=f"{rule} {minutes} min"
            )
            earned += points

    # Last year's autumn campaign: points that expired at the end of October.
    for volunteer_id, *_ in volunteers[:6]:
        ledger.earn(
            volunteer_id,
            20,
            actor="office:longtan",
            reason="2025 秋季环境整治 = 20 分 / autumn clean-up campaign",
            effective_at=now - timedelta(days=400),
            expires_at=now - timedelta(days=21),
            plugin="steward",
            rule="campaign",
            config_version=1,
        )
    expired = ledger.expire_lots(now)

    redeemed = held = 0
    for index, (volunteer_id, *_rest) in enumerate(volunteers):
        provider, cost, what = [
            ("barber-wang", 30, "理发一次 / haircut"),
            ("repair-li", 60, "小家电维修 / small appliance repair"),
            ("canteen-longtan", 15, "老年餐桌一餐 / one meal"),
        ][index % 3]
        try:
            if index % 4 == 0:
                ledger.hold(
                    volunteer_id,
                    cost,
                    provider_id=providers[provider],
                    actor="kiosk:xizhaosi",
                    reason=what,
                )
                held += cost
            elif index % 4 in (1, 2):
                ledger.redeem(
                    volunteer_id,
                    cost,
                    provider_id=providers[provider],
                    actor="kiosk:xizhaosi",
                    reason=what,
                )
                redeemed += cost
        except InsufficientPointsError:
            continue

    # Donations: to a family member, and across communities to a household in need.
    ledger.transfer(
        volunteers[2][0],
        volunteers[4][0],
        10,
        actor=f"volunteer:{volunteers[2][0]}",
        reason="赠与家人 / to family",
    )
    ledger.transfer(
        volunteers[3][0],
        volunteers[6][0],
        8,
        actor=f"volunteer:{volunteers[3][0]}",
        reason="爱心捐赠 / to a household in need",
    )
    # An office correction: a patrol logged twice.
    duplicate = ledger.earn(
        volunteers[5][0],
        10,
        actor="office:longtan",
        reason="每日巡 巡查 2 小时 × 5 分 = 10 分 / patrol 2 h × 5 = 10",
        plugin="steward",
        rule="patrol",
        config_version=1,
    )
    ledger.reverse(duplicate.id, actor="office:longtan", reason="重复登记 / logged twice")
    sealed = ledger.seal()

    tokens = {}
    for role, district, volunteer in [
        ("admin", "beijing", None),
        ("office", "longtan", None),
        ("auditor", "dongcheng", None),
        ("kiosk", "xizhaosi", None),
        ("volunteer", "xizhaosi", volunteers[0][0]),
    ]:
        _, secret = directory.create_token(
            role, district, name=f"demo {role}", volunteer_id=volunteer
        )
        tokens[role] = secret

    echo(
        f"Demo loaded: {len(TREE)} district nodes, {len(volunteers)} volunteers, "
        f"{len(providers)} providers; {earned} points earned, {redeemed} redeemed, "
        f"{held} held, {sum(-e.postings[0][1] for e in expired)} expired, {sealed} entries sealed."
    )
    echo("Volunteers (card code / PIN):")
    for volunteer_id, name, card, pin, community in volunteers[:5]:
        echo(f"  #{volunteer_id} {name} ({community}): card {card}  PIN {pin}")
    echo("Tokens (shown once):")
    for role, secret in tokens.items():
        echo(f"  {role:9} {secret}")
    return tokens
