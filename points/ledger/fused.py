"""PostgreSQL: an earn, a redemption or a service record written by one call.

The step-by-step path (`posting._post` and friends) takes 8 to 14 statements for one earn
or redemption, and each costs a round trip and more Python than the database spends on
it: under 8 concurrent writers it reached a tenth of a bare two-statement transaction.
Here the same rows are written by one call of a PL/pgSQL function (`points_earn`,
`points_redeem`, migration 0003), which runs the same steps inside the server.

What it writes is what the step-by-step path writes (a test compares the two field by
field, apart from times), with one difference in form: an immediate redemption inserts
its hold already posted, where the step-by-step path inserts it pending and posts it a
statement later.

The function decides nothing the step-by-step path could decide better, and it is all or
nothing. It works in the step-by-step order: it claims the idempotency key, then moves
the account with every precondition in the UPDATE's WHERE (the account open and in the
node, enough points, the provider open; after waiting for the row lock PostgreSQL checks
them again on the latest row), then writes the rest. When the key is in use, or a
precondition fails, it writes nothing (deleting its own claim) and returns NULL; the
step-by-step path then runs, which replays the key, raises the right error, or does the
work. Account ids come from an in-process cache (an account never changes its owner,
kind or node) and the UPDATE checks them like any other precondition. A debit takes the
account's row lock before it reads lots, and each statement of the function reads the
latest committed rows (READ COMMITTED), so lots are never stale.

A service record (`record`, `points_record`, migration 0005) is written with its earns
and minutes in one call after the caller read and evaluated it in autocommit: the call
checks the volunteer and their history are as read (docs/architecture.md, "A service
record in one call").

A keyed write outside any caller's unit of work needs no transaction around it: it is
sent `alone`, in autocommit mode, and costs one round trip instead of three. Account ids
are looked up only inside a unit of work; `alone` leaves a cache miss to the unit.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy.exc import DBAPIError

from points.extensions import db
from points.ledger.accounts import (
    _provider_account,
    _system_account,
    _volunteer_account,
)
from points.ledger.posting import entry_fields, entry_hash, entry_hash_around
from points.ledger.units import PostedEntry, after_commit, alone_connection
from points.models import utcnow
from points.signals import entry_committed

logger = logging.getLogger(__name__)

# Cached account ids per process (two or three per volunteer), dropped wholesale beyond
# this many.
CACHE_LIMIT = 200_000


def enabled() -> bool:
    """Return True when writes may take the one-call path: PostgreSQL, not disabled, and
    the functions installed (a database not yet upgraded to 0003 writes step by step)."""
    if not current_app.config["FUSED_WRITES"] or db.engine.dialect.name != "postgresql":
        return False
    installed = current_app.extensions.get("points.fused_installed")
    if installed is None:
        installed = bool(db.session.connection().exec_driver_sql(_INSTALLED).scalar())
        if not installed:
            logger.warning("points_earn/points_redeem missing: run `points db upgrade`")
        current_app.extensions["points.fused_installed"] = installed
    return installed


_INSTALLED = (
    "SELECT to_regproc('points_earn') IS NOT NULL AND to_regproc('points_redeem') IS NOT NULL"
)


# -- account ids -------------------------------------------------------------------------


def _cache() -> dict[Any, int]:
    cache = current_app.extensions.setdefault("points.account_ids", {})
    if len(cache) > CACHE_LIMIT:
        cache.clear()
    return cache


def _forget(*keys: Any) -> None:
    cache = _cache()
    for key in keys:
        cache.pop(key, None)


def _volunteer_ids(volunteer_id: int) -> tuple[int, int] | None:
    """The volunteer's account and its node (cached; None on a miss in an `alone` call)."""
    cache = _cache()
    account_id = cache.get(("volunteer", volunteer_id))
    district_id = cache.get(("district", volunteer_id))
    if account_id is None or district_id is None:
        if alone_connection() is not None:
            return None  # looked up inside a unit of work, never beside one
        account = _volunteer_account(volunteer_id)
        account_id, district_id = account.id, account.district_id
        cache[("volunteer", volunteer_id)] = account_id
        cache[("district", volunteer_id)] = district_id
    return account_id, district_id


