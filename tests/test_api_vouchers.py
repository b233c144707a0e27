"""Redemptions by voucher over HTTP: a provider holding only the printed code reads and
fulfils it; one redemption read by id."""

from __future__ import annotations

from datetime import timedelta

from points import ledger, redemptions
from points.models import utcnow
from points.verify import verify
from tests.test_api import problem_of

pytest_plugins = ("tests.api_fixtures",)

FIELDS = {
    "id",
    "volunteer_id",
    "sku",
    "points",
    "provider",
    "voucher_code",
    "status",
    "created_at",
    "resolved_at",
    "entry_id",
}


def _held(world, part="self") -> redemptions.RedemptionResult:
    return redemptions.create_redemption(world.volunteers[part], "haircut", actor="office:test")


def _printed(code: str) -> str:
    """The code as a person might type it from the slip: lower case, in groups."""
    return f" {code[:5].lower()} {code[5:].lower()} "


def test_api_office_and_kiosk_find_a_redemption_by_voucher(api, world):
    made = _held(world)
    for principal in ("admin", "office_above", "office_in", "kiosk_in"):
        for typed in (made.voucher_code, _printed(made.voucher_code)):
            response = api.get(
                "redemptions", world.tokens[principal], query_string={"voucher_code": typed}
            )
            assert response.status_code == 200, (principal, response.get_json())
            body = response.get_json()
            assert body.keys() == FIELDS
            assert body["id"] == made.id and body["voucher_code"] == made.voucher_code
            assert body["volunteer_id"] == world.volunteers["self"]
            assert (body["sku"], body["points"], body["provider"]) == ("haircut", 30, "barber-wang")
            assert body["status"] == "held" and body["resolved_at"] is None
            assert body["entry_id"] is None and body["created_at"].endswith("+00:00")
            # No name, no phone: a provider needs neither.
            text = response.get_data(as_text=True)
            assert "13900000001" not in text and "王" not in text


