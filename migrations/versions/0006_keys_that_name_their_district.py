"""Ledger keys that name their district, and enumerations checked against one constant.

A redemption on PostgreSQL ran 16 foreign-key checks and a dozen CHECK constraints, and
together they cost more server time than its rows (docs/architecture.md, "The cost of a
write"). Three changes, leaving the database at least as strict as before:

- Keys that name their district (PostgreSQL). A posting, lot, lot use, hold or sealer
  queue row pointed at its entry or account by id and, separately, at its district. Each
  now points at `(id, district_id)` of its entry or account instead: one check where there
  were two, and the database itself now refuses a posting (or lot, hold...) outside its
  entry's or account's district, which only Python and `verify` refused before. Entries
  and accounts gain the unique `(district_id, id)` indexes these keys need (for entries
  it replaces the plain index of the same columns). Server time per redemption fell by
  about a sixth. SQLite keeps its single-column keys: there its foreign keys cost little,
  and SQLite cannot alter a constraint without rebuilding each table, which it cannot do
  for a referenced table (holds, lots) with foreign keys on.
- Enumerations checked against one constant (PostgreSQL). `status IN ('a', 'b')` on a
  VARCHAR column is stored as an array of casts that PostgreSQL parses again for every
  statement writing the table; `status::text = ANY ('{a,b}'::text[])` is one constant,
  about half the text. Every enumeration CHECK (accounts, entries, holds, volunteers,
  service records...) is respelled, with the same values.
- `points_redeem` always runs the generic plan of its lot query (GENERIC_PLANS below).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

import re

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Each key that now names its district keeps the name of the single-column key it
# replaces: (table, key name, column, referred table).
FOLDED_KEYS = (
    ("postings", "fk_postings_entry_id_entries", "entry_id", "entries"),
    ("postings", "fk_postings_account_id_accounts", "account_id", "accounts"),
    ("lots", "fk_lots_entry_id_entries", "entry_id", "entries"),
    ("lots", "fk_lots_account_id_accounts", "account_id", "accounts"),
    ("lot_uses", "fk_lot_uses_entry_id_entries", "entry_id", "entries"),
    ("holds", "fk_holds_account_id_accounts", "account_id", "accounts"),
    ("holds", "fk_holds_destination_id_accounts", "destination_id", "accounts"),
    ("unsealed_entries", "fk_unsealed_entries_entry_id_entries", "entry_id", "entries"),
)
# Their district keys, which the folded keys make redundant.
DISTRICT_KEYS = ("postings", "lots", "lot_uses", "holds", "unsealed_entries")

# points_redeem reads a volunteer's open lots by account. PostgreSQL plans that query
# afresh for every call when accounts differ much in how many open lots they hold (a
# custom plan's estimate for one account beats the generic plan's average), and the
# planning cost about a twentieth of the call. The generic plan is the right one for any
# account: the open-lot index, in spending order.
GENERIC_PLANS = "force_generic_plan"

# `col IN ('a', 'b')` as PostgreSQL prints it back, and the constant spelling.
_IN_LIST = re.compile(
    r"^CHECK \(\(\((\w+)\)::text = ANY \(\(ARRAY\[((?:'\w+'::character varying(?:, )?)+)\]\)"
    r"::text\[\]\)\)\)$"
)
_CAST = "::character varying"
_CONSTANT = re.compile(r"^CHECK \(\(\((\w+)\)::text = ANY \('\{([\w,]+)\}'::text\[\]\)\)\)$")


def upgrade():
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.create_index("uq_entries_district_id_id", ["district_id", "id"], unique=True)
        batch_op.drop_index("ix_entries_district_id_id")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index("uq_accounts_district_id_id", ["district_id", "id"], unique=True)
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, name, column, referred in FOLDED_KEYS:
        _replace_key(
            table, name, f"({column}, district_id) REFERENCES {referred} (id, district_id)"
        )
    for table in DISTRICT_KEYS:
        op.drop_constraint(f"fk_{table}_district_id_districts", table, type_="foreignkey")
    _respell_checks(_IN_LIST, _as_constant)
    op.execute(f"ALTER FUNCTION points_redeem SET plan_cache_mode = {GENERIC_PLANS}")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER FUNCTION points_redeem RESET plan_cache_mode")
        _respell_checks(_CONSTANT, _as_in_list)
        for table in DISTRICT_KEYS:
            _add_key(
                table,
                f"fk_{table}_district_id_districts",
                "(district_id) REFERENCES districts (id)",
            )
        for table, name, column, referred in FOLDED_KEYS:
            _replace_key(table, name, f"({column}) REFERENCES {referred} (id)")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index("uq_accounts_district_id_id")
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.create_index("ix_entries_district_id_id", ["district_id", "id"], unique=False)
        batch_op.drop_index("uq_entries_district_id_id")


def _replace_key(table: str, name: str, definition: str) -> None:
    op.drop_constraint(name, table, type_="foreignkey")
    _add_key(table, name, definition)


def _add_key(table: str, name: str, definition: str) -> None:
    # Checked against every existing row as it is added.
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY {definition}")


def _respell_checks(pattern: re.Pattern, spell) -> None:
    """Rewrite every table CHECK constraint whose definition matches `pattern` as
    `spell(column, values)`, under the same name."""
    rows = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
                "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE c.contype = 'c' AND c.conrelid <> 0 AND n.nspname = current_schema() "
                "ORDER BY 1, 2"
            )
        )
        .all()
    )
    for table, name, definition in rows:
        found = pattern.match(definition)
        if found is None:
            continue
        column, values = found.group(1), re.findall(r"\w+", found.group(2).replace(_CAST, ""))
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({spell(column, values)})")


def _as_constant(column: str, values: list[str]) -> str:
    return f"{column}::text = ANY ('{{{','.join(values)}}}'::text[])"


def _as_in_list(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"
