"""Tables of the district tree, volunteers and the double-entry points ledger.

Design overview
---------------
Points move only as *entries* (one business event: earn, redeem, transfer, expire,
reversal), each made of *postings* (account, signed amount) that sum to zero. Nothing in
`entries`, `postings`, `lot_uses`, `seals` or `service_minutes` is ever updated or
deleted; a correction is a new entry that reverses an old one.

Accounts belong to one district node. A `volunteer` account carries a cached `balance`
and `held` (points reserved by pending holds) and may never go below zero: it is the row
that concurrent writers lock with a conditional UPDATE. Every other kind (`issuance`,
`provider`, `expired`, `clearing`) is unbounded and keeps no cached balance, so no
writer ever waits on the district's issuance account: its balance is the sum of its
postings, and its magnitude is the points ever issued (what volunteers still hold is the
sum of their accounts: redeemed and expired points sit in other accounts).

Each credit to a volunteer creates a *lot* (amount, remaining, expires_at); debits
consume lots soonest-expiry first and record a *lot use*. A *hold* reserves points for a
redemption; it is later posted (one redeem entry), voided or timed out.

Invariants (checked in the database where it can, in Python by `points.ledger`, and
all of them by `points.verify`):

1. the postings of every entry sum to zero, so all postings sum to zero;
2. a volunteer account has balance >= 0, held >= 0 and balance - held >= 0;
3. a cached balance equals the sum of the account's postings, `held` equals its
   pending holds, and its lots' `remaining` sum to the balance;
4. entries, postings, lot uses and seals are append-only;
5. an idempotency key stands for one request and one result;
6. every entry carries a content hash; a per-district hash chain (`seals`) over those
   hashes makes edits, deletions and insertions detectable.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# 64-bit ids on PostgreSQL; on SQLite an INTEGER primary key is the 64-bit rowid.
BIG_ID = BigInteger().with_variant(Integer, "sqlite")

# Points are integers with at most 53 bits, so that they survive JSON and JavaScript.
MAX_POINTS = 2**53

ACCOUNT_KINDS = ("volunteer", "issuance", "provider", "expired", "clearing", "settled")
ENTRY_KINDS = ("earn", "redeem", "transfer", "expire", "reversal", "settle")
HOLD_STATES = ("pending", "posted", "voided", "timed_out")
TOKEN_ROLES = ("admin", "office", "auditor", "kiosk", "volunteer", "provider")
STAFF_ROLES = ("admin", "office", "auditor")


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    # PostgreSQL keeps these as `column::text = ANY ('{...}'::text[])`, one constant to
    # parse per statement rather than an array of casts (migration 0006).
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _district_key(column: str, referred: str) -> ForeignKeyConstraint:
    """A foreign key from (column, district_id) to (id, district_id) of `referred`: the
    row it names is in this row's district, one check for both."""
    # Named by the naming convention after its first column, as the single-column key
    # it replaced was (fk_postings_entry_id_entries).
    return ForeignKeyConstraint(
        [column, "district_id"], [f"{referred}.id", f"{referred}.district_id"]
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class District(Base):
    """A node of the administrative tree: city > district > street > community > grid."""

    __tablename__ = "districts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("districts.id"), index=True)
    # Ids from the root down, "/1/4/9/": a subtree is a prefix match on one index.
    path: Mapped[str] = mapped_column(String(512), index=True)
    timezone: Mapped[str] = mapped_column(String(64))
    # The office's contact line, shown to volunteers ("龙潭街道办事处 010-6711 2233").
    contact: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(
            _in("level", ("city", "district", "street", "community", "grid")), name="level"
        ),
    )


class Volunteer(Base):
    """A registered steward, identified at kiosks by card code and PIN (stored hashed)."""

    __tablename__ = "volunteers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    card_code: Mapped[str] = mapped_column(String(32), unique=True)
    pin_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    failed_pins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Cached sum of service_minutes rows: only grows, except by an audited correction.
    service_minutes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The paper roster's reference (a 积分存折's number), unique in the node (imports).
    external_id: Mapped[str | None] = mapped_column(String(64))
    # Until the first PIN is chosen: the hash of the one-time activation code printed on
    # the card sheet of an imported roster (pin_hash is then unusable).
    activation_hash: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        CheckConstraint(_in("status", ("active", "suspended", "closed")), name="status"),
        Index("uq_volunteers_district_external_id", "district_id", "external_id", unique=True),
        CheckConstraint("service_minutes >= 0", name="service_minutes"),
        CheckConstraint("failed_pins >= 0", name="failed_pins"),
        # One person, one registration per node: a phone number is not shared there.
        Index("uq_volunteers_district_phone", "district_id", "phone", unique=True),
        # The office's search: by the start of a name, by a phone number (points.roster).
        Index("ix_volunteers_name", "name"),
        Index("ix_volunteers_phone", "phone"),
        # The office's Today page: cards locked now.
        Index("ix_volunteers_locked_until", "locked_until"),
    )


