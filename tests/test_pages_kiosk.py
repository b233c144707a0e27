"""The kiosk's pages through the test client: pairing (API, CLI, page), the unpaired
screen, CSRF, no phone numbers, a redemption made once however often it is posted, the
lockout, idle sign-out and check-in."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from points import kiosks
from points.extensions import db
from points.models import ApiToken, Redemption, ServiceRecord, utcnow
from points.web.kiosk import DEVICE_COOKIE, SEEN

pytest_plugins = ("tests.api_fixtures",)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
PHONE = "13900000001"


def csrf(response) -> str:
    return CSRF.search(response.get_data(as_text=True)).group(1)


def text(response) -> str:
    return response.get_data(as_text=True)


def token_id(name: str) -> int:
    return db.session.scalar(select(ApiToken.id).where(ApiToken.name == name))


def pair(client, code: str):
    page = client.get("/kiosk/pair")
    return client.post("/kiosk/pair", data={"csrf_token": csrf(page), "code": code})


@pytest.fixture
def kiosk(client, world):
    """The test client paired as the xizhaosi kiosk (kiosk_in)."""
    code = kiosks.issue_pairing_code(token_id("kiosk_in"))
    response = pair(client, code.code)
    assert response.status_code == 302, text(response)
    return client


def sign_in(client, card: str, pin: str):
    page = client.get("/kiosk/card")
    client.post("/kiosk/card", data={"csrf_token": csrf(page), "card_code": card})
    page = client.get("/kiosk/pin")
    return client.post("/kiosk/pin", data={"csrf_token": csrf(page), "pin": pin})


@pytest.fixture
def visitor(kiosk, world):
    """The paired kiosk with volunteer `self` signed in by card and PIN."""
    response = sign_in(kiosk, world.cards["self"], world.pins["self"])
    assert response.status_code == 302, text(response)
    assert response.headers["Location"].endswith("/kiosk/catalog")
    return kiosk


def redemptions_of(volunteer_id: int) -> int:
    return db.session.scalar(
        select(func.count(Redemption.id)).where(Redemption.volunteer_id == volunteer_id)
    )


# -- pairing -----------------------------------------------------------------------------


def test_pages_kiosk_unpaired_device_sees_only_the_pairing_form(client, world):
    for path in ("/kiosk/", "/kiosk/card", "/kiosk/catalog", "/kiosk/checkin"):
        response = client.get(path)
        assert response.status_code == 200
        page = text(response)
        assert "这台一体机尚未配对" in page
        assert 'action="/kiosk/pair"' in page
        assert 'href="/kiosk/card"' not in page
        assert "Content-Security-Policy" in response.headers


def test_pages_kiosk_pairs_with_a_code_from_the_api(client, api, world):
    created = api.post(
        "tokens",
        world.tokens["office_above"],
        {"role": "kiosk", "district": "xizhaosi", "name": "夕照寺 2 号机"},
    )
    assert created.status_code == 201
    kiosk_id, first_secret = created.get_json()["id"], created.get_json()["token"]
    answer = api.post(f"tokens/{kiosk_id}/pairing-code", world.tokens["office_above"])
    assert answer.status_code == 201, answer.get_json()
    code = answer.get_json()["pairing_code"]
    assert len(code) == 8 and set(code) <= set(kiosks.CARD_ALPHABET)

    response = pair(client, code.lower())  # typed in any case
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{DEVICE_COOKIE}=kd_")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/kiosk" in cookie
    assert "Max-Age=" in cookie
    row = db.session.execute(
        select(ApiToken.pairing_hash, ApiToken.pairing_expires_at).where(ApiToken.id == kiosk_id)
    ).one()
    assert row == (None, None)
    # The secret was rotated: the one the API showed no longer works.
    assert api.get("districts/xizhaosi/catalog", first_secret).status_code == 401
    home = client.get("/kiosk/")
    assert "夕照寺 2 号机" in text(home)
    assert "/kiosk/card" in text(home)


def test_pages_kiosk_pairing_cookie_is_secure_over_https(client, world):
    code = kiosks.issue_pairing_code(token_id("kiosk_in")).code
    page = client.get("/kiosk/pair", base_url="https://localhost")
    response = client.post(
        "/kiosk/pair",
        data={"csrf_token": csrf(page), "code": code},
        base_url="https://localhost",
        headers={"Referer": "https://localhost/kiosk/pair"},
    )
    assert response.status_code == 302, text(response)
    assert "Secure" in response.headers["Set-Cookie"]


def test_pages_kiosk_pairing_code_works_once(client, world):
    code = kiosks.issue_pairing_code(token_id("kiosk_in")).code
    assert pair(client, code).status_code == 302
    # The same code again, from this device or any other.
    again = pair(client, code)
    assert again.status_code == 422
    assert "配对码无效" in text(again)
    assert DEVICE_COOKIE not in (again.headers.get("Set-Cookie") or "")


def test_pages_kiosk_expired_pairing_code_is_refused(client, world):
    kiosk_id = token_id("kiosk_in")
    code = kiosks.issue_pairing_code(kiosk_id).code
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == kiosk_id)
        .values(pairing_expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    response = pair(client, code)
    assert response.status_code == 422
    assert "配对码无效" in text(response)


def test_pages_kiosk_new_pairing_code_replaces_the_old_one(client, world):
    kiosk_id = token_id("kiosk_in")
    old = kiosks.issue_pairing_code(kiosk_id).code
    new = kiosks.issue_pairing_code(kiosk_id).code
    assert pair(client, old).status_code == 422
    assert pair(client, new).status_code == 302


def test_pages_kiosk_bad_code_shape_names_the_field(client, world):
    response = pair(client, "12")
    assert response.status_code == 422
    assert 'href="#code"' in text(response)


def test_pages_kiosk_pairing_code_api_checks_role_and_scope(api, world):
    kiosk_id = token_id("kiosk_in")
    office_id = token_id("office_in")
    path = f"tokens/{kiosk_id}/pairing-code"
    assert api.post(path, world.tokens["office_out"]).status_code == 403
    assert api.post(path, world.tokens["kiosk_in"]).status_code == 403
    assert api.post(path, world.tokens["auditor_in"]).status_code == 403
    assert api.post(f"tokens/{office_id}/pairing-code", world.tokens["admin"]).status_code == 404
    assert api.post("tokens/999999/pairing-code", world.tokens["admin"]).status_code == 404
    assert api.post(path, world.tokens["office_in"]).status_code == 201


def test_pages_kiosk_revoked_kiosk_cannot_get_a_code(api, world):
    kiosk_id = token_id("kiosk_out")
    assert api.delete(f"tokens/{kiosk_id}", world.tokens["admin"]).status_code == 204
    answer = api.post(f"tokens/{kiosk_id}/pairing-code", world.tokens["admin"])
    assert answer.status_code == 409


def test_pages_kiosk_cli_creates_a_kiosk_and_its_pairing_code(client, runner, world):
    result = runner.invoke(args=["kiosk", "create", "--district", "xizhaosi", "--name", "CLI 机"])
    assert result.exit_code == 0, result.output
    code = result.stdout.strip()
    assert len(code) == 8
    kiosk_id = token_id("CLI 机")
    assert pair(client, code).status_code == 302
    assert "CLI 机" in text(client.get("/kiosk/"))

    again = runner.invoke(args=["kiosk", "pairing-code", str(kiosk_id)])
    assert again.exit_code == 0, again.output
    assert len(again.stdout.strip()) == 8
    missing = runner.invoke(args=["kiosk", "pairing-code", "999999"])
    assert missing.exit_code == 1
    assert "no kiosk token" in missing.output


def test_pages_kiosk_revoked_kiosk_shows_the_unpaired_screen(kiosk, api, world):
    assert "/kiosk/card" in text(kiosk.get("/kiosk/"))
    api.delete(f"tokens/{token_id('kiosk_in')}", world.tokens["admin"])
    page = text(kiosk.get("/kiosk/"))
    assert "这台一体机尚未配对" in page
    assert 'href="/kiosk/card"' not in page


# -- CSRF, privacy -----------------------------------------------------------------------


def test_pages_kiosk_forms_without_csrf_token_are_refused(visitor, world):
    code = kiosks.issue_pairing_code(token_id("kiosk_out")).code
    refused = visitor.post("/kiosk/pair", data={"code": code})
    assert refused.status_code == 400
    assert refused.mimetype == "text/html"
    assert DEVICE_COOKIE not in (refused.headers.get("Set-Cookie") or "")
    page = visitor.get("/kiosk/confirm?sku=haircut")
    form_key = FORM_KEY.search(text(page)).group(1)
    response = visitor.post("/kiosk/redeem", data={"form_key": form_key, "sku": "haircut"})
    assert response.status_code == 400
    assert redemptions_of(world.volunteers["self"]) == 0


def test_pages_kiosk_pages_never_show_a_phone_number(kiosk, world):
    pages = []
    page = kiosk.get("/kiosk/card")
    pages.append(page)
    pages.append(
        kiosk.post("/kiosk/card", data={"csrf_token": csrf(page), "card_code": world.cards["self"]})
    )
    page = kiosk.get("/kiosk/pin")
    pages.append(page)
    pages.append(
        kiosk.post("/kiosk/pin", data={"csrf_token": csrf(page), "pin": world.pins["self"]})
    )
    pages.append(kiosk.get("/kiosk/catalog"))
    confirm = kiosk.get("/kiosk/confirm?sku=haircut")
    pages.append(confirm)
    data = {
        "csrf_token": csrf(confirm),
        "form_key": FORM_KEY.search(text(confirm)).group(1),
        "sku": "haircut",
    }
    pages.append(kiosk.post("/kiosk/redeem", data=data))
    pages.append(kiosk.get("/kiosk/voucher"))
    page = kiosk.get("/kiosk/checkin")
    pages.append(page)
    pages.append(
        kiosk.post(
            "/kiosk/checkin", data={"csrf_token": csrf(page), "card_code": world.cards["self"]}
        )
    )
    everything = "".join(text(p) for p in pages)
    assert "王*英" in everything
    assert "王秀英" not in everything
    assert PHONE not in everything and PHONE[-4:] not in everything


# -- the redemption ----------------------------------------------------------------------


def test_pages_kiosk_catalog_shows_masked_name_points_and_reasons(visitor):
    page = text(visitor.get("/kiosk/catalog"))
    assert "王*英，您好" in page
    assert "1,000" in page
    assert "/kiosk/confirm?sku=haircut" in page
    assert "需 1 星及以上" in page  # the repair needs a star


def test_pages_kiosk_repeated_confirm_redeems_once(visitor, world):
    confirm = visitor.get("/kiosk/confirm?sku=haircut")
    # A reload of the confirm page keeps its key.
    reloaded = visitor.get("/kiosk/confirm?sku=haircut")
    key = FORM_KEY.search(text(confirm)).group(1)
    assert FORM_KEY.search(text(reloaded)).group(1) == key
    cookie_before = visitor.get_cookie("points_session").value
    data = {"csrf_token": csrf(confirm), "form_key": key, "sku": "haircut"}
    first = visitor.post("/kiosk/redeem", data=data)
    assert first.status_code == 302
    assert first.headers["Location"].endswith("/kiosk/voucher")
    voucher = text(visitor.get("/kiosk/voucher"))
    code = db.session.scalar(
        select(Redemption.voucher_code).where(Redemption.volunteer_id == world.volunteers["self"])
    )
    assert code in voucher
    assert "王*英" in voucher and "王师傅便民理发" in voucher and "龙潭街道" in voucher

    # A double tap, or a retry whose first answer was lost (the old cookie): same voucher.
    visitor.set_cookie("points_session", cookie_before)
    again = visitor.post("/kiosk/redeem", data=data)
    assert again.status_code == 302
    assert code in text(visitor.get("/kiosk/voucher"))
    assert redemptions_of(world.volunteers["self"]) == 1
    # The person is signed out after the redemption.
    assert visitor.get("/kiosk/catalog").status_code == 302


def test_pages_kiosk_ended_session_cannot_redeem_with_a_new_key(visitor, world):
    confirm = visitor.get("/kiosk/confirm?sku=haircut")
    cookie_before = visitor.get_cookie("points_session").value
    key = FORM_KEY.search(text(confirm)).group(1)
    data = {"csrf_token": csrf(confirm), "form_key": key, "sku": "haircut"}
    assert visitor.post("/kiosk/redeem", data=data).status_code == 302
    visitor.set_cookie("points_session", cookie_before)
    other = visitor.post("/kiosk/redeem", data={**data, "form_key": "f" * 32, "sku": "repair"})
    assert other.status_code == 302
    assert other.headers["Location"].endswith("/kiosk/")
    assert redemptions_of(world.volunteers["self"]) == 1


def test_pages_kiosk_signed_out_session_cannot_redeem(visitor, world):
    confirm = visitor.get("/kiosk/confirm?sku=haircut")
    cookie_before = visitor.get_cookie("points_session").value
    visitor.post("/kiosk/sign-out", data={"csrf_token": csrf(confirm)})
    # The cookie from before the sign-out, with its confirm page's key: nothing redeemed.
    visitor.set_cookie("points_session", cookie_before)
    data = {
        "csrf_token": csrf(confirm),
        "form_key": FORM_KEY.search(text(confirm)).group(1),
        "sku": "haircut",
    }
    response = visitor.post("/kiosk/redeem", data=data)
    assert response.status_code == 302
    assert redemptions_of(world.volunteers["self"]) == 0


def test_pages_kiosk_refused_item_comes_back_with_the_reason(visitor, world):
    confirm = visitor.get("/kiosk/confirm?sku=repair")
    data = {
        "csrf_token": csrf(confirm),
        "form_key": FORM_KEY.search(text(confirm)).group(1),
        "sku": "repair",
    }
    response = visitor.post("/kiosk/redeem", data=data)
    assert response.status_code == 422
    assert "需 1 星及以上" in text(response)
    assert redemptions_of(world.volunteers["self"]) == 0


def test_pages_kiosk_unknown_item_is_a_page_not_found(visitor):
    response = visitor.get("/kiosk/confirm?sku=nothing")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_pages_kiosk_card_of_another_node_is_unknown(kiosk, world):
    page = kiosk.get("/kiosk/card")
    response = kiosk.post(
        "/kiosk/card", data={"csrf_token": csrf(page), "card_code": world.cards["far"]}
    )
    assert response.status_code == 422
    assert "这张卡" in text(response)


def test_pages_kiosk_five_wrong_pins_lock_the_card_and_say_until_when(kiosk, world):
    response = None
    for _ in range(5):
        response = sign_in(kiosk, world.cards["self"], "000009")
    assert response.status_code == 422
    page = text(response)
    assert "卡已锁定" in page
    assert "之后再试" in page
    assert re.search(r"\d{1,2}:\d{2}", page)
    # The right PIN is refused while locked.
    assert sign_in(kiosk, world.cards["self"], world.pins["self"]).status_code == 422


def test_pages_kiosk_idle_person_is_signed_out(visitor):
    with visitor.session_transaction() as stored:
        stored[SEEN] -= 3600
    response = visitor.get("/kiosk/catalog")
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/kiosk/?idle=1")
    assert visitor.get("/kiosk/catalog").status_code == 302
    assert "屏幕长时间无人操作" in text(visitor.get("/kiosk/?idle=1"))


def test_pages_kiosk_still_here_keeps_the_person(visitor):
    with visitor.session_transaction() as stored:
        stored[SEEN] -= 50
    assert visitor.get("/kiosk/still-here").status_code == 204
    assert visitor.get("/kiosk/catalog").status_code == 200


def test_pages_kiosk_sign_out_ends_the_session(visitor):
    page = visitor.get("/kiosk/catalog")
    response = visitor.post("/kiosk/sign-out", data={"csrf_token": csrf(page)})
    assert response.status_code == 302
    assert visitor.get("/kiosk/catalog").status_code == 302


# -- check-in ----------------------------------------------------------------------------


def test_pages_kiosk_checkin_records_once_a_day(kiosk, world):
    page = kiosk.get("/kiosk/checkin")
    confirm = kiosk.post(
        "/kiosk/checkin", data={"csrf_token": csrf(page), "card_code": world.cards["self"]}
    )
    assert confirm.status_code == 200
    assert "王*英" in text(confirm)
    data = {
        "csrf_token": csrf(confirm),
        "form_key": FORM_KEY.search(text(confirm)).group(1),
        "card_code": world.cards["self"],
    }
    done = kiosk.post("/kiosk/checkin/confirm", data=data)
    assert done.status_code == 200, text(done)
    assert "已打卡" in text(done)
    # The same form again (a double tap) shows the same answer and records nothing more.
    assert kiosk.post("/kiosk/checkin/confirm", data=data).status_code == 200
    count = db.session.scalar(
        select(func.count(ServiceRecord.id)).where(
            ServiceRecord.volunteer_id == world.volunteers["self"],
            ServiceRecord.kind == "checkin",
        )
    )
    assert count == 1
    # A second check-in the same day: the policy's answer.
    confirm = kiosk.post(
        "/kiosk/checkin", data={"csrf_token": csrf(page), "card_code": world.cards["self"]}
    )
    again = kiosk.post(
        "/kiosk/checkin/confirm",
        data={**data, "form_key": FORM_KEY.search(text(confirm)).group(1)},
    )
    assert again.status_code == 409
    assert "今天已经打过卡" in text(again)


def test_pages_kiosk_speaks_english_when_asked(visitor):
    visitor.get("/language/en?next=/kiosk/catalog")
    page = text(visitor.get("/kiosk/catalog"))
    assert "Hello, 王*英" in page
    assert "needs 1 star" in page or "star" in page
