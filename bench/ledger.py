"""Ledger earns, redemptions and balance reads per second, as ratios to raw SQL in one run."""

from __future__ import annotations

import os
import sys

# Run as `python bench/ledger.py`, Python puts bench/ first on sys.path, where a sibling
# benchmark named like a library module (http.py) would shadow the real one.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import logging
import multiprocessing
import queue
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import bindparam, func, make_url, select, text

from points import ledger
from points.app import create_app
from points.directory import create_district, create_provider, register_volunteer
from points.extensions import db
from points.models import Account, Posting, UTCDateTime
from points.verify import verify

# The targets: ratios measured in one run, never absolute timings.
WRITE_TARGET = 0.35  # ledger ops/s over raw ops/s, on PostgreSQL
READ_TARGET = 0.80  # balance reads/s at the large ledger over the small one

SMALL_LEDGER = 1_000  # postings in the ledger when balance reads are first measured
READ_PAIRS = 50  # short rounds of balance reads on each ledger, taking turns
WRITE_ROUNDS = 5  # rounds of ledger and raw writes of each kind, taking turns
WARM_UP_OPS = 3  # per worker before the clock starts: connections, prepared statements
FUNDS = 10**12  # points each redeeming volunteer starts with; every redemption spends 1
COMMUNITY = "bench-community"
BULK_AT = datetime(2020, 1, 1, tzinfo=UTC)
BULK_ACTOR = "bench:bulk"
BULK_REASON = "bench history"
BULK_POINTS = 1


def app_config(url: str) -> dict:
    return {
        "DATABASE_URL": url,
        "SECRET_KEY": "bench",
        "PIN_HASH_METHOD": "pbkdf2:sha256:1000",
    }


# -- the backends ------------------------------------------------------------------------


@dataclass
class Backend:
    """One database to measure: the app's URL, raw connections, and a snapshot of it."""

    name: str  # "sqlite" or "postgresql"
    label: str
    url: str
    raw_connect: Callable[[], object]
    # Copies the database as it stands (no connection may be open); returns the copy's URL.
    snapshot: Callable[[], str]
    cleanup: Callable[[], None]


def sqlite_backend(directory: str) -> Backend:
    path = f"{directory}/points.sqlite"

    def raw_connect() -> sqlite3.Connection:
        # The same pragmas as points.database gives the app's connections, and autocommit
        # mode so that BEGIN IMMEDIATE is ours to send, as the ledger does.
        connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=30000")
        return connection

    def snapshot() -> str:
        copy = f"{directory}/snapshot.sqlite"
        source, target = sqlite3.connect(path), sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        return f"sqlite:///{copy}"

    return Backend(
        "sqlite",
        f"SQLite {sqlite3.sqlite_version}",
        f"sqlite:///{path}",
        raw_connect,
        snapshot,
        cleanup=lambda: shutil.rmtree(directory, ignore_errors=True),
    )


def postgres_backend(url: str) -> Backend | str:
    """Return the PostgreSQL backend on a fresh schema, or why it cannot be used."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        return "psycopg is not installed (pip install '.[pg]')"
    dbname = make_url(url).database
    if not dbname or dbname == "test":
        # The benchmark drops the schema of its database; `test` belongs to the test suite.
        return f"refusing database {dbname!r}: give --pg-url a database the benchmark owns"
    copy_name = f"{dbname}_snapshot"

    def admin(statement: sql.Composable) -> None:
        """Run a statement on the server's maintenance database."""
        maintenance = psycopg.conninfo.make_conninfo(url, dbname="postgres")
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=3) as connection:
            connection.execute(statement)

    try:
        connection = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if "does not exist" not in str(error):
            return f"PostgreSQL does not answer at {url}: {str(error).strip()}"
        try:
            admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            connection = psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.Error as error:
            return f"cannot create database {dbname!r}: {str(error).strip()}"
    with connection:
        version = connection.execute("SHOW server_version").fetchone()[0]
        connection.execute("DROP SCHEMA IF EXISTS public CASCADE")
        connection.execute("CREATE SCHEMA public")

    def raw_connect() -> psycopg.Connection:
        return psycopg.connect(url, autocommit=True)

    def drop_copy() -> None:
        admin(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(copy_name)))

    def snapshot() -> str:
        drop_copy()
        statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(copy_name), sql.Identifier(dbname)
        )
        for attempt in range(20):
            try:
                admin(statement)
                break
            except psycopg.errors.ObjectInUse:
                # An autovacuum worker may still be on the template for a moment.
                if attempt == 19:
                    raise
                time.sleep(0.5)
        return make_url(url).set(database=copy_name).render_as_string(hide_password=False)

    return Backend(
        "postgresql",
        f"PostgreSQL {version.split()[0]}",
        url,
        raw_connect,
        snapshot,
        cleanup=drop_copy,
    )