class Provider(Base):
    """A service provider paid in points (a barber, a repair shop, a care service)."""

    __tablename__ = "providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (CheckConstraint(_in("status", ("active", "closed")), name="status"),)


# What an account is, as (rule name, SQL condition on its row): a CHECK constraint each on
# SQLite, the `accounts_shape` trigger on PostgreSQL (migration 0007), and `verify`.
ACCOUNT_SHAPE = (
    ("kind", _in("kind", ACCOUNT_KINDS)),
    ("status", _in("status", ("open", "closed"))),
    ("volunteer_owner", "(kind = 'volunteer') = (volunteer_id IS NOT NULL)"),
    ("provider_owner", "(kind = 'provider') = (provider_id IS NOT NULL)"),
    ("held_only_volunteer", "kind = 'volunteer' OR held = 0"),
)


class Account(Base):
    """A ledger account of one district node; only volunteer accounts cache a balance."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"), unique=True)
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"))
    # NULL for unbounded kinds: their balance is the sum of their postings.
    balance: Mapped[int | None] = mapped_column(BigInteger)
    held: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        # The account's shape. On PostgreSQL the `accounts_shape` trigger checks these,
        # under the same names, only when a row is inserted or one of their columns set:
        # a CHECK constraint is checked on every balance update too (migration 0007).
        *(
            CheckConstraint(condition, name=name).ddl_if(dialect="sqlite")
            for name, condition in ACCOUNT_SHAPE
        ),
        # What it holds, checked on every update on both databases.
        CheckConstraint("(kind = 'volunteer') = (balance IS NOT NULL)", name="cached_balance"),
        CheckConstraint(
            "balance IS NULL OR (balance >= 0 AND held >= 0 AND balance - held >= 0)",
            name="non_negative",
        ),
        Index("ix_accounts_district_kind", "district_id", "kind"),
        # One issuance, expired, clearing and settled account per node; one account per
        # provider and node.
        Index(
            "uq_accounts_district_system_kind",
            "district_id",
            "kind",
            unique=True,
            sqlite_where=text("kind IN ('issuance', 'expired', 'clearing', 'settled')"),
            postgresql_where=text("kind IN ('issuance', 'expired', 'clearing', 'settled')"),
        ),
        UniqueConstraint("provider_id", "district_id"),
        # What the ledger's keys that name their district refer to (see Posting).
        Index("uq_accounts_district_id_id", "district_id", "id", unique=True),
    )


class Entry(Base):
    """One business event moving points; its postings sum to zero. Never updated."""

    __tablename__ = "entries"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    # Provenance: which plugin and rule proposed it, under which config version.
    plugin: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str | None] = mapped_column(String(64))
    config_version: Mapped[int | None] = mapped_column(Integer)
    # Links to what the entry is about.
    service_record_id: Mapped[int | None] = mapped_column(Integer)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("holds.id"))
    reverses_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("entries.id"), unique=True
    )
    # The other half of a cross-district transfer (two entries through clearing accounts).
    related_entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("entries.id"))
    # sha256 of the entry's content and postings, see points.ledger.entry_hash.
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint(_in("kind", ENTRY_KINDS), name="kind"),
        CheckConstraint("(kind = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_link"),
        # A district's entries in order (the sealer, history), and what the ledger's keys
        # that name their district refer to (see Posting).
        Index("uq_entries_district_id_id", "district_id", "id", unique=True),
        # Most entries have neither: index them only where set.
        Index(
            "ix_entries_hold_id",
            "hold_id",
            sqlite_where=text("hold_id IS NOT NULL"),
            postgresql_where=text("hold_id IS NOT NULL"),
        ),
        Index(
            "ix_entries_service_record_id",
            "service_record_id",
            sqlite_where=text("service_record_id IS NOT NULL"),
            postgresql_where=text("service_record_id IS NOT NULL"),
        ),
    )


class Posting(Base):
    """One side of an entry: a signed, non-zero amount on one account."""

    __tablename__ = "postings"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, index=True)
    district_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    # The one lot a volunteer's debit spent, when one lot covered it all (the usual
    # case); a debit that spans lots names none and has lot uses instead. Not indexed,
    # like LotUse.lot_id (migration 0008).
    lot_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("lots.id"))

    __table_args__ = (
        # Keys that name their district: a posting's entry and account are in its
        # district, checked once each (PostgreSQL; SQLite keeps a key per column, see
        # migration 0006). Lots, lot uses, holds and the sealer's queue do the same.
        _district_key("entry_id", "entries"),
        _district_key("account_id", "accounts"),
        CheckConstraint("amount <> 0", name="non_zero"),
        Index("ix_postings_account_id_id", "account_id", "id"),
    )


class Lot(Base):
    """Points credited to a volunteer together, with one expiry; debits use them up."""

    __tablename__ = "lots"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    district_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(Integer)
    entry_id: Mapped[int] = mapped_column(BigInteger, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    # amount minus the lot's uses: a cache, kept in step by points.ledger.
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # remaining > 0, kept by the database. The open-lot indexes filter on this rather
    # than on `remaining`: a debit that leaves points in a lot then changes no indexed
    # value, and PostgreSQL rewrites the row in place (a HOT update, no index entries);
    # only the debit that empties a lot touches the indexes. (Stored on PostgreSQL; a
    # SQLite database migrated by 0004 computes it on read, as ALTER TABLE cannot add a
    # stored column there and SQLite has no in-place update to gain.)
    is_open: Mapped[bool] = mapped_column(
        Boolean,
        Computed("remaining > 0", persisted=True),
        nullable=True,  # as ALTER added it
    )

    __table_args__ = (
        _district_key("account_id", "accounts"),
        _district_key("entry_id", "entries"),
        CheckConstraint("amount > 0", name="positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining"),
        # A debit's lots in spending order (PostgreSQL sorts NULL, never expiring, last).
        Index(
            "ix_lots_open_by_account",
            "account_id",
            "expires_at",
            "id",
            sqlite_where=text("is_open = 1"),
            postgresql_where=text("is_open"),
        ),
        Index(
            "ix_lots_open_expiry",
            "expires_at",
            sqlite_where=text("is_open = 1"),
            postgresql_where=text("is_open"),
        ),
        # Lots are updated by every debit: room on each page keeps the new row version
        # on the page of the old one, which a HOT update needs.
        {"postgresql_with": {"fillfactor": 90}},
    )


class LotUse(Base):
    """Points of a lot consumed by a debit entry that spans several lots (a debit that
    one lot covers names it on its posting instead: Posting.lot_id). Never updated."""

    __tablename__ = "lot_uses"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    district_id: Mapped[int] = mapped_column(Integer)
    # Not indexed: only `verify` reads uses by lot, all of them at once; lots are never
    # deleted, so the foreign key needs no index to check a delete.
    lot_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("lots.id"))
    entry_id: Mapped[int] = mapped_column(BigInteger, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        _district_key("entry_id", "entries"),
        CheckConstraint("amount > 0", name="positive"),
    )


class Hold(Base):
    """Points reserved for a redemption: pending, then posted, voided or timed out."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[int] = mapped_column(Integer)
    destination_id: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        _district_key("account_id", "accounts"),
        _district_key("destination_id", "accounts"),
        CheckConstraint("amount > 0", name="positive"),
        CheckConstraint(_in("status", HOLD_STATES), name="status"),
        CheckConstraint("(status = 'pending') = (resolved_at IS NULL)", name="resolved"),
        Index(
            "ix_holds_pending_expiry",
            "expires_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
        # What an account has on hold now; posted holds (every redemption) stay out.
        Index(
            "ix_holds_account_id",
            "account_id",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )


class ServiceMinutes(Base):
    """Service time credited to a volunteer; only corrections may be negative."""

    __tablename__ = "service_minutes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    minutes: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    service_record_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("kind", ("service", "correction")), name="kind"),
        CheckConstraint("minutes <> 0", name="non_zero"),
        CheckConstraint("kind = 'correction' OR minutes > 0", name="only_grows"),
        # A node's service in a period (reports), without reading its earlier years.
        Index("ix_service_minutes_district_id_created_at", "district_id", "created_at"),
    )


