"""The office's import story in chromium against gunicorn, by clicks at office size: upload
a small CSV of paper records, read the preview (the refused row by line and reason), map
the paper's word for a kind, preview again, post, and follow the run to its counts. axe
and the age-friendly sizes on each page."""

from __future__ import annotations

import re
from datetime import date

import pytest

from tests.pages.conftest import OFFICE, check_axe, check_sizes, screenshot
from tests.pages.test_office import MIN_FONT, MIN_TARGET, sign_in

LAST_YEAR = date.today().year - 1


def look(page, name: str) -> None:
    check_axe(page)
    check_sizes(page, min_font=MIN_FONT, min_target=MIN_TARGET)
    screenshot(page, name)


def _done(page) -> None:
    """The run's page reloads itself once the run is over."""
    page.wait_for_url(re.compile(r".*/office/imports/\d+$"))
    page.locator("#counts").wait_for(timeout=30_000)


@pytest.mark.slow
def test_office_imports_a_paper_file_by_clicks(site, new_page, tmp_path):
    card = site.demo.volunteers[0].card_code
    paper = tmp_path / "夕照寺纸质记录.csv"
    paper.write_text(
        "志愿者,类型,日期,分钟\n"
        f"{card},patrol,{LAST_YEAR}-05-06,60\n"
        f"{card},巡街,{LAST_YEAR}-05-07,45\n"
        f"NOBODY,patrol,{LAST_YEAR}-05-08,30\n",
        encoding="utf-8",
    )
    page = new_page(OFFICE)
    username, password = site.demo.staff["office"]
    sign_in(page, username, password)
    page.get_by_role("link", name="导入").click()
    page.wait_for_url("**/office/imports")
    look(page, f"office-imports-{site.backend}")

    page.set_input_files("#file", str(paper))
    page.get_by_role("button", name="检查文件").click()
    _done(page)
    assert "预览：完成" in page.locator("#status").inner_text()
    refused = page.locator("#problems tbody tr")
    assert refused.count() == 2
    assert "未知的服务类型 '巡街'" in refused.nth(0).inner_text()
    assert refused.nth(1).locator("td").first.inner_text() == "4"
    look(page, f"office-imports-preview-{site.backend}")

    # The paper's word for patrol, mapped: the preview runs again and posts it too.
    page.fill("#values", "巡街 = patrol")
    page.get_by_role("button", name="保存读法并重新预览").click()
    _done(page)
    assert page.locator("#posted").inner_text() == "2"
    assert page.locator("#refused").inner_text() == "1"

    page.get_by_role("button", name="将这些行入账").click()
    _done(page)
    assert "导入：完成" in page.locator("#status").inner_text()
    assert page.locator("#posted").inner_text() == "2"
    assert page.locator("#post-rows").count() == 0
    look(page, f"office-imports-done-{site.backend}")

    # The history lists both previews and the import.
    page.get_by_role("link", name="导入", exact=True).first.click()
    page.wait_for_url("**/office/imports*")
    assert page.locator("#history tbody tr").count() == 3
