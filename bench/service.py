"""Service records submitted and approved per second, as a ratio to bare ledger earns.

Both are measured in the same run, on the same database, one operation per app context
(as one per request: the policy is resolved once per operation, never per award), with
every built-in plugin enabled and a policy set at three levels of the tree. Rounds of
the two alternate, and the ratio reported is the median over rounds of each round's
ratio: the machine is shared, and a busy spell spoils a few rounds, which the median
ignores, where it would move a best-of-each comparison.

    python bench/service.py                       # SQLite in a temporary folder
    python bench/service.py --pg postgresql://postgres@127.0.0.1/bench_service
    python bench/service.py --ops 300 --rounds 5

Prints ops/s and the ratios, then checks every ledger invariant. The target (>= 0.5 x
bare earn) is for a record submitted and approved in one call, as the approval policy
approves most service (a patrol here): the record, its earn and its minutes. A record
the office approves later is two requests, a submission and an approval; its ratio is
printed for information.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

# Run as a script, bench/ comes first on sys.path, where bench/http.py would shadow the
# standard library's http: put the project root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, make_url, text

from bench import _prepare
from bench._prepare import make_app
from points import ledger
from points.config import database_url
from points.extensions import db
from points.service import approve, record_service
from points.verify import verify

TARGET = 0.5
VOLUNTEERS = 40


def prepare(app) -> list[int]:
    stewards = _prepare.prepare(
        app, VOLUNTEERS, approval={"auto_kinds": ["patrol"], "auto_approve_up_to": 10}
    )
    return [steward.id for steward in stewards]


class Clock:
    """Hands out distinct past start times, so that daily caps never bind."""

    def __init__(self):
        self.n = 0
        self.now = datetime.now(UTC)

    def next(self) -> datetime:
        self.n += 1
        return self.now - timedelta(days=1 + self.n // VOLUNTEERS, minutes=self.n % 600)


def timed(app, ops: int, one) -> float:
    start = time.perf_counter()
    for i in range(ops):
        with app.app_context():
            one(i)
            db.session.remove()
    return ops / (time.perf_counter() - start)


def run(url: str, ops: int, rounds: int) -> dict[str, float]:
    app = make_app(url)
    volunteers = prepare(app)
    clock = Clock()

    def bare(i: int) -> None:
        ledger.earn(
            volunteers[i % VOLUNTEERS], 10, actor="bench", reason="巡查 2 小时 × 5 分 = 10 分"
        )

    def submitted(i: int) -> None:
        record = record_service(
            volunteers[i % VOLUNTEERS], "patrol", clock.next(), 120, actor="bench"
        )
        assert record.status == "approved" and record.points == 10, record

    def queued(i: int) -> None:
        record = record_service(
            volunteers[i % VOLUNTEERS], "visit", clock.next(), 60, {"households": 6}, actor="bench"
        )
        assert record.status == "pending", record
        assert approve(record.id, "bench").points == 12

    rates: dict[str, list[float]] = {"bare": [], "auto": [], "queued": []}
    for one in (bare, submitted, queued):
        timed(app, 5, one)  # warm up: connections, caches, imports
    for _ in range(rounds):
        for name, one in (("bare", bare), ("auto", submitted), ("queued", queued)):
            rates[name].append(timed(app, ops, one))
    with app.app_context():
        ledger.seal()
        report = verify()
        if not report.ok:
            raise SystemExit(f"invariants broken after the run: {report.problems}")
        db.session.remove()
        db.engine.dispose()
    return rates


def empty_postgres(url: str) -> None:
    """Create the database at `url` if it does not exist, and empty its public schema."""
    target = make_url(database_url(url))
    server = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as connection:
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            )
            if not exists:
                name = server.dialect.identifier_preparer.quote(target.database)
                connection.execute(text(f"CREATE DATABASE {name}"))
    finally:
        server.dispose()
    engine = create_engine(target)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="a PostgreSQL URL of a database the bench may empty")
    parser.add_argument("--ops", type=int, default=200, help="operations per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.pg:
        empty_postgres(args.pg)
        url, label = args.pg, "postgresql"
    else:
        folder = tempfile.mkdtemp(prefix="bench-service-")
        url, label = f"sqlite:///{folder}/points.sqlite", "sqlite"
    rates = run(url, args.ops, args.rounds)
    print(f"{label}: {args.rounds} rounds of {args.ops} operations, one app context each")
    print(f"  {'':<28} {'median /s':>10} {'best /s':>9}   median of the rounds' ratios")
    print(f"  {'bare ledger.earn':<28} {median(rates['bare']):10.1f} {max(rates['bare']):9.1f}")
    ratios = {}
    for name, label in (("auto", "record_service, auto-approve"), ("queued", "record + approve")):
        ratios[name] = median(r / b for r, b in zip(rates[name], rates["bare"], strict=True))
        print(
            f"  {label:<28} {median(rates[name]):10.1f} {max(rates[name]):9.1f}"
            f"   {ratios[name]:.2f}"
        )
    ratio = ratios["auto"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"  submitted-and-approved ratio {ratio:.2f} {verdict} the target {TARGET}")
    print("  invariants: OK")


if __name__ == "__main__":
    main()