class LedgerHour(Base):
    """What one node's volunteer accounts gained and lost in one hour (UTC), by entry
    kind and by what the reports break it down by: the rollup that reports read instead
    of every posting (points.rollups, migration 0013).

    A trigger on postings keeps it in the same transaction as the postings it sums, on
    every write path (step by step, one call on PostgreSQL, bulk). The detail columns
    are set only where a report reads them: activity kind, plugin and rule for earns,
    provider and item for redemptions; '' or 0 otherwise, so that the key is never NULL.
    """

    __tablename__ = "ledger_hours"

    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    activity: Mapped[str] = mapped_column(String(32), primary_key=True)
    plugin: Mapped[str] = mapped_column(String(64), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Concurrent units of one node write different rows (migration 0013); readers sum.
    stripe: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    credits: Mapped[int] = mapped_column(BigInteger)
    debits: Mapped[int] = mapped_column(BigInteger)
    postings: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("credits >= 0 AND debits >= 0 AND postings > 0", name="sums"),
    )


class IdempotencyKey(Base):
    """A client-chosen key: the hash of the request it first came with, and its result."""

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Seal(Base):
    """A link of a district's hash chain: hash = sha256(prev_hash, seq, entry, entry.hash)."""

    __tablename__ = "seals"

    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("entries.id"), unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UnsealedEntry(Base):
    """An entry waiting for the sealer to link it into its district's chain (a work queue).

    Writers only insert here, so chaining never serialises the writers of a district;
    `points.ledger.seal` empties it in batches.
    """

    __tablename__ = "unsealed_entries"

    entry_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    district_id: Mapped[int] = mapped_column(Integer, index=True)

    __table_args__ = (_district_key("entry_id", "entries"),)


