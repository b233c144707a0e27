"""Exports in constant memory: a node's entries at 10,000 and at 1,000,000, same run.

    python bench/exports.py [--small 10000] [--large 1000000]
                            [--backends sqlite,postgresql] [--pg-url postgresql://...]

One database per backend holds two communities: `small` with --small entries (two
postings each) and `large` with --large, written in bulk (the bench measures reading
them). Each export runs in a fresh process, so that its peak resident memory
(ru_maxrss) is its own: CSV (streamed) and XLSX (XlsxWriter's constant-memory mode).

Printed per backend and format: rows, seconds, rows/s, peak RSS. Target (issue 15): the
large export's peak RSS within 1.5 times the small one's (it reads 100 times the rows;
a list of them would need hundreds of MB).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402

TARGET = 1.5
BATCH = 20_000


def _fill(code: str, count: int) -> None:
    """`count` earn entries of one volunteer of the node, with their two postings."""
    from sqlalchemy import insert, select

    from points import directory, ledger
    from points.extensions import db
    from points.models import Account, District, Entry, Posting

    district_id = db.session.scalar(select(District.id).where(District.code == code))
    volunteer = directory.register_volunteer("王秀英", code, "204857")
    first = ledger.earn(volunteer.id, 1, actor="bench", reason="seed")
    accounts = db.session.execute(
        select(Posting.account_id, Posting.amount).where(Posting.entry_id == first.id)
    ).all()
    volunteer_account = next(a for a, amount in accounts if amount > 0)
    other = next(a for a, amount in accounts if amount < 0)
    assert db.session.get(Account, volunteer_account).volunteer_id == volunteer.id
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for offset in range(0, count, BATCH):
        numbers = range(offset, min(offset + BATCH, count))

        def work(numbers=numbers) -> None:
            ids = db.session.scalars(
                insert(Entry).returning(Entry.id),
                [
                    {
                        "district_id": district_id,
                        "kind": "earn",
                        "effective_at": start + timedelta(seconds=n * 20),
                        "created_at": start + timedelta(seconds=n * 20),
                        "actor": "bench",
                        "reason": "每日巡 1 小时 = 5 分 / patrol",
                        "plugin": "steward",
                        "rule": "patrol-hours",
                        "hash": "0" * 64,
                    }
                    for n in numbers
                ],
            ).all()
            db.session.execute(
                insert(Posting),
                [
                    {
                        "entry_id": entry_id,
                        "district_id": district_id,
                        "account_id": account,
                        "amount": amount,
                    }
                    for entry_id in ids
                    for account, amount in ((volunteer_account, 5), (other, -5))
                ],
            )

        ledger.atomic(work)


def _export(url: str, code: str, file_format: str, queue) -> None:
    """In a process of its own: export the node's entries; report rows, time, peak RSS."""
    import resource

    os.environ["POINTS_DATABASE_URL"] = url
    from points.app import create_app

    app = create_app()
    with app.app_context():
        from points import exports
        from points.auth import Principal
        from points.policy import district_info

        node = district_info(code)
        clerk = Principal(0, "office", node.id, node.path, name="bench")
        started = time.perf_counter()
        export = exports.prepare(clerk, "entries", district=code)
        if file_format == "csv":
            size = 0
            with open(os.devnull, "wb") as sink:
                for chunk in exports.csv_chunks(export):
                    size += len(chunk)
                    sink.write(chunk)
            rows = None
        else:
            with tempfile.TemporaryDirectory() as directory:
                rows = exports.write_xlsx(export, str(Path(directory) / "entries.xlsx"))
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MB on Linux
        queue.put((rows, seconds, peak))


def run_backend(backend: str, args) -> dict[str, float]:
    from points.directory import create_district
    from tests.e2e.server import prepared_database, seeding

    ratios = {}
    with (
        tempfile.TemporaryDirectory() as directory,
        prepared_database(backend, Path(directory), "points_bench_exports", args.pg_url) as url,
    ):
        with seeding(url):
            create_district("city", "城市", "city")
            create_district("street", "街道", "street", parent="city")
            for code, count in (("small", args.small), ("large", args.large)):
                create_district(code, code, "community", parent="street")
                started = time.perf_counter()
                _fill(code, count)
                took = time.perf_counter() - started
                print(f"  {backend}: {count} entries in {code} ({took:.0f} s)")
            from sqlalchemy import text

            from points.extensions import db

            if db.engine.dialect.name == "postgresql":
                db.session.commit()
                db.session.execute(text("ANALYZE"))
                db.session.commit()
        context = multiprocessing.get_context("spawn")
        for file_format in ("csv", "xlsx"):
            peaks = {}
            for code, count in (("small", args.small), ("large", args.large)):
                queue = context.Queue()
                process = context.Process(target=_export, args=(url, code, file_format, queue))
                process.start()
                rows, seconds, peak = queue.get()
                process.join()
                if process.exitcode != 0:
                    raise SystemExit(f"the {file_format} export of {code} failed")
                postings = 2 * (count + 1)
                if rows is not None and rows != postings:
                    raise SystemExit(f"{code}: {rows} rows, not {postings}")
                peaks[code] = peak
                print(
                    f"  {backend} {file_format} {code}: {postings} rows in {seconds:.1f} s "
                    f"({postings / seconds:,.0f} rows/s), peak RSS {peak:.0f} MB"
                )
            ratios[file_format] = peaks["large"] / peaks["small"]
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
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
        for file_format, ratio in run_backend(backend, args).items():
            verdict = "ok" if ratio <= TARGET else f"ABOVE {TARGET}"
            print(f"{backend} {file_format}: peak RSS large/small {ratio:.2f} ({verdict})")
            failed |= ratio > TARGET
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
