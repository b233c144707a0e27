"""Operations through gunicorn: metrics summed over workers, rate limits shared by them,
and request logs that keep no secret."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from points.directory import create_district, create_token
from tests.e2e.server import Http, Server, prepared_database, seeding

METRICS_TOKEN = "scrape-me"
ROUTE = "/api/v1/districts/<string:code>"


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def database(tmp_path):
    """A fresh SQLite database with Beijing > Dongcheng and an admin token."""
    with prepared_database("sqlite", tmp_path, "points_ops") as url:
        with seeding(url):
            create_district("beijing", "北京市", "city")
            create_district("dongcheng", "东城区", "district", parent="beijing")
            _, admin = create_token("admin", "beijing", name="ops admin")
        yield url, admin


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    wanted = {f'{key}="{value}"' for key, value in labels.items()}
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and wanted <= set((match[2] or "").split(",")):
            return float(match[3])
    return 0.0


def scrape(http: Http) -> str:
    import urllib.request

    request = urllib.request.Request(
        http.base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


@contextlib.contextmanager
def holding_a_worker(http: Http, path: str, token: str) -> Iterator[list[int]]:
    """Keep one worker busy reading a request that is sent in part, so that the others
    serve the requests made meanwhile; the request is finished on leaving. Yields a list
    that then holds its status."""
    port = int(http.base.rsplit(":", 1)[1])
    status: list[int] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n".encode()
        )
        time.sleep(0.5)  # a worker accepts it and waits for the rest
        yield status
        connection.sendall(b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    status.append(int(answer.split(b" ", 2)[1]))


def served_by(metrics_dir) -> set[str]:
    """The worker pids that wrote counters."""
    return {path.name.split("_")[-1] for path in metrics_dir.glob("counter_*.db")}


def test_e2e_metrics_sum_over_workers(database, tmp_path):
    url, admin = database
    metrics_dir = tmp_path / "metrics"
    environment = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "POINTS_METRICS_TOKEN": METRICS_TOKEN,
    }
    with Server(url, workers=3, environment=environment, log_path=tmp_path / "g.log") as server:
        http = Http(server.base)
        assert http.get("/metrics").status == 401
        with (
            holding_a_worker(http, "/api/v1/districts/dongcheng", admin) as held,
            ThreadPoolExecutor(6) as pool,
        ):
            replies = list(pool.map(lambda _: http.get("districts/dongcheng", admin), range(59)))
        assert [reply.status for reply in replies] + held == [200] * 60
        assert http.get("districts/nowhere", admin).status == 404
        assert len(served_by(metrics_dir)) >= 2, "one worker served every request"
        # Whichever worker answers the scrape, it counts the requests of all of them.
        for _ in range(4):
            text = scrape(http)
            labels = {"route": ROUTE, "method": "GET"}
            assert metric(text, "points_http_requests_total", **labels, status="200") == 60
            assert metric(text, "points_http_requests_total", **labels, status="404") == 1
            assert metric(text, "points_http_request_duration_seconds_count", **labels) == 61
            assert metric(text, "points_db_connections_open") >= 1


@pytest.mark.parametrize("storage", ["default", "redis"])
def test_e2e_rate_limit_holds_across_four_workers(database, tmp_path, storage):
    if storage == "redis" and not redis_reachable():
        pytest.skip("no Redis answers at 127.0.0.1:6379")
    url, admin = database
    limit = 40
    metrics_dir = tmp_path / "metrics"
    environment = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "POINTS_RATELIMIT_ADMIN": f"{limit}/hour",
        # Token ids restart with each test database: keep this run's counts apart.
        "POINTS_RATELIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
    }
    if storage == "redis":
        environment["POINTS_RATELIMIT_STORAGE_URL"] = "redis://127.0.0.1:6379/0"
    with Server(url, workers=4, environment=environment, log_path=tmp_path / "g.log") as server:
        http = Http(server.base)
        with (
            holding_a_worker(http, "/api/v1/districts/dongcheng", admin) as held,
            ThreadPoolExecutor(8) as pool,
        ):
            replies = list(pool.map(lambda _: http.get("districts/dongcheng", admin), range(119)))
        statuses = [reply.status for reply in replies] + held
        assert len(served_by(metrics_dir)) >= 2, "one worker served every request"
        # Counted per worker, four workers would have let up to 4 x 40 through.
        assert statuses.count(200) == limit, server.log()
        assert statuses.count(429) == 120 - limit
        refused = next(reply for reply in replies if reply.status == 429)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.body["title"] == "Too many requests"
        assert refused.body["request_id"] == refused.headers["x-request-id"]
        assert 1 <= int(refused.headers["retry-after"]) <= 3600
        # Health needs no token and is never counted.
        assert http.get("health").status == 200


def test_e2e_request_log_is_json_and_keeps_no_secret(database, tmp_path):
    url, admin = database
    log_path = tmp_path / "gunicorn.log"
    with Server(url, workers=2, log_path=log_path) as server:
        http = Http(server.base)
        assert (
            http.post(
                "districts", admin, {"code": "longtan", "name": "龙潭街道", "parent": "dongcheng"}
            ).status
            == 201
        )
        office = http.post(
            "tokens", admin, {"role": "office", "district": "longtan", "name": "office"}
        ).body["token"]
        kiosk = http.post(
            "tokens", office, {"role": "kiosk", "district": "longtan", "name": "kiosk"}
        ).body["token"]
        phone, pin = "13987654321", "135790"
        volunteer = http.post(
            "volunteers",
            office,
            {"name": "王秀英", "phone": phone, "district": "longtan", "pin": pin},
        ).body
        card = volunteer["card_code"]
        assert (
            http.post("kiosk/sessions", kiosk, {"card_code": card, "pin": "000000"}).status == 422
        )
        session = http.post("kiosk/sessions", kiosk, {"card_code": card, "pin": pin})
        assert session.status == 201
        assert http.get("volunteers/1/balance", "not-a-real-token").status == 401
        reply = http.get(
            f"volunteers/{volunteer['id']}/balance",
            session.body["token"],
            headers={"X-Request-Id": "kiosk-7-0001"},
        )
        assert reply.status == 200 and reply.headers["x-request-id"] == "kiosk-7-0001"
    text = log_path.read_text()
    for secret in (
        phone,
        pin,
        card,
        admin,
        office,
        kiosk,
        session.body["token"],
        "not-a-real-token",
    ):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if '"points.requests"' in line]
    mine = [line for line in lines if line["route"] != "/api/v1/health"]
    assert len(mine) == 8
    assert {"request_id", "method", "route", "status", "latency_ms", "token_id", "role"} <= set(
        mine[-1]
    )
    assert mine[-1]["request_id"] == "kiosk-7-0001" and mine[-1]["role"] == "session"
    assert mine[-1]["route"] == "/api/v1/volunteers/<int:volunteer_id>/balance"
    assert len({line["request_id"] for line in lines}) == len(lines)