def _earning_ids(volunteer_id: int) -> tuple[int, int, int] | None:
    """The volunteer's account, its node and the node's issuance account (cached; None
    on a miss in an `alone` call)."""
    found = _volunteer_ids(volunteer_id)
    if found is None:
        return None
    account_id, district_id = found
    issuance_id = _cache().get(("issuance", district_id))
    if issuance_id is None:
        if alone_connection() is not None:
            return None
        issuance_id = _system_account(district_id, "issuance").id
        _cache()[("issuance", district_id)] = issuance_id
    return account_id, district_id, issuance_id


def _spending_ids(volunteer_id: int, provider_id: int) -> tuple[int, int, int] | None:
    """The volunteer's account, its node, and the provider's account there (cached;
    the provider's account is opened on first use, as the step-by-step path does; None
    on a miss in an `alone` call)."""
    found = _volunteer_ids(volunteer_id)
    if found is None:
        return None
    account_id, district_id = found
    destination_id = _cache().get(("provider", provider_id, district_id))
    if destination_id is None:
        if alone_connection() is not None:
            return None
        destination_id = _provider_account(provider_id, district_id).id
        _cache()[("provider", provider_id, district_id)] = destination_id
    return account_id, district_id, destination_id


# -- the calls ---------------------------------------------------------------------------

_EARN = """
SELECT points_earn(
    %(key_scope)s, %(key)s, %(fingerprint)s, %(now)s, %(volunteer_id)s, %(account_id)s,
    %(issuance_id)s, %(district_id)s, %(points)s, %(effective_at)s, %(actor)s,
    %(reason)s, %(plugin)s, %(rule)s, %(config_version)s, %(service_record_id)s,
    %(expires_at)s, %(hash)s
)"""
_REDEEM = """
SELECT points_redeem(
    %(key_scope)s, %(key)s, %(fingerprint)s, %(now)s, %(volunteer_id)s, %(provider_id)s,
    %(account_id)s, %(destination_id)s, %(district_id)s, %(points)s,
    %(hold_expires_at)s, %(actor)s, %(reason)s, %(hash_head)s, %(hash_tail)s
)"""


def _call(statement: str, parameters: dict[str, Any]) -> int | None:
    """Run a function call and return its value: on the `alone` connection, or as driver
    SQL on the unit of work's connection (no statement to compile; SQLAlchemy still
    wraps errors). psycopg prepares a statement it has run a few times."""
    connection = alone_connection()
    if connection is not None:
        return connection.execute(statement, parameters).fetchone()[0]
    return db.session.connection().exec_driver_sql(statement, parameters).scalar()


def _key_parameters(key: str | None, scope: str, fingerprint: str | None) -> dict[str, Any]:
    return {"key_scope": scope, "key": key, "fingerprint": fingerprint}


# -- the operations ----------------------------------------------------------------------


def earn(
    volunteer_id: int,
    points: int,
    *,
    actor: str,
    reason: str,
    effective_at: datetime | None,
    expires_at: datetime | None,
    plugin: str | None,
    rule: str | None,
    config_version: int | None,
    service_record_id: int | None,
    key: str | None,
    scope: str,
    fingerprint: str | None,
) -> PostedEntry | None:
    """Write an earn in one call; return None when the step-by-step path must (a
    precondition failed, or the key is taken), having written nothing."""
    if type(volunteer_id) is not int:
        return None
    found = _earning_ids(volunteer_id)
    if found is None:
        return None
    account_id, district_id, issuance_id = found
    fields = entry_fields(
        district_id,
        "earn",
        actor=actor,
        reason=reason,
        effective_at=effective_at,
        plugin=plugin,
        rule=rule,
        config_version=config_version,
        service_record_id=service_record_id,
    )
    pairs = ((issuance_id, -points), (account_id, points))
    entry_id = _call(
        _EARN,
        {
            **fields,
            **_key_parameters(key, scope, fingerprint),
            "volunteer_id": volunteer_id,
            "account_id": account_id,
            "issuance_id": issuance_id,
            "points": points,
            "expires_at": expires_at,
            "now": utcnow(),
            "hash": entry_hash(fields, pairs),
        },
    )
    if entry_id is None:
        _forget(("volunteer", volunteer_id), ("district", volunteer_id))
        return None
    after_commit(lambda: entry_committed.send("earn"))
    return PostedEntry(entry_id, "earn", district_id, pairs)


