"""A realistic demo: Longtan street in Dongcheng, Beijing, with five weeks of service."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from points import directory, ledger, policy, redemptions, service, staff
from points.cards import LOCAL_URL
from points.errors import ConflictError, InsufficientPointsError, RefusedError
from points.extensions import db
from points.kiosks import issue_pairing_code
from points.models import District
from points.providers import issue_link

TREE = [
    ("beijing", "北京市", "city", None),
    ("dongcheng", "东城区", "district", "beijing"),
    ("longtan", "龙潭街道", "street", "dongcheng"),
    ("xizhaosi", "夕照寺社区", "community", "longtan"),
    ("zuoanmen", "左安门社区", "community", "longtan"),
]
# The offices' contact lines, shown on volunteers' home pages and printed on their cards.
CONTACTS = {
    "longtan": "龙潭街道办事处 010-6711 2233（工作日 9:00–17:00）",
    "xizhaosi": "夕照寺社区居委会 010-6711 5566（工作日 8:30–17:30）",
}
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
# (kind, minutes, details): what a steward's day can hold.
ACTIVITIES = [
    ("patrol", 60, {"route": "夕照寺中街—东四块玉南街"}),
    ("patrol", 120, {"route": "左安门内大街沿线"}),
    ("visit", 40, {"households": 2, "notes": "独居老人，身体尚好"}),
    ("visit", 60, {"households": 3}),
    ("fix", 20, {"description": "清理楼道堆放杂物"}),
    ("fix", 15, {"description": "扶正倒伏的共享单车"}),
    ("report", None, {"problem": "井盖松动", "location": "夕照寺西里 3 号楼"}),
    ("log", None, {"entry": "今日巡查两次，无异常。"}),
    ("checkin", None, {"kiosk": "xizhaosi-1"}),
]
CATALOG = {
    "haircut": {
        "names": {"zh-CN": "理发一次", "en": "One haircut"},
        "cost": 30,
        "provider": "barber-wang",
        "unit_price_fen": 1500,
        "stock_per_month": 30,
        "per_person": {"limit": 1, "period": "month"},
    },
    "appliance-repair": {
        "names": {"zh-CN": "小家电维修", "en": "Small appliance repair"},
        "cost": 60,
        "provider": "repair-li",
        "unit_price_fen": 3000,
        "stock_per_month": 10,
        "per_person": {"limit": 1, "period": "quarter"},
    },
    "elderly-meal": {
        "names": {"zh-CN": "老年餐桌一餐", "en": "A meal at the seniors' canteen"},
        "cost": 15,
        "provider": "canteen-longtan",
        "unit_price_fen": 800,
        "stock_per_month": 200,
    },
    "home-cleaning": {
        "names": {"zh-CN": "家政保洁两小时", "en": "Two hours of home cleaning"},
        "cost": 80,
        "provider": "clean-home",
        "min_star": 1,
    },
}


class DemoVolunteer(NamedTuple):
    id: int
    name: str
    card_code: str
    pin: str
    community: str


@dataclass(frozen=True)
class Demo:
    """What the demo made that a person (or a test) needs: tokens by role, and cards."""

    tokens: dict[str, str]
    volunteers: list[DemoVolunteer]
    # The barber's link to the provider page (/provider/link/<token>), shown once.
    provider_link: str = ""
    # Console accounts by role: (username, password), shown once.
    staff: dict[str, tuple[str, str]] | None = None


def _activities(zone: ZoneInfo, now: datetime, office: str, volunteers: list) -> int:
    """Two activities open for sign-up: a clean-up of Xizhaosi's stairwells the day after
    tomorrow, two volunteers signed up already, and the street's visit to elders living
    alone in a week. Returns how many."""
    from points import activities

    day = (now.astimezone(zone) + timedelta(days=2)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )
    cleanup = activities.post_activity(
        "xizhaosi",
        title_zh="楼道清理日",
        title_en="Stairwell clean-up day",
        description_zh="清理夕照寺西里各楼道堆放的杂物，请自带手套。",
        description_en="Clearing the stairwells of Xizhaosi Xili; bring gloves.",
        place="夕照寺西里 3 号楼门口",
        starts_at=day,
        ends_at=day + timedelta(hours=2),
        kind="fix",
        record_details={"description": "楼道清理日 / stairwell clean-up day"},
        places=8,
        signup_until=day - timedelta(hours=12),
        actor=office,
    )
    for volunteer in [v for v in volunteers if v.community == "xizhaosi"][:2]:
        activities.sign_up(cleanup.id, volunteer.id, actor=f"volunteer:{volunteer.id}")
    visit_day = day + timedelta(days=5, hours=5)
    activities.post_activity(
        "longtan",
        title_zh="走访独居老人",
        title_en="Visiting elders living alone",
        description_zh="两人一组走访独居老人，了解近况并登记需求。一星及以上志愿者报名。",
        description_en="In pairs, visit elders living alone and note what they need. "
        "One star and above.",
        place="龙潭街道办事处集合",
        starts_at=visit_day,
        ends_at=visit_day + timedelta(hours=3),
        kind="visit",
        record_details={"households": 3, "notes": "街道组织走访 / street visit"},
        places=6,
        min_star_level=1,
        signup_until=visit_day - timedelta(days=1),
        actor=office,
    )
    return 2


def load_demo(
    *, seed: int = 2017, echo: Callable[[str], None] = print, base_url: str = LOCAL_URL
) -> Demo:
    """Fill an empty database with the demo and print how to use it; return its tokens,
    volunteers and the barber's provider link (printed under `base_url`).

    Raises ConflictError when the database already has districts.
    """
    if db.session.scalar(select(func.count(District.id))):
        raise ConflictError("the database is not empty; the demo loads only into a new one")
    rng = random.Random(seed)
    zone = ZoneInfo("Asia/Shanghai")
    now = datetime.now(UTC)

    for code, name, level, parent in TREE:
        directory.create_district(
            code, name, level, parent=parent, timezone="Asia/Shanghai", contact=CONTACTS.get(code)
        )
    providers = {
        code: directory.create_provider(code, name, district).id
        for code, name, district in PROVIDERS
    }

    start = (now.astimezone(zone) - timedelta(days=35)).replace(
        hour=8, minute=0, second=0, microsecond=0
    )
    office = "office:longtan"
    # The street's policy, in effect from before the first service of the demo.
    policy.set_policy(
        "longtan",
        "catalog",
        {"items": CATALOG},
        author=office,
        effective_from=start - timedelta(days=1),
        comment="龙潭街道兑换目录",
    )

    volunteers = []
    for number in range(20):
        community = "xizhaosi" if number % 2 == 0 else "zuoanmen"
        card_code = "".join(rng.choice(directory.CARD_ALPHABET) for _ in range(10))
        pin = f"{rng.randrange(10**6):06d}"
        # Registration refuses a PIN easy to guess (111111, 123456, digits of the card).
        while directory.pin_problem(pin, card_code) is not None:
            pin = f"{rng.randrange(10**6):06d}"
        volunteer = directory.register_volunteer(
            SURNAMES[number] + GIVEN[number],
            community,
            pin,
            phone=f"139{rng.randrange(10**8):08d}",
            card_code=card_code,
        )
        volunteers.append(
            DemoVolunteer(volunteer.id, volunteer.name, volunteer.card_code, pin, community)
        )
    # Small records go through at once; a patrol or a visit waits for the office.
    policy.set_policy(
        "longtan",
        "approval",
        {"auto_approve_up_to": 4},
        author=office,
        effective_from=start - timedelta(days=1),
    )
    # Volunteer #7 looks after a household in need: gifts to them need the office.
    policy.set_policy(
        "longtan",
        "transfers",
        {"households_in_need": [volunteers[6][0]]},
        author=office,
        effective_from=start - timedelta(days=1),
    )

    # Five weeks of service, submitted by the stewards; the office works its queue.
    counts = {"approved": 0, "rejected": 0, "pending": 0}
    for volunteer_id, *_ in volunteers:
        diligence = rng.uniform(0.3, 0.9)
        for day in range(35):
            if rng.random() > diligence:
                continue
            kind, minutes, details = rng.choice(ACTIVITIES)
            moment = start + timedelta(days=day, hours=rng.randint(0, 9))
            try:
                record = service.record_service(
                    volunteer_id,
                    kind,
                    moment,
                    minutes,
                    details,
                    actor=f"volunteer:{volunteer_id}",
                )
            except (ConflictError, RefusedError):
                continue  # a second check-in that day, or a cap reached
            if record.status == "pending" and day < 33:
                if rng.random() < 0.05:
                    service.reject(record.id, office, "记录与网格员核实不符 / not confirmed")
                    counts["rejected"] += 1
                    continue
                if kind == "report" and rng.random() < 0.5:
                    service.mark_verified(record.id, office)
                record = service.approve(record.id, office)
            counts[record.status] += 1

    # Last year's autumn campaign: points that expired at the end of October.
    for volunteer_id, *_ in volunteers[:6]:
        ledger.earn(
            volunteer_id,
            20,
            actor=office,
            reason="2025 秋季环境整治 = 20 分 / autumn clean-up campaign = 20",
            effective_at=now - timedelta(days=400),
            expires_at=now - timedelta(days=21),
            plugin="office",
            rule="campaign",
        )
    expired = ledger.expire_lots(now)

    # Redemptions at the kiosk: some delivered, one cancelled, some still held.
    redeemed = held = 0
    skus = ["haircut", "elderly-meal", "appliance-repair", "home-cleaning"]
    for index, (volunteer_id, *_rest) in enumerate(volunteers):
        try:
            redemption = redemptions.create_redemption(
                volunteer_id, skus[index % 4], actor="kiosk:xizhaosi"
            )
        except (InsufficientPointsError, RefusedError):
            continue
        if index % 5 == 0:
            redemptions.cancel_redemption(
                redemption.id, actor="kiosk:xizhaosi", reason="改天再来 / another day"
            )
        elif index % 3 == 0:
            held += redemption.points
        else:
            redemptions.fulfil_redemption(redemption.id, actor="provider")
            redeemed += redemption.points

    # Gifts: to a family member at once; to a household in need, approved by the office.
    redemptions.give_points(
        volunteers[2][0],
        volunteers[4][0],
        10,
        "family",
        actor=f"volunteer:{volunteers[2][0]}",
        reason="赠与家人 / to family",
    )
    gift = redemptions.give_points(
        volunteers[3][0],
        volunteers[6][0],
        8,
        "household_in_need",
        actor=f"volunteer:{volunteers[3][0]}",
        reason="爱心捐赠 / to a household in need",
    )
    if gift.request_id is not None:
        redemptions.approve_transfer(gift.request_id, office)
    # An office correction: a campaign award given twice.
    duplicate = ledger.earn(
        volunteers[5][0],
        10,
        actor=office,
        reason="社区活动 = 10 分 / community event = 10",
        plugin="office",
        rule="event",
    )
    ledger.reverse(duplicate.id, actor=office, reason="重复登记 / logged twice")
    sealed = ledger.seal()
    upcoming = _activities(zone, now, office, volunteers)

    tokens = {}
    scopes = {}
    kiosk_id = None
    for role, district, volunteer, scope in [
        ("admin", "beijing", None, "everything"),
        ("office", "longtan", None, "the Longtan street office: longtan and its communities"),
        ("auditor", "dongcheng", None, "read-only, Dongcheng district and below"),
        ("kiosk", "xizhaosi", None, "the kiosk of Xizhaosi community"),
        ("volunteer", "xizhaosi", volunteers[0][0], f"volunteer #{volunteers[0][0]} only"),
    ]:
        row, secret = directory.create_token(
            role, district, name=f"demo {role}", volunteer_id=volunteer
        )
        tokens[role] = secret
        scopes[role] = scope
        if role == "kiosk":
            kiosk_id = row.id
    accounts = {}
    for role, username, name, district in [
        ("admin", "admin", "系统管理员", "beijing"),
        ("office", "longtan", "王芳 (龙潭街道办事处)", "longtan"),
        ("auditor", "auditor", "孙审计 (东城区)", "dongcheng"),
    ]:
        password = staff.temporary_password()
        staff.create_staff(username, name, role, district, password)
        accounts[role] = (username, password)
    link = issue_link(None, "barber-wang")
    # The demo kiosk's screen pairs with this code at /kiosk/pair (it then gets a device
    # secret of its own; the token printed above stays for API use until it pairs).
    pairing = issue_pairing_code(kiosk_id)

    echo(
        f"Demo loaded: {len(TREE)} district nodes, {len(volunteers)} volunteers, "
        f"{len(providers)} providers; service records {counts['approved']} approved, "
        f"{counts['pending']} pending, {counts['rejected']} rejected; {redeemed} points redeemed, "
        f"{held} held, {sum(-e.postings[0][1] for e in expired)} expired, {sealed} entries sealed."
    )
    echo(f"Activities open for sign-up: {upcoming} (on /me, the office's activities page).")
    echo("Volunteers (card code / PIN):")
    for volunteer_id, name, card, pin, community in volunteers[:5]:
        echo(f"  #{volunteer_id} {name} ({community}): card {card}  PIN {pin}")
    echo("Tokens (shown once):")
    for role, secret in tokens.items():
        echo(f"  {role:9} {secret}  ({scopes[role]})")
    echo(f"Office console {base_url.rstrip('/')}/office (username / password, shown once):")
    for role, (username, password) in accounts.items():
        echo(f"  {role:9} {username:9} {password}")
    echo(f"Provider page of {PROVIDERS[0][1]} (link shown once): {link.url(base_url)}")
    echo(
        f"Kiosk pairing code (once, until {pairing.expires_at:%H:%M} UTC): {pairing.code} "
        f"(type it at {base_url.rstrip('/')}/kiosk/pair; `points kiosk pairing-code "
        f"{kiosk_id}` makes a new one)"
    )
    return Demo(tokens, volunteers, link.path, accounts)
