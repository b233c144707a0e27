"""Many earns and service minutes of one volunteer at once, inside the caller's unit.

The import of paper records (points.service.past) posts a volunteer's year of service
in one unit of work. Posted an entry at a time (`earn`: seven statements each) it ran
at about twice the rate of records submitted one by one; the import's target is five
times (bench/import.py). Here the same rows are written with one statement per table
for the whole batch: the ids are reserved first (so that postings, lots and records can
name their entries before they exist), the volunteer's cached balance and minutes move
once by the batch's sum, and every row is exactly what `earn` and
`add_service_minutes` would have written (same hash, same lots, same rollup through
the postings' trigger), so `points ledger verify` checks them as any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import JSON, text
from sqlalchemy.exc import DBAPIError

from points.errors import AccountClosedError, InvalidInputError, NotFoundError
from points.extensions import db
from points.ledger.accounts import _earning_accounts
from points.ledger.posting import _apply_to_bounded, entry_fields, entry_hash
from points.ledger.units import (
    MAX_SERVICE_MINUTES,
    PostedEntry,
    _check_text,
    _check_time,
    after_commit,
    check_points,
    in_unit_of_work,
    run,
)
from points.models import Entry, Lot, Posting, ServiceMinutes, UnsealedEntry, Volunteer, utcnow
from points.signals import entry_committed


@dataclass(frozen=True)
class BatchEarn:
    """One earn of a batch: as `earn`'s arguments."""

    points: int
    reason: str
    effective_at: datetime
    expires_at: datetime | None
    plugin: str | None
    rule: str | None
    config_version: int | None
    service_record_id: int | None


def insert_many(table, rows: list[dict]) -> None:
    """Insert `rows` (dicts with the same keys) into `table` in the caller's unit. On
    PostgreSQL by COPY: an executemany sends a statement per row (pipelined), and COPY
    made the import 1.4 times as fast (multi-row INSERTs with RETURNING were slower
    than either); on SQLite, in process, executemany is as fast."""
    if not rows:
        return
    if db.engine.dialect.name == "postgresql":
        _copy(table, rows)
    else:
        run(table.insert(), rows)


