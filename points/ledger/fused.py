"""PostgreSQL: an earn or a redemption written as one statement, in one round trip.

The step-by-step path (`posting._post` and friends) takes 8 to 14 statements for one earn
or redemption, and each costs a round trip and more Python than the database spends on
it: under 8 concurrent writers it reached a tenth of a bare two-statement transaction.
Here the same rows are written by one data-modifying WITH statement, sent as driver SQL
on the connection of the unit of work.

What it writes is exactly what the step-by-step path writes (a test compares the two row
by row), with one difference in form: an immediate redemption inserts its hold already
posted, where the step-by-step path inserts it pending and posts it a statement later.

The statement decides nothing the step-by-step path could decide better, and it is all
or nothing:
- its preconditions (accounts open and in the node, enough points, lots enough on the
  first page, the idempotency key unused) are checked against the statement's snapshot;
  when one fails it writes nothing and the step-by-step path runs instead, which raises
  the right error, replays the key, or does the work;
- the account ids come from an in-process cache (an account never changes its owner,
  kind or node), and the statement checks them like any other precondition;
- when the preconditions held but another unit won a race in between (claimed the key,
  emptied or closed the account, spent a planned lot), it raises a serialization failure
  that aborts the statement, and the unit of work is run again on a fresh snapshot.

So a write outside any caller's unit of work needs no transaction around it: it is sent
`alone`, in autocommit mode, and costs one round trip instead of three. Account ids are
looked up only inside a unit of work; `alone` leaves a cache miss to the unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app

from points.extensions import db
from points.ledger.accounts import (
    _earning_accounts,
    _provider_account,
    _volunteer_account,
)
from points.ledger.posting import entry_fields, entry_hash, entry_hash_around
from points.ledger.units import PostedEntry, alone_connection
from points.models import utcnow

# A redemption usually spends one or two lots; the statement plans from the first page of
# open lots, and leaves a debit that needs more to the step-by-step path.
LOT_PAGE = 16
# Cached account ids per process, dropped wholesale beyond this many volunteers.
CACHE_LIMIT = 100_000


def enabled() -> bool:
    """Return True when writes may take the one-statement path (PostgreSQL, not disabled)."""
    return current_app.config["FUSED_WRITES"] and db.engine.dialect.name == "postgresql"


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


@dataclass(frozen=True)
class _Earning:
    account_id: int
    district_id: int
    issuance_id: int


def _earning_ids(volunteer_id: int) -> _Earning | None:
    """The volunteer's account, its node and the node's issuance account (cached; None
    on a miss in an `alone` statement)."""
    cache = _cache()
    account_id = cache.get(("volunteer", volunteer_id))
    district_id = cache.get(("district", volunteer_id))
    issuance_id = cache.get(("issuance", district_id))
    if account_id is None or district_id is None or issuance_id is None:
        if alone_connection() is not None:
            return None  # looked up inside a unit of work, never beside one
        account, issuance = _earning_accounts(volunteer_id)
        account_id, district_id, issuance_id = account.id, account.district_id, issuance.id
        cache[("volunteer", volunteer_id)] = account_id
        cache[("district", volunteer_id)] = district_id
        cache[("issuance", district_id)] = issuance_id
    return _Earning(account_id, district_id, issuance_id)


def _spending_ids(volunteer_id: int, provider_id: int) -> tuple[int, int, int] | None:
    """The volunteer's account, its node, and the provider's account there (cached;
    the provider's account is opened on first use, as the step-by-step path does; None
    on a miss in an `alone` statement)."""
    cache = _cache()
    account_id = cache.get(("volunteer", volunteer_id))
    district_id = cache.get(("district", volunteer_id))
    destination_id = cache.get(("provider", provider_id, district_id))
    if alone_connection() is not None and (
        account_id is None or district_id is None or destination_id is None
    ):
        return None
    if account_id is None or district_id is None:
        account = _volunteer_account(volunteer_id)
        account_id, district_id = account.id, account.district_id
        cache[("volunteer", volunteer_id)] = account_id
        cache[("district", volunteer_id)] = district_id
        destination_id = cache.get(("provider", provider_id, district_id))
    if destination_id is None:
        destination_id = _provider_account(provider_id, district_id).id
        cache[("provider", provider_id, district_id)] = destination_id
    return account_id, district_id, destination_id


# -- the statements ----------------------------------------------------------------------
#
# Each is all or nothing. `ok` checks every precondition against the statement's snapshot
# (and, with an idempotency key, that the key is unused); when one fails, nothing is
# written and the statement returns ok = 0. When they hold but a concurrent unit wins a
# race in between (the key claimed, the account emptied or closed, a planned lot spent),
# `points_lost_race()` raises a serialization failure, which aborts the whole statement
# and makes the unit of work run again, on a fresh snapshot.

_KEY_UNUSED = """
      AND NOT EXISTS (SELECT FROM idempotency_keys
                      WHERE scope = %(key_scope)s AND key = %(key)s)"""
_CLAIM = """
claim AS (
    INSERT INTO idempotency_keys (scope, key, request_hash, result, created_at)
    SELECT %(key_scope)s, %(key)s, %(fingerprint)s,
           json_build_object('entry_id', ids.entry_id), %(now)s
    FROM ids
    ON CONFLICT DO NOTHING
    RETURNING 1
),"""
_NO_CLAIM = """
claim AS (SELECT 1 FROM ids),"""

_EARN = """
WITH ok AS (
    SELECT 1
    FROM accounts v, accounts i
    WHERE v.id = %(account_id)s AND v.volunteer_id = %(volunteer_id)s
      AND v.district_id = %(district_id)s AND v.status = 'open'
      AND i.id = %(issuance_id)s AND i.district_id = %(district_id)s
      AND i.kind = 'issuance' AND i.status = 'open'{key_unused}
),
ids AS (SELECT nextval('entries_id_seq') AS entry_id FROM ok),
{claim}
credit AS (
    UPDATE accounts SET balance = balance + %(points)s
    WHERE id = %(account_id)s AND status = 'open' AND EXISTS (SELECT FROM claim)
    RETURNING 1
),
entry AS (
    INSERT INTO entries (id, district_id, kind, effective_at, created_at, actor, reason,
                         plugin, rule, config_version, service_record_id, hash)
    SELECT ids.entry_id, %(district_id)s, 'earn', %(effective_at)s, %(now)s, %(actor)s,
           %(reason)s, %(plugin)s, %(rule)s, %(config_version)s, %(service_record_id)s,
           %(hash)s
    FROM ids WHERE EXISTS (SELECT FROM credit)
    RETURNING id
),
postings AS (
    INSERT INTO postings (entry_id, district_id, account_id, amount)
    SELECT entry.id, %(district_id)s, p.account_id, p.amount
    FROM entry, (VALUES (1, %(issuance_id)s::integer, -%(points)s::bigint),
                        (2, %(account_id)s::integer, %(points)s::bigint))
                AS p(n, account_id, amount)
    ORDER BY p.n
),
lot AS (
    INSERT INTO lots (district_id, account_id, entry_id, amount, remaining, expires_at,
                      created_at)
    SELECT %(district_id)s, %(account_id)s, entry.id, %(points)s, %(points)s,
           %(expires_at)s, %(now)s
    FROM entry
),
queued AS (
    INSERT INTO unsealed_entries (entry_id, district_id)
    SELECT entry.id, %(district_id)s FROM entry
)
SELECT ok, entry_id,
       CASE WHEN ok > 0 AND entry_id IS NULL THEN points_lost_race('earn') END
