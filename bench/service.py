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
    python bench/service.py --budget              # also with budgets far from exhausted

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
from bench._prepare import LONG_AGO, make_app
from points import ledger
from points.config import database_url
from points.directory import create_district, register_volunteer
from points.extensions import db
from points.policy import set_policy
from points.service import approve, record_service
from points.verify import verify

TARGET = 0.5
BUDGET_TARGET = 0.8
VOLUNTEERS = 40


def prepare(app) -> tuple[list[int], list[int]]:
    """The stewards of the bench's community, and those of a second street whose street
    and community each set a budget far from exhausted (the same policy otherwise)."""
    approval = {"auto_kinds": ["patrol"], "auto_approve_up_to": 10}
    ids = [steward.id for steward in _prepare.prepare(app, VOLUNTEERS, approval=approval)]
    with app.app_context():
        create_district("bench-street-b", "左安门街道", "street", parent="bench-district")
        create_district("bench-community-b", "西革新里社区", "community", parent="bench-street-b")
        for plugin, config in (
            ("approval", approval),
            ("steward", {"patrol": {"points_per_hour": 5}}),
        ):
            set_policy("bench-street-b", plugin, config, author="bench", effective_from=LONG_AGO)
        for node in ("bench-street-b", "bench-community-b"):
            set_policy(
                node,
                "budget",
                {"points": 1_000_000_000, "period": "year", "overflow": "clip"},
                author="bench",
                effective_from=LONG_AGO,
            )
        budgeted = [
            register_volunteer(f"预算志愿者{i}", "bench-community-b", f"{200000 + i}").id
            for i in range(VOLUNTEERS)
        ]
        db.session.remove()
        return ids, budgeted


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


def run(url: str, ops: int, rounds: int, budget: bool = False) -> dict[str, list[float]]:
    app = make_app(url)
    volunteers, budgeted = prepare(app)
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

    def under_budget(i: int) -> None:
        record = record_service(
            budgeted[i % VOLUNTEERS], "patrol", clock.next(), 120, actor="bench"
        )
        assert record.status == "approved" and record.points == 10, record

    kinds = [("bare", bare), ("auto", submitted), ("queued", queued)]
    if budget:
        kinds.append(("budget", under_budget))
    rates: dict[str, list[float]] = {name: [] for name, _ in kinds}
    for _, one in kinds:
        timed(app, 5, one)  # warm up: connections, caches, imports
    for _ in range(rounds):
        for name, one in kinds:
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
    parser.add_argument(
        "--budget", action="store_true", help="also time records under budgets, same rounds"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.pg:
        empty_postgres(args.pg)
        url, label = args.pg, "postgresql"
    else:
        folder = tempfile.mkdtemp(prefix="bench-service-")
        url, label = f"sqlite:///{folder}/points.sqlite", "sqlite"
    rates = run(url, args.ops, args.rounds, args.budget)
    print(f"{label}: {args.rounds} rounds of {args.ops} operations, one app context each")
    print(f"  {'':<28} {'median /s':>10} {'best /s':>9}   median of the rounds' ratios")
    print(f"  {'bare ledger.earn':<28} {median(rates['bare']):10.1f} {max(rates['bare']):9.1f}")
    ratios = {}
    shown = [("auto", "record_service, auto-approve"), ("queued", "record + approve")]
    if args.budget:
        shown.append(("budget", "auto-approve under budgets"))
    for name, label in shown:
        ratios[name] = median(r / b for r, b in zip(rates[name], rates["bare"], strict=True))
        print(
            f"  {label:<28} {median(rates[name]):10.1f} {max(rates[name]):9.1f}"
            f"   {ratios[name]:.2f}"
        )
    ratio = ratios["auto"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"  submitted-and-approved ratio {ratio:.2f} {verdict} the target {TARGET}")
    if args.budget:
        share = ratios["budget"] / ratio
        verdict = "meets" if share >= BUDGET_TARGET else "MISSES"
        print(
            f"  with budgets: ratio {ratios['budget']:.2f}, {share:.2f} of the ratio without"
            f" them, {verdict} the target {BUDGET_TARGET}"
        )
    print("  invariants: OK")


if __name__ == "__main__":
    main()
