"""The REST API: problem+json, idempotent writes, kiosk sessions and PINs, paging, limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from points import ledger
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
    # Every problem names its request, as the X-Request-Id header does; the rest of the
    # body is what a test compares.
    assert body.pop("request_id") == response.headers["X-Request-Id"]
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


def test_api_refuses_nul_characters_and_huge_bodies(api, world):
    admin = world.tokens["admin"]
    assert problem_of(api.get("districts/a%00b", admin), 422)["errors"] == {
        "path": ["Text may not contain NUL (0x00) or lone surrogates (U+D800-DFFF)."]
    }
    problem_of(api.get(f"volunteers/{world.volunteers['self']}/entries?cursor=%00", admin), 422)
    body = {"name": "王\x00英", "district": "xizhaosi", "pin": "204857"}
    assert "body" in problem_of(api.post("volunteers", admin, body), 422)["errors"]
    huge = {"name": "x" * 300_000, "district": "xizhaosi", "pin": "204857"}
    problem_of(api.post("volunteers", admin, huge), 413)


def test_api_refuses_lone_surrogates_anywhere_in_the_body(api, world):
    admin = world.tokens["admin"]
    for body in (
        {"name": "王\ud800", "district": "xizhaosi", "pin": "204857"},
        {"name": "王", "district": "xizhaosi", "pin": "204857", "x": ["\udfff"]},
    ):
        # JSON may carry a lone surrogate as an escape, "\ud800"; json.dumps writes that.
        response = api.client.post(
            "/api/v1/volunteers",
            data=json.dumps(body),
            headers={"Authorization": f"Bearer {admin}"},
            content_type="application/json",
        )
        assert "body" in problem_of(response, 422)["errors"]


def test_api_refuses_times_the_database_cannot_store(api, world):
    record = {
        "volunteer_id": world.volunteers["self"],
        "kind": "patrol",
        "minutes": 30,
        "details": {},
    }
    for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00"):
        response = api.post(
            "service-records", world.tokens["office_in"], {**record, "started_at": moment}
        )
        assert "started_at" in problem_of(response, 422)["errors"]


def test_api_body_that_is_not_json_is_415(api, world):
    response = api.client.post(
        "/api/v1/volunteers",
        data='{"name": "a", "district": "xizhaosi", "pin": "204857"}',
        headers={"Authorization": f"Bearer {world.tokens['admin']}"},
        content_type="text/plain",
    )
    assert "application/json" in problem_of(response, 415)["detail"]


def test_api_insufficient_points_is_409(api, world):
    body = problem_of(
        api.post(
            "transfers",
            world.tokens["volunteer_peer"],
            {
                "from_volunteer_id": world.volunteers["peer"],
                "to_volunteer_id": world.volunteers["self"],
                "points": 5,
            },
        ),
        409,
    )
    assert body["type"].endswith("/insufficient-points")


def test_api_hides_internal_errors(app, api, world, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail at /srv/points")

    monkeypatch.setattr("points.volunteers.balance", broken)
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
        "contact": None,
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
    # Answered like an unknown card: the kiosk learns nothing about cards elsewhere.
    assert problem_of(_open(api, world, part="far"), 422)["errors"] == {
        "card_code": ["Unknown card."]
    }
    failed = db.session.scalar(
        select(Volunteer.failed_pins).where(Volunteer.id == world.volunteers["far"])
    )
    assert failed == 0


def test_api_five_wrong_pins_lock_the_card_for_15_minutes(api, world):
    for tries_left in (4, 3, 2, 1):
        body = problem_of(_open(api, world, pin="000000"), 422)
        tries = "1 more try" if tries_left == 1 else f"{tries_left} more tries"
        assert body["errors"]["pin"] == [f"Wrong PIN: {tries} before the card locks."]
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


def test_api_card_codes_are_read_in_either_case(api, world):
    response = api.post(
        "kiosk/sessions",
        world.tokens["kiosk_in"],
        {"card_code": f" {world.cards['self'].lower()} ", "pin": "204857"},
    )
    assert response.status_code == 201, response.get_json()


def test_api_unknown_card_is_422(api, world):
    response = api.post(
        "kiosk/sessions", world.tokens["kiosk_in"], {"card_code": "NOSUCHCARD", "pin": "204857"}
    )
    assert problem_of(response, 422)["errors"] == {"card_code": ["Unknown card."]}


# -- rate limits -------------------------------------------------------------------------


def test_api_rate_limit_per_token_is_429(app, api, world):
    app.config["RATELIMIT_OFFICE"] = "3/minute"
    path = f"volunteers/{world.volunteers['self']}/balance"
    for _ in range(3):
        assert api.get(path, world.tokens["office_in"]).status_code == 200
    limited = api.get(path, world.tokens["office_in"])
    problem_of(limited, 429)
    assert int(limited.headers["Retry-After"]) >= 1
    # Another token is not limited by this one.
    assert api.get(path, world.tokens["admin"]).status_code == 200


def test_api_kiosk_sessions_count_against_their_kiosk(app, api, world):
    app.config["RATELIMIT_KIOSK"] = "2/minute"
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


# -- service records ---------------------------------------------------------------------


def _record(api, world, minutes=60, token="office_in", **extra):
    body = {
        "volunteer_id": world.volunteers["self"],
        "kind": "patrol",
        "started_at": world.started(),
        "minutes": minutes,
        "details": {"route": "夕照寺中街"},
    } | extra
    return api.post("service-records", world.tokens[token], body)


def test_api_record_without_a_key_is_written_in_one_call_on_postgresql(
    api, world, backend, monkeypatch
):
    """A record with no Idempotency-Key is no unit of work of the API's: on PostgreSQL
    it takes the one-call path; with a key, the key's claim and the record share one."""
    from points.ledger import fused

    calls = []
    record = fused.record
    monkeypatch.setattr(fused, "record", lambda *a, **k: calls.append(1) or record(*a, **k))
    for hours_ago in (3, 2):  # the first may look the volunteer's accounts up
        assert _record(api, world, started_at=world.started(hours_ago)).status_code == 201
    unkeyed = len(calls)
    keyed = api.post(
        "service-records",
        world.tokens["office_in"],
        {"volunteer_id": world.volunteers["self"], "kind": "patrol", "minutes": 60}
        | {"started_at": world.started(1)},
        headers={"Idempotency-Key": world.key()},
    )
    assert keyed.status_code == 201
    assert unkeyed >= (1 if backend == "postgresql" else 0)
    assert len(calls) == unkeyed