FROM (SELECT (SELECT count(*) FROM ok) AS ok, (SELECT id FROM entry) AS entry_id) AS outcome
"""

# Lots are spent soonest expiry first, never-expiring last: PostgreSQL sorts NULL last.
_REDEEM = """
WITH page AS (
    SELECT id, remaining, expires_at
    FROM lots
    WHERE account_id = %(account_id)s AND remaining > 0
    ORDER BY expires_at, id
    LIMIT {page}
),
plan AS (
    SELECT id, LEAST(remaining, %(points)s - before) AS take
    FROM (SELECT id, remaining,
                 sum(remaining) OVER (ORDER BY expires_at, id) - remaining AS before
          FROM page) AS running
    WHERE before < %(points)s
),
ok AS (
    SELECT 1
    FROM accounts v, accounts d, providers p
    WHERE v.id = %(account_id)s AND v.volunteer_id = %(volunteer_id)s
      AND v.district_id = %(district_id)s AND v.status = 'open'
      AND v.balance - v.held >= %(points)s
      AND d.id = %(destination_id)s AND d.provider_id = %(provider_id)s
      AND d.district_id = %(district_id)s AND d.kind = 'provider' AND d.status = 'open'
      AND p.id = %(provider_id)s AND p.status = 'active'
      AND (SELECT coalesce(sum(take), 0) FROM plan) = %(points)s{key_unused}
),
ids AS (
    SELECT nextval('entries_id_seq') AS entry_id, nextval('holds_id_seq') AS hold_id
    FROM ok
),
{claim}
debit AS (
    UPDATE accounts SET balance = balance - %(points)s
    WHERE id = %(account_id)s AND status = 'open' AND balance - held >= %(points)s
      AND EXISTS (SELECT FROM claim)
    RETURNING 1
),
used AS (
    UPDATE lots SET remaining = lots.remaining - plan.take
    FROM plan
    WHERE lots.id = plan.id AND lots.remaining >= plan.take AND EXISTS (SELECT FROM debit)
    RETURNING lots.id, plan.take
),
hold AS (
    INSERT INTO holds (id, district_id, account_id, destination_id, amount, status,
                       expires_at, actor, reason, created_at, resolved_at, resolved_by,
                       resolution)
    SELECT ids.hold_id, %(district_id)s, %(account_id)s, %(destination_id)s, %(points)s,
           'posted', %(hold_expires_at)s, %(actor)s, %(reason)s, %(now)s, %(now)s,
           %(actor)s, %(reason)s
    FROM ids WHERE EXISTS (SELECT FROM debit)
    RETURNING id
),
entry AS (
    INSERT INTO entries (id, district_id, kind, effective_at, created_at, actor, reason,
                         hold_id, hash)
    SELECT ids.entry_id, %(district_id)s, 'redeem', %(effective_at)s, %(now)s, %(actor)s,
           %(reason)s, hold.id,
           encode(sha256(%(hash_head)s || convert_to(hold.id::text, 'UTF8')
                         || %(hash_tail)s), 'hex')
    FROM ids, hold
    RETURNING id
),
postings AS (
    INSERT INTO postings (entry_id, district_id, account_id, amount)
    SELECT entry.id, %(district_id)s, p.account_id, p.amount
    FROM entry, (VALUES (1, %(account_id)s::integer, -%(points)s::bigint),
                        (2, %(destination_id)s::integer, %(points)s::bigint))
                AS p(n, account_id, amount)
    ORDER BY p.n
),
uses AS (
    INSERT INTO lot_uses (district_id, lot_id, entry_id, amount)
    SELECT %(district_id)s, used.id, entry.id, used.take FROM used, entry
),
queued AS (
    INSERT INTO unsealed_entries (entry_id, district_id)
    SELECT entry.id, %(district_id)s FROM entry
)
SELECT ok, entry_id,
       CASE WHEN ok > 0 AND (entry_id IS NULL OR taken <> %(points)s)
            THEN points_lost_race('redeem') END
