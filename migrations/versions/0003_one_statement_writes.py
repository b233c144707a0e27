"""One-call writes on PostgreSQL, and leaner ledger indexes.

- `points_earn(...)` and `points_redeem(...)` write an earn or a redemption in one call
  (points/ledger/fused.py), all or nothing.
- Open lots by account, in spending order (expires_at, id), replace lots by account and
  expiry: a debit reads the first open lots of one account straight from the index,
  however many spent lots its history holds.
- entries.hold_id and entries.service_record_id are indexed only where set, and holds by
  account only while pending: most entries have neither, and a redemption's hold is
  posted at once. lot_uses.lot_id loses its index: only `verify` reads uses by lot, all
  of them at once. Each write skips index insertions it never needed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The two hot writes of points/ledger/fused.py, one call each, in the order of the
# step-by-step path: the idempotency key, then the account, then the rest. Every
# statement in a function takes a fresh snapshot at READ COMMITTED, so lots read after
# the account's row lock are current. Each returns the entry id, or NULL having written
# nothing (a claimed key is deleted again) when the key is in use or a precondition in
# the account's UPDATE fails; the caller then runs the step-by-step path, which replays
# the key or raises the right error.
PG_WRITERS = """
CREATE FUNCTION points_earn(
    key_scope text, key_name text, fingerprint text, written_at timestamptz,
    volunteer integer, account integer, issuance integer, district integer,
    points bigint, effective_at timestamptz, actor text, reason text, plugin text,
    rule text, config_version integer, service_record integer, expires_at timestamptz,
    content_hash text
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
BEGIN
    entry := nextval('entries_id_seq');
    -- The key first, as the step-by-step path claims it: a key in use (or claimed by a
    -- unit still running, which this waits for) is left to that path to replay.
    IF key_name IS NOT NULL THEN
        INSERT INTO idempotency_keys (scope, key, request_hash, result, created_at)
        VALUES (key_scope, key_name, fingerprint, json_build_object('entry_id', entry),
                written_at)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    -- Every precondition in the credit itself.
    UPDATE accounts v SET balance = v.balance + points
    FROM accounts i
    WHERE v.id = account AND v.volunteer_id = volunteer AND v.district_id = district
      AND v.status = 'open' AND i.id = issuance AND i.district_id = district
      AND i.kind = 'issuance' AND i.status = 'open';
    IF NOT FOUND THEN
        DELETE FROM idempotency_keys k WHERE k.scope = key_scope AND k.key = key_name;
        RETURN NULL;
    END IF;
    INSERT INTO entries (id, district_id, kind, effective_at, created_at, actor, reason,
                         plugin, rule, config_version, service_record_id, hash)
    VALUES (entry, district, 'earn', effective_at, written_at, actor, reason, plugin, rule,
            config_version, service_record, content_hash);
    INSERT INTO postings (entry_id, district_id, account_id, amount)
    VALUES (entry, district, issuance, -points), (entry, district, account, points);
    INSERT INTO lots (district_id, account_id, entry_id, amount, remaining, expires_at,
                      created_at)
    VALUES (district, account, entry, points, points, expires_at, written_at);
    INSERT INTO unsealed_entries (entry_id, district_id) VALUES (entry, district);
    RETURN entry;
END $$;

CREATE FUNCTION points_redeem(
    key_scope text, key_name text, fingerprint text, written_at timestamptz,
    volunteer integer, provider integer, account integer, destination integer,
    district integer, points bigint, hold_expires_at timestamptz, actor text,
    reason text, hash_head bytea, hash_tail bytea
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    entry bigint;
    hold integer;
    left_to_take bigint := points;
    take bigint;
    lot record;
BEGIN
    entry := nextval('entries_id_seq');
    hold := nextval('holds_id_seq');
    IF key_name IS NOT NULL THEN
        INSERT INTO idempotency_keys (scope, key, request_hash, result, created_at)
        VALUES (key_scope, key_name, fingerprint, json_build_object('entry_id', entry),
                written_at)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    -- Every precondition in the debit itself, which takes the account's row lock before
    -- any lot is read.
    UPDATE accounts v SET balance = v.balance - points
    FROM accounts d, providers p
    WHERE v.id = account AND v.volunteer_id = volunteer AND v.district_id = district
      AND v.status = 'open' AND v.balance - v.held >= points
      AND d.id = destination AND d.provider_id = provider AND d.district_id = district
      AND d.kind = 'provider' AND d.status = 'open'
      AND p.id = provider AND p.status = 'active';
    IF NOT FOUND THEN
        DELETE FROM idempotency_keys k WHERE k.scope = key_scope AND k.key = key_name;
        RETURN NULL;
    END IF;
    INSERT INTO holds (id, district_id, account_id, destination_id, amount, status,
                       expires_at, actor, reason, created_at, resolved_at, resolved_by,
                       resolution)
    VALUES (hold, district, account, destination, points, 'posted', hold_expires_at,
            actor, reason, written_at, written_at, actor, reason);
    INSERT INTO entries (id, district_id, kind, effective_at, created_at, actor, reason,
                         hold_id, hash)
    VALUES (entry, district, 'redeem', written_at, written_at, actor, reason, hold,
            encode(sha256(hash_head || convert_to(hold::text, 'UTF8') || hash_tail), 'hex'));
    INSERT INTO postings (entry_id, district_id, account_id, amount)
    VALUES (entry, district, account, -points), (entry, district, destination, points);
    -- Soonest expiry first, never-expiring last (PostgreSQL sorts NULL last).
    FOR lot IN
        SELECT l.id, l.remaining FROM lots l
        WHERE l.account_id = account AND l.remaining > 0
        ORDER BY l.expires_at, l.id
    LOOP
        take := least(lot.remaining, left_to_take);
        UPDATE lots SET remaining = remaining - take WHERE id = lot.id;
        INSERT INTO lot_uses (district_id, lot_id, entry_id, amount)
        VALUES (district, lot.id, entry, take);
        left_to_take := left_to_take - take;
        EXIT WHEN left_to_take = 0;
    END LOOP;
    IF left_to_take > 0 THEN
        RAISE EXCEPTION 'lots of account % hold less than its balance', account
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    INSERT INTO unsealed_entries (entry_id, district_id) VALUES (entry, district);
    RETURN entry;
END $$;
"""

OPEN = sa.text("remaining > 0")
HOLD_SET = sa.text("hold_id IS NOT NULL")
PENDING = sa.text("status = 'pending'")
RECORD_SET = sa.text("service_record_id IS NOT NULL")


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_WRITERS)
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index("ix_lots_account_id_expires_at")
        batch_op.create_index(
            "ix_lots_open_by_account",
            ["account_id", "expires_at", "id"],
            unique=False,
            sqlite_where=OPEN,
            postgresql_where=OPEN,
        )
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_hold_id")
        batch_op.drop_index("ix_entries_service_record_id")
        batch_op.create_index(
            "ix_entries_hold_id",
            ["hold_id"],
            unique=False,
            sqlite_where=HOLD_SET,
            postgresql_where=HOLD_SET,
        )
        batch_op.create_index(
            "ix_entries_service_record_id",
            ["service_record_id"],
            unique=False,
            sqlite_where=RECORD_SET,
            postgresql_where=RECORD_SET,
        )
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_account_id")
        batch_op.create_index(
            "ix_holds_account_id",
            ["account_id"],
            unique=False,
            sqlite_where=PENDING,
            postgresql_where=PENDING,
        )
    with op.batch_alter_table("lot_uses", schema=None) as batch_op:
        batch_op.drop_index("ix_lot_uses_lot_id")


def downgrade():
    with op.batch_alter_table("lot_uses", schema=None) as batch_op:
        batch_op.create_index("ix_lot_uses_lot_id", ["lot_id"])
    with op.batch_alter_table("holds", schema=None) as batch_op:
        batch_op.drop_index("ix_holds_account_id")
        batch_op.create_index("ix_holds_account_id", ["account_id"])
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index("ix_entries_service_record_id")
        batch_op.drop_index("ix_entries_hold_id")
        batch_op.create_index("ix_entries_service_record_id", ["service_record_id"])
        batch_op.create_index("ix_entries_hold_id", ["hold_id"])
    with op.batch_alter_table("lots", schema=None) as batch_op:
        batch_op.drop_index("ix_lots_open_by_account")
        batch_op.create_index("ix_lots_account_id_expires_at", ["account_id", "expires_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS points_earn")
        op.execute("DROP FUNCTION IF EXISTS points_redeem")
