"""The only writer of the ledger: entries, postings, lots, holds, seals and service minutes.

Every public function here runs as one unit of work (`atomic`): it commits everything or
nothing, and is retried when it lost a race the database reports as retryable. Inside a
unit that is already open (a caller's `atomic`), it joins that unit instead.

Concurrency: a volunteer account changes only through a conditional UPDATE
(`balance - held >= x`) at READ COMMITTED, which is correct without retries on
PostgreSQL; on SQLite a unit takes the write lock up front (BEGIN IMMEDIATE). Accounts
are always touched in ascending id order and holds before accounts, so no two units
wait on each other in a cycle. Unbounded accounts (issuance, provider, expired,
clearing) are never locked.
"""

from points.ledger.accounts import (
    balance,
    close_account,
    load_entry,
    load_hold,
    open_district_accounts,
    open_volunteer_account,
)
from points.ledger.batch import (
    BatchEarn,
    BatchMinutes,
    add_service_minutes_many,
    earn_many,
    insert_many,
    reserve_ids,
)
from points.ledger.chain import (
    seal,
    seal_hash,
)
from points.ledger.operations import (
    add_service_minutes,
    correct_service_minutes,
    earn,
    expire_lots,
    hold,
    post_hold,
    redeem,
    reverse,
    settle,
    time_out_holds,
    transfer,
    void_hold,
)
from points.ledger.posting import (
    HASHED_FIELDS,
    entry_hash,
    entry_hash_around,
)
from points.ledger.units import (
    GENESIS_HASH,
    MAX_SERVICE_MINUTES,
    Balance,
    HoldState,
    LedgerInvariantError,
    PostedEntry,
    after_commit,
    atomic,
    autocommit_connection,
    check_points,
    claim_idempotency_key,
    idempotent,
    in_unit_of_work,
    record_result,
    request_hash,
    rolled_back,
    stored_result,
)

__all__ = [
    "GENESIS_HASH",
    "HASHED_FIELDS",
    "MAX_SERVICE_MINUTES",
    "Balance",
    "BatchEarn",
    "BatchMinutes",
    "HoldState",
    "LedgerInvariantError",
    "PostedEntry",
    "add_service_minutes",
    "add_service_minutes_many",
    "after_commit",
    "atomic",
    "autocommit_connection",
    "balance",
    "check_points",
    "claim_idempotency_key",
    "close_account",
    "correct_service_minutes",
    "earn",
    "earn_many",
    "entry_hash",
    "entry_hash_around",
    "expire_lots",
    "hold",
    "idempotent",
    "in_unit_of_work",
    "insert_many",
    "load_entry",
    "load_hold",
    "open_district_accounts",
    "open_volunteer_account",
    "post_hold",
    "record_result",
    "redeem",
    "request_hash",
    "reserve_ids",
    "reverse",
    "rolled_back",
    "seal",
    "seal_hash",
    "settle",
    "stored_result",
    "time_out_holds",
    "transfer",
    "void_hold",
]
