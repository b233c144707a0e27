"""The kiosk signs an idle person out: a countdown with "continue", then the start screen
(a short idle time for the test, through the server's settings)."""

from __future__ import annotations

import pytest

from tests.pages.conftest import KIOSK_PORTRAIT, check_axe, check_sizes, screenshot
from tests.pages.test_kiosk import pair, scan, volunteers_at_kiosk

# Long enough that typing a card and a PIN on a busy machine never idles out, short
# enough for a test.
SITE_ENVIRONMENT = {"POINTS_KIOSK_PAGE_IDLE_SECONDS": "15"}


@pytest.mark.slow
def test_kiosk_idle_person_is_signed_out_after_a_countdown(site, new_page):
    (volunteer,) = volunteers_at_kiosk(site, 1)
    page = new_page(KIOSK_PORTRAIT)
    pair(page, site, "夕照寺社区服务站 4 号机")
    page.get_by_role("link", name="查积分 · 兑换奖励").click()
    scan(page, volunteer.card_code)
    page.wait_for_url("**/kiosk/pin")
    # Typed on a keyboard into the focused field: wait for the focus, or keys are lost
    # and the PIN screen idles out instead.
    page.wait_for_selector("#pin:focus")
    page.keyboard.type(volunteer.pin)
    assert page.input_value("#pin") == volunteer.pin
    page.keyboard.press("Enter")
    page.wait_for_url("**/kiosk/catalog")

    # The countdown shows with a "continue" button; continuing keeps the person.
    banner = page.locator("#kiosk-idle")
    banner.wait_for(state="visible", timeout=10_000)
    assert "秒后自动退出" in banner.inner_text()
    check_axe(page)
    check_sizes(page, min_font=24, min_target=64)
    screenshot(page, f"kiosk-idle-countdown-{site.backend}-portrait", full_page=False)
    page.get_by_role("button", name="继续使用").click()
    assert banner.is_hidden()
    assert page.url.endswith("/kiosk/catalog")

    # Nobody touches the screen: signed out, and the start screen says why.
    page.wait_for_url("**/kiosk/?idle=1", timeout=40_000)
    assert "屏幕长时间无人操作，已自动退出" in page.inner_text("main")
    page.goto("/kiosk/catalog")
    page.wait_for_url("**/kiosk/")
