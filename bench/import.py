"""Paper records imported per second, against the same records submitted one by one.

Both are measured in the same run, on databases prepared alike (every built-in plugin,
a policy at three levels, as bench/service.py), in 5 rounds that alternate them, each
on a fifth of the stewards: a CSV of a fifth of `--rows` service records of a year
(patrols, visits and check-ins, in random order) goes through `points import records`'s
code path (staging, service order, `record_past_service` a volunteer at a time), and the
first fifth of `--one-by-one` of the same records through `service.record_service`, one
call each in its own app context (as one per request). The figure is the median of the
rounds' ratios (target >= 5): the machine is shared, and a busy spell spoils a round,
not the comparison.

The peak RSS of an import of 10,000 and of `--rows` rows is measured in child processes
(each imports into a fresh database), to show it stays flat as the file grows.

    python bench/import.py                          # SQLite in a temporary folder
    python bench/import.py --pg postgresql://postgres@127.0.0.1/bench_import
    python bench/import.py --rows 20000 --one-by-one 1000

Prints the rates, the ratio, an estimate for a year of a 2,000-steward district (1.4
million records), the peak RSS, then checks every ledger invariant.
"""

from __future__ import annotations

import argparse
import csv
import logging
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, make_url, text

from bench import _prepare
from bench._prepare import make_app
from points.config import database_url
from points.extensions import db
from points.service import record_service
from points.verify import verify

TARGET = 5.0
ROUNDS = 5
DISTRICT_YEAR = 1_400_000


def prepare(app, volunteers: int) -> list[str]:
    """The tree, the policies, and the stewards; return their card codes."""
    return [steward.card_code for steward in _prepare.prepare(app, volunteers)]