class ChainHead(Base):
    """The last seal of a district's chain; the sealer locks this row."""

    __tablename__ = "chain_heads"

    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class ApiToken(Base):
    """A bearer token (stored as a sha256 hash) with a role scoped to a district node."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    # A provider link token reaches this provider's vouchers and nothing else.
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("providers.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # A staff member's console session is a token of the staff member's role and node.
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"), index=True)
    # A kiosk's one-time pairing code (sha256), exchanged once for a new device secret.
    pairing_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    pairing_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(_in("role", TOKEN_ROLES), name="role"),
        CheckConstraint("(role = 'volunteer') = (volunteer_id IS NOT NULL)", name="volunteer"),
        CheckConstraint("(role = 'provider') = (provider_id IS NOT NULL)", name="provider"),
    )


class Staff(Base):
    """A person of a street office (or an auditor, or an admin) who signs in to /office.

    Scoped to a district node like a token; the password is stored as a memory-hard hash
    (scrypt); wrong passwords are counted here, so every worker agrees on a lockout.
    """

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lower-case: people type their name in either case.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set by a reset: the next sign-in must choose a new password before anything else.
    must_change_password: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("role", STAFF_ROLES), name="role"),
        CheckConstraint(_in("status", ("active", "disabled")), name="status"),
        CheckConstraint("failed_logins >= 0", name="failed_logins"),
    )


class AuditEvent(Base):
    """Who changed what, where, when and from where: one row per change. Never updated.

    Written in the same transaction as the change it describes (points.audit). `before`
    and `after` hold only the fields that changed, and never a PIN, password or token.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # "staff:3", "office:12" (a token), "cli:root", "system".
    actor: Mapped[str] = mapped_column(String(200))
    # The staff member's username or the token's name, as it was then.
    actor_name: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    district_id: Mapped[int | None] = mapped_column(ForeignKey("districts.id"))
    # The node's path, copied: "this node and below" is a prefix match on one index.
    district_path: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict | None] = mapped_column(JSON)
    after: Mapped[dict | None] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_audit_events_district_path_id", "district_path", "id"),
        Index("ix_audit_events_target", "target_type", "target_id", "id"),
    )


