"""Faults under a real server: gunicorn killed mid-load, and a paused PostgreSQL of the
test's own. Unanswered writes retried with their keys post once; every request answers
within a bound; the service recovers without a restart."""

from __future__ import annotations

import http.client
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from points import ledger
from points.directory import create_district, create_provider, create_token, register_volunteer
from points.extensions import db
from points.models import Redemption
from points.policy import set_policy
from points.verify import verify
from tests.e2e.private_postgres import private_cluster, unavailable_reason
from tests.e2e.server import Http, Server, prepared_database, seeding

HAIRCUT = {"names": {"zh-CN": "理发", "en": "haircut"}, "cost": 3, "provider": "barber-wang"}
START_POINTS = 3000


def seed_redeemer(url: str) -> tuple[int, str]:
    """A volunteer with START_POINTS under Longtan's haircut catalog, and an office token
    of Longtan. Returns (volunteer id, office token)."""
    with seeding(url):
        create_district("xizhaosi", "夕照寺社区", "community", parent="longtan")
        set_policy(
            "longtan",
            "catalog",
            {"items": {"haircut": HAIRCUT}},
            author="office:e2e",
            effective_from=datetime.now(UTC) - timedelta(days=1),
        )
        volunteer = register_volunteer("王秀英", "xizhaosi", "204857")
        ledger.earn(volunteer.id, START_POINTS, actor="office:e2e", reason="patrol")
        _, office = create_token("office", "longtan", name="office")
        return volunteer.id, office


def redeem(http: Http, office: str, volunteer_id: int, key: str):
    return http.post(
        "redemptions",
        office,
        {"volunteer_id": volunteer_id, "sku": "haircut"},
        headers={"Idempotency-Key": key},
    )


def check_posted_once(url: str, volunteer_id: int, keys: int) -> None:
    """Every key made exactly one redemption; the ledger's invariants hold."""
    with seeding(url):
        assert verify().ok
        made = db.session.scalar(select(func.count(Redemption.id)))
        assert made == keys
        assert ledger.balance(volunteer_id).available == START_POINTS - keys * HAIRCUT["cost"]


@pytest.mark.slow
def test_e2e_server_killed_mid_load_retried_writes_post_once(live):
    volunteer_id, office = seed_redeemer(live.url)
    keys = [f"kill-{i}" for i in range(400)]
    answered: dict[str, object] = {}
    stop = threading.Event()
    lock = threading.Lock()

    def client(offset: int) -> None:
        for key in keys[offset::8]:
            if stop.is_set():
                return
            try:
                reply = redeem(live.http, office, volunteer_id, key)
            except (OSError, http.client.HTTPException):
                return  # the server died under this request: unanswered
            with lock:
                answered[key] = reply

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, i) for i in range(8)]
        deadline = time.monotonic() + 30
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        live.server.kill()  # mid-load: requests are in flight in every worker
        stop.set()
        for future in futures:
            future.result()
    assert 40 <= len(answered) < len(keys)
    assert all(reply.status == 201 for reply in answered.values())

    live.server.start()
    sent = [key for key in keys if key in answered]
    unanswered = [key for key in keys if key not in answered]
    for key in unanswered:
        reply = redeem(live.http, office, volunteer_id, key)
        assert reply.status == 201, reply.body
    for key in sent:
        reply = redeem(live.http, office, volunteer_id, key)
        assert reply.status == 201 and reply.replayed
        assert reply.body == answered[key].body
    check_posted_once(live.url, volunteer_id, len(keys))


# -- a paused PostgreSQL -----------------------------------------------------------------

# Smaller bounds than the defaults, so that the pause may be short: a request waits at
# most about connect (2 s) + reply (3 s) for the database.
PAUSE_BOUNDS = {
    "POINTS_DATABASE_CONNECT_SECONDS": "2",
    "POINTS_DATABASE_STATEMENT_SECONDS": "2",
    "POINTS_DATABASE_LOCK_SECONDS": "1",
    "POINTS_DATABASE_REPLY_SECONDS": "3",
    "POINTS_DATABASE_POOL_SECONDS": "2",
    "POINTS_API_RATE_LIMIT_PER_MINUTE": "100000",
}
PAUSE_SECONDS = 15
# What one request may take while the database is paused: its own bound, plus waiting
# for a worker busy with another request's.
ANSWER_WITHIN = 12


@pytest.fixture
def paused_postgres_server(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    with (
        private_cluster() as cluster,
        prepared_database("postgresql", tmp_path, "points_pause", cluster.url) as url,
    ):
        with seeding(url):
            create_district("beijing", "北京市", "city")
            create_district("dongcheng", "东城区", "district", parent="beijing")
            create_district("longtan", "龙潭街道", "street", parent="dongcheng")
            create_provider("barber-wang", "王师傅便民理发", "longtan")
        volunteer_id, office = seed_redeemer(url)
        server = Server(url, environment=PAUSE_BOUNDS, log_path=tmp_path / "gunicorn.log")
        with server:
            yield cluster, server, url, volunteer_id, office


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except (OSError, http.client.HTTPException) as error:
        return error, time.monotonic() - started


@pytest.mark.slow
def test_e2e_paused_postgres_bounded_answers_and_recovery(paused_postgres_server):
    cluster, server, url, volunteer_id, office = paused_postgres_server
    http = Http(server.base, timeout=60)
    balance = f"volunteers/{volunteer_id}/balance"
    for i in range(4):  # warm: every worker holds pooled connections when the pause comes
        assert redeem(http, office, volunteer_id, f"warm-{i}").status == 201
        assert http.get(balance, office).status == 200

    cluster.pause()
    paused_at = time.monotonic()
    results = []
    keys = []
    try:
        round_number = 0
        while time.monotonic() - paused_at < PAUSE_SECONDS:
            key = f"pause-{round_number}"
            keys.append(key)
            calls = [
                ("live", lambda: http.get("health/live")),
                ("ready", lambda: http.get("health/ready")),
                ("read", lambda: http.get(balance, office)),
                ("write", lambda key=key: redeem(http, office, volunteer_id, key)),
            ]
            with ThreadPoolExecutor(len(calls)) as pool:
                futures = [(name, pool.submit(timed, call)) for name, call in calls]
                results.extend((name, *future.result()) for name, future in futures)
            round_number += 1
    finally:
        cluster.resume()

    assert results
    for name, reply, seconds in results:
        assert not isinstance(reply, Exception), (name, reply, server.log())
        assert seconds < ANSWER_WITHIN, (name, seconds)
        if name == "live":
            assert reply.status == 200
            continue
        # A write sent just before the pause may still be answered; none paused may be.
        assert reply.status == 503, (name, reply.status, reply.body)
        assert reply.headers["content-type"] == "application/problem+json"
        assert int(reply.headers["retry-after"]) >= 1
        assert reply.body["status"] == 503

    # Back without a restart of gunicorn: ready again, reads and writes work, and each
    # write that was answered 503 is made once when retried with its key.
    deadline = time.monotonic() + 30
    while http.get("health/ready").status != 200:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    assert http.get(balance, office).status == 200
    for key in keys:
        first = redeem(http, office, volunteer_id, key)
        assert first.status == 201, first.body
        again = redeem(http, office, volunteer_id, key)
        assert again.status == 201 and again.replayed and again.body == first.body
    check_posted_once(url, volunteer_id, 4 + len(keys))
