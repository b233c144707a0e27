"""The HTTP API under gunicorn: a mixed load's requests/s, p50 and p99, as ratios in one run.

    python bench/http.py [--seconds 4] [--rounds 3] [--clients 4] [--workers 4]
                         [--backends sqlite,postgresql] [--pg-url postgresql://...]

gunicorn runs as the README recommends (sync workers, 4 by default) on a fresh database
of each backend, seeded with a street, 64 volunteers and a one-point catalog item. Client
processes drive a closed loop for a fixed time: the mixed load is 70% balance reads, 20%
service records and 10% redemptions; reads alone and writes alone give the per-kind
ratios. Every write sends a fresh Idempotency-Key and the run fails if any answer was a
replay or an error; the ledger invariants are checked afterwards.

The same server, in the same run, also serves two baselines beside /api/v1:
  /bench/same/...  minimal Flask routes doing the same SQL by calling the same functions
                   (token lookup, scope query, balance or service record or redemption
                   with its idempotency key), without flask-smorest, marshmallow, webargs;
  /bench/raw/...   balance reads only: the exact statements and parameters the API issued
                   for that volunteer, replayed on a pooled DBAPI connection.
Each ratio is API requests/s over baseline requests/s; segments alternate API and
baseline in rounds and the median ratio over rounds is reported (the machine is shared).
Targets: reads >= 0.5, writes >= 0.3 (against /bench/same; raw is for information).
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory would come first on sys.path, and this module
# (http.py) would shadow the standard library's `http` for everything imported after.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

READ_TARGET = 0.5
WRITE_TARGET = 0.3
VOLUNTEERS = 64
FUNDS = 10**9
LOADS = {
    "mixed": {"read": 70, "service": 20, "redeem": 10},
    "reads": {"read": 1},
    "writes": {"service": 2, "redeem": 1},
}
OK = {"read": 200, "service": 201, "redeem": 201}


# -- the server side: the API app plus the baselines -------------------------------------


def bench_app():
    """The Steward Points app with the baseline routes under /bench (gunicorn factory)."""
    from flask import Response, request
    from sqlalchemy import event

    from points.api import idempotency
    from points.app import create_app
    from points.auth import _authenticate, reach_volunteer
    from points.extensions import db
    from points.redemptions import create_redemption
    from points.service import record_service
    from points.volunteers import balance as balance_of

    app = create_app()
    captured: dict[int, list[tuple[str, object]]] = {}

    def answer(body, status: int = 200) -> Response:
        return Response(json.dumps(body, default=str), status, mimetype="application/json")

    @app.get("/bench/same/volunteers/<int:volunteer_id>/balance")
    def same_balance(volunteer_id: int):
        principal = _authenticate(request.headers.get("Authorization", ""))
        reach_volunteer(principal, volunteer_id)
        return answer(balance_of(volunteer_id))

    @app.post("/bench/same/service-records")
    def same_service_record():
        principal = _authenticate(request.headers.get("Authorization", ""))
        body = json.loads(request.get_data())
        reach_volunteer(principal, body["volunteer_id"])
        started_at = datetime.fromisoformat(body["started_at"])

        def work() -> dict:
            record = record_service(
                body["volunteer_id"],
                body["kind"],
                started_at,
                body["minutes"],
                body["details"],
                actor=principal.actor,
            )
            return {"id": record.id, "status": record.status, "points": record.points}

        return idempotency.idempotent(principal, "record_service", body, work, one_write=True)

    @app.post("/bench/same/redemptions")
    def same_redemption():
        principal = _authenticate(request.headers.get("Authorization", ""))
        body = json.loads(request.get_data())
        reach_volunteer(principal, body["volunteer_id"])

        def work() -> dict:
            made = create_redemption(body["volunteer_id"], body["sku"], actor=principal.actor)
            return {"id": made.id, "status": made.status, "voucher_code": made.voucher_code}

        return idempotency.idempotent(principal, "redeem", body, work)

    @app.get("/bench/raw/volunteers/<int:volunteer_id>/balance")
    def raw_balance(volunteer_id: int):
        statements = captured.get(volunteer_id)
        if statements is None:
            statements = captured[volunteer_id] = _capture(volunteer_id)
        connection = db.engine.raw_connection()
        try:
            cursor = connection.cursor()
            rows = []
            for statement, parameters in statements:
                cursor.execute(statement, parameters)
                if cursor.description:
                    rows.append(cursor.fetchall())
            connection.rollback()
        finally:
            connection.close()
        return answer(rows)

    def _capture(volunteer_id: int) -> list[tuple[str, object]]:
        """The statements and parameters the API issues for this volunteer's balance."""
        seen: list[tuple[str, object]] = []

        def record(_conn, _cursor, statement, parameters, _context, _many):
            seen.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", record)
        try:
            reply = app.test_client().get(
                f"/api/v1/volunteers/{volunteer_id}/balance",
                headers={"Authorization": request.headers.get("Authorization", "")},
            )
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        if reply.status_code != 200:
            raise RuntimeError(f"capturing the balance read failed: {reply.status_code}")
        return seen

    return app