# -- plugins: policy, service records, redemptions, transfer requests -------------------
#
# Per-district plugin configuration is versioned and append-only: every change is a new
# `policy_versions` row. A service record is pending until the office (or the approval
# plugin) decides; approval posts earn entries through points.ledger and links them by
# service_record_id. A redemption is a ledger hold with a voucher code; its status
# follows the hold (held, then fulfilled or cancelled). None of these tables is written
# by points.ledger: they hold the business state around the ledger, not points.

SERVICE_STATES = ("pending", "approved", "rejected")
REDEMPTION_STATES = ("held", "fulfilled", "cancelled", "expired")
TRANSFER_REQUEST_STATES = ("pending", "approved", "rejected")


class PolicyVersion(Base):
    """One version of a plugin's configuration at one district node. Never updated.

    `config` holds only the keys set at this node; children inherit the rest from their
    ancestors, except where an ancestor listed a key in `locked`. `enabled` NULL means
    inherited. The id is the config version an award records.
    """

    __tablename__ = "policy_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    plugin: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict] = mapped_column(JSON)
    locked: Mapped[list] = mapped_column(JSON)
    enabled: Mapped[bool | None] = mapped_column()
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("version >= 1", name="version"),
        UniqueConstraint("district_id", "plugin", "version"),
    )


class PolicyDraft(Base):
    """A node's draft of a plugin's next version: checked when saved, previewed against
    past records, then activated as a version (and removed) or discarded. One per node
    and plugin, shared by the node's staff. `base_version` is the node's newest version
    when the draft began: activation is refused once someone else stored a newer one.
    """

    __tablename__ = "policy_drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    plugin: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict] = mapped_column(JSON)
    locked: Mapped[list] = mapped_column(JSON)
    enabled: Mapped[bool | None] = mapped_column()
    base_version: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("base_version >= 0", name="base_version"),
        UniqueConstraint("district_id", "plugin"),
    )


class ServiceRecord(Base):
    """A volunteer's service (patrol, visit, ...): pending, then approved or rejected."""

    __tablename__ = "service_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    kind: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    minutes: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Set for kinds allowed once per local day ("checkin:2027-03-05"); cleared on rejection.
    dedupe_key: Mapped[str | None] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    queue_reason: Mapped[str | None] = mapped_column(Text)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verified_by: Mapped[str | None] = mapped_column(String(200))
    # Points posted for this record so far, and each award with its provenance.
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    awards: Mapped[list | None] = mapped_column(JSON)

    __table_args__ = (
        CheckConstraint(_in("status", SERVICE_STATES), name="status"),
        CheckConstraint("minutes IS NULL OR (minutes >= 1 AND minutes <= 1440)", name="minutes"),
        CheckConstraint("points >= 0", name="points"),
        CheckConstraint("(status = 'pending') = (decided_at IS NULL)", name="decided"),
        UniqueConstraint("volunteer_id", "dedupe_key"),
        Index("ix_service_records_volunteer_id_started_at", "volunteer_id", "started_at"),
        Index("ix_service_records_district_id_started_at", "district_id", "started_at"),
        Index("ix_service_records_district_id_status_id", "district_id", "status", "id"),
    )


class Redemption(Base):
    """A catalog item redeemed by a volunteer: a ledger hold and a voucher code."""

    __tablename__ = "redemptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    # The node whose stock the item draws on (where the catalog item was configured).
    pool_district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    hold_id: Mapped[int] = mapped_column(ForeignKey("holds.id"), unique=True)
    voucher_code: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="held")
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(Text)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("entries.id"))
    # The catalog item's price in fen (0.01 yuan) when it was redeemed, if it had one.
    unit_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    # The settlement that paid the provider for it (points.settlements); none is paid twice.
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("settlements.id"), index=True)

    __table_args__ = (
        CheckConstraint(_in("status", REDEMPTION_STATES), name="status"),
        CheckConstraint("points > 0", name="positive"),
        CheckConstraint("(status = 'held') = (resolved_at IS NULL)", name="resolved"),
        Index(
            "ix_redemptions_pool_district_id_sku_created_at",
            "pool_district_id",
            "sku",
            "created_at",
        ),
        # A provider's fulfilled vouchers not yet settled, by when they were fulfilled.
        Index(
            "ix_redemptions_provider_id_resolved_at",
            "provider_id",
            "resolved_at",
            sqlite_where=text("status = 'fulfilled' AND settlement_id IS NULL"),
            postgresql_where=text("status = 'fulfilled' AND settlement_id IS NULL"),
        ),
    )


