"""One-statement writes: a lost-race signal on PostgreSQL, and leaner ledger indexes.

- `points_lost_race(what)` raises a serialization failure, so that a one-statement
  writer (points/ledger/fused.py) that lost a race aborts as a whole and is retried.
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

LOST_RACE = """
CREATE FUNCTION points_lost_race(what text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% lost a race with a concurrent unit of work; retry it', what
        USING ERRCODE = 'serialization_failure';
END $$;
"""

OPEN = sa.text("remaining > 0")
HOLD_SET = sa.text("hold_id IS NOT NULL")
PENDING = sa.text("status = 'pending'")
RECORD_SET = sa.text("service_record_id IS NOT NULL")


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LOST_RACE)
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
        op.execute("DROP FUNCTION IF EXISTS points_lost_race(text)")