# -- the raw-SQL baseline ----------------------------------------------------------------
#
# The minimum work of a posting: one transaction that inserts a posting row and moves a
# balance row, the debit conditional like the ledger's (balance >= x). No foreign keys,
# no extra indexes: the floor that any ledger on this database pays.

RAW_SCHEMA = (
    "DROP TABLE IF EXISTS bench_postings",
    "DROP TABLE IF EXISTS bench_accounts",
    "CREATE TABLE bench_accounts (id INTEGER PRIMARY KEY, "
    "balance BIGINT NOT NULL CHECK (balance >= 0))",
    "CREATE TABLE bench_postings (id {serial} PRIMARY KEY, "
    "account_id INTEGER NOT NULL, amount BIGINT NOT NULL)",
)


def create_raw_tables(backend: Backend, workers: int) -> None:
    """Accounts 1..workers earn; workers+1..2*workers redeem, funded by a first posting."""
    serial = "BIGSERIAL" if backend.name == "postgresql" else "INTEGER"
    for statement in RAW_SCHEMA:
        db.session.execute(text(statement.format(serial=serial)))
    for account in range(1, 2 * workers + 1):
        funds = FUNDS if account > workers else 0
        db.session.execute(
            text("INSERT INTO bench_accounts (id, balance) VALUES (:id, :funds)"),
            {"id": account, "funds": funds},
        )
        if funds:
            db.session.execute(
                text("INSERT INTO bench_postings (account_id, amount) VALUES (:id, :funds)"),
                {"id": account, "funds": funds},
            )
    db.session.commit()