class TransferRequest(Base):
    """A gift of points that the transfers policy sends to the office for approval."""

    __tablename__ = "transfer_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    from_volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    to_volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    relation: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    actor: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    entry_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("entries.id"))

    __table_args__ = (
        CheckConstraint(_in("status", TRANSFER_REQUEST_STATES), name="status"),
        CheckConstraint("points > 0", name="positive"),
        CheckConstraint("(status = 'pending') = (decided_at IS NULL)", name="decided"),
        Index("ix_transfer_requests_district_id_status_id", "district_id", "status", "id"),
    )


HONOUR_STATES = ("notice", "final", "withdrawn")


class Honour(Base):
    """An honour list (荣誉榜) an office proposes from a ranking: published on a public
    notice page (公示) for a notice period, open to objections, then finalised or withdrawn
    (points.honours)."""

    __tablename__ = "honours"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    # The ranking it was drawn from: by hours or points, over [period_start, period_end).
    ranked_by: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    # The public page's address: unguessable, so that notices are not listed by number.
    public_code: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="notice")
    notice_until: Mapped[datetime] = mapped_column(UTCDateTime)
    proposed_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("status", HONOUR_STATES), name="status"),
        CheckConstraint(_in("ranked_by", ("hours", "points")), name="ranked_by"),
        CheckConstraint("(status = 'notice') = (decided_at IS NULL)", name="decided"),
        CheckConstraint("period_end > period_start", name="period"),
    )


class HonourMember(Base):
    """A volunteer on an honour list, with their place and figure at the proposal."""

    __tablename__ = "honour_members"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    honour_id: Mapped[int] = mapped_column(ForeignKey("honours.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"), index=True)
    place: Mapped[int] = mapped_column(Integer)
    value: Mapped[int] = mapped_column(BigInteger)  # minutes, or points

    __table_args__ = (
        UniqueConstraint("honour_id", "volunteer_id"),
        CheckConstraint("place >= 1", name="place"),
    )


class HonourObjection(Base):
    """An objection anyone lodged on a public notice, and the office's answer."""

    __tablename__ = "honour_objections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    honour_id: Mapped[int] = mapped_column(ForeignKey("honours.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    # A keyed hash of where it came from (never the address itself): enough to see that
    # many objections came from one place, nothing to find the person by.
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(200))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint("(answer IS NULL) = (answered_at IS NULL)", name="answered"),)


class Settlement(Base):
    """The street office paid a provider for its fulfilled vouchers of a period at a node
    (points.settlements): their points moved out of the provider's accounts into the
    nodes' settled accounts by `settle` entries, and each voucher names this row."""

    __tablename__ = "settlements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    vouchers: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    # The money owed for the vouchers whose item had a price; `unpriced` had none.
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    unpriced: Mapped[int] = mapped_column(Integer)
    settled_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint("period_end > period_start", name="period"),
        CheckConstraint(
            "vouchers > 0 AND points > 0 AND amount_fen >= 0 AND unpriced >= 0", name="sums"
        ),
        Index("ix_settlements_provider_id_id", "provider_id", "id"),
    )


IMPORT_KINDS = ("records", "balances", "roster")
IMPORT_STATES = ("running", "done", "failed")


class ImportFile(Base):
    """An uploaded import file, kept by its content's hash so that the page's preview and
    the run it confirms read the same bytes (points.imports)."""

    __tablename__ = "import_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    uploaded_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImportRun(Base):
    """One import of a file into a node, dry or real, with its counts as it goes."""

    __tablename__ = "import_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(255))
    file_sha256: Mapped[str] = mapped_column(String(64))
    # The column and value mapping the run read the file with.
    mapping: Mapped[dict] = mapped_column(JSON)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16), default="running")
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    posted: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    minutes: Mapped[int] = mapped_column(BigInteger, default=0)
    started_by: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Moved on as the run goes: a running run not heard of for long has died.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_in("kind", IMPORT_KINDS), name="kind"),
        CheckConstraint(_in("status", IMPORT_STATES), name="status"),
    )


class ImportProblem(Base):
    """A row an import refused: its line in the file, why, and the row as read."""

    __tablename__ = "import_problems"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("import_runs.id"))
    line: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    row: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_import_problems_run_id_line", "run_id", "line"),)


