"""Fixtures of the page tests: the demo served by gunicorn, and Debian's chromium.

Each audience's story runs in a real browser (Playwright driving /usr/bin/chromium; no
browser is downloaded) against a real gunicorn, on SQLite and on PostgreSQL when
POINTS_TEST_DATABASE_URL is set. Screenshots go to tests/pages/screenshots/ (or
$POINTS_SCREENSHOTS), kept as test artefacts.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from points.demo import Demo, load_demo
from tests.e2e.server import Server, prepared_database, seeding

CHROMIUM = os.environ.get("POINTS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("POINTS_SCREENSHOTS", Path(__file__).parent / "screenshots"))

# Who sits in front of the screen (PAGES.md): a phone, a kiosk upright or wide, an office.
PHONE = {"width": 360, "height": 800}
KIOSK_PORTRAIT = {"width": 1080, "height": 1920}
KIOSK_LANDSCAPE = {"width": 1920, "height": 1080}
OFFICE = {"width": 1366, "height": 768}


@dataclass
class Site:
    """The demo served by gunicorn: its base URL, database URL and what the demo made."""

    base: str
    url: str
    demo: Demo
    server: Server
    backend: str


@pytest.fixture(scope="session")
def browser():
    """Headless chromium, shared by every page test of the session."""
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


def site_environment() -> dict[str, str]:
    """The server's settings for page tests: no rate limit in the way of a story."""
    return {"POINTS_API_RATE_LIMIT_PER_MINUTE": "100000"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory, browser) -> Iterator[Site]:
    """gunicorn serving a fresh demo (make run's) for this module's stories."""
    if request.param == "postgresql" and not os.environ.get("POINTS_TEST_DATABASE_URL"):
        pytest.skip("PostgreSQL not configured: set POINTS_TEST_DATABASE_URL")
    directory = tmp_path_factory.mktemp("site")
    environment = {
        **site_environment(),
        # Counts of this server alone: the instance folder's would outlive the run.
        "POINTS_RATELIMIT_STORAGE_URL": f"sqlite:///{directory / 'ratelimit.sqlite'}",
        **getattr(request.module, "SITE_ENVIRONMENT", {}),
    }
    with prepared_database(request.param, directory, "points_pages") as url:
        with seeding(url):
            demo = load_demo(echo=lambda _text: None)
        server = Server(url, environment=environment, log_path=directory / "gunicorn.log")
        with server:
            yield Site(server.base, url, demo, server, request.param)


@pytest.fixture
def new_page(browser, site):
    """Open pages in fresh browser contexts (own cookies): new_page(viewport, locale)."""
    contexts = []

    def open_page(viewport: dict[str, int] = PHONE, locale: str = "zh-CN", **options: Any):
        context = browser.new_context(
            viewport=viewport, locale=locale, base_url=site.base, **options
        )
        # Generous: CI shares a 2-core machine; a story waits for pages, not for speed.
        context.set_default_timeout(30_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as a test artefact and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def check_axe(page) -> None:
    """Fail on any serious or critical axe violation on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [
        f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + ", ".join(str(node.get("target")) for node in violation["nodes"][:3])
        for violation in results.response["violations"]
        if violation.get("impact") in ("serious", "critical")
    ]
    assert not bad, f"axe on {page.url}: " + "; ".join(bad)


# Measured in the browser: every visible text node's font size, and every visible
# control's box. Text inside a control counts as the control's (a button's label).
_MEASURE = """
([minFont, minTarget]) => {
  const small = [], tiny = [], overflowing = [];
  const visible = (el) => {
    const s = getComputedStyle(el);
    const r = el.getBoundingClientRect();
    return s.visibility !== 'hidden' && s.display !== 'none' && r.width > 0 && r.height > 0
      && !el.closest('.visually-hidden, .skip');
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || !visible(el)) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size + 0.01 < minFont) small.push(`${size}px: ${node.textContent.trim().slice(0, 40)}`);
  }
  const controls = 'a, button, input:not([type=hidden]), select, textarea, summary, [role=button]';
  for (const el of document.querySelectorAll(controls)) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    // A link inside running text is exempt (WCAG 2.5.8's inline exception).
    const inline = el.tagName === 'A' && getComputedStyle(el).display === 'inline'
      && el.parentElement && el.parentElement.closest('p, li, dd, td');
    if (!inline && (r.width + 0.5 < minTarget || r.height + 0.5 < minTarget))
      tiny.push(`${Math.round(r.width)}x${Math.round(r.height)}: ${el.tagName} `
        + (el.textContent || el.name || '').trim().slice(0, 30));
  }
  for (const el of document.querySelectorAll('body *')) {
    if (!visible(el) || ['svg', 'path', 'rect'].includes(el.tagName.toLowerCase())) continue;
    const s = getComputedStyle(el);
    if (s.overflowX !== 'visible' && s.overflowX !== 'clip') continue;
    if (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && s.whiteSpace !== 'nowrap')
      overflowing.push(`${el.tagName}.${el.className}: ${el.scrollWidth} > ${el.clientWidth}`);
  }
  const page = document.documentElement;
  if (page.scrollWidth > window.innerWidth + 1)
    overflowing.push(`page: ${page.scrollWidth} > ${window.innerWidth}`);
  return {small, tiny, overflowing};
}
"""


def check_sizes(page, *, min_font: float, min_target: float) -> None:
    """Fail when text is smaller than `min_font` px, a control smaller than `min_target`
    px either way, or anything overflows its box (PAGES.md's age-friendly sizes)."""
    found = page.evaluate(_MEASURE, [min_font, min_target])
    problems = []
    if found["small"]:
        problems.append(f"text under {min_font}px: {found['small'][:5]}")
    if found["tiny"]:
        problems.append(f"targets under {min_target}px: {found['tiny'][:5]}")
    if found["overflowing"]:
        problems.append(f"overflowing: {found['overflowing'][:5]}")
    assert not problems, f"{page.url}: " + "; ".join(problems)
