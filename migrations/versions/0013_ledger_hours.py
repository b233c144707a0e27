"""Ledger hours: per node and hour, what its volunteer accounts gained and lost.

- `ledger_hours`: the rollup that reports read (points.rollups), keyed by node, hour
  (UTC), entry kind, the details a report breaks issuance and redemption down by, and a
  stripe, so that concurrent units of one node do not queue for one row.
  Hours rather than days: a day depends on a time zone, an hour (UTC) on none, and a
  month of any whole-hour zone is a run of whole hours.
- A trigger on postings keeps it in the same transaction as the postings it sums, on
  every write path: on PostgreSQL a deferred constraint trigger, so the row it updates
  is locked only while the unit commits (not from its postings to its commit); on
  SQLite, which writes one unit at a time, a plain AFTER INSERT trigger.
- Filled from the postings already written.
- `ix_service_minutes_district_id_created_at`: a node's service minutes in a period
  without reading its earlier years.

The select below is frozen with this revision; points.rollups holds the current one,
which `points ledger verify` compares with the table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

HOUR = {
    "postgresql": "date_trunc('hour', e.effective_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "sqlite": "substr(e.effective_at, 1, 13) || ':00:00.000000'",
}
COLUMNS = (
    "district_id, hour, kind, activity, plugin, rule, provider_id, sku, stripe, "
    "credits, debits, postings"
)
KEY = "district_id, hour, kind, activity, plugin, rule, provider_id, sku, stripe"
# Concurrent units of one node write different rows: the stripe is the connection's
# (PostgreSQL backend pid modulo STRIPES); SQLite writes one unit at a time, stripe 0.
STRIPES = 8
STRIPE = {"postgresql": f"pg_backend_pid() % {STRIPES}", "sqlite": "0"}


def _select(hour: str, stripe: str, where: str) -> str:
    return f"""
    SELECT p.district_id, {hour}, e.kind,
        CASE WHEN e.kind = 'earn' THEN coalesce(r.kind, '') ELSE '' END,
        CASE WHEN e.kind = 'earn' THEN coalesce(e.plugin, '') ELSE '' END,
        CASE WHEN e.kind = 'earn' THEN coalesce(e.rule, '') ELSE '' END,
        coalesce(d.provider_id, 0),
        coalesce(d.sku, ''),
        {stripe},
        sum(CASE WHEN p.amount > 0 THEN p.amount ELSE 0 END),
        sum(CASE WHEN p.amount < 0 THEN -p.amount ELSE 0 END),
        count(*)
    FROM postings p
    JOIN accounts a ON a.id = p.account_id
    JOIN entries e ON e.id = p.entry_id
    LEFT JOIN service_records r ON r.id = e.service_record_id AND e.kind = 'earn'
    LEFT JOIN redemptions d ON d.hold_id = e.hold_id AND e.kind = 'redeem'
    WHERE a.kind = 'volunteer' {where}
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9"""


def upgrade():
    op.create_table(
        "ledger_hours",
        sa.Column("district_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("activity", sa.String(length=32), nullable=False),
        sa.Column("plugin", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("stripe", sa.SmallInteger(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("debits", sa.BigInteger(), nullable=False),
        sa.Column("postings", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "credits >= 0 AND debits >= 0 AND postings > 0", name=op.f("ck_ledger_hours_sums")
        ),
        sa.ForeignKeyConstraint(
            ["district_id"], ["districts.id"], name=op.f("fk_ledger_hours_district_id_districts")
        ),
        sa.PrimaryKeyConstraint(
            "district_id",
            "hour",
            "kind",
            "activity",
            "plugin",
            "rule",
            "provider_id",
            "sku",
            "stripe",
            name=op.f("pk_ledger_hours"),
        ),
    )
    with op.batch_alter_table("service_minutes") as batch:
        batch.create_index(
            "ix_service_minutes_district_id_created_at", ["district_id", "created_at"]
        )
    dialect = op.get_bind().dialect.name
    hour = HOUR[dialect]
    if dialect == "postgresql":
        # No posting may commit between the fill and the trigger: it would be in neither.
        op.execute("LOCK TABLE postings IN SHARE ROW EXCLUSIVE MODE")
    op.execute(f"INSERT INTO ledger_hours ({COLUMNS}) {_select(hour, '0', '')}")
    add = (
        "credits = ledger_hours.credits + excluded.credits, "
        "debits = ledger_hours.debits + excluded.debits, "
        "postings = ledger_hours.postings + excluded.postings"
    )
    if dialect == "postgresql":
        # The same row as the select, for one posting, in the fewest reads: the trigger
        # runs for every posting of every write.
        op.execute(
            f"""
            CREATE FUNCTION points_roll_up() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                entry record;
                v_activity text := '';
                v_plugin text := '';
                v_rule text := '';
                v_provider integer := 0;
                v_sku text := '';
            BEGIN
                PERFORM 1 FROM accounts WHERE id = NEW.account_id AND kind = 'volunteer';
                IF NOT FOUND THEN
                    RETURN NULL;
                END IF;
                SELECT kind, effective_at, plugin, rule, service_record_id, hold_id
                    INTO entry FROM entries WHERE id = NEW.entry_id;
                IF entry.kind = 'earn' THEN
                    v_plugin := coalesce(entry.plugin, '');
                    v_rule := coalesce(entry.rule, '');
                    IF entry.service_record_id IS NOT NULL THEN
                        SELECT kind INTO v_activity FROM service_records
                            WHERE id = entry.service_record_id;
                        v_activity := coalesce(v_activity, '');
                    END IF;
                ELSIF entry.kind = 'redeem' AND entry.hold_id IS NOT NULL THEN
                    SELECT provider_id, sku INTO v_provider, v_sku FROM redemptions
                        WHERE hold_id = entry.hold_id;
                    v_provider := coalesce(v_provider, 0);
                    v_sku := coalesce(v_sku, '');
                END IF;
                INSERT INTO ledger_hours ({COLUMNS}) VALUES (
                    NEW.district_id,
                    date_trunc('hour', entry.effective_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                    entry.kind, v_activity, v_plugin, v_rule, v_provider, v_sku,
                    {STRIPE[dialect]},
                    greatest(NEW.amount, 0), greatest(-NEW.amount, 0), 1)
                ON CONFLICT ({KEY}) DO UPDATE SET {add};
                RETURN NULL;
            END $$"""
        )
        op.execute(
            "CREATE CONSTRAINT TRIGGER postings_roll_up AFTER INSERT ON postings "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION points_roll_up()"
        )
    else:
        one = _select(hour, STRIPE[dialect], "AND p.id = NEW.id")
        op.execute(
            f"""
            CREATE TRIGGER postings_roll_up AFTER INSERT ON postings
            WHEN (SELECT kind FROM accounts WHERE id = NEW.account_id) = 'volunteer'
            BEGIN
                INSERT INTO ledger_hours ({COLUMNS}) {one}
                ON CONFLICT ({KEY}) DO UPDATE SET {add};
            END"""
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS postings_roll_up ON postings")
        op.execute("DROP FUNCTION IF EXISTS points_roll_up()")
    else:
        op.execute("DROP TRIGGER IF EXISTS postings_roll_up")
    with op.batch_alter_table("service_minutes") as batch:
        batch.drop_index("ix_service_minutes_district_id_created_at")
    op.drop_table("ledger_hours")
