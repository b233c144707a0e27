"""The service provider's story on /provider, in chromium against gunicorn: open the
office's link once, type the voucher code, mark it delivered; a second time is refused
plainly. And the office's printed card sheet, on screen and in print."""

from __future__ import annotations

import re

import pytest

from tests.e2e.server import seeding
from tests.pages.conftest import OFFICE, PHONE, check_axe, check_sizes, screenshot
from tests.test_pages_provider import PHONE_NUMBER

# PAGES.md: body text at least 18 px, targets at least 48x48 px on a provider's phone.
MIN_FONT = 18
MIN_TARGET = 48


def held_haircut(site, start: int):
    """Redeem a haircut (at the demo's barber) for the first demo volunteer from `start`
    who may; return the volunteer and the voucher code."""
    from points import redemptions
    from points.errors import InsufficientPointsError, RefusedError

    with seeding(site.url):
        for volunteer in site.demo.volunteers[start:]:
            try:
                done = redemptions.create_redemption(volunteer.id, "haircut", actor="kiosk:test")
            except (InsufficientPointsError, RefusedError):
                continue
            return volunteer, done.voucher_code
    raise AssertionError("no demo volunteer can redeem a haircut")


def assert_no_phone(page) -> None:
    assert not PHONE_NUMBER.search(page.content()), page.url


@pytest.mark.slow
def test_provider_story_in_chinese(site, new_page):
    volunteer, code = held_haircut(site, 1)
    page = new_page(PHONE)

    # Without the office's link the page says where to get one.
    page.goto("/provider/")
    assert "请向街道办索取您的服务商链接" in page.inner_text("main")
    check_axe(page)

    # The link is opened once; the token leaves the address bar.
    page.goto(site.demo.provider_link)
    page.wait_for_url("**/provider/")
    assert "/link/" not in page.url
    assert page.get_by_role("heading", name="查询兑换券").is_visible()
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"provider-home-{site.backend}-360")

    # Type the code as a person would (lower case and a space are fine).
    page.fill("#code", f"{code[:5].lower()} {code[5:]}")
    page.get_by_role("button", name="查询这张兑换券").click()
    main = page.locator("main")
    assert page.get_by_test_id("voucher-code").inner_text() == code
    assert "理发一次" in main.inner_text()
    assert "尚未服务" in page.get_by_test_id("status").inner_text()
    name = volunteer.name
    assert page.get_by_test_id("volunteer").inner_text() == name[0] + "*" + name[-1]
    assert_no_phone(page)
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"provider-voucher-{site.backend}-360")

    # A second phone of the same barber has the voucher open too.
    other = new_page(PHONE)
    other.goto(site.demo.provider_link)
    other.wait_for_url("**/provider/")
    other.goto(f"/provider/voucher?code={code}")

    page.get_by_role("button", name="确认服务完成").click()
    assert "已确认服务完成" in page.get_by_test_id("outcome").inner_text()
    assert "已服务" in page.get_by_test_id("status").inner_text()
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"provider-delivered-{site.backend}-360")

    # The second phone's tap comes too late: refused, plainly, saying when.
    other.get_by_role("button", name="确认服务完成").click()
    outcome = other.get_by_test_id("outcome").inner_text()
    assert "这张券已经用过" in outcome and "不能再次使用" in outcome
    assert re.search(r"已于 \d{4}年\d{1,2}月\d{1,2}日", outcome), outcome
    assert_no_phone(other)
    check_axe(other)
    check_sizes(other, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(other, f"provider-already-{site.backend}-360")

    # Another provider's code, or a wrong one, is simply not found.
    page.get_by_role("link", name="查询另一张兑换券").click()
    page.fill("#code", "ZZZZZZZZZZ")
    page.get_by_role("button", name="查询这张兑换券").click()
    assert "您的兑换券中没有这个券号" in page.locator(".error-summary").inner_text()
    check_axe(page)


@pytest.mark.slow
def test_provider_story_in_english(site, new_page):
    _volunteer, code = held_haircut(site, 11)
    page = new_page(PHONE, locale="en")
    page.goto(site.demo.provider_link)
    page.wait_for_url("**/provider/")
    assert page.get_by_role("heading", name="Check a voucher").is_visible()
    page.fill("#code", code)
    page.get_by_role("button", name="Check this voucher").click()
    assert "Not yet delivered" in page.get_by_test_id("status").inner_text()
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"provider-voucher-en-{site.backend}-360")
    # A second phone opens the same voucher before the first one marks it.
    other = new_page(PHONE, locale="en")
    other.goto(site.demo.provider_link)
    other.wait_for_url("**/provider/")
    other.goto(f"/provider/voucher?code={code}")

    # A double tap marks it once.
    page.get_by_role("button", name="Mark as delivered").dblclick()
    assert "Marked as delivered" in page.get_by_test_id("outcome").inner_text()

    other.get_by_role("button", name="Mark as delivered").click()
    outcome = other.get_by_test_id("outcome").inner_text()
    assert "Already delivered" in outcome
    assert "already marked as delivered on" in outcome
    check_axe(other)
    check_sizes(other, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(other, f"provider-already-en-{site.backend}-360")

    # Looked up again, it reads delivered, with no button to mark it.
    other.goto(f"/provider/voucher?code={code}")
    assert "Delivered" in other.get_by_test_id("status").inner_text()
    assert other.get_by_role("button", name="Mark as delivered").count() == 0


@pytest.mark.slow
def test_card_sheet_on_screen_and_in_print(site, new_page):
    page = new_page(OFFICE)
    page.goto("/office/cards?district=longtan")
    page.wait_for_url("**/office/sign-in**")
    check_axe(page)
    username, password = site.demo.staff["office"]
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url("**/office/cards?district=longtan")
    cards = page.locator("article.card")
    assert cards.count() == len(site.demo.volunteers) == 20
    for volunteer in site.demo.volunteers:
        assert page.locator(f'[data-card="{volunteer.card_code}"] svg').count() == 1
    assert "龙潭街道办事处" in page.inner_text("main") or "社区居委会" in page.inner_text("main")
    check_axe(page)
    screenshot(page, f"cards-screen-{site.backend}")

    # Printed: ten cards of 85.6 x 54 mm to an A4 page, the header gone.
    page.emulate_media(media="print")
    box = cards.first.bounding_box()
    assert abs(box["width"] - 85.6 / 25.4 * 96) < 2 and abs(box["height"] - 54 / 25.4 * 96) < 2
    assert not page.locator(".sheet-head").is_visible()
    assert page.locator("section.sheet-page").count() == 2
    check_axe(page)
    screenshot(page, f"cards-print-{site.backend}")
