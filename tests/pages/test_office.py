"""The office's story on /office, in chromium against gunicorn, by clicks: sign in, read
Today, decide the queue one by one and in bulk, register a volunteer and print their
card, reset a PIN and sign in as that volunteer on /me, add a provider and a catalog item
and see it at the kiosk, edit a cap in the policy editor, preview, activate and see
the next record capped, read the audit log of all of it. An auditor sees every screen
with no change control; an office of one community cannot reach its sibling. axe and the
age-friendly sizes on every console page."""

from __future__ import annotations

import io
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from tests.e2e.server import seeding
from tests.pages.conftest import (
    KIOSK_LANDSCAPE,
    OFFICE,
    PHONE,
    check_axe,
    check_sizes,
    screenshot,
)
from tests.pages.test_kiosk import pair, scan, tap

# PAGES.md: office PCs at 1366 px; body text at least 18 px, targets at least 48 px.
MIN_FONT = 18
MIN_TARGET = 48
PASSWORD = "lantern-harbour-42"


def sign_in(page, username: str, password: str) -> None:
    page.goto("/office/sign-in")
    page.fill("#username", username)
    page.fill("#password", password)
    page.get_by_role("button", name=re.compile("登录|Sign in")).click()
    page.wait_for_url(re.compile(r".*/office(\?.*)?$"))


def look(page, name: str) -> None:
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, name)


