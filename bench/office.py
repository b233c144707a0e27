"""The office console as its node grows: a small node against one 100 times larger.

    python bench/office.py [--small 1000] [--large 100000] [--seconds 4] [--rounds 3]
                           [--clients 4] [--workers 4] [--backends sqlite,postgresql]
                           [--pg-url postgresql://...]

One database per backend holds two communities: `small` with --small volunteers and as
many pending service records, `large` with --large of each (written in bulk: the bench
measures reading them). An office account signs in to each. gunicorn (sync workers, as
the README runs it) serves both; client processes drive a closed loop against one URL at
a time, the small node's then the large node's, in rounds:

  volunteer search   GET /office/volunteers?q=<the start of a name>  (10 names match)
  volunteer list     GET /office/volunteers                          (the first 50)
  approval queue     GET /office/queue                               (the first page)
  audit log          GET /office/audit                               (the first page)

Each ratio is the large node's requests/s over the small node's; the median over rounds
is reported (the machine is shared). Target (issue 14): at least 0.5, which a query
that scans the node instead of using an index cannot reach at 100 times the rows.
Every answer must be 200, or the run fails.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
sys.path.insert(0, _HERE)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

from pages import _browse, _csrf, measure  # noqa: E402

TARGET = 0.5
PASSWORD = "bench-lantern-harbour"
BATCH = 5000


def _fill(node_code: str, count: int) -> None:
    """`count` volunteers with accounts and as many pending records in the node, in bulk
    (as an import would write them; the bench measures reading)."""
    from sqlalchemy import insert, select

    from points import ledger
    from points.directory import new_card_code
    from points.extensions import db
    from points.models import Account, District, ServiceRecord, Volunteer, utcnow

    district_id = db.session.scalar(select(District.id).where(District.code == node_code))
    now = utcnow()
    started = datetime(2026, 11, 1, 8, tzinfo=UTC)
    for first in range(0, count, BATCH):
        numbers = range(first, min(first + BATCH, count))

        def work(numbers=numbers) -> None:
            ids = db.session.scalars(
                insert(Volunteer).returning(Volunteer.id),
                [
                    {
                        "district_id": district_id,
                        "name": f"志愿者{n:06d}",
                        "phone": f"1{district_id:02d}{n:08d}",
                        "card_code": new_card_code(),
                        "pin_hash": "bench",
                        "status": "active",
                        "failed_pins": 0,
                        "service_minutes": 0,
                        "created_at": now,
                    }
                    for n in numbers
                ],
            ).all()
            db.session.execute(
                insert(Account),
                [
                    {
                        "district_id": district_id,
                        "kind": "volunteer",
                        "volunteer_id": volunteer_id,
                        "balance": 0,
                        "held": 0,
                        "status": "open",
                        "created_at": now,
                    }
                    for volunteer_id in ids
                ],
            )
            db.session.execute(
                insert(ServiceRecord),
                [
                    {
                        "district_id": district_id,
                        "volunteer_id": volunteer_id,
                        "kind": "patrol",
                        "started_at": started + timedelta(minutes=n),
                        "minutes": 60,
                        "details": {"route": "bench"},
                        "status": "pending",
                        "submitted_by": "bench",
                        "created_at": now,
                        "points": 0,
                        "queue_reason": "bench",
                    }
                    for n, volunteer_id in zip(numbers, ids, strict=True)
                ],
            )

        ledger.atomic(work)


def _analyse() -> None:
    """Refresh PostgreSQL's statistics after the bulk load. Autovacuum does it within a
    minute of a large write; measured at once, the planner would still think the tables
    empty and sort the whole node instead of reading the first page off an index."""
    from sqlalchemy import text

    from points.extensions import db

    if db.engine.dialect.name == "postgresql":
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()


def _sign_in(port: int, username: str) -> str:
    jar: dict[str, str] = {}
    _, page = _browse(port, jar, "GET", "/office/sign-in")
    status, _ = _browse(
        port,
        jar,
        "POST",
        "/office/sign-in",
        {"csrf_token": _csrf(page), "username": username, "password": PASSWORD},
    )
    if status != 302:
        raise SystemExit(f"sign-in of {username} answered {status}")
    return "; ".join(f"{k}={v}" for k, v in jar.items())


def _status(port: int, path: str, cookie: str) -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path, headers={"Cookie": cookie})
    response = connection.getresponse()
    response.read()
    return response.status


def run_backend(backend: str, args) -> dict[str, float]:
    from points import staff
    from points.directory import create_district
    from tests.e2e.server import Server, prepared_database, seeding

    with (
        tempfile.TemporaryDirectory() as directory,
        prepared_database(backend, Path(directory), "points_bench_office", args.pg_url) as url,
    ):
        with seeding(url):
            create_district("city", "城市", "city")
            create_district("street", "街道", "street", parent="city")
            for code, count in (("small", args.small), ("large", args.large)):
                create_district(code, code, "community", parent="street")
                started = time.perf_counter()
                _fill(code, count)
                print(
                    f"  {backend}: {count} volunteers and records in {code} "
                    f"({time.perf_counter() - started:.0f} s)"
                )
                staff.create_staff(f"clerk-{code}", code, "office", code, PASSWORD)
            _analyse()
        environment = {"POINTS_API_RATE_LIMIT_PER_MINUTE": "0"}
        with Server(url, workers=args.workers, environment=environment) as server:
            cookies = {code: _sign_in(server.port, f"clerk-{code}") for code in ("small", "large")}
            prefix = urllib.parse.quote("志愿者00012")
            paths = {
                "volunteer search": f"/office/volunteers?q={prefix}",
                "volunteer list": "/office/volunteers",
                "approval queue": "/office/queue",
                "audit log": "/office/audit",
            }
            for path in paths.values():
                if (status := _status(server.port, path, cookies["small"])) != 200:
                    raise SystemExit(f"{path} answered {status}")
            ratios: dict[str, list[float]] = {name: [] for name in paths}
            for round_ in range(args.rounds):
                for name, path in paths.items():
                    rate = {
                        code: measure(
                            server.port, path, {"Cookie": cookies[code]}, args.seconds, args.clients
                        )
                        for code in ("small", "large")
                    }
                    ratios[name].append(rate["large"] / rate["small"])
                    print(
                        f"  {backend} round {round_ + 1} {name}: small {rate['small']:.0f}/s, "
                        f"large {rate['large']:.0f}/s, ratio {rate['large'] / rate['small']:.2f}"
                    )
            return {name: statistics.median(values) for name, values in ratios.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=4.0, help="per segment")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("POINTS_TEST_DATABASE_URL"),
        help="a PostgreSQL server to create a private database on",
    )
    args = parser.parse_args()
    failed = False
    for backend in args.backends.split(","):
        if backend == "postgresql" and not args.pg_url:
            print("postgresql: skipped (no --pg-url or POINTS_TEST_DATABASE_URL)")
            continue
        for name, ratio in run_backend(backend, args).items():
            verdict = "ok" if ratio >= TARGET else f"BELOW {TARGET}"
            print(f"{backend} {name}: large/small {ratio:.2f} ({verdict})")
            failed |= ratio < TARGET
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
