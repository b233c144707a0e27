"""Provider settlement: a node's `settled` account, `settle` entries, settlements.

- Accounts of kind `settled` (one per node, like issuance, expired and clearing) and
  entries of kind `settle`: a settlement moves the points a provider's vouchers earned
  out of the provider's account into its node's settled account, so that a provider
  account's balance is what is still unpaid.
- `settlements`: one per settling of a provider over a period at a node; redemptions
  gain `settlement_id` (the settlement that paid them, so that none is paid twice) and
  `unit_price_fen` (the catalog item's price when it was redeemed, if it had one).

Widening the two kind enumerations: on PostgreSQL the entries CHECK is replaced (the
table is locked while the new one reads every row: about a second a million entries)
and the accounts shape trigger's function is replaced; SQLite cannot alter a constraint and cannot rebuild a table that
others reference, so the table's stored definition is edited in place, as SQLite's own
documentation describes for loosening a CHECK constraint (no row can break the wider
list), and the schema version is bumped so that every connection reads it again.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OLD_ENTRY_KINDS = ("earn", "redeem", "transfer", "expire", "reversal")
NEW_ENTRY_KINDS = (*OLD_ENTRY_KINDS, "settle")
OLD_ACCOUNT_KINDS = ("volunteer", "issuance", "provider", "expired", "clearing")
NEW_ACCOUNT_KINDS = (*OLD_ACCOUNT_KINDS, "settled")
OLD_SYSTEM_KINDS = ("issuance", "expired", "clearing")
NEW_SYSTEM_KINDS = (*OLD_SYSTEM_KINDS, "settled")

# migration 0007's function, with the wider list of kinds.
SHAPE_FUNCTION = """
CREATE OR REPLACE FUNCTION points_account_shape() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    broken text;
BEGIN
    broken := CASE
        WHEN NOT (NEW.kind::text = ANY ('{KINDS}'::text[])) THEN 'ck_accounts_kind'
        WHEN NOT (NEW.status::text = ANY ('{open,closed}'::text[])) THEN 'ck_accounts_status'
        WHEN NOT ((NEW.kind = 'volunteer') = (NEW.volunteer_id IS NOT NULL))
            THEN 'ck_accounts_volunteer_owner'
        WHEN NOT ((NEW.kind = 'provider') = (NEW.provider_id IS NOT NULL))
            THEN 'ck_accounts_provider_owner'
        WHEN NOT (NEW.kind = 'volunteer' OR NEW.held = 0) THEN 'ck_accounts_held_only_volunteer'
    END;
    IF broken IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "accounts" violates check constraint "%"',
            broken
            USING ERRCODE = 'check_violation', CONSTRAINT = broken, TABLE = 'accounts';
    END IF;
    RETURN NEW;