def raw_op(backend: Backend, connection, account: int, amount: int) -> None:
    """One raw transaction: insert a posting, move the balance (a debit only if covered)."""
    if amount > 0:
        update = "UPDATE bench_accounts SET balance = balance + {p} WHERE id = {p}"
        values = (amount, account)
    else:
        update = (
            "UPDATE bench_accounts SET balance = balance - {p} WHERE id = {p} AND balance >= {p}"
        )
        values = (-amount, account, -amount)
    if backend.name == "postgresql":
        with connection.transaction():
            connection.execute(
                "INSERT INTO bench_postings (account_id, amount) VALUES (%s, %s)",
                (account, amount),
            )
            done = connection.execute(update.format(p="%s"), values)
            if done.rowcount != 1:
                raise RuntimeError(f"raw account {account} cannot cover {amount}")
        return
    # As the ledger does on SQLite: take the write lock up front.
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "INSERT INTO bench_postings (account_id, amount) VALUES (?, ?)", (account, amount)
        )
        done = connection.execute(update.format(p="?"), values)
        if done.rowcount != 1:
            raise RuntimeError(f"raw account {account} cannot cover {amount}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def check_raw_tables() -> list[str]:
    """Raw accounts whose balance is not the sum of their postings (a lost update)."""
    rows = db.session.execute(
        text(
            "SELECT a.id, a.balance, COALESCE(SUM(p.amount), 0) FROM bench_accounts a "
            "LEFT JOIN bench_postings p ON p.account_id = a.id "
            "GROUP BY a.id, a.balance HAVING a.balance <> COALESCE(SUM(p.amount), 0)"
        )
    ).all()
    db.session.rollback()
    return [f"raw account {row[0]}: balance {row[1]}, postings sum {row[2]}" for row in rows]


# -- the ledger --------------------------------------------------------------------------


@dataclass
class Fixtures:
    """Who the workers move points for: one earner and one spender per worker."""

    community_id: int
    provider_id: int
    earners: list[int]
    spenders: list[int]


def create_fixtures(workers: int) -> Fixtures:
    # One community: every earn of every worker debits the same issuance account, the hot
    # case the ledger is designed for (issuance is never locked).
    create_district("bench-city", "Bench city", "city")
    create_district("bench-street", "Bench street", "street", parent="bench-city")
    community = create_district(
        "bench-community", "Bench community", "community", parent="bench-street"
    )
    provider = create_provider("bench-barber", "Bench barber", COMMUNITY)
    earners = [register_volunteer(f"earner {i}", COMMUNITY, "204857").id for i in range(workers)]
    spenders = [register_volunteer(f"spender {i}", COMMUNITY, "204857").id for i in range(workers)]
    for spender in spenders:
        # One large lot: each redemption then consumes one lot, like a volunteer's usual
        # few, rather than scanning thousands of one-point lots.
        ledger_op("earn", spender, 0, FUNDS)
    return Fixtures(community.id, provider.id, earners, spenders)


def ledger_op(kind: str, volunteer_id: int, provider_id: int, points: int = 1) -> bool:
    """One ledger call with a fresh idempotency key; return whether it was a replay."""
    key = str(uuid.uuid4())
    if kind == "earn":
        result = ledger.earn(
            volunteer_id, points, actor="bench", reason="bench earn", idempotency_key=key
        )
    else:
        result = ledger.redeem(
            volunteer_id,
            points,
            provider_id=provider_id,
            actor="bench",
            reason="bench redemption",
            idempotency_key=key,
        )
    return result.replayed


def count_postings() -> int:
    count = db.session.scalar(select(func.count(Posting.id)))
    db.session.rollback()
    return count


def measure_reads(apps: list[Flask], volunteers: list[int], seconds: float) -> tuple:
    """Single-threaded `ledger.balance` calls per second on a small and a large ledger.

    Returns the median reads/s of each, and the median over rounds of large/small. The
    two take turns in READ_PAIRS short rounds, in alternating order: on a shared machine
    a busy spell then spoils a few pairs, which the median ignores, where one long
    measurement of each would carry it whole into the ratio.
    """
    rates: list[list[float]] = [[] for _ in apps]
    for turn in range(READ_PAIRS):
        order = list(enumerate(apps))
        for index, app in order if turn % 2 == 0 else reversed(order):
            with app.app_context():
                ledger.balance(volunteers[0])  # the connection, outside the clock
                reads = 0
                start = time.perf_counter()
                end = start + seconds / READ_PAIRS
                while True:
                    for volunteer in volunteers:
                        ledger.balance(volunteer)
                    reads += len(volunteers)
                    now = time.perf_counter()
                    if now >= end:
                        break
                rates[index].append(reads / (now - start))
    small, large = rates
    ratio = statistics.median(b / a for a, b in zip(small, large, strict=True))
    return statistics.median(small), statistics.median(large), ratio


def grow_ledger(target: int, fixtures: Fixtures) -> int:
    """Bulk-add earn entries for the earners until the ledger holds `target` postings.

    The rows are what `ledger.earn` would write (entry with its content hash, two
    postings, a lot, a queue row for the sealer, the cached balance moved), so `verify`
    still passes; SQL writes them in a few statements instead of a million calls. Every
    entry of one earner has the same content, hence the same hash: the hash covers no id.
    Returns the number of entries added.
    """
    missing = target - count_postings()
    count = max(0, (missing + 1) // 2)
    if not count:
        return 0
    dialect = db.engine.dialect.name
    district = fixtures.community_id
    issuance = db.session.scalar(
        select(Account.id).where(Account.district_id == district, Account.kind == "issuance")
    )
    accounts = [ledger.balance(volunteer).account_id for volunteer in fixtures.earners]
    slots = []
    for slot, account in enumerate(accounts):
        fields = dict.fromkeys(ledger.HASHED_FIELDS)
        fields.update(
            district_id=district,
            kind="earn",
            effective_at=BULK_AT,
            actor=BULK_ACTOR,
            reason=BULK_REASON,
        )
        content = ledger.entry_hash(fields, [(issuance, -BULK_POINTS), (account, BULK_POINTS)])
        slots.append(f"({slot}, {account}, '{content}')")
    base = db.session.scalar(text("SELECT COALESCE(MAX(id), 0) FROM entries"))
    if dialect == "postgresql":
        series = "s(n) AS (SELECT generate_series(1, :rows))"
    else:
        series = "RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :rows)"
    # Entry n (from 1) goes to earner slot n % len(accounts).
    prefix = f"WITH {series}, slots(slot, account_id, hash) AS (VALUES {', '.join(slots)}) "
    join = "JOIN slots ON slots.slot = {n} % :slots"
    params = {
        "rows": count,
        "slots": len(accounts),
        "base": base,
        "district": district,
        "issuance": issuance,
        "points": BULK_POINTS,
        "at": BULK_AT,
        "actor": BULK_ACTOR,
        "reason": BULK_REASON,
    }
    statements = [
        "INSERT INTO entries (id, district_id, kind, effective_at, created_at, actor, reason, "
        "hash) SELECT :base + s.n, :district, 'earn', :at, :at, :actor, :reason, slots.hash "
        f"FROM s {join.format(n='s.n')}",
        # Two postings per entry, in entry order: rows 2e-1 and 2e belong to entry e.
        "INSERT INTO postings (entry_id, district_id, account_id, amount) "
        "SELECT :base + (s.n + 1) / 2, :district, "
        "CASE WHEN s.n % 2 = 1 THEN :issuance ELSE slots.account_id END, "
        "CASE WHEN s.n % 2 = 1 THEN -:points ELSE :points END "
        f"FROM s {join.format(n='((s.n + 1) / 2)')} ORDER BY s.n",
        "INSERT INTO lots (district_id, account_id, entry_id, amount, remaining, expires_at, "
        "created_at) SELECT :district, slots.account_id, :base + s.n, :points, :points, "
        f"NULL, :at FROM s {join.format(n='s.n')}",
        "INSERT INTO unsealed_entries (entry_id, district_id) SELECT :base + s.n, :district FROM s",
    ]
    if dialect == "postgresql" and db.session.scalar(text("SHOW is_superuser")) == "on":
        # Skip the per-row triggers (foreign keys, the deferred zero-sum check) as
        # pg_restore does: the rows are valid by construction, and `verify` checks them
        # afterwards. It makes the load several times faster.
        db.session.execute(text("SET LOCAL session_replication_role = replica"))
    for statement in statements:
        rows = 2 * count if "INTO postings" in statement else count
        query = text(prefix + statement)
        if ":at" in statement:
            # SQLite keeps naive UTC text: let the model's type convert the moment.
            query = query.bindparams(bindparam("at", type_=UTCDateTime()))
        db.session.execute(query, {**params, "rows": rows})
    for slot, account in enumerate(accounts):
        entries = len(range(slot or len(accounts), count + 1, len(accounts)))
        db.session.execute(
            text("UPDATE accounts SET balance = balance + :add WHERE id = :id"),
            {"add": entries * BULK_POINTS, "id": account},
        )
    if dialect == "postgresql":
        # Later entries take ids from the sequence, after the explicit ones used here.
        db.session.execute(
            text("SELECT setval(pg_get_serial_sequence('entries', 'id'), MAX(id)) FROM entries")
        )
    db.session.commit()
    return count


def settle(backend: Backend) -> None:
    """Bring a bulk-grown database to the state of one that grew over months."""
    connection = backend.raw_connect()
    try:
        if backend.name == "postgresql":
            # It would have planner statistics (autovacuum catches up only later).
            connection.execute("ANALYZE")
        else:
            # Its WAL would have been checkpointed every 1,000 pages along the way, not be
            # left holding one bulk transaction.
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


# -- concurrent phases -------------------------------------------------------------------
#
# Workers are processes by default, each with its own app, engine and connection: the
# service runs as gunicorn sync workers (one process each), and eight threads would share
# one GIL, capping the ledger's Python at one of the two cores while raw SQL, which mostly
# waits on the server with the GIL released, is not capped. `--mode thread` measures the
# threaded case too; on this 2-core machine both modes gave similar ratios.


@dataclass
class PhaseResult:
    ops: int = 0
    replays: int = 0
    errors: int = 0
    samples: list[str] = field(default_factory=list)


@dataclass
class Phase:
    backend: Backend
    path: str  # "ledger" or "raw"
    kind: str  # "earn" or "redeem"
    seconds: float
    fixtures: Fixtures


def phase_worker(phase: Phase, slot: int, barrier, results, app: Flask | None) -> None:
    """Warm up, wait for every worker, then run operations until the time is up."""
    result = PhaseResult()
    cleanups: list[Callable[[], None]] = []
    try:
        if phase.path == "ledger":
            own_app = app is None
            if own_app:
                # A worker process builds its own app, engine and pool, as a gunicorn sync
                # worker does.
                app = create_app(app_config(phase.backend.url))
            context = app.app_context()
            context.push()
            cleanups.append(context.pop)
            if own_app:
                cleanups.append(db.engine.dispose)
            cleanups.append(db.session.remove)
            volunteers = phase.fixtures.earners if phase.kind == "earn" else phase.fixtures.spenders
            volunteer = volunteers[slot]
            provider = phase.fixtures.provider_id

            def op() -> bool:
                return ledger_op(phase.kind, volunteer, provider)
        else:
            connection = phase.backend.raw_connect()
            cleanups.append(connection.close)
            workers = len(phase.fixtures.earners)
            account = slot + 1 if phase.kind == "earn" else workers + slot + 1
            amount = 1 if phase.kind == "earn" else -1

            def op() -> bool:
                raw_op(phase.backend, connection, account, amount)
                return False

        for _ in range(WARM_UP_OPS):
            op()
    except Exception as error:
        result.errors += 1
        result.samples.append(f"set-up: {error!r}")
        op = None
    try:
        barrier.wait(timeout=120)
        if op is not None:
            start = time.perf_counter()
            end = start + phase.seconds
            while True:
                try:
                    replayed = op()
                except Exception as error:
                    replayed = None
                    result.errors += 1
                    if len(result.samples) < 3:
                        result.samples.append(repr(error))
                if time.perf_counter() >= end:
                    break  # finished after the bell: not counted
                if replayed is not None:
                    result.ops += 1
                    result.replays += bool(replayed)
    finally:
        for cleanup in reversed(cleanups):
            cleanup()
        results.put(result)


def run_phase(phase: Phase, workers: int, mode: str, app: Flask) -> PhaseResult:
    """Run `workers` workers of one phase in threads or processes; sum their results."""
    if mode == "thread":
        barrier = threading.Barrier(workers)
        results = queue.SimpleQueue()
        runners = [
            threading.Thread(target=phase_worker, args=(phase, slot, barrier, results, app))
            for slot in range(workers)
        ]
    else:
        # fork: the children inherit the imported modules and the fixtures, and build their
        # own engine; the parent has disposed of its connections before this.
        context = multiprocessing.get_context("fork")
        barrier = context.Barrier(workers)
        results = context.Queue()
        runners = [
            context.Process(target=phase_worker, args=(phase, slot, barrier, results, None))
            for slot in range(workers)
        ]
    for runner in runners:
        runner.start()
    total = PhaseResult()
    for _ in runners:
        part = results.get(timeout=phase.seconds + 300)
        total.ops += part.ops
        total.replays += part.replays
        total.errors += part.errors
        total.samples += part.samples[: 3 - len(total.samples)]
    for runner in runners:
        runner.join()
    return total


# -- one backend, start to finish --------------------------------------------------------


@dataclass
class Report:
    label: str
    workers: int
    mode: str
    seconds: float
    # kind: median ledger/s, median raw/s, median of the rounds' ledger/raw
    writes: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    reads: dict[int, float] = field(default_factory=dict)  # postings: reads/s
    read_ratio: float = 0.0
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def verify_ledger(report: Report, moment: str, *, seal: bool) -> None:
    """Seal (or not), then check every ledger invariant; record the outcome."""
    start = time.perf_counter()
    sealed = f"sealed {ledger.seal():,}, " if seal else ""
    outcome = verify()
    took = time.perf_counter() - start
    if outcome.ok:
        report.checks.append(f"{moment}: {sealed}{outcome.summary()} ({took:.0f} s)")
    else:
        report.problems.append(f"{moment}: {outcome.summary()}")
        report.problems += [f"  {p.check}: {p.message} {p.rows[:3]}" for p in outcome.problems]


def measure_writes(
    backend: Backend,
    kind: str,
    fixtures: Fixtures,
    args: argparse.Namespace,
    app: Flask,
    report: Report,
) -> tuple[float, float, float]:
    """Ledger and raw ops/s of one kind: the medians over WRITE_ROUNDS short rounds, and
    the median over rounds of ledger/raw.

    Each round runs both, in alternating order. A machine shared with others speeds up
    and slows down by the second; over a few long phases one slow spell moved the ratio
    by a tenth either way, where in paired rounds it spoils a round or two, which the
    median ignores (as the balance reads and bench/service.py do).
    """
    rates: dict[str, list[float]] = {"ledger": [], "raw": []}
    seconds = args.seconds / WRITE_ROUNDS
    for turn in range(WRITE_ROUNDS):
        for path in ("ledger", "raw") if turn % 2 == 0 else ("raw", "ledger"):
            phase = Phase(backend, path, kind, seconds, fixtures)
            result = run_phase(phase, args.workers, args.mode, app)
            rates[path].append(result.ops / seconds)
            if result.replays:
                report.problems.append(f"{path} {kind}: {result.replays} results were replays")
            if result.errors:
                report.problems.append(
                    f"{path} {kind}: {result.errors} errors, e.g. {result.samples}"
                )
    mine, raw = rates["ledger"], rates["raw"]
    ratio = statistics.median(a / b for a, b in zip(mine, raw, strict=True) if b)
    return statistics.median(mine), statistics.median(raw), ratio


def run_backend(backend: Backend, args: argparse.Namespace) -> Report:
    report = Report(backend.label, args.workers, args.mode, args.seconds)
    app = create_app(app_config(backend.url))
    with app.app_context():
        upgrade()
        fixtures = create_fixtures(args.workers)
        seeds = max(0, (SMALL_LEDGER - count_postings() + 1) // 2)
        for n in range(seeds):
            ledger_op("earn", fixtures.earners[n % args.workers], 0)
        small = count_postings()
        create_raw_tables(backend, args.workers)
        # No connection may stay open: the snapshot copies the database, and the worker
        # processes are forked from this one.
        db.session.remove()
        db.engine.dispose()
    # The ledger as it stands now is kept, to read balances from beside the grown one.
    small_app = create_app(app_config(backend.snapshot()))

    for kind in ("earn", "redeem"):
        report.writes[kind] = measure_writes(backend, kind, fixtures, args, app, report)

    with app.app_context():
        verify_ledger(report, "after the run", seal=True)
        report.problems += check_raw_tables()
        start = time.perf_counter()
        added = grow_ledger(args.postings, fixtures)
        db.session.remove()
        settle(backend)
        large = count_postings()
        report.checks.append(
            f"grown by {added:,} bulk earn entries to {large:,} postings "
            f"({time.perf_counter() - start:.0f} s)"
        )
    small_rate, large_rate, report.read_ratio = measure_reads(
        [small_app, app], fixtures.earners, args.seconds
    )
    report.reads = {small: small_rate, large: large_rate}
    with app.app_context():
        if args.skip_large_verify:
            report.checks.append("after growing: verify skipped (--skip-large-verify)")
        else:
            # Not sealed: chaining the bulk entries takes longer than the rest of the run,
            # and entries queued for the sealer are a state `verify` accepts.
            verify_ledger(report, "after growing", seal=False)
        db.session.remove()
        db.engine.dispose()
    with small_app.app_context():
        db.engine.dispose()
    return report


# -- output ------------------------------------------------------------------------------


def verdict(ratio: float, target: float | None) -> str:
    if target is None:
        return "(no target)"
    return f">= {target:.2f} {'PASS' if ratio >= target else 'FAIL'}"


def print_report(report: Report, backend: Backend) -> bool:
    """Print one backend's tables; return True when every target and check is met."""
    ok = not report.problems
    write_target = WRITE_TARGET if backend.name == "postgresql" else None
    workers = f"{report.workers} worker {report.mode}{'es' if report.mode == 'process' else 's'}"
    print(f"\n{report.label}: {workers}, {report.seconds:g} s per side of each measurement")
    print(
        f"  {f'(medians of {WRITE_ROUNDS})':<16}{'ledger/s':>12}{'raw/s':>10}{'ratio':>8}  target"
    )
    for kind, label in (("earn", "earns"), ("redeem", "redemptions")):
        mine, raw, ratio = report.writes[kind]
        ok &= write_target is None or ratio >= write_target
        print(
            f"  {label:<16}{mine:>12.0f}{raw:>10.0f}{ratio:>8.2f}  {verdict(ratio, write_target)}"
        )
    if backend.name == "sqlite":
        print("  (SQLite serialises writers: the ratio compares how long each holds the lock)")
    (small, small_rate), (large, large_rate) = sorted(report.reads.items())
    ratio = report.read_ratio
    ok &= ratio >= READ_TARGET
    print(f"  {'balance reads':<16}{'postings':>12}{'reads/s':>10}{'ratio':>8}  target")
    print(f"  {'(1 thread,':<16}{small:>12,}{small_rate:>10.0f}")
    print(
        f"  {f'medians of {READ_PAIRS})':<16}{large:>12,}{large_rate:>10.0f}{ratio:>8.2f}"
        f"  {verdict(ratio, READ_TARGET)}"
    )
    for check in report.checks:
        print(f"  {check}")
    for problem in report.problems:
        print(f"  PROBLEM {problem}")
    return ok


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds",
        type=float,
        default=5,
        help="per side of each measurement, in short rounds taking turns (default 5)",
    )
    parser.add_argument("--workers", type=int, default=8, help="concurrent writers (default 8)")
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="default both; with both, PostgreSQL is skipped when it does not answer",
    )
    parser.add_argument(
        "--postings",
        type=int,
        default=1_000_000,
        help="postings in the ledger for the second balance-read measurement",
    )
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1/points_bench",
        help="a PostgreSQL database the benchmark owns: it drops and rebuilds its schema",
    )
    parser.add_argument(
        "--mode",
        choices=("process", "thread"),
        default="process",
        help="workers as processes (default, like gunicorn sync workers) or threads",
    )
    parser.add_argument(
        "--skip-large-verify",
        action="store_true",
        help="do not verify the grown ledger (verify takes 20-30 s at a million postings)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A root handler stops the Alembic env from installing its INFO-level logging.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    names = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    ok = True
    skipped: list[str] = []
    for name in names:
        if name == "sqlite":
            backend = sqlite_backend(tempfile.mkdtemp(prefix="points-bench-"))
        else:
            backend = postgres_backend(args.pg_url)
            if isinstance(backend, str):
                print(f"\nPostgreSQL skipped: {backend}")
                ok &= args.backend != "postgresql"
                skipped.append("PostgreSQL")
                continue
        try:
            ok &= print_report(run_backend(backend, args), backend)
        finally:
            backend.cleanup()
        sys.stdout.flush()
    untested = f" ({', '.join(skipped)} skipped)" if skipped else ""
    print(f"\nall targets met{untested}" if ok else f"\nSOME TARGETS OR CHECKS FAILED{untested}")
    # A missed ratio or a broken invariant exits 1, so that `make bench` can gate on it.
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