@pytest.mark.slow
def test_office_story_by_clicks(site, new_page):
    page = new_page(OFFICE)
    page.goto("/office")
    page.wait_for_url("**/office/sign-in**")
    look(page, f"office-sign-in-{site.backend}")

    username, password = site.demo.staff["office"]
    sign_in(page, username, password)
    assert page.get_by_role("heading", name="今日").is_visible()
    look(page, f"office-today-{site.backend}")

    # Decide the queue: one record by its own button, then two at once with a reason.
    page.locator("dt:has-text('待审核的服务记录') + dd a").click()
    page.wait_for_url("**/office/queue")
    look(page, f"office-queue-{site.backend}")
    chosen = page.locator("input[name=ids]")
    assert chosen.count() >= 3
    first, second, third = (chosen.nth(n).get_attribute("value") for n in range(3))
    page.locator(f"button[name=row][value='approve:{first}']").click()
    assert "已批准：1" in page.locator("[role=status]").inner_text()
    page.check(f"#choose-{second}")
    page.check(f"#choose-{third}")
    page.get_by_role("button", name="驳回所选").click()
    assert "原因" in page.locator(".error-summary").inner_text()  # a reason is needed
    page.check(f"#choose-{second}")
    page.check(f"#choose-{third}")
    page.fill("#reason", "同一次巡查提交了两次")
    page.get_by_role("button", name="驳回所选").click()
    assert "已驳回：2" in page.locator("[role=status]").inner_text()
    page.select_option("#status", "rejected")
    page.get_by_role("button", name="显示", exact=True).click()
    assert "同一次巡查提交了两次" in page.inner_text("main")
    look(page, f"office-queue-rejected-{site.backend}")

    # Register a volunteer; the drawn PIN is shown once; print their card.
    page.get_by_role("link", name="志愿者", exact=True).click()
    look(page, f"office-volunteers-{site.backend}")
    page.get_by_role("link", name="登记志愿者").click()
    page.fill("#name", "钱秀兰")
    page.fill("#phone", "13912345678")
    page.select_option("#district", "xizhaosi")
    look(page, f"office-register-{site.backend}")
    page.get_by_role("button", name="登记", exact=True).click()
    pin = page.locator("[data-pin]").inner_text().strip()
    card = page.locator("[data-card-code]").inner_text().strip()
    assert re.fullmatch(r"\d{6}", pin) and re.fullmatch(r"[0-9A-Z]{10}", card)
    look(page, f"office-registered-{site.backend}")
    page.get_by_role("link", name="打印积分卡").click()
    assert page.locator(f'[data-card="{card}"] svg').count() == 1

    # Find her again by her card, reset her PIN, and sign in with the new PIN on /me.
    page.goto("/office/volunteers")
    page.fill("#q", card.lower())
    page.get_by_role("button", name="搜索").click()
    page.get_by_role("link", name="钱秀兰").click()
    look(page, f"office-volunteer-{site.backend}")
    page.get_by_role("button", name="重置密码").click()
    new_pin = page.locator("[data-pin]").inner_text().strip()
    assert new_pin != pin or len(new_pin) == 6
    phone = new_page(PHONE)
    phone.goto(f"/me/sign-in?card={card}")
    phone.fill("#pin", new_pin)
    phone.get_by_role("button", name="登录").click()
    phone.wait_for_url("**/me/")
    assert "钱秀兰" in phone.inner_text("body")

    # Add a provider.
    page.get_by_role("link", name="服务商", exact=True).click()
    page.fill("#name", "赵师傅修鞋配钥匙")
    page.fill("#code", "cobbler-zhao")
    page.select_option("#district", "longtan")
    page.get_by_role("button", name="添加服务商").click()
    page.wait_for_url("**/office/providers?done=created")
    assert "赵师傅修鞋配钥匙" in page.inner_text("main")
    look(page, f"office-providers-{site.backend}")

    # Add a catalog item served by the new provider; the kiosk offers it at once.
    page.get_by_role("link", name="兑换目录", exact=True).click()
    look(page, f"office-catalog-{site.backend}")
    page.fill("#sku", "key-copy")
    page.fill("#name_zh", "配钥匙")
    page.fill("#name_en", "key copying")
    page.fill("#cost", "8")
    page.select_option("#provider", "cobbler-zhao")
    page.get_by_role("button", name="添加该项目").click()
    page.wait_for_url(re.compile(r".*/office/catalog\?.*done=added"))
    assert "配钥匙" in page.inner_text("main")
    look(page, f"office-catalog-added-{site.backend}")
    kiosk = new_page(KIOSK_LANDSCAPE)
    pair(kiosk, site, "夕照寺社区服务站 office story")
    kiosk.get_by_role("link", name="查积分 · 兑换奖励").click()
    scan(kiosk, card)
    kiosk.wait_for_url("**/kiosk/pin")
    tap(kiosk, new_pin)
    kiosk.get_by_role("button", name="登录").click()
    kiosk.wait_for_url("**/kiosk/catalog")
    assert "配钥匙" in kiosk.inner_text("main")

    # Edit a cap in the policy editor: at most 1 point a day at the street. Save it as a
    # draft, preview it against the last month, activate it now; her next fix is capped.
    page.get_by_role("link", name="积分规则", exact=True).click()
    look(page, f"office-policy-{site.backend}")
    page.get_by_role("link", name="积分上限", exact=True).click()
    page.fill("#v__overall__day", "1")
    page.fill("#comment", "试行：每天最多 1 分")
    page.get_by_role("button", name="保存草稿").click()
    assert "草稿已保存" in page.locator("[role=status]").inner_text()
    page.get_by_role("button", name="预览", exact=True).click()
    assert page.locator("[data-draft-total]").is_visible()
    look(page, f"office-policy-preview-{site.backend}")
    page.get_by_role("button", name="启用", exact=True).click()
    page.wait_for_url(re.compile(r".*/office/policy/caps/versions.*done=activated"))
    assert "config.overall.day" in page.locator("#diff").inner_text()
    look(page, f"office-policy-history-{site.backend}")
    phone.goto("/me/report")
    phone.get_by_role("link", name="随手做").click()
    phone.fill("#details-description", "修好了楼道的灯")
    phone.fill("#minutes", "20")
    # Service that starts after the change (the policy of its start applies): the next
    # minute, within the five minutes ahead a record may start.
    soon = datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(minutes=1)
    phone.fill("#started_at", soon.strftime("%Y-%m-%dT%H:%M"))
    phone.get_by_role("button", name="提交给街道").click()
    assert "已记录：1 分" in phone.inner_text("main"), phone.inner_text("main")

    # Tokens and kiosks, staff: a look, in English too.
    page.get_by_role("link", name="令牌和一体机").click()
    look(page, f"office-tokens-{site.backend}")
    page.get_by_role("link", name="工作人员").click()
    look(page, f"office-staff-{site.backend}")

    # The audit log tells all of it, with the clerk as the actor.
    page.get_by_role("link", name="操作日志").click()
    log = page.inner_text("main")
    for action in (
        "record.approve",
        "record.reject",
        "volunteer.register",
        "volunteer.pin_reset",
        "provider.create",
        "policy.version",
        "policy.draft_save",
        "staff.sign_in",
    ):
        assert action in log, action
    assert pin not in log and new_pin not in log
    look(page, f"office-audit-{site.backend}")

    # The month's report: the charts draw the numbers of the table beside them.
    page.get_by_role("link", name="统计报表", exact=True).click()
    assert page.locator("[data-figure=issued]").inner_text() != "0"
    bars = page.locator("svg[data-series=issued] rect")
    assert bars.count() == 12
    for n in range(12):
        month, value = (
            bars.nth(n).get_attribute("data-month"),
            bars.nth(n).get_attribute("data-value"),
        )
        cell = page.locator(f"#months td[data-series=issued][data-month='{month}']")
        assert cell.inner_text() == value, month
    kinds = page.locator("svg[data-series=issued_by_kind] rect")
    assert kinds.count() >= 1
    for n in range(kinds.count()):
        kind, value = (kinds.nth(n).get_attribute(a) for a in ("data-kind", "data-value"))
        assert page.locator(f"td[data-issued-kind='{kind}']").inner_text() == value, kind
    with page.expect_download() as saved:
        page.get_by_role("link", name="下载 XLSX").click()
    assert saved.value.suggested_filename.endswith(".xlsx")
    book = load_workbook(io.BytesIO(saved.value.path().read_bytes()), read_only=True)
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=3, values_only=True)}
    assert str(summary["发放 / Issued"]) == page.locator(
        "[data-figure=issued]"
    ).inner_text().replace(",", "")
    look(page, f"office-reports-{site.backend}")

    page.get_by_role("link", name="积分排名", exact=True).click()
    assert page.locator("#ranking tbody tr").count() >= 1
    look(page, f"office-rankings-{site.backend}")

    # Export the service records as CSV: the file the browser saves has both headers.
    page.get_by_role("link", name="导出", exact=True).click()
    look(page, f"office-exports-{site.backend}")
    page.get_by_label("服务记录").check()
    page.get_by_label("CSV 文本").check()
    with page.expect_download() as download:
        page.get_by_role("button", name="下载").click()
    saved = download.value.path().read_text(encoding="utf-8-sig")
    assert saved.startswith("记录号 / record,") and "同一次巡查提交了两次" in saved

    page.goto("/language/en?next=/office/volunteers")
    assert page.get_by_role("heading", name="Volunteers").is_visible()
    look(page, f"office-volunteers-en-{site.backend}")


