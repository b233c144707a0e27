"""Service providers and printed cards through the test client: link tokens (API and
CLI), a provider reaching only its own vouchers, fulfilling once, CSRF, no phone numbers;
the card sheet from the command line and the office page."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from points import redemptions
from points.cards import sign_in_url
from points.directory import create_provider
from points.extensions import db
from points.models import Entry, Redemption
from points.web.forms import qr_svg

pytest_plugins = ("tests.api_fixtures",)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
PHONE = "13900000001"  # the phone of volunteer `self` (tests/conftest.py)
# A mainland mobile number, whole or masked (139****0001), standing alone: not a run of
# digits inside a token or a form key.
PHONE_NUMBER = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d[\d*]{4}\d{4}(?![0-9A-Za-z])")


def csrf(response) -> str:
    return CSRF.search(response.get_data(as_text=True)).group(1)


def link(api, world, provider: str = "barber-wang", token: str = "office_above"):
    response = api.post(f"providers/{provider}/links", world.tokens[token])
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def voucher(world, who: str = "self") -> str:
    """A held haircut voucher (at barber-wang) of volunteer `who`."""
    made = redemptions.create_redemption(world.volunteers[who], "haircut", actor="office:test")
    return made.voucher_code


@pytest.fixture
def linked(client, api, world):
    """The test client holding barber-wang's provider link in its cookie."""
    response = client.get(link(api, world)["url"].removeprefix("http://localhost"))
    assert response.status_code == 200
    return client


def assert_no_phone(response) -> None:
    text = response.get_data(as_text=True)
    assert PHONE not in text
    assert not PHONE_NUMBER.search(text), "a phone number, even masked"


# -- link tokens --------------------------------------------------------------------------


def test_provider_link_api_answers_the_token_once_and_the_page_url(api, world):
    made = link(api, world)
    assert made["provider"] == "barber-wang"
    assert made["url"] == f"http://localhost/provider/link/{made['token']}"
    # The token is stored hashed, like every token.
    from points.models import ApiToken

    row = db.session.get(ApiToken, made["id"])
    assert row.role == "provider" and row.provider_id is not None
    assert made["token"] not in row.token_hash


@pytest.mark.parametrize(
    ("principal", "status"),
    [("admin", 201), ("office_in", 403), ("office_out", 403), ("kiosk_in", 403)],
)
def test_provider_link_api_is_for_offices_over_the_providers_node(api, world, principal, status):
    # barber-wang serves Longtan street: an office of one community does not reach it.
    response = api.post("providers/barber-wang/links", world.tokens[principal])
    assert response.status_code == status, response.get_json()


def test_provider_link_api_unknown_provider_is_not_found(api, world):
    response = api.post("providers/nobody/links", world.tokens["office_above"])
    assert response.status_code == 404


def test_provider_link_revoked_by_the_office_ends_the_page(api, world, linked):
    made = link(api, world)
    assert api.delete(f"tokens/{made['id']}", world.tokens["office_above"]).status_code == 204
    response = linked.get(made["url"].removeprefix("http://localhost"))
    assert response.status_code == 403
    assert "街道办" in response.get_data(as_text=True)


def test_provider_link_cli_prints_the_page_url(runner, world):
    result = runner.invoke(
        args=["provider", "link", "barber-wang", "--base-url", "https://points.example.cn/"]
    )
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert re.fullmatch(r"https://points\.example\.cn/provider/link/sp_[\w-]{20,}", url)


def test_provider_link_cli_unknown_provider_fails_in_one_line(runner, world):
    result = runner.invoke(args=["provider", "link", "nobody"])
    assert result.exit_code == 1
    assert "no provider" in result.output


def test_provider_token_cannot_be_made_without_a_provider(api, world):
    response = api.post(
        "tokens", world.tokens["admin"], {"role": "provider", "district": "longtan", "name": "x"}
    )
    assert response.status_code == 422


# -- the API with a provider's link token ---------------------------------------------------


def test_provider_api_reaches_only_its_own_vouchers(api, world):
    own = voucher(world)
    other = link(api, world, create_provider("barber-zhang", "张师傅理发", "longtan").code)
    mine = link(api, world)["token"]

    found = api.get(f"redemptions?voucher_code={own.lower()}", mine)
    assert found.status_code == 200, found.get_json()
    assert "phone" not in found.get_json()
    # Another provider's voucher answers exactly like an unknown one.
    theirs = api.get(f"redemptions?voucher_code={own}", other["token"])
    unknown = api.get("redemptions?voucher_code=ZZZZZZZZZZ", other["token"])
    assert theirs.status_code == unknown.status_code == 404
    # The same answer but for the request's own id.
    assert {**theirs.get_json(), "request_id": None} == {**unknown.get_json(), "request_id": None}
    refused = api.post("redemptions/fulfil", other["token"], {"voucher_code": own})
    assert refused.status_code == 404

    done = api.post("redemptions/fulfil", mine, {"voucher_code": own})
    assert done.status_code == 200 and done.get_json()["status"] == "fulfilled"
    again = api.post("redemptions/fulfil", mine, {"voucher_code": own})
    assert again.status_code == 409


