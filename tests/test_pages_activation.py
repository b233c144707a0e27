"""Activation codes on the pages: the kiosk's and the phone's "choose your PIN", the
office's "issue an activation code" with its printable sheet, and the sheet a roster
import renders for many volunteers."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from points import activation, auth, kiosks
from points.directory import check_pin, register_volunteer
from points.errors import ActivationRequiredError, WrongPinError
from points.extensions import db
from points.models import AuditEvent, Volunteer
from tests.office_fixtures import post
from tests.test_pages_kiosk import csrf, text, token_id
from tests.test_pages_kiosk import pair as pair_kiosk

pytest_plugins = ("tests.api_fixtures", "tests.office_fixtures")

CODE = "482109375512"


@pytest.fixture
def pending(world) -> Volunteer:
    """赵淑珍 of xizhaosi, registered as a roster import does: no PIN, an activation code."""
    return register_volunteer(
        "赵淑珍", "xizhaosi", activation_hash=activation.hash_activation(CODE)
    )


@pytest.fixture
def kiosk(client, world):
    assert pair_kiosk(client, kiosks.issue_pairing_code(token_id("kiosk_in")).code).status_code
    return client


def _row(volunteer_id: int) -> Volunteer:
    db.session.rollback()
    return db.session.get(Volunteer, volunteer_id)


def _kiosk_code(client, card: str, typed: str):
    page = client.get("/kiosk/card")
    client.post("/kiosk/card", data={"csrf_token": csrf(page), "card_code": card})
    page = client.get("/kiosk/pin")
    assert 'maxlength="12"' in text(page)
    return client.post("/kiosk/pin", data={"csrf_token": csrf(page), "pin": typed})


def _choose(client, url: str, new: str, again: str):
    page = client.get(url)
    return client.post(url, data={"csrf_token": csrf(page), "new_pin": new, "new_pin_again": again})


# -- the kiosk --------------------------------------------------------------------------


def test_pages_activation_kiosk_code_then_pin_signs_in_once(kiosk, pending):
    response = _kiosk_code(kiosk, pending.card_code, CODE)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/kiosk/choose-pin")
    page = kiosk.get("/kiosk/choose-pin")
    assert page.status_code == 200 and "请设置您的新密码" in text(page)
    assert 'data-keypad="new_pin new_pin_again"' in text(page)
    # Two different PINs, then a trivial one: the form again with the field named.
    different = _choose(kiosk, "/kiosk/choose-pin", "736150", "736151")
    assert different.status_code == 422 and 'href="#new_pin_again"' in text(different)
    trivial = _choose(kiosk, "/kiosk/choose-pin", "123456", "123456")
    assert trivial.status_code == 422 and 'href="#new_pin"' in text(trivial)
    empty = _choose(kiosk, "/kiosk/choose-pin", "", "")
    assert empty.status_code == 422
    assert _row(pending.id).activation_hash is not None
    done = _choose(kiosk, "/kiosk/choose-pin", "736150", "736150")
    assert done.status_code == 302 and "/kiosk/catalog" in done.headers["Location"]
    catalog = kiosk.get(done.headers["Location"])
    assert catalog.status_code == 200 and 'data-testid="activated"' in text(catalog)
    row = _row(pending.id)
    assert row.activation_hash is None and check_pin("736150", row.pin_hash)
    # The code is gone from the cookie's session, and never works again.
    assert kiosk.get("/kiosk/choose-pin").status_code == 302
    kiosk.get("/kiosk/")
    again = _kiosk_code(kiosk, pending.card_code, CODE)
    assert again.status_code == 422 and "密码错误" in text(again)


def test_pages_activation_kiosk_wrong_code_counts_like_a_pin(kiosk, pending):
    response = _kiosk_code(kiosk, pending.card_code, "000000000000")
    assert response.status_code == 422
    assert _row(pending.id).failed_pins == 1
    assert kiosk.get("/kiosk/choose-pin").status_code == 302


def test_pages_activation_kiosk_choose_pin_needs_a_right_code_first(kiosk, pending):
    assert kiosk.get("/kiosk/choose-pin").headers["Location"].endswith("/kiosk/card")
    page = kiosk.get("/kiosk/card")
    response = kiosk.post(
        "/kiosk/choose-pin",
        data={"csrf_token": csrf(page), "new_pin": "736150", "new_pin_again": "736150"},
    )
    assert response.status_code == 302
    assert _row(pending.id).activation_hash is not None


def test_pages_activation_kiosk_code_issued_again_meanwhile_starts_over(kiosk, pending, world):
    _kiosk_code(kiosk, pending.card_code, CODE)
    from points import roster

    roster.issue_activation(auth.authenticate_token(world.tokens["office_in"]), pending.id)
    response = _choose(kiosk, "/kiosk/choose-pin", "736150", "736150")
    assert response.status_code == 302 and response.headers["Location"].endswith("/kiosk/pin")
    assert _row(pending.id).activation_hash is not None


# -- /me on the phone -------------------------------------------------------------------


def _me_code(client, card: str, typed: str):
    page = client.get(f"/me/sign-in?card={card}")
    return client.post(
        "/me/sign-in", data={"csrf_token": csrf(page), "card_code": card, "pin": typed}
    )


def test_pages_activation_me_code_then_pin_signs_in(client, pending):
    response = _me_code(client, pending.card_code, "4821 0937 5512")
    assert response.status_code == 302 and "/me/choose-pin" in response.headers["Location"]
    trivial = _choose(client, "/me/choose-pin", "111111", "111111")
    assert trivial.status_code == 422 and 'href="#new_pin"' in text(trivial)
    # Not signed in yet.
    assert client.get("/me/").status_code == 302
    done = _choose(client, "/me/choose-pin", "736150", "736150")
    assert done.status_code == 302
    home = client.get(done.headers["Location"])
    assert home.status_code == 200 and "赵淑珍" in text(home)
    assert 'data-testid="activated"' in text(home)
    assert check_pin("736150", _row(pending.id).pin_hash)
    assert client.get("/me/choose-pin").status_code == 302


def test_pages_activation_me_sign_in_hint_mentions_the_code(client, world):
    page = text(client.get("/me/sign-in"))
    assert "激活码" in page and 'maxlength="14"' in page


# -- the office -------------------------------------------------------------------------


def test_pages_activation_office_issues_a_code_shown_once_on_a_printable_sheet(
    office, accounts, pending
):
    show = text(office.get(f"/office/volunteers/{pending.id}"))
    assert 'data-testid="not-activated"' in show and "尚未激活" in show
    peer = accounts.volunteers["peer"]
    assert 'data-testid="not-activated"' not in text(office.get(f"/office/volunteers/{peer}"))
    sheet = post(office, f"/office/volunteers/{peer}/activation", page=f"/office/volunteers/{peer}")
    assert sheet.status_code == 200
    page = text(sheet)
    shown = re.search(r"data-activation-code>(\d{4} \d{4} \d{4})<", page).group(1)
    assert f'data-card="{accounts.cards["peer"]}"' in page
    assert "只在这张纸上显示一次" in page or "shown only on this sheet" in page
    code = activation.normalise(shown)
    with pytest.raises(ActivationRequiredError):
        auth.verify_card(None, accounts.cards["peer"], code)
    # The code is nowhere in the database, nor in the audit row.
    row = _row(peer)
    assert code not in (row.activation_hash or "") and row.pin_hash == "!"
    audit = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "volunteer.activation_issue")
    )
    assert audit.target_id == str(peer) and code not in str(audit.after)
    # The page now says so, and an auditor cannot issue one.
    assert 'data-testid="not-activated"' in text(office.get(f"/office/volunteers/{peer}"))


def test_pages_activation_office_cannot_issue_outside_its_node(office, accounts):
    far = accounts.volunteers["far"]
    assert post(office, f"/office/volunteers/{far}/activation").status_code == 403
    assert _row(far).activation_hash is None


# -- the sheet a roster import renders ---------------------------------------------------


def test_pages_activation_sheet_for_many_volunteers_carries_each_code(app, world):
    from points.web.cards import activation_sheet

    codes = {}
    for name in ("孙美华", "周志强", "吴秀兰"):
        code = activation.new_activation_code()
        made = register_volunteer(
            name, "xizhaosi", activation_hash=activation.hash_activation(code)
        )
        codes[made.id] = code
    html = activation_sheet("longtan", codes, "https://points.example.cn")
    for volunteer_id, code in codes.items():
        assert activation.group(code) in html
        assert _row(volunteer_id).card_code in html
    # Only these volunteers, styles inlined (a file kept or printed offline).
    assert "王秀英" not in html and "<style>" in html
    assert html.count("data-activation=") == 3 and html.count("data-card=") == 3
    assert "https://points.example.cn/me/sign-in?card=" in html or "<svg" in html


def test_pages_activation_cards_cli_issues_new_codes_for_those_still_waiting(runner, world):
    waiting = {}
    for name in ("孙美华", "周志强"):
        made = register_volunteer(
            name, "xizhaosi", activation_hash=activation.hash_activation(CODE)
        )
        waiting[made.id] = made.card_code
    result = runner.invoke(
        args=["cards", "print", "--district", "longtan", "--new-activation-codes"]
    )
    assert result.exit_code == 0, result.output
    shown = re.findall(r"data-activation-code>(\d{4} \d{4} \d{4})<", result.stdout)
    assert len(shown) == 2 and activation.group(CODE) not in shown
    # Only the volunteers still waiting; volunteers with a PIN keep it and get no code.
    assert world.cards["self"] not in result.stdout
    for card in waiting.values():
        assert f'data-card="{card}"' in result.stdout
        # The old code stops, a printed one asks for a PIN.
        with pytest.raises(WrongPinError):
            auth.verify_card(None, card, CODE)
    codes = [activation.normalise(code) for code in shown]
    asked = 0
    for card in waiting.values():
        for code in codes:
            try:
                auth.verify_card(None, card, code)
            except ActivationRequiredError:
                asked += 1
            except WrongPinError:
                pass
    assert asked == 2
    assert check_pin(world.pins["self"], _row(world.volunteers["self"]).pin_hash)


def test_pages_activation_speaks_english_when_asked(kiosk, client, pending):
    kiosk.get("/language/en?next=/kiosk/")
    _kiosk_code(kiosk, pending.card_code, CODE)
    page = text(kiosk.get("/kiosk/choose-pin"))
    assert "Choose your PIN" in page and "Save my PIN and sign in" in page
    assert "请设置您的新密码" not in page