class ImportKey(Base):
    """A row an import posted, by its key (the node and reference column, or the file's
    hash and line): written with what it posted, so that no row is posted twice."""

    __tablename__ = "import_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    run_id: Mapped[int] = mapped_column(ForeignKey("import_runs.id"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteers.id"))
    service_record_id: Mapped[int | None] = mapped_column(BIG_ID)
    entry_id: Mapped[int | None] = mapped_column(BIG_ID)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImportMapping(Base):
    """How a node's paper files name things: columns (our field -> their header) and
    values (our field -> their value -> ours), one per node and import kind."""

    __tablename__ = "import_mappings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    columns: Mapped[dict] = mapped_column(JSON)
    values: Mapped[dict] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        CheckConstraint(_in("kind", IMPORT_KINDS), name="kind"),
        UniqueConstraint("district_id", "kind"),
    )


# -- webhooks: endpoints, subscriptions, and the outbox the triggers fill ---------------
#
# The outbox (`webhook_deliveries`) is written by database triggers on entries, service
# records, redemptions and honours (migration 0017), in the event's own transaction, on
# every write path; points.webhooks registers endpoints and delivers. See
# docs/webhooks.md.

WEBHOOK_EVENTS = (
    "entry.posted",
    "record.approved",
    "record.rejected",
    "redemption.held",
    "redemption.fulfilled",
    "redemption.cancelled",
    "redemption.expired",
    "honour.finalised",
)
WEBHOOK_DELIVERY_STATES = ("pending", "delivered", "failed")


