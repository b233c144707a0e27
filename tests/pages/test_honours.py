"""Honours by clicks, in chromium against gunicorn: an office proposes a list from the
rankings page, a neighbour reads the public notice on a phone (masked names, nothing
personal) and objects, the office answers and finalises, the steward sees the honour on
/me. axe and the age-friendly sizes on each new page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.server import seeding
from tests.pages.conftest import OFFICE, PHONE, check_axe, check_sizes, screenshot
from tests.pages.test_office import sign_in
from tests.pages.test_volunteer import sign_in as volunteer_sign_in

MIN_FONT = 18
MIN_TARGET = 48


def look(page, name: str) -> None:
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, name)


@pytest.mark.slow
def test_honour_from_ranking_to_notice_to_the_stewards_page(site, new_page):
    office = new_page(OFFICE)
    username, password = site.demo.staff["office"]
    sign_in(office, username, password)
    office.goto("/office/rankings")
    office.fill("#title", "十佳小巷管家 2026")
    office.fill("#size", "3")
    office.get_by_role("button", name="提名并开始公示").click()
    office.wait_for_url(re.compile(r".*/office/honours/\d+$"))
    honour_id = int(office.url.rsplit("/", 1)[1])
    members = office.locator("#members tbody tr")
    assert members.count() >= 3
    full_names = [members.nth(n).locator("td").nth(1).inner_text() for n in range(members.count())]
    look(office, f"office-honour-{site.backend}")
    public_url = office.locator("#public-link").get_attribute("href")

    # A neighbour on a phone, not signed in: names masked, no phone, no card.
    phone = new_page(PHONE)
    phone.goto(public_url)
    shown = phone.inner_text("main")
    for name in full_names:
        assert name not in shown
    assert "*" in shown and not re.search(r"\d{11}", shown)
    for volunteer in site.demo.volunteers:
        assert volunteer.card_code not in shown
    look(phone, f"public-notice-{site.backend}")
    phone.fill("#text", "第二名上个月有两周不在社区，请核实。")
    phone.get_by_role("button", name="提交").click()
    phone.wait_for_url(re.compile(r".*sent=1$"))
    assert phone.get_by_role("status").is_visible()
    phone.goto("/honours/")
    assert "十佳小巷管家 2026" in phone.inner_text("main")
    look(phone, f"public-notice-board-{site.backend}")

    # The office answers the objection, then finalises once the notice is over.
    office.reload()
    assert "第二名上个月" in office.inner_text("main")
    assert office.get_by_role("button", name="确定名单").is_disabled()
    office.locator("textarea[id^=answer-]").fill("已核实考勤记录，维持提名。")
    office.get_by_role("button", name="保存答复").click()
    office.wait_for_url(re.compile(rf".*/office/honours/{honour_id}#objection-\d+$"))
    with seeding(site.url):
        from sqlalchemy import update

        from points.extensions import db
        from points.models import Honour

        db.session.execute(
            update(Honour)
            .where(Honour.id == honour_id)
            .values(notice_until=datetime.now(UTC) - timedelta(seconds=1))
        )
        db.session.commit()
        from points import honours

        first = honours.get(honour_id).members[0].volunteer_id
    office.reload()
    office.get_by_role("button", name="确定名单").click()
    assert office.locator("#status").inner_text() == "已确定"
    look(office, f"office-honour-final-{site.backend}")
    office.get_by_role("link", name="荣誉表彰", exact=True).first.click()
    assert "十佳小巷管家 2026" in office.locator("#honours").inner_text()
    look(office, f"office-honours-{site.backend}")

    # The steward sees the honour on their home page.
    steward = next(v for v in site.demo.volunteers if v.id == first)
    me = new_page(PHONE)
    volunteer_sign_in(me, steward.card_code, steward.pin)
    me.wait_for_url(re.compile(r".*/me/?$"))
    assert "十佳小巷管家 2026" in me.locator("#honours").inner_text()
    look(me, f"me-honours-{site.backend}")


@pytest.mark.slow
def test_settling_a_provider_by_clicks(site, new_page):
    office = new_page(OFFICE)
    username, password = site.demo.staff["office"]
    sign_in(office, username, password)
    office.goto("/office/providers")
    barber = office.locator("tr", has_text="王师傅便民理发")
    barber.get_by_role("link", name="本月结算单").click()
    office.wait_for_url(re.compile(r".*/office/providers/[a-z0-9-]+/statement$"))
    to_settle = int(office.locator("[data-figure=to_settle]").inner_text())
    rows = office.locator("#vouchers tbody tr")
    look(office, f"office-settlement-{site.backend}")
    assert to_settle >= 1 and rows.count() == to_settle  # the demo's haircuts this month
    office.get_by_role("button", name="结算", exact=True).click()
    office.wait_for_url(re.compile(r".*settled=\d+"))
    assert office.locator("[data-figure=to_settle]").inner_text() == "0"
    assert office.locator("#settlements tbody tr").count() == 1
    # The demo's haircut costs the office 15 yuan a voucher.
    assert office.locator("[data-figure=amount]").inner_text() == f"{15 * to_settle}.00"
    look(office, f"office-settlement-done-{site.backend}")