def test_api_small_record_is_approved_at_once_with_its_awards(api, world):
    from points.policy import set_policy

    # Volunteers report patrols themselves only where the node's policy lets them.
    set_policy(
        "longtan",
        "approval",
        {"volunteer_kinds": ["patrol", "fix", "report", "log"]},
        author="office:test",
        effective_from=datetime.now(UTC) - timedelta(days=1),
    )
    response = _record(api, world, minutes=60, token="volunteer_self")
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "approved" and body["points"] == 5
    assert body["awards"] == [
        {
            "points": 5,
            "plugin": "steward",
            "rule": "patrol-hours",
            "reason": body["awards"][0]["reason"],
        }
    ]
    assert "/" in body["awards"][0]["reason"]
    balance = api.get(
        f"volunteers/{world.volunteers['self']}/balance", world.tokens["volunteer_self"]
    ).get_json()
    assert balance["balance"] == 1005 and balance["service_minutes"] == 60
    assert balance["star_level"] == 0


def test_api_large_record_waits_then_is_approved_once(api, world):
    body = _record(api, world, minutes=300).get_json()
    assert body["status"] == "pending" and body["points"] == 0 and body["queue_reason"]
    path = f"service-records/{body['id']}/approve"
    approved = api.post(path, world.tokens["office_in"], headers={"Idempotency-Key": "a-1"})
    assert approved.status_code == 200
    assert approved.get_json() == {"id": body["id"], "status": "approved", "points": 25}
    replay = api.post(path, world.tokens["office_in"], headers={"Idempotency-Key": "a-1"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.get_json() == approved.get_json()
    again = api.post(path, world.tokens["office_in"])
    problem_of(again, 409)
    assert ledger.balance(world.volunteers["self"]).balance == 1025


def test_api_rejected_record_posts_nothing(api, world):
    body = _record(api, world, minutes=300).get_json()
    path = f"service-records/{body['id']}/reject"
    problem_of(api.post(path, world.tokens["office_in"], {}), 422)
    rejected = api.post(path, world.tokens["office_in"], {"reason": "无此巡查"})
    assert rejected.get_json() == {"id": body["id"], "status": "rejected", "points": 0}
    assert ledger.balance(world.volunteers["self"]).balance == 1000


def test_api_record_field_errors(api, world):
    body = problem_of(_record(api, world, kind="sleeping", details={"route": 5}), 422)
    assert "kind" in body["errors"]
    body = problem_of(_record(api, world, started_at="2027-01-01T08:00:00"), 422)
    assert "started_at" in body["errors"]


def test_api_plugin_failure_is_500_without_internals(app, api, world):
    from points.plugins import plugin_manager, registered
    from tests.plugins import raising

    with registered(plugin_manager(), raising, "raising"):
        response = _record(api, world)
    body = problem_of(response, 500)
    assert "boom" not in response.get_data(as_text=True)
    assert "raising" not in body["detail"]
    assert ledger.balance(world.volunteers["self"]).balance == 1000


# -- catalog and redemptions -------------------------------------------------------------


def test_api_catalog_with_eligibility_for_a_volunteer(api, world):
    plain = api.get("districts/xizhaosi/catalog", world.tokens["kiosk_in"]).get_json()
    assert [item["sku"] for item in plain["items"]] == ["haircut", "repair"]
    haircut, repair = plain["items"]
    assert haircut["name"] == "理发" and haircut["cost"] == 30 and haircut["stock_left"] is None
    assert repair["stock_left"] == 1 and "eligible" not in repair
    mine = api.get(
        f"districts/xizhaosi/catalog?volunteer_id={world.volunteers['self']}",
        world.tokens["session"],
    ).get_json()["items"]
    assert mine[0]["eligible"] is True and mine[0]["reason"] is None
    assert mine[1]["eligible"] is False and "1 star or more" in mine[1]["reason"]


def _kiosk_redeem(api, world, key="k-1", sku="haircut", pin=None, token="kiosk_in"):
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(
        "redemptions",
        world.tokens[token],
        {"card_code": world.cards["self"], "pin": pin or world.pins["self"], "sku": sku},
        headers=headers,
    )


def test_api_kiosk_redeems_with_card_and_pin_once_per_key(api, world):
    problem_of(_kiosk_redeem(api, world, key=None), 422)
    first = _kiosk_redeem(api, world)
    assert first.status_code == 201
    body = first.get_json()
    assert body["status"] == "held" and body["points"] == 30 and len(body["voucher_code"]) == 10
    assert body["expires_at"].endswith("+00:00")
    again = _kiosk_redeem(api, world)
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json() == body
    # The PIN is part of the request: another PIN with the same key is another request.
    problem_of(_kiosk_redeem(api, world, pin="999999"), 409)
    points = ledger.balance(world.volunteers["self"])
    assert (points.balance, points.held, points.available) == (1000, 30, 970)
    # Nothing about the PIN is stored in the clear, nor hashed without the secret key.
    from points.models import IdempotencyKey

    stored = db.session.scalar(
        select(IdempotencyKey.request_hash).where(IdempotencyKey.key == "k-1")
    )
    assert world.pins["self"] not in str(stored)


def test_api_kiosk_wrong_pin_redeems_nothing(api, world):
    problem_of(_kiosk_redeem(api, world, pin="000000"), 422)
    assert ledger.balance(world.volunteers["self"]).held == 0


def test_api_kiosk_session_redeems_and_ends(api, world):
    session = world.tokens["session"]
    redeem = {"sku": "haircut"}
    problem_of(api.post("redemptions", session, redeem), 422)  # no key
    first = api.post("redemptions", session, redeem, headers={"Idempotency-Key": "s-1"})
    assert first.status_code == 201
    # The session ended with the redemption, but a retry still gets its answer.
    problem_of(api.get("kiosk/sessions/current", session), 401)
    retry = api.post("redemptions", session, redeem, headers={"Idempotency-Key": "s-1"})
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.get_json() == first.get_json()
    problem_of(api.post("redemptions", session, redeem, headers={"Idempotency-Key": "s-2"}), 401)
    assert ledger.balance(world.volunteers["self"]).held == 30


def test_api_refused_redemption_says_why(api, world):
    response = api.post(
        "redemptions",
        world.tokens["office_in"],
        {"volunteer_id": world.volunteers["self"], "sku": "repair"},
    )
    body = problem_of(response, 409)
    assert body["type"].endswith("/refused")
    assert body["reasons"][0]["plugin"] == "catalog" and "star" in body["reasons"][0]["en"]
    problem_of(
        api.post(
            "redemptions",
            world.tokens["office_in"],
            {"volunteer_id": world.volunteers["self"], "sku": "nothing"},
        ),
        404,
    )


def test_api_fulfil_and_cancel(api, world):
    office = world.tokens["office_in"]
    first = _kiosk_redeem(api, world, key="r-1").get_json()
    second = _kiosk_redeem(api, world, key="r-2").get_json()
    fulfilled = api.post(
        f"redemptions/{first['id']}/fulfil",
        world.tokens["kiosk_in"],
        headers={"Idempotency-Key": "f-1"},
    )
    assert fulfilled.get_json() == {"id": first["id"], "status": "fulfilled", "points": 30}
    cancelled = api.post(f"redemptions/{second['id']}/cancel", world.tokens["volunteer_self"], {})
    assert cancelled.get_json() == {"id": second["id"], "status": "cancelled", "points": 30}
    body = problem_of(api.post(f"redemptions/{second['id']}/fulfil", office), 409)
    assert "cancelled" in body["detail"]
    problem_of(api.post(f"redemptions/{first['id']}/cancel", office, {}), 409)
    points = ledger.balance(world.volunteers["self"])
    assert (points.balance, points.held) == (970, 0)
    problem_of(api.post("redemptions/424242/fulfil", office), 404)
    ledger.seal()
    assert verify().ok


# -- gifts -------------------------------------------------------------------------------


def test_api_gift_that_needs_the_office_is_pending(api, world):
    response = api.post(
        "transfers",
        world.tokens["volunteer_self"],
        {
            "from_volunteer_id": world.volunteers["self"],
            "to_volunteer_id": world.volunteers["peer"],
            "points": 50,
            "relation": "household_in_need",
        },
    )
    body = problem_of(response, 409)
    assert "household" in body["reasons"][0]["en"]
    response = api.post(
        "transfers",
        world.tokens["volunteer_self"],
        {
            "from_volunteer_id": world.volunteers["self"],
            "to_volunteer_id": world.volunteers["peer"],
            "points": 201,
        },
    )
    assert "200" in problem_of(response, 409)["reasons"][0]["en"]


# -- plugins and policy ------------------------------------------------------------------


def test_api_plugins_with_hooks_and_json_schemas(api, world):
    items = {p["name"]: p for p in api.get("plugins", world.tokens["kiosk_in"]).get_json()["items"]}
    assert {"steward", "catalog", "stars", "transfers"} <= set(items)
    stars = items["stars"]
    assert "star_level_for" in stars["hooks"]
    assert stars["config_schema"]["$schema"].startswith("https://json-schema.org/")
    assert stars["config_schema"]["properties"]["levels_hours"]["type"] == "array"
    kinds = {kind["name"] for kind in items["steward"]["activity_kinds"]}
    assert {"patrol", "visit", "checkin"} <= kinds


def test_api_policy_shows_who_set_each_key(api, world):
    office = world.tokens["office_in"]
    put = api.put(
        "districts/xizhaosi/policy/stars",
        office,
        {"config": {"levels_hours": [1, 300]}, "comment": "first star sooner"},
    )
    assert put.status_code == 200
    assert put.get_json()["version"] == 1 and put.get_json()["district"] == "xizhaosi"
    shown = api.get("districts/xizhaosi/policy", world.tokens["auditor_in"]).get_json()
    stars = shown["plugins"]["stars"]
    assert stars["config"]["levels_hours"] == [1, 300]
    assert stars["set_by"]["levels_hours"] == {"district": "xizhaosi", "version": 1}
    catalog = shown["plugins"]["catalog"]
    assert catalog["set_by"]["items.haircut.cost"] == {"district": "longtan", "version": 1}
    # The new stars policy counts at once.
    ledger.add_service_minutes(world.volunteers["self"], 60, actor="office:test", reason="x")
    balance = api.get(f"volunteers/{world.volunteers['self']}/balance", office).get_json()
    assert balance["star_level"] == 1


def test_api_policy_field_errors_are_422(api, world):
    response = api.put(
        "districts/xizhaosi/policy/stars", world.tokens["office_in"], {"config": {"levels": 5}}
    )
    assert "config.levels" in problem_of(response, 422)["errors"]
    response = api.put(
        "districts/xizhaosi/policy/stars",
        world.tokens["office_in"],
        {"config": {"levels_hours": [300, 100]}},
    )
    assert "config.levels_hours" in problem_of(response, 422)["errors"]
    problem_of(api.put("districts/xizhaosi/policy/nothing", world.tokens["office_in"], {}), 404)


def test_api_policy_preview_writes_nothing(api, world):
    for hours_ago in (30, 54):
        _record(api, world, minutes=60, started_at=world.started(hours_ago))
    before = db.session.query(Entry).count()
    response = api.post(
        "districts/xizhaosi/policy/steward/preview",
        world.tokens["office_above"],
        {
            "config": {"patrol": {"points_per_hour": 8}},
            "since": world.started(24 * 7),
            "until": world.started(0),
        },
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["records"] == 2
    assert (body["current_total"], body["draft_total"], body["difference"]) == (10, 16, 6)
    assert body["volunteers"][0]["difference"] == 6
    assert db.session.query(Entry).count() == before