def redeem(
    volunteer_id: int,
    points: int,
    *,
    provider_id: int,
    actor: str,
    reason: str,
    key: str | None,
    scope: str,
    fingerprint: str | None,
) -> PostedEntry | None:
    """Write a redemption (a hold, posted at once) in one call; return None when the
    step-by-step path must, having written nothing."""
    if type(volunteer_id) is not int or type(provider_id) is not int:
        return None
    found = _spending_ids(volunteer_id, provider_id)
    if found is None:
        return None
    account_id, district_id, destination_id = found
    now = utcnow()
    fields = entry_fields(district_id, "redeem", actor=actor, reason=reason, effective_at=now)
    pairs = ((account_id, -points), (destination_id, points))
    around = entry_hash_around(fields, pairs, "hold_id")
    if around is None:
        return None
    entry_id = _call(
        _REDEEM,
        {
            **fields,
            **_key_parameters(key, scope, fingerprint),
            "volunteer_id": volunteer_id,
            "provider_id": provider_id,
            "account_id": account_id,
            "destination_id": destination_id,
            "points": points,
            "now": now,
            "hold_expires_at": now + timedelta(minutes=current_app.config["HOLD_MINUTES"]),
            "hash_head": around[0],
            "hash_tail": around[1],
        },
    )
    if entry_id is None:
        # Not enough points; a closed account or provider; a stale id; a used key: the
        # step-by-step path says which, or does the work.
        _forget(("volunteer", volunteer_id), ("provider", provider_id, district_id))
        return None
    after_commit(lambda: entry_committed.send("redeem"))
    return PostedEntry(entry_id, "redeem", district_id, pairs)


# -- a service record --------------------------------------------------------------------


@dataclass(frozen=True)
class Earn:
    """One earn of a service record, as `ledger.earn` would be asked for it."""

    points: int
    reason: str
    expires_at: datetime | None
    plugin: str | None
    rule: str | None
    config_version: int | None


_RECORD = """
SELECT points_record(
    %(record)s, %(volunteer)s, %(district)s, %(seen_minutes)s,
    %(history_since)s, %(history_until)s, %(seen)s::bigint[],
    %(kind)s, %(started_at)s, %(minutes)s, %(details)s::json, %(status)s,
    %(dedupe_key)s, %(actor)s, %(now)s, %(points)s, %(awards)s::json,
    %(queue_reason)s, %(decision_reason)s, %(minutes_reason)s,
    %(account_id)s, %(issuance_id)s, %(earns)s::json
)"""

# The same call, with the record's points taken from the budgets on its path in the
# same statement, after the record is written (points_budget_settle, migration 0019).
_RECORD_BUDGETED = (
    "SELECT points_budget_settle(("
    + _RECORD.strip().removeprefix("SELECT ")
    + "), %(nodes)s::integer[], %(kinds)s::text[], %(starts)s::timestamptz[], "
    "%(ends)s::timestamptz[], %(versions)s::integer[], %(budgets)s::bigint[], "
    "%(wanted)s::bigint)"
)

# Raised by points_record, having written nothing: an earn's account preconditions
# failed; the volunteer's history changed since the caller read it.
EARN_REFUSED = "SP001"
HISTORY_CHANGED = "SP002"
# Raised by points_budget_take: a budget on the path cannot grant the record's points.
BUDGET_SHORT = "SP003"


class LockedPathNeeded(Exception):
    """`record` cannot write this record: its account ids are not cached, or an earn's
    account precondition failed. The locked path looks them up, or says what is wrong."""


def knows_accounts(volunteer_id: int) -> bool:
    """Return True if the volunteer's account ids (and their node's issuance account's)
    are cached, as an earn on an `alone` connection needs them."""
    cache = _cache()
    district_id = cache.get(("district", volunteer_id))
    return (
        ("volunteer", volunteer_id) in cache
        and district_id is not None
        and ("issuance", district_id) in cache
    )


def records_enabled() -> bool:
    """Return True when service records may take the one-call path (migration 0005)."""
    if not enabled():
        return False
    installed = current_app.extensions.get("points.fused_record_installed")
    if installed is None:
        installed = bool(
            db.session.connection()
            .exec_driver_sql("SELECT to_regproc('points_record') IS NOT NULL")
            .scalar()
        )
        current_app.extensions["points.fused_record_installed"] = installed
    return installed


