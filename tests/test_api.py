"""The REST API: problem+json, idempotent writes, kiosk sessions and PINs, paging, limits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from points import ledger
from points.auth import RateLimiter
from points.extensions import db
from points.models import ApiToken, Entry, Volunteer, utcnow
from points.verify import verify

pytest_plugins = ("tests.api_fixtures",)


def problem_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert {"type", "title", "status"} <= body.keys()
    return body


# -- problems ----------------------------------------------------------------------------


def test_api_errors_are_problem_json(api, world):
    office = world.tokens["office_in"]
    problem_of(api.get("volunteers/1"), 401)
    problem_of(api.get("volunteers/1", "sp_not-a-token"), 401)
    problem_of(api.get("nowhere", office), 404)
    problem_of(api.get("volunteers/424242", office), 404)
    problem_of(api.get("districts/nowhere", office), 404)
    body = problem_of(api.delete("health"), 405)
    assert body["title"] == "Method Not Allowed"
    body = problem_of(api.post("transfers", office, {"points": "12"}), 422)
    assert body["type"].endswith("/invalid-input")
    assert set(body["errors"]) == {"from_volunteer_id", "to_volunteer_id", "points"}
    body = problem_of(
        api.post("transfers", office, data="{not json", content_type="application/json"), 400
    )
    assert "errors" not in body


def test_api_insufficient_points_is_409(api, world):
    body = problem_of(
        api.post(
            "transfers",
            world.tokens["volunteer_self"],
            {
                "from_volunteer_id": world.volunteers["self"],
                "to_volunteer_id": world.volunteers["peer"],
                "points": 1001,
            },
        ),
        409,
    )
    assert body["type"].endswith("/insufficient-points")


def test_api_hides_internal_errors(app, api, world, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail at /srv/points")

    monkeypatch.setattr("points.api.volunteers.balance_of", broken)
    response = api.get(f"volunteers/{world.volunteers['self']}/balance", world.tokens["admin"])
    body = problem_of(response, 500)
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["title"] == "Internal server error"


def test_api_health_is_503_when_the_database_is_down(tmp_path):
    from points.app import create_app

    broken = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "x",
            "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/points.sqlite",
        }
    )
    response = broken.test_client().get("/api/v1/health")
    body = problem_of(response, 503)
    assert body["title"] == "Database unavailable"


def test_api_serves_openapi_and_a_local_docs_page(api, app):
    spec = api.get("openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/transfers" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    default = spec["components"]["responses"]["DEFAULT_ERROR"]["content"]
    assert list(default) == ["application/problem+json"]
    page = api.get("docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "init.js"):
        assert f"/static/swagger-ui/{asset}" in html
        with api.get(f"/static/swagger-ui/{asset}") as response:
            assert response.status_code == 200


# -- districts, volunteers, entries ------------------------------------------------------


def test_api_district_created_below_parent_with_next_level(api, world):
    response = api.post(
        "districts",
        world.tokens["office_in"],
        {"code": "grid-1", "name": "第一网格", "parent": "xizhaosi"},
    )
    assert response.status_code == 201
    assert response.get_json() == {
        "code": "grid-1",
        "name": "第一网格",
        "level": "grid",
        "parent": "xizhaosi",
        "timezone": "Asia/Shanghai",
        "path": ["beijing", "dongcheng", "longtan", "xizhaosi", "grid-1"],
    }
    below_grid = api.post(
        "districts", world.tokens["admin"], {"code": "x", "name": "x", "parent": "grid-1"}
    )
    assert problem_of(below_grid, 422)["errors"] == {"parent": ["A grid has no children."]}
    taken = api.post(
        "districts", world.tokens["admin"], {"code": "grid-1", "name": "x", "parent": "xizhaosi"}
    )
    problem_of(taken, 409)
    root = api.post("districts", world.tokens["office_above"], {"code": "tianjin", "name": "天津"})
    problem_of(root, 403)
    root = api.post("districts", world.tokens["admin"], {"code": "tianjin", "name": "天津市"})
    assert root.get_json()["level"] == "city" and root.get_json()["parent"] is None


def test_api_volunteer_registered_and_shown(api, world):
    response = api.post(
        "volunteers",
        world.tokens["office_in"],
        {"name": "赵志强", "phone": "13900000099", "district": "xizhaosi", "pin": "222333"},
    )
    assert response.status_code == 201
    created = response.get_json()
    assert created["status"] == "active" and created["district"] == "xizhaosi"
    assert "pin" not in created and len(created["card_code"]) == 10
    profile = api.get(f"volunteers/{created['id']}", world.tokens["office_in"]).get_json()
    assert profile["phone"] == "13900000099" and profile["service_minutes"] == 0
    bad = api.post(
        "volunteers",
        world.tokens["office_in"],
        {"name": "x", "district": "xizhaosi", "pin": "12ab"},
    )
    assert "pin" in problem_of(bad, 422)["errors"]
    outside = api.post(
        "volunteers",
        world.tokens["office_in"],
        {"name": "x", "district": "zuoanmen", "pin": "123123"},
    )
    problem_of(outside, 403)


def test_api_balance_shows_held_and_expiring(api, world, provider):
    me = world.volunteers["self"]
    soon = utcnow() + timedelta(days=10)
    ledger.earn(me, 30, actor="office:test", reason="visit", expires_at=soon)
    ledger.earn(me, 7, actor="office:test", reason="fix", expires_at=utcnow() + timedelta(days=400))
    ledger.hold(me, 100, provider_id=provider, actor="kiosk", reason="haircut")
    ledger.add_service_minutes(me, 90, actor="office:test", reason="patrol")
    body = api.get(f"volunteers/{me}/balance", world.tokens["volunteer_self"]).get_json()
    assert body["balance"] == 1037 and body["held"] == 100 and body["available"] == 937
    assert body["service_minutes"] == 90
    assert [item["points"] for item in body["expiring"]] == [30]
    assert body["expiring"][0]["expires_at"].endswith("+00:00")


def test_api_entries_page_newest_first_with_cursor(api, world):
    me = world.volunteers["self"]
    for number in range(1, 6):
        ledger.earn(me, number, actor="office:test", reason=f"visit {number}")
    token = world.tokens["volunteer_self"]
    first = api.get(f"volunteers/{me}/entries?limit=4", token).get_json()
    assert [item["points"] for item in first["items"]] == [5, 4, 3, 2]
    assert first["items"][0]["reason"] == "visit 5"
    second = api.get(f"volunteers/{me}/entries?limit=4&cursor={first['next_cursor']}", token)
    second = second.get_json()
    assert [item["points"] for item in second["items"]] == [1, 1000]
    assert second["next_cursor"] is None
    problem_of(api.get(f"volunteers/{me}/entries?cursor=garbage", token), 422)
    problem_of(api.get(f"volunteers/{me}/entries?limit=0", token), 422)


def test_api_transfer_and_reversal(api, world):
    giver, receiver = world.volunteers["self"], world.volunteers["far"]
    response = api.post(
        "transfers",
        world.tokens["volunteer_self"],
        {"from_volunteer_id": giver, "to_volunteer_id": receiver, "points": 40, "memo": "捐赠"},
    )
    assert response.status_code == 201
    transfer = response.get_json()
    assert transfer["points"] == 40 and transfer["memo"] == "捐赠"
    assert ledger.balance(receiver).balance == 1040
    # Across communities: only an office over both may reverse it.
    path = f"entries/{transfer['id']}/reverse"
    problem_of(api.post(path, world.tokens["office_in"], {"reason": "wrong person"}), 403)
    reversal = api.post(path, world.tokens["office_above"], {"reason": "wrong person"})
    assert reversal.status_code == 201
    body = reversal.get_json()
    assert body["kind"] == "reversal" and body["reverses_id"] == transfer["id"]
    assert sum(posting["amount"] for posting in body["postings"]) == 0
    assert ledger.balance(giver).balance == 1000 and ledger.balance(receiver).balance == 1000
    again = api.post(path, world.tokens["office_above"], {"reason": "again"})
    assert problem_of(again, 409)["type"].endswith("/already-reversed")
    ledger.seal()
    assert verify().ok


def test_api_ledger_verify_report(api, world):
    body = api.get("ledger/verify", world.tokens["auditor_in"]).get_json()
    assert body["ok"] is True and body["problems"] == []
    assert body["counts"]["entries"] == 2


# -- idempotency -------------------------------------------------------------------------


def _transfer(api, world, key, points=5, token="volunteer_self"):
    return api.post(
        "transfers",
        world.tokens[token],
        {
            "from_volunteer_id": world.volunteers["self"],
            "to_volunteer_id": world.volunteers["peer"],
            "points": points,
        },
        headers={"Idempotency-Key": key},
    )


def test_api_same_key_and_body_replays_without_writing(api, world):
    first = _transfer(api, world, "retry-1")
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    entries = db.session.query(Entry).count()
    again = _transfer(api, world, "retry-1")
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert db.session.query(Entry).count() == entries
    assert ledger.balance(world.volunteers["peer"]).balance == 5


def test_api_same_key_other_body_is_409(api, world):
    assert _transfer(api, world, "retry-2").status_code == 201
    body = problem_of(_transfer(api, world, "retry-2", points=6), 409)
    assert body["type"].endswith("/idempotency-conflict")


def test_api_keys_belong_to_their_token(api, world):
    assert _transfer(api, world, "shared").status_code == 201
    other = _transfer(api, world, "shared", token="office_in")
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers
    assert ledger.balance(world.volunteers["peer"]).balance == 10


def test_api_failed_write_keeps_no_key(api, world):
    problem_of(_transfer(api, world, "retry-3", points=5000), 409)
    assert _transfer(api, world, "retry-3", points=5000).status_code == 409
    problem_of(
        api.post(
            "transfers",
            world.tokens["volunteer_self"],
            {},
            headers={"Idempotency-Key": "bad key with spaces"},
        ),
        422,
    )


# -- kiosk sessions and PINs -------------------------------------------------------------


def _open(api, world, part="self", pin=None, kiosk="kiosk_in"):
    return api.post(
        "kiosk/sessions",
        world.tokens[kiosk],
        {"card_code": world.cards[part], "pin": pin or world.pins[part]},
    )


def test_api_kiosk_token_alone_sees_no_volunteer(api, world):
    kiosk = world.tokens["kiosk_in"]
    for path in ("", "/balance", "/entries"):
        problem_of(api.get(f"volunteers/{world.volunteers['self']}{path}", kiosk), 403)


def test_api_kiosk_session_reads_only_its_volunteer(api, world):
    session = world.tokens["session"]
    me, peer = world.volunteers["self"], world.volunteers["peer"]
    assert api.get(f"volunteers/{me}/balance", session).get_json()["balance"] == 1000
    problem_of(api.get(f"volunteers/{peer}/balance", session), 403)
    problem_of(api.get(f"volunteers/{me}", session), 403)
    current = api.get("kiosk/sessions/current", session).get_json()
    assert current == {
        "volunteer_id": me,
        "display_name": "王*英",
        "expires_at": current["expires_at"],
    }


def test_api_kiosk_session_ends_on_delete_and_when_idle(app, api, world):
    session = world.tokens["session"]
    assert api.delete("kiosk/sessions/current", session).status_code == 204
    problem_of(api.get("kiosk/sessions/current", session), 401)
    second = _open(api, world).get_json()["token"]
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.volunteer_id == world.volunteers["self"], ApiToken.revoked_at.is_(None))
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    problem_of(api.get("kiosk/sessions/current", second), 401)


def test_api_kiosk_session_extends_while_used_up_to_its_maximum(app, api, world):
    token = _open(api, world).get_json()["token"]
    row_id = db.session.scalar(
        select(ApiToken.id)
        .where(ApiToken.name.like("kiosk-session:%"))
        .order_by(ApiToken.id.desc())
    )
    now = utcnow()
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == row_id)
        .values(created_at=now - timedelta(seconds=100), expires_at=now + timedelta(seconds=10))
    )
    db.session.commit()
    assert api.get("kiosk/sessions/current", token).status_code == 200
    expires = db.session.scalar(select(ApiToken.expires_at).where(ApiToken.id == row_id))
    assert expires > now + timedelta(seconds=100)
    # Near the maximum age, it extends no further than the maximum.
    db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == row_id)
        .values(created_at=now - timedelta(seconds=895), expires_at=now + timedelta(seconds=2))
    )
    db.session.commit()
    assert api.get("kiosk/sessions/current", token).status_code == 200
    expires = db.session.scalar(select(ApiToken.expires_at).where(ApiToken.id == row_id))
    assert expires <= now + timedelta(seconds=6)


def test_api_kiosk_session_dies_with_its_kiosk(api, world):
    kiosk_id = db.session.scalar(select(ApiToken.id).where(ApiToken.name == "kiosk_in"))
    assert api.delete(f"tokens/{kiosk_id}", world.tokens["office_in"]).status_code == 204
    problem_of(api.get("kiosk/sessions/current", world.tokens["session"]), 401)


def test_api_kiosk_outside_its_node_cannot_open_a_session(api, world):
    problem_of(_open(api, world, part="far"), 403)
    failed = db.session.scalar(
        select(Volunteer.failed_pins).where(Volunteer.id == world.volunteers["far"])
    )
    assert failed == 0


def test_api_five_wrong_pins_lock_the_card_for_15_minutes(api, world):
    for tries_left in (4, 3, 2, 1):
        body = problem_of(_open(api, world, pin="000000"), 422)
        assert body["errors"]["pin"] == [
            f"Wrong PIN: {tries_left} more tries before the card locks."
        ]
    locked = _open(api, world, pin="000000")
    problem_of(locked, 423)
    assert 890 <= int(locked.headers["Retry-After"]) <= 900
    # Locked: even the right PIN is refused, and the count is in the database.
    problem_of(_open(api, world), 423)
    row = db.session.execute(
        select(Volunteer.failed_pins, Volunteer.locked_until).where(
            Volunteer.id == world.volunteers["self"]
        )
    ).one()
    assert row.failed_pins == 5 and row.locked_until > utcnow() + timedelta(minutes=14)
    # Other cards are not affected.
    assert _open(api, world, part="peer").status_code == 201
    # After 15 minutes the card opens again, and a right PIN clears the count.
    db.session.execute(
        update(Volunteer)
        .where(Volunteer.id == world.volunteers["self"])
        .values(locked_until=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    problem_of(_open(api, world, pin="000000"), 422)
    assert _open(api, world).status_code == 201
    db.session.rollback()
    row = db.session.execute(
        select(Volunteer.failed_pins, Volunteer.locked_until).where(
            Volunteer.id == world.volunteers["self"]
        )
    ).one()
    assert row == (0, None)


def test_api_unknown_card_is_422(api, world):
    response = api.post(
        "kiosk/sessions", world.tokens["kiosk_in"], {"card_code": "NOSUCHCARD", "pin": "123456"}
    )
    assert problem_of(response, 422)["errors"] == {"card_code": ["Unknown card."]}


# -- rate limits -------------------------------------------------------------------------


def test_api_rate_limit_per_token_is_429(app, api, world):
    app.extensions["points_rate_limiter"] = RateLimiter(3)
    path = f"volunteers/{world.volunteers['self']}/balance"
    for _ in range(3):
        assert api.get(path, world.tokens["office_in"]).status_code == 200
    limited = api.get(path, world.tokens["office_in"])
    problem_of(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    # Another token is not limited by this one.
    assert api.get(path, world.tokens["admin"]).status_code == 200


def test_api_kiosk_sessions_count_against_their_kiosk(app, api, world):
    app.extensions["points_rate_limiter"] = RateLimiter(2)
    path = f"volunteers/{world.volunteers['self']}/balance"
    assert api.get(path, world.tokens["session"]).status_code == 200
    assert api.get("districts/xizhaosi", world.tokens["kiosk_in"]).status_code == 200
    problem_of(api.get(path, world.tokens["session"]), 429)


# -- tokens ------------------------------------------------------------------------------


def test_api_office_creates_kiosk_and_volunteer_tokens_inside_its_node(api, world):
    office = world.tokens["office_in"]
    made = api.post(
        "tokens",
        office,
        {
            "role": "volunteer",
            "district": "xizhaosi",
            "volunteer_id": world.volunteers["self"],
            "name": "王秀英's phone",
        },
    )
    assert made.status_code == 201
    secret = made.get_json()["token"]
    assert api.get(f"volunteers/{world.volunteers['self']}/balance", secret).status_code == 200
    stored = db.session.scalar(
        select(ApiToken.token_hash).where(ApiToken.id == made.get_json()["id"])
    )
    assert secret not in stored
    problem_of(
        api.post("tokens", office, {"role": "office", "district": "xizhaosi", "name": "x"}), 403
    )
    problem_of(
        api.post(
            "tokens",
            office,
            {
                "role": "volunteer",
                "district": "xizhaosi",
                "volunteer_id": world.volunteers["far"],
                "name": "x",
            },
        ),
        403,
    )
    problem_of(
        api.post(
            "tokens", office, {"role": "kiosk", "district": "xizhaosi", "name": "kiosk-session:1"}
        ),
        422,
    )
    assert api.delete(f"tokens/{made.get_json()['id']}", office).status_code == 204
    problem_of(api.get(f"volunteers/{world.volunteers['self']}/balance", secret), 401)


def test_api_expired_token_is_401(api, world):
    made = api.post(
        "tokens",
        world.tokens["admin"],
        {
            "role": "auditor",
            "district": "xizhaosi",
            "name": "short",
            "expires_at": (utcnow() + timedelta(minutes=5)).isoformat(),
        },
    ).get_json()
    assert api.get("ledger/verify", made["token"]).status_code == 200
    db.session.execute(
        update(ApiToken).where(ApiToken.id == made["id"]).values(expires_at=utcnow())
    )
    db.session.commit()
    assert "expired" in problem_of(api.get("ledger/verify", made["token"]), 401)["detail"]


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "bearer  ", "Token sp_x"])
def test_api_malformed_authorization_is_401(api, world, header):
    response = api.get("ledger/verify", headers={"Authorization": header})
    problem_of(response, 401)