def test_provider_api_token_reaches_nothing_else(api, world):
    mine = link(api, world)["token"]
    for path in (
        f"volunteers/{world.volunteers['self']}/balance",
        "districts/longtan/catalog",
        f"volunteers/{world.volunteers['self']}",
    ):
        assert api.get(path, mine).status_code == 403, path


# -- the page -------------------------------------------------------------------------------


def test_provider_page_link_keeps_the_token_in_a_strict_cookie(client, api, world):
    made = link(api, world)
    response = client.get(f"/provider/link/{made['token']}")
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("points_provider=")
    for part in ("HttpOnly", "SameSite=Strict", "Path=/provider", "Max-Age="):
        assert part in cookie
    # The page moves on to /provider at once, without the token in the address.
    assert 'http-equiv="refresh" content="0; url=/provider/"' in response.get_data(as_text=True)
    assert response.headers["Referrer-Policy"] == "same-origin"
    home = client.get("/provider/")
    assert home.status_code == 200
    assert 'name="code"' in home.get_data(as_text=True)


def test_provider_page_without_a_link_says_to_ask_the_office(client, world):
    response = client.get("/provider/")
    assert response.status_code == 403
    assert "请向街道办索取您的服务商链接" in response.get_data(as_text=True)
    assert client.get("/provider/link/sp_not-a-token").status_code == 403


def test_provider_page_shows_the_voucher_masked_and_fulfils_once(linked, world):
    code = voucher(world)
    page = linked.get(f"/provider/voucher?code={code[:4].lower()} {code[4:]}")
    text = page.get_data(as_text=True)
    assert page.status_code == 200, text
    assert "理发" in text and "尚未服务" in text
    assert "王*英" in text and "王秀英" not in text
    assert_no_phone(page)
    form = {"csrf_token": csrf(page), "form_key": FORM_KEY.search(text).group(1)}
    first = linked.post(f"/provider/voucher/{code}/fulfil", data=form)
    double = linked.post(f"/provider/voucher/{code}/fulfil", data=form)  # a double tap
    for response in (first, double):
        assert response.status_code == 200, response.get_data(as_text=True)
        assert "已确认服务完成" in response.get_data(as_text=True)
        assert_no_phone(response)
    entries = db.session.scalar(select(func.count(Entry.id)).where(Entry.kind == "redeem"))
    assert entries == 1

    # A second fulfilment (a new look-up, another phone) says plainly it was delivered.
    again = linked.get(f"/provider/voucher?code={code}")
    assert "已服务" in again.get_data(as_text=True)
    assert "确认服务完成</button>" not in again.get_data(as_text=True)
    second = linked.post(
        f"/provider/voucher/{code}/fulfil",
        data={"csrf_token": form["csrf_token"], "form_key": "f" * 32},
    )
    assert second.status_code == 409
    text = second.get_data(as_text=True)
    assert "这张券已经用过" in text
    assert re.search(r"已于 \d{4}年\d{1,2}月\d{1,2}日 .*确认服务完成", text), text
    assert db.session.scalar(select(func.count(Entry.id)).where(Entry.kind == "redeem")) == 1


def test_provider_page_second_fulfil_in_english(linked, world):
    code = voucher(world)
    linked.get("/language/en")
    page = linked.get(f"/provider/voucher?code={code}")
    # Meanwhile another phone marks it delivered.
    redemptions.fulfil_redemption(voucher_code=code, actor="office:test")
    second = linked.post(
        f"/provider/voucher/{code}/fulfil", data={"csrf_token": csrf(page), "form_key": "a" * 32}
    )
    assert second.status_code == 409
    assert "This voucher was already marked as delivered on" in second.get_data(as_text=True)