@pytest.mark.slow
def test_office_auditor_sees_and_changes_nothing(site, new_page):
    page = new_page(OFFICE)
    username, password = site.demo.staff["auditor"]
    sign_in(page, username, password)
    volunteer = site.demo.volunteers[0]
    for path in (
        "/office",
        "/office/queue",
        "/office/queue?show=gifts",
        "/office/volunteers",
        f"/office/volunteers/{volunteer.id}",
        "/office/providers",
        "/office/catalog",
        "/office/catalog/haircut",
        "/office/policy",
        "/office/policy/caps",
        "/office/policy/caps/versions",
        "/office/exports",
        "/office/rankings",
        "/office/reports",
        f"/office/volunteers/{volunteer.id}/statement",
        "/office/tokens",
        "/office/staff",
        "/office/audit",
    ):
        page.goto(path)
        # The only form is the sign-out button's.
        assert page.locator("form[method=post]").count() == 1, path
        check_axe(page)
    screenshot(page, f"office-auditor-audit-{site.backend}")


@pytest.mark.slow
def test_office_of_a_community_cannot_reach_its_sibling(site, new_page):
    from points import staff

    with seeding(site.url):
        staff.create_staff("zuoanmen-clerk", "赵磊", "office", "zuoanmen", PASSWORD)
        far = next(v for v in site.demo.volunteers if v.community == "xizhaosi")
    page = new_page(OFFICE)
    sign_in(page, "zuoanmen-clerk", PASSWORD)
    page.goto("/office/volunteers")
    assert far.name not in page.inner_text("main")
    response = page.goto(f"/office/volunteers/{far.id}")
    assert response.status == 403
    page.goto("/office/queue")
    assert far.name not in page.inner_text("main")
    assert page.goto("/office/queue?district=xizhaosi").status == 422
    assert page.goto("/office/policy/caps?district=xizhaosi").status == 403
