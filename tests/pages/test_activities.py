"""An activity by clicks, in chromium against gunicorn: the office posts it, two
stewards sign up on their phones, the office signs up a third who never comes; one
checks in by scanning the organiser's QR code on a phone-sized page and out later, one
by card and PIN at the kiosk; the organiser closes; the attendance list, the records and
the points are right. axe and the age-friendly sizes on each new page."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.server import seeding
from tests.pages.conftest import KIOSK_PORTRAIT, OFFICE, PHONE, check_axe, check_sizes, screenshot
from tests.pages.test_kiosk import pair, tap
from tests.pages.test_office import sign_in
from tests.pages.test_volunteer import sign_in as volunteer_sign_in

MIN_FONT = 18
MIN_TARGET = 48
ZONE = ZoneInfo("Asia/Shanghai")


def look(page, name: str) -> None:
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, name)


def _local(moment: datetime) -> str:
    return moment.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M")


def _checked_in_earlier(site, activity_id: int, volunteer_id: int, minutes: int) -> None:
    """As if the steward had checked in `minutes` ago: a story cannot wait half an hour."""
    from sqlalchemy import select

    from points.extensions import db
    from points.models import ActivitySignup

    with seeding(site.url):
        signup = db.session.scalar(
            select(ActivitySignup).where(
                ActivitySignup.activity_id == activity_id,
                ActivitySignup.volunteer_id == volunteer_id,
            )
        )
        signup.checked_in_at -= timedelta(minutes=minutes)
        db.session.commit()


def _scan(page, office, activity_id: int) -> None:
    """The phone opens the URL in the code on the organiser's screen, then confirms."""
    office.goto(f"/office/activities/{activity_id}/qr")
    url = office.locator("[data-scan-url]").inner_text().strip()
    page.goto(url)
    page.get_by_role("button", name=re.compile("现在签到或签退|Check in or out now")).click()
    page.wait_for_selector('[data-testid="scan-done"]')


@pytest.mark.slow
def test_activity_from_posting_to_attendance(site, new_page):
    stewards = [v for v in site.demo.volunteers if v.community == "xizhaosi"][-3:]
    scanner, swiper, absent = stewards
    now = datetime.now(ZONE)

    office = new_page(OFFICE)
    sign_in(office, *site.demo.staff["office"])
    office.goto("/office/activities")
    look(office, f"office-activities-{site.backend}")
    office.get_by_role("link", name="发布活动").click()
    office.select_option("#district", "xizhaosi")
    office.fill("#title_zh", "胡同大扫除")
    office.fill("#title_en", "Alley clean-up")
    office.fill("#place", "西草市街 12 号")
    office.fill("#starts_at", _local(now - timedelta(minutes=50)))
    office.fill("#ends_at", _local(now + timedelta(minutes=30)))
    office.fill("#signup_until", _local(now + timedelta(minutes=20)))
    office.select_option("#kind", "patrol")
    office.fill("#places", "3")
    look(office, f"office-activity-form-{site.backend}")
    office.get_by_role("button", name="发布活动").click()
    office.wait_for_url(re.compile(r".*/office/activities/\d+(\?.*)?$"))
    activity_id = int(re.search(r"/activities/(\d+)", office.url).group(1))

    # Two stewards sign up on their phones; the office signs up a third by card.
    phones = {}
    for steward in (scanner, swiper):
        phone = new_page(PHONE)
        volunteer_sign_in(phone, steward.card_code, steward.pin)
        phone.goto("/me/activities")
        phone.locator(f'[data-activity="{activity_id}"]').get_by_role("button", name="报名").click()
        phone.wait_for_url(re.compile(r".*done=signed$"))
        assert phone.locator(f'[data-activity="{activity_id}"] [data-state="signed"]').is_visible()
        phones[steward.id] = phone
    look(phones[scanner.id], f"me-activities-{site.backend}")
    office.fill("#signup-card", absent.card_code)
    office.get_by_role("button", name="报名", exact=True).click()
    office.wait_for_url(re.compile(r".*done=signed$"))
    assert "3 / 3" in office.locator('[data-count="signed"]').inner_text()

    # The first checks in by the QR code, and out half an hour later.
    phone = phones[scanner.id]
    office.goto(f"/office/activities/{activity_id}/qr")
    look(office, f"office-activity-qr-{site.backend}")
    _scan(phone, office, activity_id)
    assert phone.locator('[data-direction="in"]').is_visible()
    look(phone, f"me-activity-checked-in-{site.backend}")
    _checked_in_earlier(site, activity_id, scanner.id, 30)
    _scan(phone, office, activity_id)
    assert phone.locator('[data-direction="out"]').is_visible()
    assert re.search(r"\b3[01]\b", phone.inner_text('[data-testid="scan-done"]'))

    # The second swipes a card at the kiosk, in and later out.
    kiosk = new_page(KIOSK_PORTRAIT)
    pair(kiosk, site, "夕照寺社区服务站 活动机")
    for step in ("in", "out"):
        kiosk.goto("/kiosk/")
        kiosk.get_by_role("link", name="活动签到").click()
        kiosk.locator(f'[data-activity="{activity_id}"]').click()
        kiosk.fill("#card_code", swiper.card_code)
        kiosk.locator("#pin").click()
        tap(kiosk, swiper.pin)
        if step == "in":
            look(kiosk, f"kiosk-activity-card-{site.backend}")
        kiosk.get_by_role("button", name="签到或签退").click()
        kiosk.wait_for_selector(f'[data-direction="{step}"]')
        assert swiper.name not in kiosk.inner_text("main")
        if step == "in":
            look(kiosk, f"kiosk-activity-in-{site.backend}")
            _checked_in_earlier(site, activity_id, swiper.id, 45)

    # The organiser closes; the third never came.
    office.goto(f"/office/activities/{activity_id}")
    office.get_by_role("button", name="结束", exact=True).click()
    office.wait_for_url(re.compile(r".*done=closed$"))
    look(office, f"office-activity-closed-{site.backend}")
    states = {
        int(row.get_attribute("data-volunteer")): row.get_attribute("data-state")
        for row in office.locator("#attendance tbody tr").all()
    }
    assert states == {scanner.id: "left", swiper.id: "left", absent.id: "no_show"}
    with office.expect_download() as download:
        office.get_by_role("link", name="签到表（CSV）").click()
    text = download.value.path().read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    # The table's title, its headers in both languages, then a row a steward.
    assert rows[1][:2] == ["志愿者编号 / Volunteer id", "姓名 / Name"]
    by_id = {int(row[0]): row for row in rows[2:]}
    assert set(by_id) == {scanner.id, swiper.id, absent.id}
    assert by_id[scanner.id][1] == scanner.name

    # Their records: the real minutes, through the service layer's rules.
    from sqlalchemy import select

    from points.extensions import db
    from points.models import ServiceRecord

    with seeding(site.url):
        records = {
            row.volunteer_id: row
            for row in db.session.scalars(
                select(ServiceRecord)
                .where(ServiceRecord.volunteer_id.in_([s.id for s in stewards]))
                .where(ServiceRecord.kind == "patrol")
                .order_by(ServiceRecord.id)
            )
        }
    assert records[scanner.id].minutes in (30, 31)
    assert records[swiper.id].minutes in (45, 46)
    assert absent.id not in records or records[absent.id].details.get("activity") != activity_id
