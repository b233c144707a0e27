"""Budgets on the console, in chromium against gunicorn: the street's office reads each
budget's period, used and left on Today and on the reports page; axe and the console's
sizes hold, and the pages are photographed at the office's, a phone's and a kiosk's size."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.e2e.server import seeding
from tests.pages.conftest import KIOSK_PORTRAIT, OFFICE, PHONE, check_axe, screenshot
from tests.pages.test_office import look, sign_in


def test_the_office_reads_budgets_on_today_and_the_reports(site, new_page):
    from points import budgets
    from points.policy import district_info, set_policy

    with seeding(site.url):
        long_ago = datetime(2020, 1, 1, tzinfo=UTC)
        set_policy(
            "longtan",
            "budget",
            {"points": 20000, "period": "year", "overflow": "clip"},
            author="office:longtan",
            effective_from=long_ago,
        )
        set_policy(
            "xizhaosi",
            "budget",
            {"points": 600, "period": "month", "overflow": "queue"},
            author="office:longtan",
            effective_from=long_ago,
        )
        shown = {
            u.node.code: u
            for u in budgets.usage([district_info("longtan"), district_info("xizhaosi")])
        }
    street, community = shown["longtan"], shown["xizhaosi"]

    page = new_page(OFFICE)
    sign_in(page, *site.demo.staff["office"])
    table = page.locator("table.budgets")
    assert table.is_visible()
    assert "积分预算" in page.locator("h2:has-text('积分预算')").inner_text()
    row = page.locator("tr[data-budget='longtan']")
    assert row.locator("td[data-left]").get_attribute("data-left") == str(street.left)
    assert row.locator("td[data-used]").get_attribute("data-used") == str(street.used)
    assert "积分按剩余削减" in row.inner_text()
    row = page.locator("tr[data-budget='xizhaosi']")
    assert row.locator("td[data-left]").get_attribute("data-left") == str(community.left)
    assert "记录待街道审核" in row.inner_text()
    look(page, f"office-today-budgets-{site.backend}")

    page.goto("/office/reports?district=longtan")
    assert page.locator("tr[data-budget='xizhaosi']").is_visible()
    look(page, f"office-reports-budgets-{site.backend}")

    for size, name in ((PHONE, "phone"), (KIOSK_PORTRAIT, "kiosk")):
        other = new_page(size)
        sign_in(other, *site.demo.staff["office"])
        assert other.locator("tr[data-budget='longtan']").is_visible()
        check_axe(other)
        screenshot(other, f"office-today-budgets-{name}-{site.backend}")
