"""Hostile input: every bad request is a clear 4xx problem, and nothing is done on one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from points import redemptions, service
from points.extensions import db
from points.models import Entry, Hold, IdempotencyKey, Posting, Provider, ServiceRecord
from tests.test_api_matrix import CASES, OPERATION_OF

pytest_plugins = ("tests.api_fixtures",)


def problem_of(response, *statuses: int) -> dict:
    assert response.status_code in statuses, (
        response.status_code,
        response.get_data(as_text=True)[:300],
    )
    assert response.content_type == "application/problem+json"
    return response.get_json()


def _raw(api, method, path, token, data, content_type="application/json", headers=None):
    return api.client.open(
        path if path.startswith("/") else "/api/v1/" + path,
        method=method,
        data=data,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        content_type=content_type,
    )


def _ledger_rows() -> tuple[int, ...]:
    """What a refused request must leave as it was: entries, postings, holds, keys, records."""
    db.session.rollback()
    counts = tuple(
        db.session.scalar(select(func.count()).select_from(model))
        for model in (Entry, Posting, Hold, IdempotencyKey, ServiceRecord)
    )
    db.session.rollback()
    return counts


# Bodies no operation may act on, with the status each gets wherever it is sent.
HOSTILE = {
    "deep nesting": ("[" * 1000 + "]" * 1000, "application/json", 422),
    "deep object": ('{"a":' * 1000 + "1" + "}" * 1000, "application/json", 422),
    "nested beyond the limit": ("[" * 40 + "]" * 40, "application/json", 422),
    "4301-digit integer": ('{"volunteer_id": 1' + "0" * 4300 + "}", "application/json", 422),
    "overflowing float": ('{"points": 1e400}', "application/json", 422),
    "NaN": ('{"points": NaN}', "application/json", 400),
    "Infinity": ('{"points": -Infinity}', "application/json", 400),
    "lone surrogate": ('{"name": "\\ud800"}', "application/json", 422),
    "escaped NUL": ('{"name": "a\\u0000b"}', "application/json", 422),
    "raw NUL": (b'{"name": "a\x00b"}', "application/json", 422),
    "bad UTF-8": (b'{"name": "\xff\xfe"}', "application/json", 400),
    "10 MB": ("[" + "1," * (5 * 1024 * 1024) + "1]", "application/json", 413),
    "form": ("a=1&b=2", "application/x-www-form-urlencoded", 415),
    "plain text": ('{"a": 1}', "text/plain", 415),
    "JSON in latin-1": ('{"a": 1}', "application/json; charset=latin-1", 415),
    "invalid JSON": ('{"a": ', "application/json", 400),
    "trailing garbage": ('{"a": 1} x', "application/json", 400),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_api_hostile_body_is_a_clear_problem(api, world, name):
    data, content_type, status = HOSTILE[name]
    before = _ledger_rows()
    response = _raw(api, "POST", "service-records", world.tokens["office_in"], data, content_type)
    problem_of(response, status)
    assert _ledger_rows() == before


# -- every operation of the OpenAPI document ---------------------------------------------

# How to call each operation: the access matrix's case (its path with real ids, made
# fresh), and the principal, one the case allows. Health takes no token.
HEALTH = {
    "GET /api/v1/health": "health",
    "GET /api/v1/health/live": "health/live",
    "GET /api/v1/health/ready": "health/ready",
}
CASE_OF = {operation: name for name, operation in OPERATION_OF.items()}


def _notice(world) -> str:
    """The public code of a new honour list on notice (self on it)."""
    from points import honours, ledger

    ledger.add_service_minutes(world.volunteers["self"], 30, actor="office:test", reason="r")
    now = datetime.now(UTC)
    return honours.propose(
        "xizhaosi", "好邻居", "hours", now - timedelta(days=1), now, 3
    ).public_code


# A public notice and its objections take no token either.
PUBLIC = {
    "GET /api/v1/notices/{code}": lambda world: f"notices/{_notice(world)}",
    "POST /api/v1/notices/{code}/objections": lambda world: f"notices/{_notice(world)}/objections",
}
PREFERRED = ("admin", "office_in", "kiosk_in", "volunteer_self", "session")


def _how_to_call(operation: str):
    """Return (path, token) for an operation; fails for an operation not in the tables."""
    if operation in HEALTH:
        return lambda world: (HEALTH[operation], None)
    if operation in PUBLIC:
        return lambda world: (PUBLIC[operation](world), None)
    case = next(case for case in CASES if case.name == CASE_OF[operation])
    principal = next(p for p in PREFERRED if p in case.allowed)
    return lambda world: (case.url(world), world.tokens[principal])


def test_api_every_operation_is_in_the_hostile_table(api, world):
    paths = api.get("openapi.json").get_json()["paths"]
    documented = {
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method in operations
        if method != "parameters"
    }
    missing = documented - set(CASE_OF) - set(HEALTH) - set(PUBLIC)
    assert not missing, f"add these to the access matrix (and so to this test): {missing}"


def _operations() -> list[str]:
    from points.app import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})
    with app.test_client() as client:
        paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    return sorted(
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method in operations
        if method != "parameters"
    )


# Operations whose body is a file (CSV or XLSX), not JSON: every body of the corpus is
# refused for its media type (tests/test_api_imports.py sends them hostile files).
FILE_BODIES = {"POST /api/v1/imports"}


@pytest.mark.parametrize("operation", _operations())
def test_api_hostile_corpus_on_every_operation(api, world, operation):
    """Each hostile body, on each operation of the document: a 4xx problem, and the
    ledger, the keys and the records as they were."""
    method = operation.split()[0]
    takes_a_file = operation in FILE_BODIES
    path, token = _how_to_call(operation)(world)
    before = _ledger_rows()
    for name, (data, content_type, status) in HOSTILE.items():
        response = _raw(
            api,
            method,
            path,
            token,
            data,
            content_type,
            headers={"Idempotency-Key": f"hostile-{name}"},
        )
        expected = 415 if takes_a_file else status
        body = problem_of(response, expected)
        assert body["status"] == expected, name
    assert _ledger_rows() == before


# -- bodies on operations that take none, and empty bodies --------------------------------


def test_api_operations_without_a_body_refuse_one_that_is_not_json(api, world):
    office = world.tokens["office_in"]
    record = service.record_service(
        world.volunteers["self"],
        "patrol",
        datetime.now(UTC) - timedelta(hours=6),
        300,
        actor="office:test",
    )
    made = redemptions.create_redemption(world.volunteers["self"], "haircut", actor="office:test")
    before = _ledger_rows()
    for path in (f"service-records/{record.id}/approve", f"redemptions/{made.id}/fulfil"):
        problem_of(_raw(api, "POST", path, office, '{"a": '), 400)
    assert _ledger_rows() == before
    assert service.get_record(record.id).status == "pending"
    assert redemptions.get_redemption(made.id).status == "held"
    # An empty body, or an empty JSON object, is no body at all.
    approved = _raw(api, "POST", f"service-records/{record.id}/approve", office, "")
    assert approved.status_code == 200, approved.get_json()
    fulfilled = _raw(api, "POST", f"redemptions/{made.id}/fulfil", office, "{}")
    assert fulfilled.status_code == 200, fulfilled.get_json()


def test_api_empty_json_body_where_one_is_needed_is_400(api, world):
    office = world.tokens["office_in"]
    body = problem_of(_raw(api, "POST", "transfers", office, ""), 400)
    assert body["type"].endswith("/invalid-json")
    # Without a content type there is no body: the fields are missing (422).
    response = api.client.post("/api/v1/transfers", headers={"Authorization": f"Bearer {office}"})
    assert set(problem_of(response, 422)["errors"]) >= {"points"}
    # A body that is optional may be left out with the JSON content type.
    made = redemptions.create_redemption(world.volunteers["self"], "haircut", actor="office:test")
    cancelled = _raw(api, "POST", f"redemptions/{made.id}/cancel", office, "")
    assert cancelled.status_code == 200, cancelled.get_json()


# -- times, policy round trips, providers, strict values ---------------------------------


def test_api_times_are_answered_in_utc(api, world):
    admin = world.tokens["admin"]
    created = api.post(
        "tokens",
        admin,
        {
            "role": "kiosk",
            "district": "xizhaosi",
            "name": "kiosk 2",
            "expires_at": "2099-01-01T08:00:00+08:00",
        },
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["expires_at"] == "2099-01-01T00:00:00+00:00"
    stored = api.put(
        "districts/xizhaosi/policy/stars",
        admin,
        {"config": {}, "effective_from": "2025-01-01T08:00:00+08:00"},
    )
    assert stored.status_code == 200, stored.get_json()
    assert stored.get_json()["effective_from"] == "2025-01-01T00:00:00+00:00"
    assert stored.get_json()["created_at"].endswith("+00:00")


def test_api_policy_shown_is_accepted_back_for_every_builtin_plugin(api, world):
    from points.plugins import BUILTIN_PLUGINS

    admin = world.tokens["admin"]
    shown = api.get("districts/xizhaosi/policy", admin).get_json()["plugins"]
    assert shown["catalog"]["config"]["items"]["haircut"]["names"]["zh-CN"] == "理发"
    for plugin in BUILTIN_PLUGINS:
        config = shown[plugin]["config"]
        response = api.put(f"districts/xizhaosi/policy/{plugin}", admin, {"config": config})
        assert response.status_code == 200, (plugin, response.get_json())
    again = api.get("districts/xizhaosi/policy", admin).get_json()["plugins"]
    assert {name: again[name]["config"] for name in BUILTIN_PLUGINS} == {
        name: shown[name]["config"] for name in BUILTIN_PLUGINS
    }


def test_api_catalog_item_of_an_unknown_or_closed_provider_is_a_field_error(api, world):
    admin = world.tokens["admin"]

    def put(provider: str):
        item = {"names": {"zh-CN": "修鞋", "en": "shoe repair"}, "cost": 10, "provider": provider}
        return api.put(
            "districts/xizhaosi/policy/catalog", admin, {"config": {"items": {"shoes": item}}}
        )

    errors = problem_of(put("cobbler-li"), 422)["errors"]
    assert errors == {"config.items.shoes.provider": ["No such provider."]}
    db.session.execute(
        update(Provider).where(Provider.code == "barber-wang").values(status="closed")
    )
    db.session.commit()
    errors = problem_of(put("barber-wang"), 422)["errors"]
    assert errors == {"config.items.shoes.provider": ["This provider is closed."]}


def test_api_unknown_relation_is_a_field_error(api, world):
    gift = {
        "from_volunteer_id": world.volunteers["self"],
        "to_volunteer_id": world.volunteers["peer"],
        "points": 5,
        "relation": "cousin",
    }
    errors = problem_of(api.post("transfers", world.tokens["office_in"], gift), 422)["errors"]
    assert set(errors) == {"relation"}
    with pytest.raises(Exception) as raised:
        redemptions.give_points(
            world.volunteers["self"], world.volunteers["peer"], 5, "cousin", actor="t", reason="r"
        )
    assert set(raised.value.errors) == {"relation"}


@pytest.mark.parametrize("value", ["no", "false", 0, 1, "true", None])
def test_api_booleans_are_strict(api, world, value):
    admin = world.tokens["admin"]
    if value is not None:
        response = api.put("districts/xizhaosi/policy/stars", admin, {"enabled": value})
        assert set(problem_of(response, 422)["errors"]) == {"enabled"}
    config = {"other": {"allowed": value}}
    response = api.put("districts/xizhaosi/policy/transfers", admin, {"config": config})
    assert set(problem_of(response, 422)["errors"]) == {"config.other.allowed"}


# -- registration ------------------------------------------------------------------------


def test_api_registration_refuses_trivial_pins_and_a_nodes_duplicate_phone(api, world):
    office = world.tokens["office_above"]

    def register(pin: str, phone: str | None = None, district: str = "xizhaosi"):
        body = {"name": "赵志强", "district": district, "pin": pin}
        return api.post("volunteers", office, body | ({"phone": phone} if phone else {}))

    for pin in ("123456", "654321", "000000", "999999"):
        assert "Too easy" in problem_of(register(pin), 422)["errors"]["pin"][0]
    assert register("583920", "13900000077").status_code == 201
    errors = problem_of(register("482019", "13900000077"), 422)["errors"]
    assert set(errors) == {"phone"}
    # The fixture's volunteer holds 13900000001 in xizhaosi; another node may hold it too.
    problem_of(register("482019", "13900000001"), 422)
    assert register("482019", "13900000001", "zuoanmen").status_code == 201


def test_registration_draws_a_card_code_the_pin_is_not_taken_from(tree, monkeypatch):
    from points import directory

    codes = iter(["AB2048579Z", "AB1111XYZW"])
    monkeypatch.setattr(directory, "new_card_code", lambda: next(codes))
    volunteer = directory.register_volunteer("王", "xizhaosi", "204857")
    assert volunteer.card_code == "AB1111XYZW"
    with pytest.raises(Exception) as raised:
        directory.register_volunteer("李", "xizhaosi", "204857", card_code="XY2048579Q")
    assert raised.value.errors == {"pin": ["Must not be taken from the card code."]}


# -- keyed writes replay before any check ------------------------------------------------


def test_service_record_retried_with_its_key_replays_before_the_days_check(world):
    started = datetime.now(UTC) - timedelta(minutes=5)

    def checkin():
        return service.record_service(
            world.volunteers["self"],
            "checkin",
            started,
            details={},
            actor="kiosk:test",
            idempotency_key="checkin-1",
        )

    first = checkin()
    entries = _ledger_rows()
    again = checkin()
    assert again.id == first.id and again.points == first.points
    assert _ledger_rows() == entries
