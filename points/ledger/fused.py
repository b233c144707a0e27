"""PostgreSQL: an earn or a redemption written by one call, in one round trip.

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

A keyed write outside any caller's unit of work needs no transaction around it: it is
sent `alone`, in autocommit mode, and costs one round trip instead of three. Account ids
are looked up only inside a unit of work; `alone` leaves a cache miss to the unit.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from flask import current_app

from points.extensions import db
from points.ledger.accounts import (
    _provider_account,
    _system_account,
    _volunteer_account,
)
from points.ledger.posting import entry_fields, entry_hash, entry_hash_around
from points.ledger.units import PostedEntry, alone_connection
from points.models import utcnow

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
    return PostedEntry(entry_id, "redeem", district_id, pairs)
