"""The volunteer's pages through the test client: sign-in and its cookie, CSRF, scope,
forms that post once, and the API operations that return the same data."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from points.extensions import db
from points.models import ServiceRecord

pytest_plugins = ("tests.api_fixtures",)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


def csrf(response) -> str:
    return CSRF.search(response.get_data(as_text=True)).group(1)


def sign_in(client, card: str, pin: str):
    page = client.get(f"/me/sign-in?card={card}")
    return client.post(
        "/me/sign-in", data={"csrf_token": csrf(page), "card_code": card, "pin": pin}
    )


@pytest.fixture
def signed_in(client, world):
    """The test client signed in on /me as volunteer `self`."""
    response = sign_in(client, world.cards["self"], world.pins["self"])
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def test_pages_volunteer_sign_in_sets_a_private_cookie(client, world):
    response = sign_in(client, world.cards["self"], world.pins["self"])
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Content-Security-Policy" in client.get("/me/").headers


def test_pages_volunteer_sign_in_starts_a_new_session(client, world):
    before = client.get("/me/sign-in")
    token_before = csrf(before)
    sign_in(client, world.cards["self"], world.pins["self"])
    # The session (and with it the CSRF token) is new after sign-in: no fixation.
    assert csrf(client.get("/me/pin")) != token_before


def test_pages_volunteer_form_without_csrf_token_is_refused(client, world):
    response = client.post(
        "/me/sign-in", data={"card_code": world.cards["self"], "pin": world.pins["self"]}
    )
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "volunteer_token" not in (response.headers.get("Set-Cookie") or "")


def test_pages_volunteer_wrong_pin_says_tries_left(client, world):
    response = sign_in(client, world.cards["self"], "000009")
    assert response.status_code == 422
    assert "再错 4 次卡将锁定" in response.get_data(as_text=True)


def test_pages_volunteer_unknown_pages_need_sign_in(client, world):
    response = client.get("/me/history")
    assert response.status_code == 302
    assert "/me/sign-in" in response.headers["Location"]


def test_pages_volunteer_sign_out_revokes_the_session(signed_in):
    page = signed_in.get("/me/more")
    signed_in.post("/me/sign-out", data={"csrf_token": csrf(page)})
    assert signed_in.get("/me/").status_code == 302


def test_pages_volunteer_another_volunteers_voucher_is_not_found(signed_in, api, world):
    redeemed = api.post(
        "redemptions",
        world.tokens["office_above"],
        {"sku": "haircut", "volunteer_id": world.volunteers["far"]},
    )
    assert redeemed.status_code == 201, redeemed.get_json()
    response = signed_in.get(f"/me/vouchers/{redeemed.get_json()['id']}")
    assert response.status_code == 404
    assert redeemed.get_json()["voucher_code"] not in response.get_data(as_text=True)


def test_pages_volunteer_report_posts_once_per_form(signed_in, world):
    page = signed_in.get("/me/report?kind=log")
    form = {
        "csrf_token": csrf(page),
        "form_key": FORM_KEY.search(page.get_data(as_text=True)).group(1),
        "kind": "log",
        "started_at": "2026-12-01T09:00",
        "details.entry": "巡查了夕照寺中街",
    }
    first = signed_in.post("/me/report", data=form)
    again = signed_in.post("/me/report", data=form)  # a double tap, or a retry
    assert first.status_code == 200, first.get_data(as_text=True)[-1500:]
    assert again.status_code == 200
    count = db.session.scalar(
        select(func.count(ServiceRecord.id)).where(
            ServiceRecord.volunteer_id == world.volunteers["self"]
        )
    )
    assert count == 1


def test_pages_volunteer_report_errors_name_each_field(signed_in):
    page = signed_in.get("/me/report?kind=fix")
    response = signed_in.post(
        "/me/report",
        data={
            "csrf_token": csrf(page),
            "form_key": FORM_KEY.search(page.get_data(as_text=True)).group(1),
            "kind": "fix",
            "started_at": "not a time",
        },
    )
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert 'href="#started_at"' in text


def test_pages_volunteer_pin_change_refuses_a_trivial_pin(signed_in, world):
    page = signed_in.get("/me/pin")
    response = signed_in.post(
        "/me/pin",
        data={
            "csrf_token": csrf(page),
            "old_pin": world.pins["self"],
            "new_pin": "000000",
            "new_pin_again": "000000",
        },
    )
    assert response.status_code == 422
    assert 'href="#new_pin"' in response.get_data(as_text=True)


def test_pages_volunteer_history_bad_month_is_a_form_error(signed_in):
    response = signed_in.get("/me/history?month=2026-13")
    assert response.status_code == 422
    assert response.mimetype == "text/html"


def test_pages_volunteer_language_is_remembered(signed_in):
    response = signed_in.get("/language/en?next=/me/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/me/")
    assert "Points you can use" in signed_in.get("/me/").get_data(as_text=True)
    # Only paths of this site: no open redirect.
    elsewhere = signed_in.get("/language/en?next=//evil.example/")
    assert "evil" not in elsewhere.headers["Location"]


def test_pages_volunteer_api_lists_records_and_vouchers(api, world):
    token = world.tokens["volunteer_self"]
    me = world.volunteers["self"]
    recorded = api.post(
        "service-records",
        token,
        {
            "volunteer_id": me,
            "kind": "log",
            "started_at": world.started(),
            "details": {"entry": "日志"},
        },
    )
    assert recorded.status_code == 201, recorded.get_json()
    records = api.get(f"volunteers/{me}/service-records", token).get_json()
    assert [r["id"] for r in records["items"]] == [recorded.get_json()["id"]]
    vouchers = api.get(f"volunteers/{me}/redemptions", token)
    assert vouchers.status_code == 200
    assert api.get(f"volunteers/{world.volunteers['peer']}/redemptions", token).status_code == 403


def test_pages_volunteer_api_refuses_kinds_the_office_records(api, world):
    response = api.post(
        "service-records",
        world.tokens["volunteer_self"],
        {
            "volunteer_id": world.volunteers["self"],
            "kind": "patrol",
            "started_at": world.started(),
            "minutes": 60,
        },
    )
    assert response.status_code == 422
    assert "kind" in response.get_json()["errors"]


def test_pages_volunteer_api_changes_the_pin(api, world):
    me = world.volunteers["self"]
    token = world.tokens["volunteer_self"]
    wrong = api.put(f"volunteers/{me}/pin", token, {"old_pin": "999999", "new_pin": "583920"})
    assert wrong.status_code == 422
    assert "old_pin" in wrong.get_json()["errors"]
    trivial = api.put(
        f"volunteers/{me}/pin", token, {"old_pin": world.pins["self"], "new_pin": "111111"}
    )
    assert trivial.status_code == 422
    assert "new_pin" in trivial.get_json()["errors"]
    done = api.put(
        f"volunteers/{me}/pin", token, {"old_pin": world.pins["self"], "new_pin": "583920"}
    )
    assert done.status_code == 204


def test_pages_volunteer_statement_of_a_month(signed_in, world):
    from points import ledger

    ledger.earn(world.volunteers["self"], 12, actor="office:test", reason="走访 / visit")
    page = signed_in.get("/me/statement")
    assert page.status_code == 200
    assert "月初积分" in page.text and "data-print" in page.text
    assert "data-closing>1,012<" in page.text and "+12" in page.text
    assert "data-opening>0<" in page.text
    last_year = signed_in.get("/me/statement?month=2025-01")
    assert "这个月积分没有变动" in last_year.text
    assert signed_in.get("/me/statement?month=January").status_code == 422