def record(
    connection,
    record_id: int,
    volunteer_id: int,
    seen_minutes: int,
    seen_history: tuple[datetime, datetime, tuple[int, int, int]] | None,
    values: dict[str, Any],
    earns: list[Earn],
    minutes_reason: str,
    budget: dict[str, Any] | None = None,
) -> list[PostedEntry] | None:
    """Write a service record (`values`: its columns), its earns and, if approved, its
    minutes in one call on `connection` (an `autocommit_connection`, held by the caller
    alone: plugins evaluating the record cannot write through it); return the earn
    entries.

    Writes nothing and returns None when the volunteer's row no longer matches what the
    caller read (district, status, `seen_minutes`), or their approved records in
    `seen_history`'s range no longer match its digest (count, sum of ids, sum of
    points): the caller evaluates again. Writes nothing and raises LockedPathNeeded when
    an earn's account ids are not cached or its account precondition fails; raises
    IntegrityError on a duplicate once-per-day record. `budget` (budgets.
    one_call_arguments) takes the earns' points from the budgets on the path in the same
    statement; a budget that cannot grant them all raises LockedPathNeeded, nothing
    written: the locked path clips or queues.
    """
    district_id = values["district_id"]
    earning = _earning_ids(volunteer_id) if earns else (None, district_id, None)
    if earning is None or earning[1] != district_id:
        raise LockedPathNeeded
    account_id, _, issuance_id = earning
    now = values["created_at"]
    hashes = []
    for earn in earns:
        fields = entry_fields(
            district_id,
            "earn",
            actor=values["submitted_by"],
            reason=earn.reason,
            effective_at=now,
            plugin=earn.plugin,
            rule=earn.rule,
            config_version=earn.config_version,
            service_record_id=record_id,
        )
        pairs = ((issuance_id, -earn.points), (account_id, earn.points))
        hashes.append((entry_hash(fields, pairs), pairs))
    since, until, seen = seen_history if seen_history else (None, None, None)
    parameters = {
        "record": record_id,
        "volunteer": volunteer_id,
        "district": district_id,
        "seen_minutes": seen_minutes,
        "history_since": since,
        "history_until": until,
        "seen": list(seen) if seen else None,
        "kind": values["kind"],
        "started_at": values["started_at"],
        "minutes": values["minutes"],
        "details": json.dumps(values["details"]),
        "status": values["status"],
        "dedupe_key": values["dedupe_key"],
        "actor": values["submitted_by"],
        "now": now,
        "points": values["points"],
        "awards": json.dumps(values["awards"]),
        "queue_reason": values["queue_reason"],
        "decision_reason": values.get("decision_reason"),
        "minutes_reason": minutes_reason,
        "account_id": account_id,
        "issuance_id": issuance_id,
        "earns": json.dumps(
            [
                {
                    "points": earn.points,
                    "reason": earn.reason,
                    "plugin": earn.plugin,
                    "rule": earn.rule,
                    "config_version": earn.config_version,
                    "expires_at": None if earn.expires_at is None else earn.expires_at.isoformat(),
                    "hash": content_hash,
                }
                for earn, (content_hash, _) in zip(earns, hashes, strict=True)
            ]
        ),
    }
    dbapi = db.engine.dialect.loaded_dbapi
    try:
        if budget is None:
            entry_ids = connection.execute(_RECORD, parameters).fetchone()[0]
        else:
            entry_ids = connection.execute(_RECORD_BUDGETED, parameters | budget).fetchone()[0]
    except dbapi.IntegrityError as raw:
        raise DBAPIError.instance(None, None, raw, dbapi.Error) from raw
    except dbapi.Error as raw:
        state = getattr(raw, "sqlstate", None)
        if state == EARN_REFUSED:
            _forget(("volunteer", volunteer_id), ("district", volunteer_id))
            raise LockedPathNeeded from None
        if state == HISTORY_CHANGED:
            return None
        if state == BUDGET_SHORT:
            raise LockedPathNeeded from None
        raise
    if entry_ids is None:
        return None
    # Committed already: the call ran on an autocommit connection.
    for _ in entry_ids:
        entry_committed.send("earn")
    return [
        PostedEntry(entry_id, "earn", district_id, pair)
        for entry_id, (_, pair) in zip(entry_ids, hashes, strict=True)
    ]
