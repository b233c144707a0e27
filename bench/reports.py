"""A node's monthly report as its history grows: 10,000 entries against 1,000,000.

    python bench/reports.py [--small 10000] [--large 1000000] [--seconds 4] [--rounds 3]
                            [--backends sqlite,postgresql] [--pg-url postgresql://...]

One database per backend holds two communities, `small` with --small earn entries and
`large` with --large, spread over the months before the report's (written in bulk, as in
bench/exports.py), plus the same 500 entries in the reported month in each. The bench
times `points.reports.report` for that month of each node in a loop, in rounds, and
prints reports/s and the ratio large/small. Target (issue 15): at least 0.5. Reports read
the ledger hours (points.rollups), so the large node's history costs it little.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
sys.path.append(_HERE)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

from exports import _fill  # noqa: E402

TARGET = 0.5
MONTH = "2026-11"


def _rate(code: str, seconds: float) -> float:
    from points import reports
    from points.policy import district_info

    node = district_info(code)
    start, end = reports.month_bounds(MONTH, node.timezone)
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        found = reports.report(node.id, start, end)
        assert found.balances
        done += 1
    return done / (time.perf_counter() - began)


def run_backend(backend: str, args) -> float:
    from points import ledger
    from points.app import create_app
    from points.directory import create_district
    from points.extensions import db
    from tests.e2e.server import prepared_database, seeding

    with (
        tempfile.TemporaryDirectory() as directory,
        prepared_database(backend, Path(directory), "points_bench_reports", args.pg_url) as url,
    ):
        with seeding(url):
            create_district("city", "城市", "city")
            create_district("street", "街道", "street", parent="city")
            for code, count in (("small", args.small), ("large", args.large)):
                create_district(code, code, "community", parent="street")
                started = time.perf_counter()
                _fill(code, count)  # one entry every 20 s from 2026-01-01: before November
                from points.models import Volunteer

                volunteer = db.session.query(Volunteer.id).filter_by(name="王秀英").all()[-1][0]
                for n in range(500):
                    ledger.earn(
                        volunteer,
                        5,
                        actor="bench",
                        reason="patrol",
                        effective_at=datetime(2026, 11, 1 + n % 28, 9, tzinfo=UTC),
                    )
                took = time.perf_counter() - started
                print(f"  {backend}: {count} entries in {code} ({took:.0f} s)")
            if db.engine.dialect.name == "postgresql":
                from sqlalchemy import text

                db.session.commit()
                db.session.execute(text("ANALYZE"))
                db.session.commit()
        os.environ["POINTS_DATABASE_URL"] = url
        app = create_app()
        ratios = []
        with app.app_context():
            for round_ in range(args.rounds):
                small = _rate("small", args.seconds)
                large = _rate("large", args.seconds)
                ratios.append(large / small)
                print(
                    f"  {backend} round {round_ + 1}: small {small:.1f}/s, large {large:.1f}/s, "
                    f"ratio {large / small:.2f}"
                )
            db.session.remove()
            db.engine.dispose()
        return statistics.median(ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("POINTS_TEST_DATABASE_URL"))
    args = parser.parse_args()
    failed = False
    for backend in args.backends.split(","):
        if backend == "postgresql" and not args.pg_url:
            print("postgresql: skipped (no --pg-url or POINTS_TEST_DATABASE_URL)")
            continue
        ratio = run_backend(backend, args)
        verdict = "ok" if ratio >= TARGET else f"BELOW {TARGET}"
        print(f"{backend} monthly report: large/small {ratio:.2f} ({verdict})")
        failed |= ratio < TARGET
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
