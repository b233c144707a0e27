"""The office console's fixtures for tests through the test client: staff accounts at
each level, a signed-in office, and form helpers that carry the CSRF token."""

from __future__ import annotations

import re

import pytest

from points import staff

pytest_plugins = ("tests.api_fixtures",)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "lantern-harbour-42"


def csrf(response) -> str:
    return CSRF.search(response.get_data(as_text=True)).group(1)


def sign_in(client, username: str, password: str = PASSWORD, next_url: str | None = None):
    page = client.get("/office/sign-in")
    url = "/office/sign-in" + (f"?next={next_url}" if next_url else "")
    return client.post(
        url, data={"csrf_token": csrf(page), "username": username, "password": password}
    )


def post(client, url: str, data: dict | None = None, page: str = "/office"):
    return client.post(url, data={"csrf_token": csrf(client.get(page)), **(data or {})})


@pytest.fixture
def accounts(world):
    """Longtan's clerk (over both communities), xizhaosi's clerk, zuoanmen's clerk, and an
    auditor of longtan."""
    staff.create_staff("longtan", "王芳", "office", "longtan", PASSWORD)
    staff.create_staff("xizhaosi", "李娜", "office", "xizhaosi", PASSWORD)
    staff.create_staff("zuoanmen", "赵磊", "office", "zuoanmen", PASSWORD)
    staff.create_staff("shenji", "孙审计", "auditor", "longtan", PASSWORD)
    return world


@pytest.fixture
def office(client, accounts):
    assert sign_in(client, "xizhaosi").status_code == 302
    return client