# -- the database ------------------------------------------------------------------------


@dataclass
class Seed:
    """What the clients need: the office token and the volunteers' ids."""

    token: str
    volunteers: list[int]


def seed(url: str) -> Seed:
    """A street with a community, 64 funded volunteers, a one-point item, an office token."""
    from points import ledger
    from points.directory import create_district, create_provider, create_token, register_volunteer
    from points.policy import set_policy
    from tests.e2e.server import seeding

    with seeding(url):
        create_district("bench-city", "Bench city", "city")
        create_district("bench-street", "Bench street", "street", parent="bench-city")
        create_district("bench-community", "Bench community", "community", parent="bench-street")
        create_provider("bench-barber", "Bench barber", "bench-street")
        set_policy(
            "bench-street",
            "catalog",
            {
                "items": {
                    "token": {
                        "names": {"zh-CN": "纪念品", "en": "token gift"},
                        "cost": 1,
                        "provider": "bench-barber",
                    }
                }
            },
            author="bench",
            effective_from=datetime.now(UTC) - timedelta(days=1),
        )
        volunteers = []
        for number in range(VOLUNTEERS):
            volunteer = register_volunteer(f"volunteer {number}", "bench-community", "204857")
            ledger.earn(volunteer.id, FUNDS, actor="bench", reason="bench funds")
            volunteers.append(volunteer.id)
        _, token = create_token("office", "bench-street", name="bench office")
    return Seed(token, volunteers)


def check_ledger(url: str) -> list[str]:
    """Every broken invariant after the run (none expected)."""
    from points import ledger
    from points.verify import verify
    from tests.e2e.server import seeding

    with seeding(url):
        ledger.seal()
        report = verify()
        return [f"[{p.check}] {p.message}" for p in report.problems]


# -- the clients -------------------------------------------------------------------------


