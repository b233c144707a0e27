"""The volunteer's story on /me, in chromium against gunicorn: sign in with the card's
link and the PIN, read points, history, rewards and vouchers, report a fix, give points
to family, change the PIN, switch language, sign out."""

from __future__ import annotations

import re

import pytest

from tests.e2e.server import seeding
from tests.pages.conftest import KIOSK_PORTRAIT, PHONE, check_axe, check_sizes, screenshot

# PAGES.md: body text at least 18 px, targets at least 48x48 px on a volunteer's phone.
MIN_FONT = 18
MIN_TARGET = 48


def sign_in(page, card: str, pin: str) -> None:
    page.goto(f"/me/sign-in?card={card}")
    page.fill("#pin", pin)
    page.get_by_role("button", name=re.compile("登录|Sign in")).click()


def held_voucher(site, volunteer) -> str:
    """Redeem a haircut for `volunteer` in-process (as a kiosk would); return its code."""
    from points import redemptions

    with seeding(site.url):
        done = redemptions.create_redemption(volunteer.id, "haircut", actor="kiosk:test")
    return done.voucher_code


@pytest.mark.slow
def test_volunteer_story_in_chinese(site, new_page):
    volunteer = site.demo.volunteers[0]
    code = held_voucher(site, volunteer)
    page = new_page(PHONE)

    # The card's QR code opens the sign-in page with the card code filled in.
    page.goto(f"/me/sign-in?card={volunteer.card_code}")
    assert page.input_value("#card_code") == volunteer.card_code
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"me-sign-in-{site.backend}-360")
    page.fill("#pin", volunteer.pin)
    page.get_by_role("button", name="登录").click()

    # Home: available points large, held, balance, hours, star progress.
    page.wait_for_url("**/me/")
    assert page.get_by_role("heading", name=f"{volunteer.name}，您好").is_visible()
    available = int(page.get_by_test_id("available").inner_text().replace(",", ""))
    assert available >= 0
    assert "兑换券占用" in page.inner_text("main")
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"me-home-{site.backend}-360")

    # History: every line says why; a month filter.
    page.get_by_role("link", name="积分明细").click()
    page.wait_for_url("**/me/history")
    lines = page.locator("ul.lines > li")
    assert lines.count() > 0
    assert "规则：小巷管家六步工作法" in page.inner_text("main")
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"me-history-{site.backend}-360")
    page.fill("#month", "1999-01")
    page.get_by_role("button", name="查看该月").click()
    assert "这段时间没有积分变动" in page.inner_text("main")

    # Rewards: what they can get, and for the rest the reason in words.
    page.get_by_role("link", name="兑换", exact=True).click()
    page.wait_for_url("**/me/catalog")
    text = page.inner_text("main")
    assert "理发一次" in text
    assert "需 1 星及以上" in text  # home cleaning needs a star
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"me-catalog-{site.backend}-360")

    # Vouchers: the held haircut, large with its QR code; cancel it.
    page.get_by_role("link", name="兑换券", exact=True).click()
    page.get_by_role("link", name="理发一次").first.click()
    assert page.get_by_test_id("voucher-code").inner_text() == code
    assert page.locator(".qr svg").count() == 1
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"me-voucher-{site.backend}-360")
    page.get_by_role("button", name="取消兑换，退回积分").click()
    assert "已取消" in page.inner_text("main")

    # Report a fix: the form is built from the kind's details schema.
    page.goto("/me/report")
    page.get_by_role("link", name="随手做").click()
    page.get_by_role("button", name="提交给街道").click()  # the description is required
    summary = page.locator(".error-summary")
    assert "做了什么" in summary.inner_text()
    check_axe(page)
    screenshot(page, f"me-report-errors-{site.backend}-360")
    page.fill("#details-description", "扶正了倒伏的共享单车")
    page.fill("#minutes", "15")
    page.get_by_role("button", name="提交给街道").click()
    assert "谢谢您" in page.inner_text("main")
    page.goto("/me/records")
    assert "随手做" in page.inner_text("main")
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)

    # Gift points to family: the policy's answer on the page.
    family = site.demo.volunteers[1]
    page.goto("/me/gift")
    page.fill("#card_code", family.card_code)
    page.fill("#points", "5")
    page.get_by_role("button", name="赠送积分").click()
    assert "已赠送 5 分" in page.inner_text("main")

    # Switch to English; the choice is remembered.
    page.get_by_role("link", name="English").click()
    assert "Hello" in page.inner_text("main") or "Give points" in page.inner_text("main")
    page.goto("/me/")
    assert page.get_by_role("heading", name=f"Hello, {volunteer.name}").is_visible()
    page.get_by_role("link", name="中文").click()

    # Sign out: the pages ask to sign in again.
    page.goto("/me/more")
    page.get_by_role("button", name="退出登录").click()
    page.goto("/me/")
    page.wait_for_url("**/me/sign-in**")


