"""An account's shape is checked when it changes, not on every balance update.

PostgreSQL checks every CHECK constraint of a table on every UPDATE of a row, whatever
columns the UPDATE sets, and reads each constraint's stored expression again for every
statement. Every earn and redemption updates its volunteer's cached balance, so each
paid for seven checks on `accounts`, five of which are about what the account is, not
what it holds: its kind and status are known values, a volunteer or provider account
names its owner, only volunteer accounts hold points. Those never change with a balance.

Here (PostgreSQL only) those five become one BEFORE trigger that fires on INSERT and on
an UPDATE that sets `kind`, `status`, `volunteer_id`, `provider_id` or `held`, and
refuses a row the same way the constraint did: SQLSTATE 23514 (check_violation), naming
the constraint it stands for. The two checks that involve the balance stay CHECK
constraints: `non_negative` (the money invariant) and `cached_balance`. Server time per
redemption fell by about a twentieth (docs/architecture.md, "The cost of a write").

SQLite keeps all seven CHECK constraints: there they cost little, and the models create
the five only on SQLite (`ddl_if`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The checks the trigger takes over: name, (the CHECK as 0006 left it, the same on NEW).
SHAPE_CHECKS = {
    "ck_accounts_kind": (
        "(kind)::text = ANY ('{volunteer,issuance,provider,expired,clearing}'::text[])",
        "NEW.kind::text = ANY ('{volunteer,issuance,provider,expired,clearing}'::text[])",
    ),
    "ck_accounts_status": (
        "(status)::text = ANY ('{open,closed}'::text[])",
        "NEW.status::text = ANY ('{open,closed}'::text[])",
    ),
    "ck_accounts_volunteer_owner": (
        "((kind)::text = 'volunteer') = (volunteer_id IS NOT NULL)",
        "(NEW.kind = 'volunteer') = (NEW.volunteer_id IS NOT NULL)",
    ),
    "ck_accounts_provider_owner": (
        "((kind)::text = 'provider') = (provider_id IS NOT NULL)",
        "(NEW.kind = 'provider') = (NEW.provider_id IS NOT NULL)",
    ),
    "ck_accounts_held_only_volunteer": (
        "((kind)::text = 'volunteer') OR (held = 0)",
        "NEW.kind = 'volunteer' OR NEW.held = 0",
    ),
}

# The columns whose change can break those checks. `balance` must never be one: the
# point of the trigger is that a balance update does not fire it.
SHAPE_COLUMNS = ("kind", "status", "volunteer_id", "provider_id", "held")

# One CASE in the order of SHAPE_CHECKS. Like a CHECK constraint, a condition that is
# NULL passes (the NOT NULL columns refuse their NULLs themselves, after the trigger).
SHAPE_FUNCTION = """
CREATE FUNCTION points_account_shape() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    broken text;
BEGIN
    broken := CASE
{cases}
    END;
    IF broken IS NOT NULL THEN
        RAISE EXCEPTION 'new row for relation "accounts" violates check constraint "%"',
            broken
            USING ERRCODE = 'check_violation', CONSTRAINT = broken, TABLE = 'accounts';
    END IF;
    RETURN NEW;
END $$;
""".replace(
    "{cases}",
    "\n".join(
        f"        WHEN NOT ({on_new}) THEN '{name}'" for name, (_, on_new) in SHAPE_CHECKS.items()
    ),
)


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(SHAPE_FUNCTION)
    op.execute(
        "CREATE TRIGGER accounts_shape BEFORE INSERT OR UPDATE OF "
        f"{', '.join(SHAPE_COLUMNS)} ON accounts "
        "FOR EACH ROW EXECUTE FUNCTION points_account_shape()"
    )
    for name in SHAPE_CHECKS:
        op.execute(f"ALTER TABLE accounts DROP CONSTRAINT {name}")


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, (check, _) in SHAPE_CHECKS.items():
        # Checked against every existing row as it is added.
        op.execute(f"ALTER TABLE accounts ADD CONSTRAINT {name} CHECK ({check})")
    op.execute("DROP TRIGGER accounts_shape ON accounts")
    op.execute("DROP FUNCTION points_account_shape()")