def reserve_ids(table: str, count: int) -> list[int]:
    """Reserve `count` new ids of `table` (entries, service_records) for rows the caller
    inserts in this unit. On SQLite the unit holds the write lock, so the ids after the
    largest are free; on PostgreSQL they come from the table's sequence."""
    if not in_unit_of_work():
        raise RuntimeError("reserve_ids must run inside a unit of work")
    if count <= 0:
        return []
    if db.engine.dialect.name == "postgresql":
        rows = db.session.execute(
            text(f"SELECT nextval('{table}_id_seq') FROM generate_series(1, :n)"), {"n": count}
        )
        return sorted(row[0] for row in rows)
    top = db.session.execute(text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar_one()
    return list(range(top + 1, top + 1 + count))


def earn_many(volunteer_id: int, earns: Sequence[BatchEarn], *, actor: str) -> list[PostedEntry]:
    """Credit a volunteer with each earn (one entry and one lot each) inside the caller's
    unit; return the entries in the order given. Raises what `earn` raises."""
    if not in_unit_of_work():
        raise RuntimeError("earn_many must run inside a unit of work")
    if not earns:
        return []
    _check_text(actor, "actor")
    for earn in earns:
        check_points(earn.points)
        _check_text(earn.reason, "reason")
        _check_time(earn.effective_at, "effective_at")
        _check_time(earn.expires_at, "expires_at")
    account, issuance = _earning_accounts(volunteer_id)
    if issuance.status != "open":
        raise AccountClosedError(f"issuance account {issuance.id} is closed")
    district_id = account.district_id
    _apply_to_bounded(account, sum(earn.points for earn in earns))
    ids = reserve_ids("entries", len(earns))
    now = utcnow()
    entries, postings, unsealed, lots, posted = [], [], [], [], []
    for entry_id, earn in zip(ids, earns, strict=True):
        fields = entry_fields(
            district_id,
            "earn",
            actor=actor,
            reason=earn.reason,
            effective_at=earn.effective_at,
            plugin=earn.plugin,
            rule=earn.rule,
            config_version=earn.config_version,
            service_record_id=earn.service_record_id,
        )
        pairs = ((issuance.id, -earn.points), (account.id, earn.points))
        entries.append(
            {**fields, "id": entry_id, "created_at": now, "hash": entry_hash(fields, pairs)}
        )
        for account_id, amount in pairs:
            postings.append(
                {
                    "entry_id": entry_id,
                    "district_id": district_id,
                    "account_id": account_id,
                    "amount": amount,
                    "lot_id": None,
                }
            )
        unsealed.append({"entry_id": entry_id, "district_id": district_id})
        lots.append(
            {
                "district_id": district_id,
                "account_id": account.id,
                "entry_id": entry_id,
                "amount": earn.points,
                "remaining": earn.points,
                "expires_at": earn.expires_at,
                "created_at": now,
            }
        )
        posted.append(PostedEntry(entry_id, "earn", district_id, pairs, None))
    insert_many(Entry.__table__, entries)
    insert_many(Posting.__table__, postings)
    insert_many(UnsealedEntry.__table__, unsealed)
    insert_many(Lot.__table__, lots)

    def committed() -> None:
        for _ in posted:
            entry_committed.send("earn")

    after_commit(committed)
    return posted


@dataclass(frozen=True)
class BatchMinutes:
    """Service minutes of one record of a batch, counted at `counted_at`."""

    minutes: int
    reason: str
    service_record_id: int
    counted_at: datetime


def add_service_minutes_many(
    volunteer_id: int, batch: Sequence[BatchMinutes], *, actor: str
) -> int:
    """Credit each record's minutes inside the caller's unit; return the volunteer's new
    total. Raises what `add_service_minutes` raises."""
    if not in_unit_of_work():
        raise RuntimeError("add_service_minutes_many must run inside a unit of work")
    volunteers = Volunteer.__table__
    row = db.session.execute(
        volunteers.select()
        .with_only_columns(volunteers.c.district_id)
        .where(volunteers.c.id == volunteer_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"no volunteer {volunteer_id}")
    if not batch:
        return db.session.get(Volunteer, volunteer_id).service_minutes
    _check_text(actor, "actor")
    for item in batch:
        if not 0 < item.minutes <= MAX_SERVICE_MINUTES:
            raise InvalidInputError(
                f"minutes must be from 1 to {MAX_SERVICE_MINUTES}",
                errors={"minutes": [f"Must be from 1 to {MAX_SERVICE_MINUTES}."]},
            )
        _check_text(item.reason, "reason")
        _check_time(item.counted_at, "counted_at")
    total = db.session.execute(
        volunteers.update()
        .where(volunteers.c.id == volunteer_id)
        .values(service_minutes=volunteers.c.service_minutes + sum(i.minutes for i in batch))
        .returning(volunteers.c.service_minutes)
    ).scalar_one()
    insert_many(
        ServiceMinutes.__table__,
        [
            {
                "district_id": row.district_id,
                "volunteer_id": volunteer_id,
                "minutes": item.minutes,
                "kind": "service",
                "actor": actor,
                "reason": item.reason,
                "service_record_id": item.service_record_id,
                "created_at": item.counted_at,
            }
            for item in batch
        ],
    )
    return total


def _copy(table, rows: list[dict]) -> None:
    """COPY the rows into the table on the session's connection (its transaction): the
    fastest way into PostgreSQL, and triggers and constraints apply as for INSERT."""
    import psycopg
    from psycopg.types.json import Json

    columns = list(rows[0])
    as_json = {c.name for c in table.columns if isinstance(c.type, JSON)}
    connection = db.session.connection().connection.driver_connection
    names = ", ".join(f'"{name}"' for name in columns)
    statement = f"COPY {table.name} ({names}) FROM STDIN"
    try:
        with connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        Json(row[c]) if c in as_json and row[c] is not None else row[c]
                        for c in columns
                    ]
                )
    except psycopg.Error as error:
        # Past SQLAlchemy, psycopg's own errors: wrapped as SQLAlchemy would (an
        # IntegrityError, an OperationalError...), so that units retry lost races and
        # callers catch them as any other statement's.
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error