class WebhookEndpoint(Base):
    """A URL registered at a node; it hears the events of the node and every node below
    it. The signing secret is HMAC(SECRET_KEY, "webhook:" + salt), never stored."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    # The node's path, copied: the triggers match an event's node by a prefix of its path.
    district_path: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(String(2000))
    salt: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_by: Mapped[str | None] = mapped_column(String(200))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(_in("status", ("active", "disabled")), name="status"),
        CheckConstraint("(status = 'active') = (disabled_at IS NULL)", name="disabled"),
        Index("ix_webhook_endpoints_district_path_id", "district_path", "id"),
    )


class WebhookSubscription(Base):
    """An event an endpoint wants."""

    __tablename__ = "webhook_subscriptions"

    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"), primary_key=True)
    event: Mapped[str] = mapped_column(String(32), primary_key=True)

    __table_args__ = (
        CheckConstraint(_in("event", WEBHOOK_EVENTS), name="event"),
        Index("ix_webhook_subscriptions_event", "event"),
    )


class WebhookDelivery(Base):
    """One event to send to one endpoint: pending, then delivered, or failed after the
    last retry (and pending again when replayed). Written by the triggers of 0017."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event: Mapped[str] = mapped_column(String(32))
    # Stable: "entry:<id>", "record:<id>:approved"; a receiver deduplicates on it.
    event_id: Mapped[str] = mapped_column(String(64))
    # The entry, record, redemption or honour the payload is built from when sent.
    subject_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(_in("status", WEBHOOK_DELIVERY_STATES), name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        UniqueConstraint("endpoint_id", "event_id"),
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # What the worker claims: the pending deliveries that are due.
        Index(
            "ix_webhook_deliveries_next_attempt_at",
            "next_attempt_at",
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )


class WebhookAttempt(Base):
    """One try of a delivery: the receiver's HTTP status, or why there was none."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("webhook_deliveries.id"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    milliseconds: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_webhook_attempts_delivery_id_id", "delivery_id", "id"),)


# -- activities: sign-up, on-site check-in and check-out (points.activities) -------------

ACTIVITY_STATES = ("open", "cancelled", "closed")
SIGNUP_STATES = ("signed", "withdrawn")
CHECK_VIAS = ("qr", "card", "office")


class Activity(Base):
    """An event an office posts for a node: volunteers sign up, check in and out on site,
    and check-out makes the service record (points.activities)."""

    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"))
    title_zh: Mapped[str] = mapped_column(String(200))
    title_en: Mapped[str] = mapped_column(String(200))
    description_zh: Mapped[str] = mapped_column(Text, default="")
    description_en: Mapped[str] = mapped_column(Text, default="")
    place: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The activity kind its records are of, and the details they carry (checked against
    # the kind's details schema when the activity is posted or edited).
    kind: Mapped[str] = mapped_column(String(32))
    record_details: Mapped[dict] = mapped_column(JSON)
    places: Mapped[int] = mapped_column(Integer)
    min_star_level: Mapped[int] = mapped_column(Integer, default=0)
    signup_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="open")
    # Fields plugins add (the activity_fields hook), as they loaded them.
    extra: Mapped[dict] = mapped_column(JSON)
    # The rotating QR code is HMAC(SECRET_KEY, qr_salt:window); a new salt on cancel or
    # close makes every code shown before worthless.
    qr_salt: Mapped[str] = mapped_column(String(64))
    # Bumps on each change: an edit names the version it read (If-Match).
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(_in("status", ACTIVITY_STATES), name="status"),
        CheckConstraint("ends_at > starts_at", name="times"),
        CheckConstraint("places >= 1", name="places"),
        CheckConstraint("min_star_level >= 0", name="min_star_level"),
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint("(status = 'cancelled') = (cancelled_at IS NOT NULL)", name="cancelled"),
        CheckConstraint("(status = 'closed') = (closed_at IS NOT NULL)", name="closed"),
        # The activities of a node by start (office lists, /me, the closing job).
        Index("ix_activities_district_id_starts_at", "district_id", "starts_at"),
        Index("ix_activities_status_ends_at", "status", "ends_at"),
    )


class ActivitySignup(Base):
    """A volunteer signed up for an activity (or withdrew), and their check-in and
    check-out; one row per volunteer and activity, re-used when they sign up again."""

    __tablename__ = "activity_signups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activities.id"))
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteers.id"))
    status: Mapped[str] = mapped_column(String(16), default="signed")
    signed_by: Mapped[str] = mapped_column(String(200))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_in_by: Mapped[str | None] = mapped_column(String(200))
    checked_in_via: Mapped[str | None] = mapped_column(String(8))
    checked_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_out_by: Mapped[str | None] = mapped_column(String(200))
    checked_out_via: Mapped[str | None] = mapped_column(String(8))
    service_record_id: Mapped[int | None] = mapped_column(ForeignKey("service_records.id"))

    __table_args__ = (
        CheckConstraint(_in("status", SIGNUP_STATES), name="status"),
        CheckConstraint("(status = 'withdrawn') = (withdrawn_at IS NOT NULL)", name="withdrawn"),
        CheckConstraint("checked_out_at IS NULL OR checked_in_at IS NOT NULL", name="checked_out"),
        CheckConstraint("status = 'signed' OR checked_in_at IS NULL", name="checked_in"),
        CheckConstraint(
            f"checked_in_via IS NULL OR {_in('checked_in_via', CHECK_VIAS)}", name="in_via"
        ),
        CheckConstraint(
            f"checked_out_via IS NULL OR {_in('checked_out_via', CHECK_VIAS)}",
            name="out_via",
        ),
        # The signups of an activity (counted under its row lock), one per volunteer.
        UniqueConstraint("activity_id", "volunteer_id"),
        # A volunteer's activities (/me).
        Index("ix_activity_signups_volunteer_id", "volunteer_id"),
    )


class BudgetPeriod(Base):
    """One node's budget in one of its periods (points.budgets, migration 0019): the
    budget in force when last read, and how much of it the node's stripes hold
    (`allocated`, the sum of their `reserved`). Locked only to hand a stripe a chunk."""

    __tablename__ = "budget_periods"

    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    # The policy version (the node's own `budget` layer) it was counted under.
    version_id: Mapped[int] = mapped_column(Integer)
    budget: Mapped[int] = mapped_column(BigInteger)
    allocated: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint(_in("period", ("month", "quarter", "year")), name="period"),
        CheckConstraint("budget >= 0 AND allocated >= 0", name="sums"),
    )


class BudgetCounter(Base):
    """One stripe of a node's budget counter in a period: the chunk it `reserved` from
    the period's budget and the points it `used` (awarded), used <= reserved. Writers of
    one node count on different stripes, so that earns far from the limit never queue
    for one row; `version_id` is the budget's version the chunk was taken under."""

    __tablename__ = "budget_counters"

    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), primary_key=True)
    period: Mapped[str] = mapped_column(String(8), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    stripe: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (CheckConstraint("used >= 0 AND used <= reserved", name="within"),)