def _request(port: int, target: str, kind: str, token: str, volunteer: int, rng) -> tuple:
    """One request; returns (status, replayed)."""
    prefix = "/api/v1" if target == "api" else f"/bench/{target}"
    headers = {"Authorization": f"Bearer {token}"}
    body = None
    if kind == "read":
        method, path = "GET", f"{prefix}/volunteers/{volunteer}/balance"
    else:
        method = "POST"
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = str(uuid.uuid4())
        if kind == "service":
            path = f"{prefix}/service-records"
            started = datetime.now(UTC) - timedelta(minutes=rng.randrange(60, 60 * 24 * 20))
            body = {
                "volunteer_id": volunteer,
                "kind": "patrol",
                "started_at": started.isoformat(),
                "minutes": 60,
                "details": {},
            }
        else:
            path = f"{prefix}/redemptions"
            body = {"volunteer_id": volunteer, "sku": "token"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, json.dumps(body) if body else None, headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("Idempotent-Replayed") == "true"
    finally:
        connection.close()


def _client(port, target, load, token, volunteers, start_at, seconds, seed_, results):
    rng = random.Random(seed_)
    kinds, weights = zip(*LOADS[load].items(), strict=True)
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    errors: list[str] = []
    replays = 0
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    while True:
        kind = rng.choices(kinds, weights)[0]
        began = time.perf_counter()
        status, replayed = _request(port, target, kind, token, rng.choice(volunteers), rng)
        took = time.perf_counter() - began
        if time.time() > end:
            break
        if status != OK[kind]:
            errors.append(f"{target} {kind}: HTTP {status}")
        else:
            latencies[kind].append(took)
        replays += replayed
    results.put((latencies, errors, replays))


@dataclass
class Segment:
    """One timed run of one load against one target."""

    target: str
    load: str
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    replays: int = 0

    def rate(self, kind: str | None = None) -> float:
        if kind is None:
            return sum(len(v) for v in self.latencies.values()) / self.seconds
        return len(self.latencies.get(kind, [])) / self.seconds

    def all_latencies(self) -> list[float]:
        return sorted(x for values in self.latencies.values() for x in values)


def run_segment(port, target, load, seed_: Seed, clients: int, seconds: float) -> Segment:
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.3
    processes = [
        context.Process(
            target=_client,
            args=(port, target, load, seed_.token, seed_.volunteers, start_at, seconds, i, results),
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    segment = Segment(target, load, seconds)
    for _ in processes:
        latencies, errors, replays = results.get(timeout=seconds + 120)
        for kind, values in latencies.items():
            segment.latencies.setdefault(kind, []).extend(values)
        segment.errors.extend(errors)
        segment.replays += replays
    for process in processes:
        process.join()
    return segment


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- one backend -------------------------------------------------------------------------


def bench_backend(backend: str, args) -> dict:
    from tests.e2e.server import Server, prepared_database

    with (
        tempfile.TemporaryDirectory() as directory,
        prepared_database(
            backend, Path(directory), "points_bench_http", server_url=args.pg_url
        ) as url,
    ):
        seeded = seed(url)
        server = Server(
            url,
            workers=args.workers,
            app="bench.http:bench_app()",
            environment={"POINTS_API_RATE_LIMIT_PER_MINUTE": "1000000000"},
            log_path=Path(directory) / "gunicorn.log",
        )
        with server:
            targets = {
                "mixed": ("api", "same"),
                "reads": ("api", "same", "raw"),
                "writes": ("api", "same"),
            }
            for load, names in targets.items():  # warm up: connections, imports, captures
                for target in names:
                    run_segment(server.port, target, load, seeded, args.clients, 0.5)
            segments: list[Segment] = []
            for round_ in range(args.rounds):
                for load, names in targets.items():
                    order = names if round_ % 2 == 0 else tuple(reversed(names))
                    for target in order:
                        segments.append(
                            run_segment(
                                server.port, target, load, seeded, args.clients, args.seconds
                            )
                        )
        problems = check_ledger(url)
    errors = [e for s in segments for e in s.errors]
    replays = sum(s.replays for s in segments)
    return {"segments": segments, "errors": errors, "replays": replays, "problems": problems}


def ratio(segments: list[Segment], load: str, baseline: str, kind: str | None = None) -> float:
    """Median over rounds of API requests/s over baseline requests/s."""
    api = [s for s in segments if s.load == load and s.target == "api"]
    base = [s for s in segments if s.load == load and s.target == baseline]
    return statistics.median(a.rate(kind) / b.rate(kind) for a, b in zip(api, base, strict=True))


def report(backend: str, result: dict) -> bool:
    segments = result["segments"]
    print(f"\n== {backend} ==")
    print(f"{'load':7} {'target':6} {'kind':8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for load in LOADS:
        for target in ("api", "same", "raw"):
            chosen = [s for s in segments if s.load == load and s.target == target]
            if not chosen:
                continue
            seconds = sum(s.seconds for s in chosen)
            kinds = [None, *LOADS[load]] if len(LOADS[load]) > 1 else [None]
            for kind in kinds:
                values = sorted(
                    x
                    for s in chosen
                    for x in (s.all_latencies() if kind is None else s.latencies.get(kind, []))
                )
                print(
                    f"{load:7} {target:6} {kind or 'all':8} {len(values) / seconds:8.1f} "
                    f"{percentile(values, 0.5) * 1000:8.1f} {percentile(values, 0.99) * 1000:8.1f}"
                )
    reads = ratio(segments, "reads", "same")
    reads_raw = ratio(segments, "reads", "raw")
    writes = ratio(segments, "writes", "same")
    mixed = ratio(segments, "mixed", "same")
    print(f"ratio reads  api/same {reads:.2f} (target {READ_TARGET})   api/raw {reads_raw:.2f}")
    print(f"ratio writes api/same {writes:.2f} (target {WRITE_TARGET})")
    print(f"ratio mixed  api/same {mixed:.2f}")
    ok = True
    if result["errors"]:
        print(f"ERRORS: {len(result['errors'])}, e.g. {result['errors'][:5]}")
        ok = False
    if result["replays"]:
        print(f"REPLAYS: {result['replays']} answers were replays; every key was fresh")
        ok = False
    if result["problems"]:
        print(f"LEDGER BROKEN: {result['problems']}")
        ok = False
    else:
        print("ledger verified: every invariant holds after the run")
    if reads < READ_TARGET or writes < WRITE_TARGET:
        print("below target")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per segment")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "POINTS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres"
        ),
        help="a PostgreSQL server to create the benchmark's own database on",
    )
    args = parser.parse_args()
    ok = True
    for backend in args.backends.split(","):
        print(
            f"{backend}: {args.workers} sync workers, {args.clients} clients, "
            f"{args.rounds} rounds of {args.seconds}s per load and target",
            flush=True,
        )
        ok = report(backend, bench_backend(backend, args)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