FROM (SELECT (SELECT count(*) FROM ok) AS ok, (SELECT id FROM entry) AS entry_id,
             (SELECT coalesce(sum(take), 0) FROM used) AS taken) AS outcome
"""

_STATEMENTS = {
    ("earn", True): _EARN.format(claim=_CLAIM, key_unused=_KEY_UNUSED),
    ("earn", False): _EARN.format(claim=_NO_CLAIM, key_unused=""),
    ("redeem", True): _REDEEM.format(claim=_CLAIM, key_unused=_KEY_UNUSED, page=LOT_PAGE),
    ("redeem", False): _REDEEM.format(claim=_NO_CLAIM, key_unused="", page=LOT_PAGE),
}


def _execute(statement: str, parameters: dict[str, Any]):
    """Run SQL text and return its one row: on the `alone` connection, or as driver SQL
    on the unit of work's connection (no statement to compile; SQLAlchemy still wraps
    errors). psycopg prepares a statement it has run a few times."""
    connection = alone_connection()
    if connection is not None:
        return connection.execute(statement, parameters).fetchone()
    return db.session.connection().exec_driver_sql(statement, parameters).fetchone()


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
    """Write an earn in one statement; return None when the step-by-step path must (a
    precondition failed, or the key is taken), having written nothing."""
    if type(volunteer_id) is not int:
        return None
    ids = _earning_ids(volunteer_id)
    if ids is None:
        return None
    fields = entry_fields(
        ids.district_id,
        "earn",
        actor=actor,
        reason=reason,
        effective_at=effective_at,
        plugin=plugin,
        rule=rule,
        config_version=config_version,
        service_record_id=service_record_id,
    )
    pairs = ((ids.issuance_id, -points), (ids.account_id, points))
    row = _execute(
        _STATEMENTS["earn", key is not None],
        {
            **fields,
            **_key_parameters(key, scope, fingerprint),
            "volunteer_id": volunteer_id,
            "account_id": ids.account_id,
            "issuance_id": ids.issuance_id,
            "points": points,
            "expires_at": expires_at,
            "now": utcnow(),
            "hash": entry_hash(fields, pairs),
        },
    )
    ok, entry_id, _ = row
    if not ok:
        _forget(("volunteer", volunteer_id), ("district", volunteer_id))
        return None
    return PostedEntry(entry_id, "earn", ids.district_id, pairs)


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
    """Write a redemption (a hold, posted at once) in one statement; return None when the
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
    row = _execute(
        _STATEMENTS["redeem", key is not None],
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
    ok, entry_id, _ = row
    if not ok:
        # Not enough points, or lots beyond the first page; a closed account or provider;
        # a stale id; a used key: the step-by-step path says which, or does the work.
        _forget(("volunteer", volunteer_id), ("provider", provider_id, district_id))
        return None
    return PostedEntry(entry_id, "redeem", district_id, pairs)
