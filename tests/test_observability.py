"""Request ids, JSON request logs, metrics and rate-limit storage, in one process."""

from __future__ import annotations

import json
import multiprocessing
import runpy
from pathlib import Path

import pytest

from points.app import create_app
from points.directory import create_district, create_token
from points.extensions import db
from points.metrics import REGISTRY
from points.ratelimit import SQLiteStorage, storage_url

pytest_plugins = ("tests.api_fixtures",)

ROOT = Path(__file__).resolve().parents[1]
BALANCE = "/api/v1/volunteers/<int:volunteer_id>/balance"


@pytest.fixture
def make_app(database_url_for_test):
    """Make apps on the test's database with extra settings; their pools are closed after."""
    made = []

    def make(**settings):
        app = create_app(
            {"TESTING": True, "DATABASE_URL": database_url_for_test, "SECRET_KEY": "test"}
            | settings
        )
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def request_lines(text: str) -> list[dict]:
    """The JSON request log lines in captured stderr."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "points.requests"]


# -- request ids -------------------------------------------------------------------------


def test_request_id_sane_one_is_answered_in_header_and_problem(api):
    response = api.get("no-such-thing", headers={"X-Request-Id": "kiosk-7.retry:2_a"})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == "kiosk-7.retry:2_a"
    assert response.get_json()["request_id"] == "kiosk-7.retry:2_a"


@pytest.mark.parametrize("given", ["a b", "x" * 129, "é", "<script>", ""])
def test_request_id_insane_one_is_replaced(api, given):
    response = api.get("volunteers/1/balance", headers={"X-Request-Id": given})
    assert response.status_code == 401
    made = response.headers["X-Request-Id"]
    assert made != given and len(made) == 32
    assert response.get_json()["request_id"] == made


def test_request_id_in_every_problem(api, world):
    token = world.tokens["office_in"]
    for response in (
        api.get("volunteers/1/balance"),  # 401
        api.get(f"volunteers/{world.volunteers['far']}/balance", token),  # 403
        api.post("volunteers", token, {"name": ""}),  # 422
        api.post("volunteers", token, data="{", content_type="application/json"),  # 400
    ):
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["request_id"] == response.headers["X-Request-Id"]
    ok = api.get(f"volunteers/{world.volunteers['self']}/balance", token)
    assert ok.status_code == 200 and len(ok.headers["X-Request-Id"]) == 32


# -- logs --------------------------------------------------------------------------------


def test_request_log_one_json_line_per_request_without_secrets(api, world, capsys):
    capsys.readouterr()
    office, kiosk = world.tokens["office_in"], world.tokens["kiosk_in"]
    phone, pin = "13912345678", "246802"
    made = api.post(
        "volunteers",
        office,
        {"name": "赵四", "phone": phone, "district": "xizhaosi", "pin": pin},
    )
    assert made.status_code == 201
    card = made.get_json()["card_code"]
    wrong = api.post("kiosk/sessions", kiosk, {"card_code": card, "pin": "999999"})
    assert wrong.status_code == 422
    opened = api.post("kiosk/sessions", kiosk, {"card_code": card, "pin": pin})
    session = opened.get_json()["token"]
    # A secret in the query string (here a parameter the API refuses) is never logged.
    balance = api.get(
        f"volunteers/{made.get_json()['id']}/balance?card={card}",
        session,
        headers={"X-Request-Id": "req-42"},
    )
    assert balance.status_code == 422

    out = capsys.readouterr().err
    lines = request_lines(out)
    assert len(lines) == 4
    last = lines[-1]
    assert last["request_id"] == "req-42"
    assert last["route"] == BALANCE and last["method"] == "GET" and last["status"] == 422
    assert last["role"] == "session" and isinstance(last["token_id"], int)
    assert isinstance(last["district_id"], int) and last["latency_ms"] >= 0
    assert lines[0]["role"] == "office" and lines[0]["status"] == 201
    for secret in (phone, pin, card, card.lower(), session, office, kiosk, "999999"):
        assert secret not in out


def test_request_log_can_be_turned_off(make_app, capsys):
    app = make_app(REQUEST_LOG=False)
    capsys.readouterr()
    assert app.test_client().get("/api/v1/health").status_code == 200
    assert request_lines(capsys.readouterr().err) == []


# -- metrics -----------------------------------------------------------------------------


def test_metrics_not_served_unless_configured(app, client):
    assert client.get("/metrics").status_code == 404


def test_metrics_behind_a_token(app, client):
    app.config["METRICS_TOKEN"] = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.mimetype == "application/problem+json"
    right = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert right.status_code == 200
    assert b"points_http_requests_total" in right.data


@pytest.mark.parametrize(("allow", "status"), [("10.0.0.0/8", 404), ("10.0.0.0/8,127.0.0.1", 200)])
def test_metrics_only_from_allowed_addresses(make_app, allow, status):
    app = make_app(METRICS_ALLOW=allow)
    assert app.test_client().get("/metrics").status_code == status


def test_metrics_count_requests_by_route_and_status(api, world):
    before_ok = sample("points_http_requests_total", route=BALANCE, method="GET", status="200")
    before_403 = sample("points_http_requests_total", route=BALANCE, method="GET", status="403")
    before_seen = sample("points_http_request_duration_seconds_count", route=BALANCE, method="GET")
    token = world.tokens["office_in"]
    for _ in range(3):
        assert api.get(f"volunteers/{world.volunteers['self']}/balance", token).status_code == 200
    assert api.get(f"volunteers/{world.volunteers['far']}/balance", token).status_code == 403
    after_ok = sample("points_http_requests_total", route=BALANCE, method="GET", status="200")
    after_403 = sample("points_http_requests_total", route=BALANCE, method="GET", status="403")
    after_seen = sample("points_http_request_duration_seconds_count", route=BALANCE, method="GET")
    assert (after_ok - before_ok, after_403 - before_403, after_seen - before_seen) == (3, 1, 4)


def test_metrics_count_ledger_redemptions_pins_and_replays(api, world):
    kiosk, card = world.tokens["kiosk_in"], world.cards["peer"]
    counters = {
        "earn": ("points_ledger_entries_total", {"kind": "earn"}),
        "redeem": ("points_ledger_entries_total", {"kind": "redeem"}),
        "held": ("points_redemptions_total", {"status": "held"}),
        "fulfilled": ("points_redemptions_total", {"status": "fulfilled"}),
        "cancelled": ("points_redemptions_total", {"status": "cancelled"}),
        "wrong_pin": ("points_pin_failures_total", {"reason": "wrong_pin"}),
        "unknown_card": ("points_pin_failures_total", {"reason": "unknown_card"}),
        "replays": ("points_idempotent_replays_total", {"route": "/api/v1/redemptions"}),
    }
    before = {name: sample(metric, **labels) for name, (metric, labels) in counters.items()}

    office = world.tokens["office_in"]
    record = {
        "volunteer_id": world.volunteers["self"],
        "kind": "patrol",
        "started_at": world.started(),
        "minutes": 60,
    }
    assert api.post("service-records", office, record).status_code == 201
    assert (
        api.post("kiosk/sessions", kiosk, {"card_code": card, "pin": "000000"}).status_code == 422
    )
    assert (
        api.post("kiosk/sessions", kiosk, {"card_code": "NOPE", "pin": "123456"}).status_code == 422
    )
    session = world.tokens["session"]
    for _ in range(2):  # the second is a replay
        held = api.post(
            "redemptions", session, {"sku": "haircut"}, headers={"Idempotency-Key": "m1"}
        )
        assert held.status_code == 201
    fulfil = api.post(
        f"redemptions/{held.get_json()['id']}/fulfil", kiosk, headers={"Idempotency-Key": "m2"}
    )
    assert fulfil.status_code == 200
    other = api.post(
        "redemptions", office, {"volunteer_id": world.volunteers["self"], "sku": "haircut"}
    )
    assert other.status_code == 201
    cancel = api.post(f"redemptions/{other.get_json()['id']}/cancel", office, {"reason": "改天"})
    assert cancel.status_code == 200

    after = {name: sample(metric, **labels) for name, (metric, labels) in counters.items()}
    grown = {name: after[name] - before[name] for name in counters}
    assert grown["earn"] >= 1
    assert grown == {
        **grown,
        "redeem": 1,
        "held": 2,
        "fulfilled": 1,
        "cancelled": 1,
        "wrong_pin": 1,
        "unknown_card": 1,
        "replays": 1,
    }


def test_metrics_database_pool_gauges(api, world):
    assert api.get("districts/xizhaosi", world.tokens["admin"]).status_code == 200
    assert sample("points_db_connections_open") >= 1
    assert sample("points_db_connections_in_use") >= 0


def test_gunicorn_config_forgets_dead_workers_live_gauges(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    for name in ("gauge_livesum_4242.db", "counter_4242.db", "gauge_livesum_7.db"):
        (tmp_path / name).write_bytes(b"")

    class Worker:
        pid = 4242

    settings["child_exit"](None, Worker())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db", "gauge_livesum_7.db"]
    (tmp_path / "keep.txt").write_text("not ours")
    settings["on_starting"](None)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# -- rate limit storage ------------------------------------------------------------------


def test_rate_limit_storage_default_is_a_file_every_worker_shares(make_app):
    app = make_app(TESTING=False)
    assert storage_url(app) == "sqlite:///" + str(Path(app.instance_path) / "ratelimit.sqlite")
    app.config["RATELIMIT_STORAGE_URL"] = "redis://127.0.0.1:6379"
    assert storage_url(app) == "redis://127.0.0.1:6379"


def _hit_many(url: str, times: int) -> None:
    storage = SQLiteStorage(url)
    for _ in range(times):
        storage.incr("token:1", 60)


def test_rate_limit_sqlite_storage_counts_every_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'limits.sqlite'}"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_hit_many, args=(url, 150)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    storage = SQLiteStorage(url)
    assert storage.get("token:1") == 600
    assert storage.incr("token:1", 60) == 601
    storage.clear("token:1")
    assert storage.get("token:1") == 0


def test_rate_limit_sqlite_storage_starts_a_new_window_when_one_ends(tmp_path):
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'limits.sqlite'}")
    assert [storage.incr("k", 0) for _ in range(3)] == [1, 1, 1]  # each window ends at once
    assert storage.incr("j", 60, amount=2) == 2 and storage.incr("j", 60) == 3
    assert storage.get_expiry("j") > storage.get_expiry("k")
    assert storage.check() and storage.reset() == 2


def test_rate_limit_storage_down_does_not_fail_requests(make_app):
    # Nothing listens on port 1: every hit fails, and counting falls back to memory.
    app = make_app(RATELIMIT_STORAGE_URL="redis://127.0.0.1:1")
    with app.app_context():
        create_district("beijing", "北京市", "city")
        _, token = create_token("admin", "beijing", name="admin")
        db.session.remove()
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/districts/beijing", headers=headers).status_code == 200