def write_csv(path: Path, cards: list[str], rows: int, seed: int = 7) -> None:
    """A year of paper records in random order: patrols, visits and daily check-ins."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(days=370)
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["volunteer", "kind", "date", "minutes", "details.households"])
        lines = []
        for n in range(rows):
            card = cards[n % len(cards)]
            # Each steward's n-th record on its own day and minute: no two check-ins of
            # one steward share a day.
            k = n // len(cards)
            when = start + timedelta(days=k % 365, minutes=(k // 365) * 7 + 1)
            stamp = when.strftime("%Y-%m-%d %H:%M")
            choice = n % 3 if k < 365 else n % 2
            if choice == 0:
                lines.append([card, "patrol", stamp, rng.choice([30, 60, 90, 120]), ""])
            elif choice == 1:
                lines.append([card, "visit", stamp, rng.choice([20, 40]), rng.randint(1, 6)])
            else:
                lines.append([card, "checkin", when.strftime("%Y-%m-%d"), "", ""])
        rng.shuffle(lines)
        writer.writerows(lines)


def import_file(app, path: Path) -> tuple[float, int]:
    """Import the CSV as `points import records` does; return (rows/s, rows posted)."""
    from points import imports
    from points.policy import district_info

    with app.app_context():
        node = district_info("bench-street")

        def opener():
            return path.open("rb")

        started = time.perf_counter()
        run = imports.run_file(node, "records", path.name, opener, actor="bench")
        elapsed = time.perf_counter() - started
        assert run.refused == 0, imports.problems_of(run.id, limit=5)[0].reason
        return run.rows_total / elapsed, run.posted


def one_by_one(app, path: Path, count: int) -> float:
    """The first `count` rows of the CSV through record_service, one call each."""
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from points.models import Volunteer

    zone = ZoneInfo("Asia/Shanghai")
    with path.open(encoding="utf-8") as file:
        rows = list(csv.DictReader(file))[:count]
    with app.app_context():
        ids = dict(db.session.execute(select(Volunteer.card_code, Volunteer.id)).all())
    calls = []
    for row in rows:
        text_ = row["date"]
        when = (
            datetime.strptime(text_, "%Y-%m-%d %H:%M")
            if " " in text_
            else datetime.strptime(text_, "%Y-%m-%d").replace(hour=12)
        ).replace(tzinfo=zone)
        details = {"households": int(row["details.households"])} if row["kind"] == "visit" else {}
        minutes = int(row["minutes"]) if row["minutes"] else None
        calls.append((ids[row["volunteer"]], row["kind"], when, minutes, details))
    started = time.perf_counter()
    for volunteer_id, kind, when, minutes, details in calls:
        with app.app_context():
            record_service(volunteer_id, kind, when, minutes, details, actor="bench")
            db.session.remove()
    return count / (time.perf_counter() - started)


def roster_seconds(app, folder: Path, stewards: int) -> float:
    """Seconds to import a roster of `stewards` without PINs (each gets an activation
    code, hashed in a process pool), as `points import roster` does."""
    from points import imports
    from points.policy import district_info

    path = folder / "roster.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["reference", "name", "phone", "node"])
        for n in range(stewards):
            writer.writerow([f"R-{n:05d}", f"管家{n}", f"139{n:08d}", "bench-community"])
    with app.app_context():
        node = district_info("bench-street")

        def opener():
            return path.open("rb")

        started = time.perf_counter()
        registered: list = []
        run = imports.run_file(
            node, "roster", path.name, opener, actor="bench", registered=registered
        )
        elapsed = time.perf_counter() - started
        assert run.posted == stewards and all(r.code for r in registered), run.refused
        return elapsed


def fresh_database(base: str | None, folder: Path, name: str) -> str:
    if base is None:
        return f"sqlite:///{folder / name}.sqlite"
    url = make_url(database_url(base))
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    db_name = f"{url.database}_{name}"
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{db_name}"'))
        connection.execute(text(f'CREATE DATABASE "{db_name}"'))
    engine.dispose()
    return url.set(database=db_name).render_as_string(hide_password=False)


def child_rss(url: str, path: Path) -> tuple[int, int]:
    """Peak RSS (KiB) of a child process that only imports the CSV at `path` into the
    prepared database at `url`: before the import (the app loaded) and after it."""
    command = [sys.executable, __file__, "--child-url", url, "--child-csv", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    before, after = done.stdout.strip().splitlines()[-2:]
    return int(before), int(after)


def child(url: str, path: Path) -> None:
    app = make_app(url)
    with app.app_context():
        pass
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    import_file(app, path)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def rss_at(pg: str | None, folder: Path, rows: int, volunteers: int) -> tuple[int, int]:
    """Prepare a fresh database and a CSV of `rows` rows here, then measure a child."""
    url = fresh_database(pg, folder, f"rss{rows}")
    cards = prepare(make_app(url), volunteers)
    path = folder / f"rss{rows}.csv"
    write_csv(path, cards, rows)
    return child_rss(url, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", help="PostgreSQL URL (a database of that name is recreated)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--volunteers", type=int, default=150)
    parser.add_argument("--one-by-one", type=int, default=3_000)
    parser.add_argument("--roster", type=int, default=2_000, help="stewards in the roster")
    parser.add_argument("--child-url", help=argparse.SUPPRESS)
    parser.add_argument("--child-csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.child_url:
        child(args.child_url, args.child_csv)
        return
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        imported_app = make_app(fresh_database(args.pg, folder, "imported"))
        single_app = make_app(fresh_database(args.pg, folder, "single"))
        cards = prepare(imported_app, args.volunteers)
        single_cards = prepare(single_app, args.volunteers)
        # Rounds alternate the two on a share of the stewards each (the machine is shared:
        # a busy spell spoils a round or two, which the median of the rounds' ratios
        # ignores, where one long phase of each would compare two different machines).
        share = args.volunteers // ROUNDS
        ratios, imported, single, posted_total = [], [0.0, 0], [0.0, 0], 0
        for n in range(ROUNDS):
            group = slice(n * share, (n + 1) * share)
            path = folder / f"records-{n}.csv"
            write_csv(path, cards[group], args.rows // ROUNDS, seed=n)
            # The same records, the first of the file, for the one-by-one database (whose
            # cards differ).
            single_path = folder / f"single-{n}.csv"
            same = dict(zip(cards[group], single_cards[group], strict=True))
            count = args.one_by_one // ROUNDS
            with (
                path.open(encoding="utf-8") as source,
                single_path.open("w", encoding="utf-8") as out,
            ):
                for line_number, line in enumerate(source):
                    if line_number > count:
                        break
                    card, rest = line.split(",", 1)
                    out.write(f"{same.get(card, card)},{rest}")
            steps = [
                ("import", lambda p=path: import_file(imported_app, p)),
                ("single", lambda p=single_path, c=count: (one_by_one(single_app, p, c), 0)),
            ]
            rates = {}
            for name, step in steps if n % 2 == 0 else reversed(steps):
                started = time.perf_counter()
                rates[name], posted = step()
                elapsed = time.perf_counter() - started
                total = imported if name == "import" else single
                total[0] += elapsed
                total[1] += args.rows // ROUNDS if name == "import" else args.one_by_one // ROUNDS
                posted_total += posted
            ratios.append(rates["import"] / rates["single"])
            print(
                f"round {n + 1}: import {rates['import']:,.0f}, one by one "
                f"{rates['single']:,.0f} records/s: {ratios[-1]:.1f}x"
            )
        rate, single_rate, ratio = imported[1] / imported[0], single[1] / single[0], median(ratios)
        print(f"database: {'PostgreSQL' if args.pg else 'SQLite'}")
        print(f"one by one (record_service, {single[1]:,} records): {single_rate:,.0f} records/s")
        print(f"import ({args.rows:,} rows, {posted_total:,} posted): {rate:,.0f} records/s")
        print(
            f"ratio (median of {ROUNDS} rounds): {ratio:.1f}x (target >= {TARGET:.0f}x) "
            f"{'OK' if ratio >= TARGET else 'BELOW'}"
        )
        print(
            f"a year of a 2,000-steward district ({DISTRICT_YEAR:,} records): "
            f"{DISTRICT_YEAR / rate / 60:,.0f} min imported, "
            f"{DISTRICT_YEAR / single_rate / 3600:,.1f} h one by one"
        )
        seconds = roster_seconds(single_app, folder, args.roster)
        print(
            f"roster of {args.roster:,} stewards with activation codes: {seconds:,.1f} s "
            f"(target < 60 s) {'OK' if seconds < 60 else 'BELOW'}"
        )
        with imported_app.app_context():
            problems = verify()
            print("ledger invariants:", problems)
    with tempfile.TemporaryDirectory() as folder:
        small = rss_at(args.pg, Path(folder), 10_000, args.volunteers)
        large = rss_at(args.pg, Path(folder), args.rows, args.volunteers)
    print(
        f"peak RSS: {small[1] / 1024:,.0f} MiB importing 10,000 rows, "
        f"{large[1] / 1024:,.0f} MiB importing {args.rows:,} rows "
        f"(before the import: {small[0] / 1024:,.0f} and {large[0] / 1024:,.0f} MiB)"
    )


if __name__ == "__main__":
    main()
