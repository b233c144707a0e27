"""Activation codes in chromium against gunicorn: a volunteer from an imported roster
types the 12-digit code from their card sheet where the PIN goes, chooses a PIN, and is
signed in; once at the kiosk (portrait), once on /me on a phone."""

from __future__ import annotations

import re
from itertools import count

import pytest
from playwright.sync_api import expect

from tests.e2e.server import seeding
from tests.pages.conftest import KIOSK_PORTRAIT, PHONE, check_axe, check_sizes, screenshot
from tests.pages.test_kiosk import pair, scan, tap

_names = count(1)


def pending_volunteer(site) -> tuple[str, str, int]:
    """A new volunteer of Xizhaosi registered as a roster import does; (card, code, id)."""
    from points.activation import hash_activation, new_activation_code
    from points.directory import register_volunteer

    code = new_activation_code()
    with seeding(site.url):
        made = register_volunteer(
            f"赵淑珍{next(_names)}", "xizhaosi", activation_hash=hash_activation(code)
        )
        return made.card_code, code, made.id


def activated(site, volunteer_id: int, pin: str) -> bool:
    from points.directory import check_pin
    from points.extensions import db
    from points.models import Volunteer

    with seeding(site.url):
        row = db.session.get(Volunteer, volunteer_id)
        return row.activation_hash is None and check_pin(pin, row.pin_hash)


def check(page, name: str, *, min_font: int, min_target: int) -> None:
    check_axe(page)
    check_sizes(page, min_font=min_font, min_target=min_target)
    screenshot(page, name)


@pytest.mark.slow
def test_activation_at_the_kiosk_in_chinese(site, new_page):
    card, code, volunteer_id = pending_volunteer(site)
    page = new_page(KIOSK_PORTRAIT)
    tag = f"{site.backend}-portrait"
    pair(page, site, "夕照寺社区服务站 激活")
    page.get_by_role("link", name="查积分 · 兑换奖励").click()
    page.wait_for_url("**/kiosk/card")
    scan(page, card)

    # The 12-digit code on the same pad as a PIN.
    page.wait_for_url("**/kiosk/pin")
    page.wait_for_selector("#pin:focus")
    assert "12 位激活码" in page.inner_text("main")
    tap(page, code)
    assert page.input_value("#pin") == code
    page.get_by_role("button", name="登录").click()

    # 请设置您的新密码: a trivial PIN comes back with the error summary.
    page.wait_for_url("**/kiosk/choose-pin")
    expect(page.get_by_role("heading", name="请设置您的新密码")).to_be_visible()
    check(page, f"activation-kiosk-choose-{tag}", min_font=24, min_target=64)
    page.wait_for_selector("#new_pin:focus")
    tap(page, "123456" + "123456")
    assert page.input_value("#new_pin_again") == "123456"
    page.get_by_role("button", name="保存密码并登录").click()
    page.wait_for_url("**/kiosk/choose-pin")
    expect(page.locator(".error-summary")).to_contain_text("新密码")
    check(page, f"activation-kiosk-choose-error-{tag}", min_font=24, min_target=64)

    # One pad for both fields: it moves on when the first is full.
    page.locator("#new_pin").click()
    tap(page, "736150736150")
    assert page.input_value("#new_pin") == "736150"
    assert page.input_value("#new_pin_again") == "736150"
    page.get_by_role("button", name="保存密码并登录").click()
    page.wait_for_url("**/kiosk/catalog?activated=1")
    expect(page.get_by_test_id("activated")).to_be_visible()
    check(page, f"activation-kiosk-signed-in-{tag}", min_font=24, min_target=64)
    assert activated(site, volunteer_id, "736150")


@pytest.mark.slow
def test_activation_on_the_phone_in_chinese(site, new_page):
    card, code, volunteer_id = pending_volunteer(site)
    page = new_page(PHONE)
    page.goto(f"/me/sign-in?card={card}")
    # Typed as printed on the slip, in groups of four.
    page.fill("#pin", f"{code[:4]} {code[4:8]} {code[8:]}")
    page.get_by_role("button", name=re.compile("登录")).click()

    page.wait_for_url("**/me/choose-pin**")
    expect(page.get_by_role("heading", name="请设置您的新密码")).to_be_visible()
    check(page, f"activation-me-choose-{site.backend}-phone", min_font=18, min_target=48)
    page.fill("#new_pin", "736150")
    page.fill("#new_pin_again", "736105")
    page.get_by_role("button", name="保存密码并登录").click()
    page.wait_for_url("**/me/choose-pin**")
    expect(page.locator(".error-summary")).to_contain_text("两次输入的新密码不一致")
    page.fill("#new_pin", "736150")
    page.fill("#new_pin_again", "736150")
    page.get_by_role("button", name="保存密码并登录").click()
    page.wait_for_url("**/me/?activated=1")
    expect(page.get_by_test_id("activated")).to_be_visible()
    check(page, f"activation-me-signed-in-{site.backend}-phone", min_font=18, min_target=48)
    assert activated(site, volunteer_id, "736150")