END $$;
"""


def _listed(values) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _sqlite_widen(table: str, column_check: str, old, new) -> None:
    """Edit a table's stored CHECK in place (SQLite): the list of kinds grows."""
    bind = op.get_bind()
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    before = f"CONSTRAINT {column_check} CHECK (kind IN ({_listed(old)}))"
    after = f"CONSTRAINT {column_check} CHECK (kind IN ({_listed(new)}))"
    if before not in sql:
        raise RuntimeError(f"{table}: {before!r} not found; the schema is not as 0014 left it")
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
        (sql.replace(before, after), table),
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {version + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def _kinds(entry_kinds, account_kinds, system_kinds) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE entries DROP CONSTRAINT ck_entries_kind")
        op.execute(
            "ALTER TABLE entries ADD CONSTRAINT ck_entries_kind CHECK "
            f"(kind::text = ANY ('{{{','.join(entry_kinds)}}}'::text[]))"
        )
        op.execute(SHAPE_FUNCTION.replace("{KINDS}", "{" + ",".join(account_kinds) + "}"))
    else:
        old_entries = OLD_ENTRY_KINDS if entry_kinds == NEW_ENTRY_KINDS else NEW_ENTRY_KINDS
        old_accounts = OLD_ACCOUNT_KINDS if account_kinds == NEW_ACCOUNT_KINDS else NEW_ACCOUNT_KINDS
        _sqlite_widen("entries", "ck_entries_kind", old_entries, entry_kinds)
        _sqlite_widen("accounts", "ck_accounts_kind", old_accounts, account_kinds)
    op.drop_index("uq_accounts_district_system_kind", table_name="accounts")
    where = sa.text(f"kind IN ({_listed(system_kinds)})")
    op.create_index(
        "uq_accounts_district_system_kind",
        "accounts",
        ["district_id", "kind"],
        unique=True,
        sqlite_where=where,
        postgresql_where=where,
    )


def upgrade():
    _kinds(NEW_ENTRY_KINDS, NEW_ACCOUNT_KINDS, NEW_SYSTEM_KINDS)
    op.create_table(
        "settlements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("vouchers", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("unpriced", sa.Integer(), nullable=False),
        sa.Column("settled_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("period_end > period_start", name=op.f("ck_settlements_period")),
        sa.CheckConstraint(
            "vouchers > 0 AND points > 0 AND amount_fen >= 0 AND unpriced >= 0",
            name=op.f("ck_settlements_sums"),
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_settlements_district_id_districts")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["providers.id"], name=op.f("fk_settlements_provider_id_providers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlements")),
    )
    op.create_index(
        op.f("ix_settlements_provider_id_id"), "settlements", ["provider_id", "id"]
    )
    op.add_column("redemptions", sa.Column("unit_price_fen", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with a key only as a column constraint (default NULL).
        op.execute(
            "ALTER TABLE redemptions ADD COLUMN settlement_id INTEGER REFERENCES settlements (id)"
        )
    else:
        op.add_column("redemptions", sa.Column("settlement_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            op.f("fk_redemptions_settlement_id_settlements"),
            "redemptions",
            "settlements",
            ["settlement_id"],
            ["id"],
        )
    # A provider's fulfilled vouchers not yet settled, by when they were fulfilled.
    op.create_index(
        "ix_redemptions_provider_id_resolved_at",
        "redemptions",
        ["provider_id", "resolved_at"],
        sqlite_where=sa.text("status = 'fulfilled' AND settlement_id IS NULL"),
        postgresql_where=sa.text("status = 'fulfilled' AND settlement_id IS NULL"),
    )
    op.create_index(op.f("ix_redemptions_settlement_id"), "redemptions", ["settlement_id"])


def downgrade():
    bind = op.get_bind()
    if bind.exec_driver_sql("SELECT count(*) FROM entries WHERE kind = 'settle'").scalar():
        raise RuntimeError("settle entries exist: below 0015 the ledger could not hold them")
    # Opened with every node, and empty without settle entries.
    op.execute("DELETE FROM accounts WHERE kind = 'settled'")
    op.drop_index(op.f("ix_redemptions_settlement_id"), table_name="redemptions")
    op.drop_index("ix_redemptions_provider_id_resolved_at", table_name="redemptions")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(
            op.f("fk_redemptions_settlement_id_settlements"), "redemptions", type_="foreignkey"
        )
    # SQLite rebuilds the table, which its name in postings' trigger (0013) forbids while
    # the trigger stands: set the trigger aside meanwhile.
    trigger = None
    if bind.dialect.name == "sqlite":
        trigger = bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'postings_roll_up'"
        ).scalar_one()
        op.execute("DROP TRIGGER postings_roll_up")
    with op.batch_alter_table("redemptions") as batch:
        batch.drop_column("settlement_id")
        batch.drop_column("unit_price_fen")
    if trigger is not None:
        op.execute(trigger)
    op.drop_table("settlements")
    _kinds(OLD_ENTRY_KINDS, OLD_ACCOUNT_KINDS, OLD_SYSTEM_KINDS)
