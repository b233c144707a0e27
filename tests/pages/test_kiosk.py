"""The kiosk's story on /kiosk, in chromium against gunicorn: pair the screen with the
office's code, scan a card, tap the PIN, pick a reward, confirm (a reload, a double tap),
print the voucher (80 mm and A4), check in; five wrong PINs lock the card."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from tests.e2e.server import seeding
from tests.pages.conftest import (
    KIOSK_LANDSCAPE,
    KIOSK_PORTRAIT,
    check_axe,
    check_sizes,
    screenshot,
)

# PAGES.md: kiosk text at least 24 px, targets at least 64x64 px.
MIN_FONT = 24
MIN_TARGET = 64
# A meal at the seniors' canteen: 15 points, no per-person limit, so every story can
# redeem it again.
SKU = "elderly-meal"


def check(page, name: str) -> None:
    """axe, the sizes, and a screenshot of the page as it is now."""
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, name)


def pairing_code(site, name: str) -> str:
    """An office creates a kiosk at Xizhaosi (as `points kiosk create` does)."""
    from points import kiosks

    with seeding(site.url):
        return kiosks.create_kiosk("xizhaosi", name).code


def volunteers_at_kiosk(site, count: int) -> list:
    """Demo volunteers of Xizhaosi with points enough for a meal, not used before."""
    from points import ledger

    found = []
    with seeding(site.url):
        for volunteer in site.demo.volunteers:
            used = USED.setdefault(site.url, set())
            if volunteer.community != "xizhaosi" or volunteer.id in used:
                continue
            if ledger.balance(volunteer.id).available >= 30:
                found.append(volunteer)
                used.add(volunteer.id)
            if len(found) == count:
                return found
    pytest.fail("the demo has too few volunteers at Xizhaosi with points")


# Volunteers a story took already, per site (each has its own demo).
USED: dict[str, set[int]] = {}


def redemptions_of(site, volunteer_id: int) -> int:
    from points.extensions import db
    from points.models import Redemption

    with seeding(site.url):
        return db.session.scalar(
            select(func.count(Redemption.id)).where(Redemption.volunteer_id == volunteer_id)
        )


def pair(page, site, name: str) -> None:
    page.goto("/kiosk/")
    code = pairing_code(site, name)
    page.get_by_role("textbox", name=re.compile("配对码|Pairing code")).type(code)
    page.get_by_role("button", name=re.compile("配对这台一体机|Pair this kiosk")).click()
    page.wait_for_url("**/kiosk/?paired=1")


def tap(page, keys: str) -> None:
    """Type on the on-screen keys, one tap a key."""
    for key in keys:
        page.locator(f'[data-keypad] [data-key="{key}"]').click()


def scan(page, card_code: str) -> None:
    """The USB scanner: it types into the focused field (autofocus), then Enter."""
    page.wait_for_selector("#card_code:focus")
    page.keyboard.type(card_code)
    page.keyboard.press("Enter")


@pytest.mark.slow
def test_kiosk_story_in_chinese(site, new_page):
    (volunteer,) = volunteers_at_kiosk(site, 1)
    page = new_page(KIOSK_PORTRAIT)
    tag = f"{site.backend}-portrait"

    # An unpaired screen shows the pairing form and nothing else.
    page.goto("/kiosk/")
    expect(page.get_by_role("heading", name="这台一体机尚未配对")).to_be_visible()
    assert page.get_by_role("link", name="查积分 · 兑换奖励").count() == 0
    check(page, f"kiosk-unpaired-{tag}")
    code = pairing_code(site, "夕照寺社区服务站 1 号机")
    page.get_by_role("textbox", name="配对码").click()
    tap(page, code)
    page.get_by_role("button", name="配对这台一体机").click()
    page.wait_for_url("**/kiosk/?paired=1")
    assert "这台一体机已配对" in page.inner_text("main")
    check(page, f"kiosk-home-{tag}")

    # The card: the scanner types the code and Enter into the focused field.
    page.get_by_role("link", name="查积分 · 兑换奖励").click()
    page.wait_for_url("**/kiosk/card")
    assert page.locator("[data-keypad]").is_visible()
    check(page, f"kiosk-card-{tag}")
    scan(page, volunteer.card_code)

    # The PIN on the on-screen pad.
    page.wait_for_url("**/kiosk/pin")
    check(page, f"kiosk-pin-{tag}")
    tap(page, volunteer.pin)
    assert page.input_value("#pin") == volunteer.pin
    page.get_by_role("button", name="登录").click()

    # Points and the catalog, the name masked.
    page.wait_for_url("**/kiosk/catalog")
    masked = volunteer.name[0] + "*" * (len(volunteer.name) - 2) + volunteer.name[-1]
    expect(page.get_by_role("heading", name=f"{masked}，您好")).to_be_visible()
    assert volunteer.name not in page.content()
    assert "理发一次" in page.inner_text("main")
    check(page, f"kiosk-catalog-{tag}")

    # Confirm: a reload keeps the form's key; a double tap redeems once.
    before = redemptions_of(site, volunteer.id)
    page.get_by_role("link", name="兑换老年餐桌一餐").click()
    page.wait_for_url(f"**/kiosk/confirm?sku={SKU}")
    key = page.locator("input[name=form_key]").input_value()
    page.reload()
    assert page.locator("input[name=form_key]").input_value() == key
    check(page, f"kiosk-confirm-{tag}")
    page.get_by_test_id("redeem").dblclick()
    page.wait_for_url("**/kiosk/voucher")
    assert redemptions_of(site, volunteer.id) == before + 1

    # The voucher: code, QR, item, provider, where, valid until; no phone, masked name.
    voucher_code = page.get_by_test_id("voucher-code").inner_text()
    text = page.inner_text("main")
    for expected in ("老年餐桌一餐", "龙潭社区老年餐桌", "龙潭街道", "有效期至", masked):
        assert expected in text
    assert page.locator(".voucher-ticket .qr svg").count() == 1
    check(page, f"kiosk-voucher-{tag}")
    page.emulate_media(media="print")
    assert page.get_by_role("button", name="打印兑换券").is_hidden()
    screenshot(page, f"kiosk-voucher-print-a4-{tag}")
    page.set_viewport_size({"width": 302, "height": 700})  # 80 mm paper
    screenshot(page, f"kiosk-voucher-print-80mm-{tag}")
    page.set_viewport_size(KIOSK_PORTRAIT)
    page.emulate_media(media="screen")

    # Signed out after the redemption: back to the confirm page leads to the start.
    page.goto(f"/kiosk/confirm?sku={SKU}")
    page.wait_for_url("**/kiosk/")
    assert redemptions_of(site, volunteer.id) == before + 1
    with seeding(site.url):
        from points.extensions import db
        from points.models import Redemption

        assert (
            db.session.scalar(
                select(func.count(Redemption.id)).where(Redemption.voucher_code == voucher_code)
            )
            == 1
        )

    # Check-in: swipe the card, confirm, the policy's answer.
    page.get_by_role("link", name="按时刷 · 上岗打卡").click()
    page.wait_for_url("**/kiosk/checkin")
    scan(page, volunteer.card_code)
    expect(page.get_by_role("heading", name=f"以 {masked} 的身份打卡？")).to_be_visible()
    check(page, f"kiosk-checkin-confirm-{tag}")
    page.get_by_role("button", name="现在打卡").click()
    expect(page.get_by_test_id("checkin-answer")).to_be_visible()
    answer = page.get_by_test_id("checkin-answer").inner_text()
    assert re.search("已打卡|今天已经打过卡了", answer), answer
    check(page, f"kiosk-checkin-done-{tag}")
    page.get_by_role("link", name="回到首页").click()
    page.get_by_role("link", name="按时刷 · 上岗打卡").click()
    scan(page, volunteer.card_code)
    page.get_by_role("button", name="现在打卡").click()
    expect(page.get_by_test_id("checkin-answer")).to_contain_text("今天已经打过卡了")


@pytest.mark.slow
def test_kiosk_story_in_english(site, new_page):
    (volunteer,) = volunteers_at_kiosk(site, 1)
    page = new_page(KIOSK_LANDSCAPE)
    tag = f"en-{site.backend}-landscape"
    page.goto("/kiosk/")
    check(page, f"kiosk-unpaired-{tag}")
    page.get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", name="This kiosk is not paired")).to_be_visible()
    pair(page, site, "Xizhaosi station kiosk 2")
    assert "This kiosk is paired and ready." in page.inner_text("main")
    check(page, f"kiosk-home-{tag}")

    page.get_by_role("link", name="Use my points").click()
    page.get_by_role("textbox", name="Card code").click()
    tap(page, volunteer.card_code)
    page.get_by_role("button", name="Next").click()
    page.wait_for_url("**/kiosk/pin")
    # Typed on a keyboard into the focused field: wait for the focus, or keys are lost.
    page.wait_for_selector("#pin:focus")
    page.keyboard.type(volunteer.pin)
    assert page.input_value("#pin") == volunteer.pin
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/kiosk/catalog")
    assert "Points you can use" in page.inner_text("main")
    assert "One haircut" in page.inner_text("main")
    check(page, f"kiosk-catalog-{tag}")

    before = redemptions_of(site, volunteer.id)
    page.get_by_role("link", name="Get A meal at the seniors' canteen").click()
    expect(page.get_by_role("heading", name="Get A meal at the seniors' canteen?")).to_be_visible()
    page.reload()
    check(page, f"kiosk-confirm-{tag}")
    page.get_by_role("button", name=re.compile("Redeem A meal")).dblclick()
    page.wait_for_url("**/kiosk/voucher")
    assert redemptions_of(site, volunteer.id) == before + 1
    assert "Valid until" in page.inner_text("main")
    check(page, f"kiosk-voucher-{tag}")
    page.emulate_media(media="print")
    screenshot(page, f"kiosk-voucher-print-a4-{tag}")
    page.emulate_media(media="screen")
    page.get_by_role("button", name="Done").click()
    page.wait_for_url("**/kiosk/")
    expect(page.get_by_role("heading", name="Welcome, volunteers")).to_be_visible()

    page.get_by_role("link", name="Check in for duty").click()
    scan(page, volunteer.card_code)
    page.get_by_role("button", name="Check in now").click()
    expect(page.get_by_test_id("checkin-answer")).to_be_visible()
    answer = page.get_by_test_id("checkin-answer").inner_text()
    assert re.search("Checked in|Already checked in today", answer), answer
    check(page, f"kiosk-checkin-done-{tag}")


@pytest.mark.slow
def test_kiosk_five_wrong_pins_lock_the_card_and_say_until_when(site, new_page):
    (volunteer,) = volunteers_at_kiosk(site, 1)
    page = new_page(KIOSK_PORTRAIT)
    pair(page, site, "夕照寺社区服务站 3 号机")
    page.get_by_role("link", name="查积分 · 兑换奖励").click()
    scan(page, volunteer.card_code)
    wrong = "000009" if volunteer.pin != "000009" else "000008"
    for _ in range(5):
        page.wait_for_url("**/kiosk/pin")
        tap(page, wrong)
        page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("locked")).to_be_visible()
    locked = page.get_by_test_id("locked").inner_text()
    assert "卡已锁定" in locked or "锁定" in locked
    assert re.search(r"\d{1,2}:\d{2}", locked), locked
    check(page, f"kiosk-pin-locked-{site.backend}-portrait")
    # The right PIN now is refused too.
    page.locator("#pin").fill(volunteer.pin)
    page.get_by_role("button", name="登录").click()
    expect(page.get_by_test_id("locked")).to_be_visible()
    assert redemptions_of(site, volunteer.id) >= 0
