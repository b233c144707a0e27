"""Webhooks by clicks, in chromium against gunicorn: an office adds a webhook (the secret
shown once), a delivery fails at a real local receiver until it is given up on, the
office sends it again from the log, and it arrives signed with that secret. axe and the
age-friendly sizes on each page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import update

from tests.e2e.server import seeding
from tests.pages.conftest import OFFICE, check_axe, check_sizes, screenshot
from tests.pages.test_office import sign_in
from tests.webhook_receiver import Receiver, verify

# The receiver listens on 127.0.0.1: an inner address this server may call only so.
SITE_ENVIRONMENT = {"POINTS_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8"}


def look(page, name: str) -> None:
    check_axe(page)
    check_sizes(page, min_font=18, min_target=48)
    screenshot(page, name)


def _deliver(site, *, give_up: bool = False) -> None:
    """Run the worker once, as cron would; `give_up` makes this try the last one."""
    with seeding(site.url) as app:
        from points import webhooks
        from points.extensions import db
        from points.models import WebhookDelivery

        app.config["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"
        if give_up:
            db.session.execute(update(WebhookDelivery).values(attempts=webhooks.MAX_ATTEMPTS - 1))
            db.session.commit()
        webhooks.deliver()


@pytest.mark.slow
def test_webhook_added_failed_and_sent_again(site, new_page):
    office = new_page(OFFICE)
    username, password = site.demo.staff["office"]
    sign_in(office, username, password)
    with Receiver() as receiver:
        office.get_by_role("link", name="事件推送").click()
        office.wait_for_url(re.compile(r".*/office/webhooks$"))
        look(office, f"office-webhooks-{site.backend}")
        office.fill("#url", receiver.url)
        office.get_by_label("积分变动（任何一笔账目）").check()
        office.get_by_label("兑换券已发放").check()
        office.get_by_role("button", name="添加此事件推送").click()
        secret = office.locator("[data-secret]").inner_text().strip()
        assert re.fullmatch(r"[0-9a-f]{64}", secret)
        look(office, f"office-webhook-secret-{site.backend}")

        with seeding(site.url):
            from points import ledger

            volunteer = site.demo.volunteers[0]
            entry = ledger.earn(volunteer.id, 3, actor="office:test", reason="巡查")
        receiver.otherwise = "fail"
        _deliver(site, give_up=True)
        assert [r.event_id for r in receiver.received] == [f"entry:{entry.id}"]

        office.get_by_role("link", name="查看发送记录").click()
        office.wait_for_url(re.compile(r".*/office/webhooks/\d+$"))
        row = office.locator("#deliveries tbody tr").first
        assert "发送失败" in row.inner_text() and "HTTP 500" in row.inner_text()
        look(office, f"office-webhook-log-{site.backend}")
        receiver.otherwise = "ok"
        row.get_by_role("button", name=re.compile("重新发送")).click()
        office.wait_for_url(re.compile(r".*done=replayed$"))
        assert office.get_by_role("status").is_visible()
        _deliver(site)
        office.reload()
        assert "对方已接收" in office.locator("#deliveries tbody tr").first.inner_text()
        last = receiver.received[-1]
        assert last.event_id == f"entry:{entry.id}" and verify(secret, last)
        assert len(receiver.received) == 2
