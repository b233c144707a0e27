"""One-time activation codes: registering with one, using it once to choose a PIN, the
lockout it shares with PINs, the office issuing a new one, and the API's answers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from points import activation, auth, roster
from points.directory import check_pin, register_volunteer, set_pin
from points.errors import (
    ActivationRequiredError,
    CardLockedError,
    InvalidInputError,
    WrongPinError,
)
from points.extensions import db
from points.models import ApiToken, AuditEvent, Volunteer

pytest_plugins = ("tests.api_fixtures",)

CODE = "482109375512"


def _pending(tree, name: str = "赵淑珍", code: str = CODE) -> Volunteer:
    """A volunteer of xizhaosi registered as an import does: an activation code, no PIN."""
    return register_volunteer(name, "xizhaosi", activation_hash=activation.hash_activation(code))


def _row(volunteer_id: int) -> Volunteer:
    db.session.rollback()
    return db.session.get(Volunteer, volunteer_id)


def _actions(action: str) -> int:
    found = db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )
    db.session.rollback()
    return found


# -- the codes ----------------------------------------------------------------------------


def test_activation_code_is_twelve_random_digits_grouped_by_four(app):
    codes = {activation.new_activation_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(activation.CODE_PATTERN.match(code) for code in codes)
    assert activation.group("482109375512") == "4821 0937 5512"
    assert activation.normalise(" 4821 0937-5512 ") == "482109375512"
    # Leading zeros are kept: the code is a string of digits, not a number.
    assert any(code.startswith("0") for code in (f"{n:012d}" for n in range(3)))


def test_activation_hash_is_keyed_salted_and_checks_only_its_code(app):
    stored = activation.hash_activation(CODE)
    assert stored.startswith(app.config["ACTIVATION_HASH_METHOD"].split(":")[0])
    assert stored != activation.hash_activation(CODE)  # salted
    assert activation.check_activation(CODE, stored)
    assert activation.check_activation("4821 0937 5512", stored)
    assert not activation.check_activation("482109375513", stored)
    assert not activation.check_activation("", stored)
    # Keyed: the same code under another secret key is another hash.
    other = activation.hash_activation(CODE, "another-key", "pbkdf2:sha256:1000")
    assert not activation.check_activation(CODE, other)
    # Outside the app (a process pool), with the app's key and method: the same check.
    pooled = activation.hash_activation(CODE, app.config["SECRET_KEY"], "pbkdf2:sha256:1000")
    assert activation.check_activation(CODE, pooled)


def test_unusable_pin_hash_matches_no_pin(app):
    for typed in ("", "!", "000000", "204857", CODE):
        assert not check_pin(typed, activation.UNUSABLE_PIN_HASH)


# -- registering ------------------------------------------------------------------------


def test_register_with_an_activation_hash_sets_no_usable_pin(tree):
    volunteer = _pending(tree)
    row = _row(volunteer.id)
    assert row.pin_hash == activation.UNUSABLE_PIN_HASH
    assert row.activation_hash and row.status == "active"


def test_register_needs_a_pin_or_an_activation_hash_not_both(tree):
    with pytest.raises(InvalidInputError) as neither:
        register_volunteer("赵淑珍", "xizhaosi")
    assert "pin" in neither.value.errors
    with pytest.raises(InvalidInputError) as both:
        register_volunteer(
            "赵淑珍", "xizhaosi", "204857", activation_hash=activation.hash_activation(CODE)
        )
    assert "pin" in both.value.errors


# -- using the code ---------------------------------------------------------------------


def test_right_code_at_sign_in_asks_for_a_pin_and_signs_nobody_in(tree):
    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    with pytest.raises(ActivationRequiredError) as asked:
        auth.verify_card(None, card, CODE)
    assert asked.value.status == 409 and asked.value.volunteer_id == volunteer.id
    assert asked.value.errors["pin"]
    tokens = db.session.scalar(select(func.count()).select_from(ApiToken))
    with pytest.raises(ActivationRequiredError):
        auth.open_volunteer_session(card.lower(), "4821 0937 5512")
    assert db.session.scalar(select(func.count()).select_from(ApiToken)) == tokens


def test_activate_sets_the_pin_once_and_the_code_never_works_again(tree):
    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    holder = auth.activate(None, card, CODE, "736150")
    assert holder.volunteer_id == volunteer.id
    row = _row(volunteer.id)
    assert row.activation_hash is None and check_pin("736150", row.pin_hash)
    assert auth.verify_card(None, card, "736150").volunteer_id == volunteer.id
    assert _actions("volunteer.activate") == 1
    with pytest.raises(WrongPinError) as again:
        auth.activate(None, card, CODE, "918273")
    assert "code" in again.value.errors
    with pytest.raises(WrongPinError):
        auth.verify_card(None, card, CODE)
    assert check_pin("736150", _row(volunteer.id).pin_hash)


def test_activate_checks_the_new_pin_before_the_code(tree):
    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    for bad in ("123456", "111111", "12345", "abcdef", CODE):
        with pytest.raises(InvalidInputError) as refused:
            auth.activate(None, card, CODE, bad)
        assert "new_pin" in refused.value.errors, bad
    # A refused PIN costs no attempt, and the code still works.
    assert _row(volunteer.id).failed_pins == 0
    auth.activate(None, card, CODE, "736150")


def test_wrong_codes_count_and_lock_the_card_like_pins(tree):
    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    with pytest.raises(WrongPinError) as first:
        auth.verify_card(None, card, "000000000000")
    assert first.value.tries_left == auth.MAX_WRONG_PINS - 1
    with pytest.raises(WrongPinError) as second:
        auth.activate(None, card, "000000000001", "736150")
    assert second.value.tries_left == auth.MAX_WRONG_PINS - 2
    assert second.value.errors == {"code": ["Wrong code: 3 more tries before the card locks."]}
    # A six-digit guess is a wrong code too.
    with pytest.raises(WrongPinError):
        auth.verify_card(None, card, "204857")
    with pytest.raises(WrongPinError):
        auth.verify_card(None, card, "000000000002")
    with pytest.raises(CardLockedError):
        auth.verify_card(None, card, "000000000003")
    # Locked: even the right code waits.
    with pytest.raises(CardLockedError):
        auth.activate(None, card, CODE, "736150")
    assert _row(volunteer.id).activation_hash is not None


def test_right_code_clears_the_count(tree):
    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    with pytest.raises(WrongPinError):
        auth.verify_card(None, card, "000000000000")
    with pytest.raises(ActivationRequiredError):
        auth.verify_card(None, card, CODE)
    assert _row(volunteer.id).failed_pins == 0


def test_a_kiosk_of_another_node_cannot_activate_a_card(api, world, tree):
    from points.auth import authenticate_token

    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    elsewhere = authenticate_token(world.tokens["kiosk_out"])
    with pytest.raises(WrongPinError) as unknown:
        auth.activate(elsewhere, card, CODE, "736150")
    assert "card_code" in unknown.value.errors
    assert _row(volunteer.id).activation_hash is not None


def test_a_suspended_volunteer_cannot_activate(api, world, tree):
    from points.auth import authenticate_token

    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    office = authenticate_token(world.tokens["office_in"])
    roster.set_status(office, volunteer.id, "suspended")
    from points.errors import AccountClosedError

    with pytest.raises(AccountClosedError):
        auth.activate(None, card, CODE, "736150")
    assert _row(volunteer.id).activation_hash is not None


def test_choosing_a_pin_any_other_way_ends_the_code(api, world, tree):
    from points.auth import authenticate_token

    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    set_pin(volunteer.id, "736150")
    assert _row(volunteer.id).activation_hash is None
    with pytest.raises(WrongPinError):
        auth.activate(None, card, CODE, "918273")
    other = _pending(tree, "钱玉兰")
    office = authenticate_token(world.tokens["office_in"])
    pin = roster.reset_pin(office, other.id)
    assert _row(other.id).activation_hash is None
    assert auth.verify_card(None, _row(other.id).card_code, pin).volunteer_id == other.id


# -- the office issues a new code -------------------------------------------------------


def test_issue_activation_replaces_pin_and_old_code_unlocks_and_ends_sessions(api, world):
    from points.auth import authenticate_token

    office = authenticate_token(world.tokens["office_in"])
    self_id, card, pin = world.volunteers["self"], world.cards["self"], world.pins["self"]
    secret, _ = auth.open_volunteer_session(card, pin)
    with pytest.raises(WrongPinError):
        auth.verify_card(None, card, "999999")
    code = roster.issue_activation(office, self_id)
    assert activation.CODE_PATTERN.match(code)
    row = _row(self_id)
    assert row.failed_pins == 0 and row.locked_until is None
    # The old PIN and the page session stop; the code asks for a PIN.
    with pytest.raises(WrongPinError):
        auth.verify_card(None, card, pin)
    from points.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        authenticate_token(secret)
    newer = roster.issue_activation(office, self_id)
    with pytest.raises(WrongPinError):
        auth.activate(None, card, code, "736150")
    auth.activate(None, card, newer, "736150")
    assert _actions("volunteer.activation_issue") == 2


def test_change_pin_takes_the_activation_code_as_the_old_pin(api, world):
    from points.auth import authenticate_token

    office = authenticate_token(world.tokens["office_in"])
    code = roster.issue_activation(office, world.volunteers["peer"])
    auth.change_pin(world.volunteers["peer"], code, "736150")
    assert auth.verify_card(None, world.cards["peer"], "736150")


# -- the API ----------------------------------------------------------------------------


def test_api_kiosk_session_with_an_activation_code_is_409_activation_required(api, world):
    code = api.post(
        f"volunteers/{world.volunteers['peer']}/activation", world.tokens["office_in"]
    ).get_json()["activation_code"]
    kiosk = world.tokens["kiosk_in"]
    response = api.post("kiosk/sessions", kiosk, {"card_code": world.cards["peer"], "pin": code})
    assert response.status_code == 409
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["type"].endswith("/activation-required") and body["errors"]["pin"]
    profile = api.get(f"volunteers/{world.volunteers['peer']}", world.tokens["office_in"])
    assert profile.get_json()["activation_pending"] is True

    bad = api.post(
        "kiosk/activate",
        kiosk,
        {"card_code": world.cards["peer"], "code": code, "new_pin": "123456"},
    )
    assert bad.status_code == 422 and "new_pin" in bad.get_json()["errors"]
    done = api.post(
        "kiosk/activate",
        kiosk,
        {"card_code": world.cards["peer"], "code": activation.group(code), "new_pin": "736150"},
    )
    assert done.status_code == 201, done.get_json()
    session = done.get_json()["token"]
    assert api.get("kiosk/sessions/current", session).get_json()["display_name"] == "李*兰"
    again = api.post(
        "kiosk/activate",
        kiosk,
        {"card_code": world.cards["peer"], "code": code, "new_pin": "918273"},
    )
    assert again.status_code == 422 and "code" in again.get_json()["errors"]
    opened = api.post("kiosk/sessions", kiosk, {"card_code": world.cards["peer"], "pin": "736150"})
    assert opened.status_code == 201
    profile = api.get(f"volunteers/{world.volunteers['peer']}", world.tokens["office_in"])
    assert profile.get_json()["activation_pending"] is False


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"card_code": "X", "code": "12345", "new_pin": "736150"},
        {"card_code": "X", "code": "4821093755120", "new_pin": "736150"},
        {"card_code": "X", "code": "48210937551a", "new_pin": "736150"},
        {"card_code": "X", "code": "482109375512", "new_pin": "7361500"},
        {"card_code": "", "code": "482109375512", "new_pin": "736150"},
        {"card_code": "X", "code": 482109375512, "new_pin": "736150"},
    ],
)
def test_api_kiosk_activate_refuses_bad_bodies_with_field_errors(api, world, body):
    response = api.post("kiosk/activate", world.tokens["kiosk_in"], body)
    assert response.status_code == 422, response.get_json()
    assert response.content_type == "application/problem+json"
    assert response.get_json()["errors"]


def test_api_kiosk_session_pin_field_takes_six_or_twelve_digits_only(api, world):
    kiosk, card = world.tokens["kiosk_in"], world.cards["self"]
    for pin in ("12345", "1234567", "12345678901", "1234567890123", "4821 0937 5512"):
        response = api.post("kiosk/sessions", kiosk, {"card_code": card, "pin": pin})
        assert response.status_code == 422 and "pin" in response.get_json()["errors"], pin
    # Twelve digits on a card with a PIN: a wrong PIN, counted.
    response = api.post("kiosk/sessions", kiosk, {"card_code": card, "pin": CODE})
    assert response.status_code == 422
    assert response.get_json()["type"].endswith("/wrong-pin")


def test_api_issue_activation_is_the_office_s_and_audited(api, world):
    peer = world.volunteers["peer"]
    for principal in ("auditor_in", "office_out", "kiosk_in", "volunteer_peer"):
        assert api.post(f"volunteers/{peer}/activation", world.tokens[principal]).status_code == 403
    response = api.post(f"volunteers/{peer}/activation", world.tokens["office_in"])
    assert response.status_code == 200
    rows = api.get("audit?action=volunteer.activation_issue", world.tokens["office_in"])
    (row,) = rows.get_json()["items"]
    assert row["target_id"] == str(peer)
    # The code is in no audit row.
    assert response.get_json()["activation_code"] not in str(row)


def test_one_code_at_several_screens_at_once_sets_one_pin(app, tree):
    from tests.test_concurrency import run_together

    volunteer = _pending(tree)
    card = _row(volunteer.id).card_code
    # Four at once: below the lockout, so every loser loses to the winner, not to a lock.
    pins = ["736150", "918273", "528461", "306817"]
    results = run_together(app, 4, lambda i: auth.activate(None, card, CODE, pins[i]))
    wins = [i for i, result in enumerate(results) if isinstance(result, auth.CardHolder)]
    assert len(wins) == 1, results
    assert all(isinstance(r, WrongPinError) for i, r in enumerate(results) if i != wins[0])
    row = _row(volunteer.id)
    assert row.activation_hash is None and check_pin(pins[wins[0]], row.pin_hash)
    assert _actions("volunteer.activate") == 1