@pytest.mark.slow
def test_volunteer_story_in_english(site, new_page):
    volunteer = site.demo.volunteers[2]
    page = new_page(PHONE, locale="en")
    page.goto("/language/en?next=/me/sign-in")
    page.fill("#card_code", volunteer.card_code.lower())  # either case is fine
    page.fill("#pin", volunteer.pin)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/me/")
    assert page.get_by_role("heading", name=f"Hello, {volunteer.name}").is_visible()
    assert "Points you can use" in page.inner_text("main")
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, f"me-home-en-{site.backend}-360")

    page.get_by_role("link", name="History").click()
    assert "Rule: the alley steward's six steps" in page.inner_text("main")

    # Change the PIN: a trivial one is refused with a field error, then a good one.
    page.goto("/me/pin")
    page.fill("#old_pin", volunteer.pin)
    page.fill("#new_pin", "123456")
    page.fill("#new_pin_again", "123456")
    page.get_by_role("button", name="Change my PIN").click()
    assert "Too easy to guess" in page.locator(".error-summary").inner_text()
    check_axe(page)
    screenshot(page, f"me-pin-errors-en-{site.backend}-360")
    page.fill("#old_pin", volunteer.pin)
    page.fill("#new_pin", "583920")
    page.fill("#new_pin_again", "583920")
    page.get_by_role("button", name="Change my PIN").click()
    assert "Your PIN is changed" in page.inner_text("main")

    # The old PIN no longer signs in; the new one does.
    other = new_page(PHONE, locale="en")
    sign_in(other, volunteer.card_code, volunteer.pin)
    assert "Wrong PIN" in other.locator(".error-summary").inner_text()
    sign_in(other, volunteer.card_code, "583920")
    other.wait_for_url("**/me/")
    # Put the demo's PIN back for the other stories of this module.
    with seeding(site.url):
        from points.directory import set_pin

        set_pin(volunteer.id, volunteer.pin)


@pytest.mark.slow
def test_volunteer_wrong_pins_lock_the_card_and_say_until_when(site, new_page):
    volunteer = site.demo.volunteers[4]
    page = new_page(PHONE)
    for _ in range(5):
        sign_in(page, volunteer.card_code, "000001")
    text = page.inner_text("main")
    assert "卡已锁定" in text
    assert "之后再试" in text
    check_axe(page)
    screenshot(page, f"me-locked-{site.backend}-360")


@pytest.mark.slow
def test_volunteer_reaches_only_their_own_vouchers(site, new_page):
    owner, other = site.demo.volunteers[6], site.demo.volunteers[8]
    held_voucher(site, owner)
    from points import volunteers

    with seeding(site.url):
        (line,), _ = volunteers.vouchers(owner.id, limit=1)
    page = new_page(PHONE)
    sign_in(page, other.card_code, other.pin)
    page.wait_for_url("**/me/")
    response = page.goto(f"/me/vouchers/{line['id']}")
    assert response.status == 404
    assert line["voucher_code"] not in page.content()


PAGES = (
    "",
    "history",
    "statement",
    "records",
    "catalog",
    "vouchers",
    "more",
    "report",
    "report?kind=log",
    "gift",
    "pin",
)


@pytest.mark.slow
@pytest.mark.parametrize("viewport", [PHONE, KIOSK_PORTRAIT], ids=["phone", "kiosk"])
def test_volunteer_every_page_at_phone_and_kiosk_size(site, new_page, viewport):
    """Every /me page passes axe and the size checks on a phone and on a large upright
    screen (a kiosk's browser), with a screenshot of each."""
    volunteer = site.demo.volunteers[10]
    page = new_page(viewport)
    sign_in(page, volunteer.card_code, volunteer.pin)
    page.wait_for_url("**/me/")
    size = "360" if viewport is PHONE else "kiosk"
    for path in PAGES:
        response = page.goto(f"/me/{path}")
        assert response.status == 200, path
        check_axe(page)
        check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
        name = path.replace("?kind=", "-") or "home"
        screenshot(page, f"me-{name}-{site.backend}-{size}")