def test_api_fulfil_by_voucher_once_per_key(api, world):
    made = _held(world)
    kiosk = world.tokens["kiosk_in"]
    body = {"voucher_code": _printed(made.voucher_code)}
    problem_of(api.post("redemptions/fulfil", kiosk, body), 422)  # a kiosk sends a key
    first = api.post("redemptions/fulfil", kiosk, body, headers={"Idempotency-Key": "v-1"})
    assert first.status_code == 200, first.get_json()
    assert first.get_json() == {"id": made.id, "status": "fulfilled", "points": 30}
    again = api.post("redemptions/fulfil", kiosk, body, headers={"Idempotency-Key": "v-1"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    # The same key for another voucher is another request.
    other = _held(world)
    problem_of(
        api.post(
            "redemptions/fulfil",
            kiosk,
            {"voucher_code": other.voucher_code},
            headers={"Idempotency-Key": "v-1"},
        ),
        409,
    )
    # Without the key it is a new request, and the redemption is not held any more.
    detail = problem_of(api.post("redemptions/fulfil", world.tokens["office_in"], body), 409)[
        "detail"
    ]
    assert "fulfilled" in detail
    points = ledger.balance(world.volunteers["self"])
    assert (points.balance, points.held) == (970, 30)
    shown = api.get(f"redemptions/{made.id}", world.tokens["office_in"]).get_json()
    assert shown["status"] == "fulfilled" and shown["resolved_at"] and shown["entry_id"]
    # The same answer as fulfilling by id.
    by_id = api.post(f"redemptions/{other.id}/fulfil", world.tokens["office_in"])
    by_voucher_shape = set(first.get_json())
    assert set(by_id.get_json()) == by_voucher_shape
    ledger.seal()
    assert verify().ok


def test_api_fulfil_by_voucher_refuses_what_is_not_held(api, world):
    office = world.tokens["office_in"]
    cancelled = _held(world)
    redemptions.cancel_redemption(cancelled.id, actor="office:test", reason="changed my mind")
    detail = problem_of(
        api.post("redemptions/fulfil", office, {"voucher_code": cancelled.voucher_code}), 409
    )["detail"]
    assert "cancelled" in detail
    # A hold that ran out: the redemption expires, the points are available again.
    lapsed, by_id = _held(world), _held(world)
    ledger.time_out_holds(utcnow() + timedelta(days=30))
    # By id too: a lapsed hold is a 409, recorded as expired, with or without a key.
    response = api.post(f"redemptions/{by_id.id}/fulfil", office, headers={"Idempotency-Key": "e"})
    assert "expired" in problem_of(response, 409)["detail"]
    detail = problem_of(
        api.post("redemptions/fulfil", office, {"voucher_code": lapsed.voucher_code}), 409
    )["detail"]
    assert "expired" in detail
    assert api.get(f"redemptions/{lapsed.id}", office).get_json()["status"] == "expired"
    detail = problem_of(
        api.post("redemptions/fulfil", office, {"voucher_code": lapsed.voucher_code}), 409
    )["detail"]
    assert "expired" in detail
    points = ledger.balance(world.volunteers["self"])
    assert (points.balance, points.held) == (1000, 0)


def test_api_vouchers_of_another_node_answer_as_unknown(api, world):
    theirs = _held(world, "far")  # zuoanmen
    unknown = {"voucher_code": "ZZZZZZZZZZ"}
    for principal in ("office_in", "kiosk_in"):
        token = world.tokens[principal]
        missing = problem_of(api.get("redemptions", token, query_string=unknown), 404)
        hidden = problem_of(
            api.get("redemptions", token, query_string={"voucher_code": theirs.voucher_code}),
            404,
        )
        assert hidden == missing
        missing = problem_of(
            api.post("redemptions/fulfil", token, unknown, headers={"Idempotency-Key": "u"}), 404
        )
        hidden = problem_of(
            api.post(
                "redemptions/fulfil",
                token,
                {"voucher_code": theirs.voucher_code},
                headers={"Idempotency-Key": "h"},
            ),
            404,
        )
        assert hidden == missing
    assert ledger.balance(world.volunteers["far"]).held == 30
    # Its own node's office and kiosk find it.
    found = api.get(
        "redemptions",
        world.tokens["kiosk_out"],
        query_string={"voucher_code": theirs.voucher_code},
    )
    assert found.status_code == 200 and found.get_json()["id"] == theirs.id
    # Roles that may not look vouchers up at all are told so, whatever the code.
    for principal in ("auditor_in", "volunteer_far", "session"):
        token = world.tokens[principal]
        problem_of(
            api.get("redemptions", token, query_string={"voucher_code": theirs.voucher_code}),
            403,
        )
        problem_of(api.post("redemptions/fulfil", token, unknown), 403)


def test_api_voucher_input_is_checked(api, world):
    office = world.tokens["office_in"]
    assert "voucher_code" in problem_of(api.get("redemptions", office), 422)["errors"]
    blank = {"voucher_code": "   "}
    assert (
        "voucher_code"
        in problem_of(api.get("redemptions", office, query_string=blank), 422)["errors"]
    )
    problem_of(api.post("redemptions/fulfil", office, blank), 422)
    problem_of(api.post("redemptions/fulfil", office, {}), 422)
    problem_of(api.post("redemptions/fulfil", office, {"voucher_code": 12345}), 422)
    problem_of(api.post("redemptions/fulfil", office, {"voucher_code": "x" * 65}), 422)


def test_api_read_one_redemption_by_id(api, world):
    made = _held(world)
    path = f"redemptions/{made.id}"
    for principal in ("admin", "office_in", "auditor_in", "kiosk_in", "volunteer_self", "session"):
        response = api.get(path, world.tokens[principal])
        assert response.status_code == 200, (principal, response.get_json())
        body = response.get_json()
        assert body.keys() == FIELDS and body["voucher_code"] == made.voucher_code
        assert "13900000001" not in response.get_data(as_text=True)
    for principal in ("office_out", "auditor_out", "kiosk_out", "volunteer_peer", "volunteer_far"):
        problem_of(api.get(path, world.tokens[principal]), 403)
    # An unknown id is a 404, as for fulfil and cancel.
    problem_of(api.get("redemptions/424242", world.tokens["office_in"]), 404)
    problem_of(api.get("redemptions/424242", world.tokens["volunteer_self"]), 404)