def test_provider_page_another_providers_voucher_is_not_found(client, api, world):
    code = voucher(world)
    other = link(api, world, create_provider("barber-zhang", "张师傅理发", "longtan").code)
    client.get(f"/provider/link/{other['token']}")
    page = client.get(f"/provider/voucher?code={code}")
    assert page.status_code == 404
    assert "您的兑换券中没有这个券号" in page.get_data(as_text=True)
    # Posting to it answers the same: not found, and nothing fulfilled.
    response = client.post(
        f"/provider/voucher/{code}/fulfil",
        data={"csrf_token": csrf(client.get("/me/sign-in")), "form_key": "b" * 32},
    )
    assert response.status_code == 404
    assert db.session.scalar(select(Redemption.status).where(Redemption.voucher_code == code)) == (
        "held"
    )


def test_provider_page_fulfil_without_csrf_token_is_refused(linked, world):
    code = voucher(world)
    response = linked.post(f"/provider/voucher/{code}/fulfil", data={"form_key": "c" * 32})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert db.session.scalar(select(Redemption.status).where(Redemption.voucher_code == code)) == (
        "held"
    )


def test_provider_page_blank_code_gets_the_form_back_with_the_error(linked, world):
    response = linked.get("/provider/voucher?code=+")
    assert response.status_code == 422
    assert "请输入兑换券上的券号" in response.get_data(as_text=True)


def test_provider_pages_show_no_phone_number(linked, world):
    code = voucher(world)
    for path in ("/provider/", f"/provider/voucher?code={code}", "/provider/voucher?code=NOPE"):
        assert_no_phone(linked.get(path))


# -- printed cards --------------------------------------------------------------------------


def test_cards_cli_prints_every_card_with_its_qr_code(runner, world, tmp_path):
    from points.models import District

    db.session.execute(
        District.__table__.update()
        .where(District.code == "longtan")
        .values(contact="龙潭街道办事处 010-6711 2233")
    )
    db.session.commit()
    out = tmp_path / "cards.html"
    result = runner.invoke(
        args=[
            "cards",
            "print",
            "--district",
            "longtan",
            "--out",
            str(out),
            "--base-url",
            "https://p.cn",
        ]
    )
    assert result.exit_code == 0, result.output
    sheet = out.read_text(encoding="utf-8")
    for card in world.cards.values():
        assert f'data-card="{card}"' in sheet
        assert str(qr_svg(sign_in_url("https://p.cn", card), scale=2)) in sheet
    assert sheet.count("<svg") == len(world.cards)
    assert PHONE not in sheet and "139****0001" in sheet
    assert PHONE_NUMBER.search(sheet)  # the pattern the provider pages are checked with
    assert "龙潭街道办事处 010-6711 2233" in sheet
    assert "<style>" in sheet and "@page" in sheet  # a file that prints by itself


def test_cards_cli_default_base_url_is_local(runner, world):
    result = runner.invoke(args=["cards", "print", "--district", "xizhaosi"])
    assert result.exit_code == 0, result.output
    assert str(qr_svg(sign_in_url("http://127.0.0.1:5000", world.cards["self"]), scale=2)) in (
        result.stdout
    )
    assert world.cards["far"] not in result.stdout  # zuoanmen is not below xizhaosi


def _office_signed_in(client) -> None:
    from points import staff

    staff.create_staff("xizhaosi", "李娜", "office", "xizhaosi", "lantern-harbour-42")
    form = client.get("/office/sign-in")
    signed = client.post(
        "/office/sign-in?next=/office/cards%3Fdistrict%3Dxizhaosi",
        data={"csrf_token": csrf(form), "username": "xizhaosi", "password": "lantern-harbour-42"},
    )
    assert signed.status_code == 302
    assert signed.headers["Location"] == "/office/cards?district=xizhaosi"


def test_cards_office_page_needs_a_staff_session(client, world):
    response = client.get("/office/cards?district=longtan")
    assert response.status_code == 302
    assert "/office/sign-in" in response.headers["Location"]


def test_cards_office_page_prints_the_nodes_in_reach(client, world):
    _office_signed_in(client)
    sheet = client.get("/office/cards?district=xizhaosi")
    text = sheet.get_data(as_text=True)
    assert sheet.status_code == 200
    assert world.cards["self"] in text and world.cards["peer"] in text
    assert PHONE not in text
    assert "<style>" not in text and "web/cards.css" in text  # the CSP allows no inline style
    # A node outside the staff member's reach gets the choice back with the error.
    outside = client.get("/office/cards?district=zuoanmen")
    assert outside.status_code == 422
    assert world.cards["far"] not in outside.get_data(as_text=True)


def test_district_api_takes_a_contact_line(api, world):
    response = api.post(
        "districts",
        world.tokens["office_above"],
        {"code": "grid-1", "parent": "xizhaosi", "name": "一网格", "contact": "网格员 138"},
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["contact"] == "网格员 138"
